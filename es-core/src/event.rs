//! Events, and how aggregates and read models evolve on them.

use crate::codec::{Codec, CodecError};
use crate::error::EventDecodeError;

/// Something that can be stored as an event: one event struct, or an
/// aggregate's enum of events.
///
/// Derive it: `#[derive(Event)]` on a struct stores it under its type name
/// (or `#[event(name = "..")]`) with schema version 1 (or
/// `#[event(version = N)]`); on an enum of one-field tuple variants it
/// dispatches each variant to its payload.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "`{Self}` does not implement `Event`",
    note = "add `#[derive(Event)]` to `{Self}`: on a struct for one event, on an enum of one-field variants for an aggregate's events"
)]
pub trait Event: Sized + Send + Sync + 'static {
    /// Every stored name this type encodes to and decodes from: one for an
    /// event struct, one per variant for an enum.
    const NAMES: &'static [&'static str];

    /// The stored name of this value.
    fn name(&self) -> &'static str;

    /// The schema version this value is written with.
    fn version(&self) -> u32;

    /// Encodes the value (without its name) with `codec`.
    fn encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError>;

    /// Encodes the value (without its name) with `codec` at the end of
    /// `out` ([`Codec::encode_into`]); the default goes through
    /// [`encode`](Self::encode).
    fn encode_into<C: Codec>(&self, codec: &C, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(&self.encode(codec)?);
        Ok(())
    }

    /// Decodes a stored event written under `name` with schema `version`.
    fn decode<C: Codec>(codec: &C, name: &str, version: u32, payload: &[u8]) -> Result<Self, EventDecodeError>;

    /// Whether `name` is one of [`Event::NAMES`].
    #[inline]
    fn knows(name: &str) -> bool {
        Self::NAMES.contains(&name)
    }

    /// [`Event::decode`] for a caller that has checked `Self::knows(name)`
    /// already (an enum routing to its payload): the derive skips the second
    /// name comparison on this hot path.
    #[doc(hidden)]
    #[inline]
    fn decode_known<C: Codec>(codec: &C, name: &str, version: u32, payload: &[u8]) -> Result<Self, EventDecodeError> {
        Self::decode(codec, name, version, payload)
    }

    /// Decodes a stored event into what it stands for today, handing each
    /// to `each` in order: one event for the current schema version, and for
    /// an older version whatever its [`Upcast`] chain makes of it — one, or
    /// none or several where a step drops or splits it. Aggregates, read
    /// models and processes read stored events this way; [`Event::decode`]
    /// needs exactly one.
    #[inline]
    fn decode_each<C: Codec>(
        codec: &C,
        name: &str,
        version: u32,
        payload: &[u8],
        mut each: impl FnMut(Self),
    ) -> Result<(), EventDecodeError> {
        each(Self::decode(codec, name, version, payload)?);
        Ok(())
    }

    /// [`Event::decode_each`] for a caller that has checked
    /// `Self::knows(name)` already.
    #[doc(hidden)]
    #[inline]
    fn decode_each_known<C: Codec>(
        codec: &C,
        name: &str,
        version: u32,
        payload: &[u8],
        each: impl FnMut(Self),
    ) -> Result<(), EventDecodeError> {
        Self::decode_each(codec, name, version, payload, each)
    }

    /// Describes each stored version this type reads, for the schema lock
    /// ([`schema`](crate::schema)): an event struct, then its older
    /// versions; an enum, each of its events.
    #[doc(hidden)]
    fn describe(out: &mut Vec<EventShape>) {
        let _ = out;
    }

    /// Whether this is one event struct (not a set of events): what a
    /// variant of an event enum must hold.
    #[doc(hidden)]
    const SINGLE: bool = false;

    /// The schema version an event struct writes (0 for a set of events).
    #[doc(hidden)]
    const VERSION: u32 = 0;

    /// Whether this event struct is an older version, read only to be
    /// upcast (`#[event(next = ..)]`): it cannot be in an event enum.
    #[doc(hidden)]
    const SUPERSEDED: bool = false;

    /// Whether the event (or one of the enum's) has personal fields
    /// (`#[personal(subject = ..)]`), sealed in the store.
    #[doc(hidden)]
    const PERSONAL: bool = false;

    /// Binds each personal field to its subject and name; a value read from
    /// the store must have been sealed for them.
    #[doc(hidden)]
    fn bind_personal(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// How an event stored with an older schema version becomes events of the
/// next version: the steps of an upcast chain.
///
/// An older version of an event is a struct of its own, with the event's
/// stored name, its version, and `next = ..` naming the struct of the next
/// version: `#[event(name = "account.withdrawn", version = 1, next =
/// WithdrawnV2)]`. The derive implements this trait through `From<Self> for
/// Next` (one event to one). For a step that drops the event or splits it
/// in several, add `custom_upcast` to the attribute and implement it by
/// hand. The current version lists the older ones in order,
/// `#[event(version = 3, older = [WithdrawnV1, WithdrawnV2])]`, and the
/// compiler checks the chain: no gap, no version twice, each step leading to
/// the next and the last to the current struct.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say how it upcasts to its next version",
    label = "no `Upcast` for `{Self}`",
    note = "give `{Self}` `#[event(.., next = NextVersion)]` and `impl From<{Self}> for NextVersion`, or add `custom_upcast` and implement `Upcast` by hand"
)]
pub trait Upcast: Sized {
    /// The next version of the event: the struct with the same stored name
    /// and the version after this one's.
    type Next;

    /// Pushes what this event is at the next version onto `out`: one event,
    /// or none (the event is dropped) or several (it is split), in order.
    fn upcast(self, out: &mut Vec<Self::Next>);
}

/// "This aggregate (or read model) knows how to evolve on event `E`."
///
/// `#[apply]` methods in an `#[es_core::handlers]` block implement it; it can
/// also be written by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `#[apply]` handler for event `{E}`",
    label = "`{Self}` cannot apply `{E}`",
    note = "add `#[apply] fn on_event(&mut self, event: &{E}) {{ .. }}` to the `#[es_core::handlers] impl {Self}` block"
)]
pub trait Apply<E> {
    /// Changes `self` to reflect that `event` happened. Never fails: the
    /// event is a fact; rules belong in the command handler.
    fn apply(&mut self, event: &E);
}

/// Applies an event (or an enum of events) to a target by dispatching to the
/// target's [`Apply`] implementations.
///
/// `#[derive(Event)]` implements it: for a struct as `target.apply(self)`,
/// for an enum as a `match` over its variants. It is what makes a missing
/// `#[apply]` handler a compile error at the aggregate.
pub trait ApplyTo<T: ?Sized> {
    /// Applies `self` to `target`.
    fn apply_to(&self, target: &mut T);

    /// Decodes a stored event of this type and applies it to `target`. The
    /// enum derive overrides it to decode straight into the variant's
    /// payload and apply that, never building (and dropping) the enum: the
    /// hot loop of loading an aggregate.
    #[doc(hidden)]
    #[inline]
    fn decode_apply_to<C: Codec>(
        codec: &C,
        name: &str,
        version: u32,
        payload: &[u8],
        target: &mut T,
    ) -> Result<(), EventDecodeError>
    where
        Self: Event,
    {
        Self::decode_each(codec, name, version, payload, |event| event.apply_to(target))
    }
}

/// What a `#[handle]` handler may return in its `Ok`: one event, an `Option`
/// or `Vec` or array of events, a tuple of events, or `()` for none.
///
/// `#[derive(Event)]` implements it for each event type toward the enums
/// that contain it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned as events of `{E}`",
    label = "not an event of `{E}`",
    note = "a `#[handle]` handler returns `Result<X, Error>` where X is an event of `{E}`, an `Option`, `Vec` or tuple of them, or `()`"
)]
pub trait IntoEvents<E> {
    /// Pushes the events onto `out`, in order.
    fn into_events(self, out: &mut Vec<E>);
}

impl<E> IntoEvents<E> for () {
    #[inline]
    fn into_events(self, _: &mut Vec<E>) {}
}

impl<E, T: IntoEvents<E>> IntoEvents<E> for Option<T> {
    #[inline]
    fn into_events(self, out: &mut Vec<E>) {
        if let Some(t) = self {
            t.into_events(out);
        }
    }
}

impl<E, T: IntoEvents<E>> IntoEvents<E> for Vec<T> {
    #[inline]
    fn into_events(self, out: &mut Vec<E>) {
        out.reserve(self.len());
        for t in self {
            t.into_events(out);
        }
    }
}

impl<E, T: IntoEvents<E>, const N: usize> IntoEvents<E> for [T; N] {
    #[inline]
    fn into_events(self, out: &mut Vec<E>) {
        out.reserve(N);
        for t in self {
            t.into_events(out);
        }
    }
}

macro_rules! tuple_into_events {
    ($($t:ident)+) => {
        impl<E, $($t: IntoEvents<E>),+> IntoEvents<E> for ($($t,)+) {
            #[inline]
            #[allow(non_snake_case)]
            fn into_events(self, out: &mut Vec<E>) {
                let ($($t,)+) = self;
                $($t.into_events(out);)+
            }
        }
    };
}

tuple_into_events!(A);
tuple_into_events!(A B);
tuple_into_events!(A B C);
tuple_into_events!(A B C D);
tuple_into_events!(A B C D F);
tuple_into_events!(A B C D F G);
tuple_into_events!(A B C D F G H);
tuple_into_events!(A B C D F G H I);
tuple_into_events!(A B C D F G H I J);
tuple_into_events!(A B C D F G H I J K);
tuple_into_events!(A B C D F G H I J K L);
tuple_into_events!(A B C D F G H I J K L M);

/// Collects anything [`IntoEvents`] into a `Vec`.
pub fn events_of<E>(events: impl IntoEvents<E>) -> Vec<E> {
    let mut out = Vec::new();
    events.into_events(&mut out);
    out
}

/// One stored version of one event, as the code reads it: what
/// [`Event::describe`] lists for the schema lock ([`schema`](crate::schema)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventShape {
    /// Its stored name.
    pub name: &'static str,
    /// Its schema version.
    pub version: u32,
    /// Other stored names it is read under.
    pub aliases: &'static [&'static str],
    /// The Rust struct that reads it.
    pub rust_type: &'static str,
    /// Whether it is the version written today (not an older one, read to
    /// be upcast).
    pub current: bool,
    /// Its stored shape ([`Shape::structure`](crate::shape::Shape::structure)),
    /// or why it could not be traced.
    pub shape: String,
}
