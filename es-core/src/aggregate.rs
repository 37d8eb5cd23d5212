//! Aggregates and the commands they decide.

use std::fmt::{Debug, Display};
use std::hash::Hash;

use crate::codec::{Codec, CodecError};
use crate::event::Event;

/// What a method taking an aggregate id accepts: the id by value or by
/// reference, and a `&str` for a `String` id, so `load::<Guest>("g1")` needs
/// no `&"g1".to_owned()`.
pub trait IntoId<I: Clone> {
    /// The id, borrowed when it can be.
    fn into_id<'a>(self) -> std::borrow::Cow<'a, I>
    where
        Self: 'a;
}

impl<I: Clone> IntoId<I> for I {
    fn into_id<'a>(self) -> std::borrow::Cow<'a, I>
    where
        Self: 'a,
    {
        std::borrow::Cow::Owned(self)
    }
}

impl<I: Clone> IntoId<I> for &I {
    fn into_id<'a>(self) -> std::borrow::Cow<'a, I>
    where
        Self: 'a,
    {
        std::borrow::Cow::Borrowed(self)
    }
}

impl IntoId<String> for &str {
    fn into_id<'a>(self) -> std::borrow::Cow<'a, String>
    where
        Self: 'a,
    {
        std::borrow::Cow::Owned(self.to_owned())
    }
}

/// A consistency boundary: state rebuilt from its own events, deciding
/// commands against that state.
///
/// Derive it with `#[derive(Aggregate)]` and
/// `#[aggregate(name = "..", id = .., event = .., error = ..)]`; the state
/// starts as its `Default` ([`Aggregate::initial`]) and evolves only through
/// [`Aggregate::apply`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    label = "`{Self}` does not implement `Aggregate`",
    note = "add `#[derive(Aggregate)]` and `#[aggregate(id = .., event = .., error = ..)]` to `{Self}` (if it has them, fix the error reported at its `#[aggregate(..)]` first)"
)]
pub trait Aggregate: Sized + Send + Sync + 'static {
    /// The stored aggregate type: the first half of every stream id. Never
    /// change it once events are stored.
    const NAME: &'static str;

    /// The id type: cheap to clone, hashable, and displayable; its `Display`
    /// form is the second half of the stream id, so it must be stable.
    type Id: Clone + Eq + Hash + Display + Debug + Send + Sync + 'static;

    /// The aggregate's events: usually an enum deriving [`Event`].
    type Event: Event;

    /// Why a command is refused.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Dependencies handlers may read (a clock, exchange rates, ...); `()`
    /// when there are none.
    type Services: Send + Sync + 'static;

    /// Store a snapshot every this many events; 0 (the default) never does.
    const SNAPSHOT_EVERY: u64 = 0;

    /// The schema version of the snapshot form. Snapshots stored with
    /// another version are ignored and the state is replayed from events.
    const SNAPSHOT_VERSION: u32 = 1;

    /// The state before the first event. The derive makes it the type's
    /// `Default` (and says so, once, if there is none).
    fn initial() -> Self;

    /// Evolves the state on one of its events.
    fn apply(&mut self, event: &Self::Event);

    /// Decodes a stored event and applies it: what loading does for each
    /// event. The derive routes it through [`ApplyTo::decode_apply_to`](crate::ApplyTo::decode_apply_to),
    /// which skips building the event enum.
    #[doc(hidden)]
    #[inline]
    fn apply_stored<C: Codec>(
        &mut self,
        codec: &C,
        name: &str,
        version: u32,
        payload: &[u8],
    ) -> Result<(), crate::EventDecodeError> {
        Self::Event::decode_each(codec, name, version, payload, |event| self.apply(&event))
    }

    /// A fingerprint of the state's serialized shape (field names and types,
    /// nested types included; see [`shape`](crate::shape)), stored with each
    /// snapshot: a snapshot of another shape is not used, so changing the
    /// state struct never loads an old snapshot into it. 0 when snapshots
    /// are off or the aggregate says `snapshot_untraced` (then only
    /// [`SNAPSHOT_VERSION`](Aggregate::SNAPSHOT_VERSION) tells);
    /// [`UNTRACED_SHAPE`] when the shape cannot be traced and nobody said so:
    /// snapshots are then neither read nor written, the derive logs why,
    /// and the test fixture fails.
    fn snapshot_fingerprint() -> u64 {
        0
    }

    /// Encodes the state as a snapshot; `None` when snapshots are off.
    #[inline]
    fn encode_snapshot<C: Codec>(&self, codec: &C) -> Option<Result<Vec<u8>, CodecError>> {
        let _ = codec;
        None
    }

    /// Decodes a snapshot written by [`Aggregate::encode_snapshot`].
    #[inline]
    fn decode_snapshot<C: Codec>(codec: &C, bytes: &[u8]) -> Option<Result<Self, CodecError>> {
        let _ = (codec, bytes);
        None
    }
}

/// The snapshot fingerprint of a state whose shape cannot be traced: its
/// snapshots are off (see [`Aggregate::snapshot_fingerprint`]).
pub const UNTRACED_SHAPE: u64 = u64::MAX;

/// "This aggregate decides command `C`."
///
/// A `#[handle]` method in an `#[es_core::handlers]` block implements it. By
/// hand:
///
/// ```
/// # use es_core::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// # pub struct Incremented { by: u32 }
/// # #[derive(Debug, Clone, Command)]
/// # #[command(aggregate = Counter)]
/// # pub struct Increment { #[aggregate_id] id: String, by: u32 }
/// # #[derive(Debug, thiserror::Error)] #[error("too big")] pub struct TooBig;
/// # #[derive(Debug, Default, Aggregate)]
/// # #[aggregate(id = String, event = Incremented, error = TooBig)]
/// # pub struct Counter { n: u32 }
/// # impl es_core::Apply<Incremented> for Counter { fn apply(&mut self, e: &Incremented) { self.n += e.by } }
/// impl Handle<Increment> for Counter {
///     fn handle(&self, cmd: &Increment, _: &()) -> Result<Vec<Incremented>, TooBig> {
///         if cmd.by > 100 {
///             return Err(TooBig);
///         }
///         Ok(vec![Incremented { by: cmd.by }])
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `#[handle]` handler for command `{C}`",
    label = "`{Self}` cannot handle `{C}`",
    note = "add `#[handle] fn on_command(&self, command: &{C}) -> Result<.., ..> {{ .. }}` to the `#[es_core::handlers] impl {Self}` block"
)]
pub trait Handle<C>: Aggregate {
    /// Decides `command` against the current state: the events to append, or
    /// why not. Never mutates; only [`Aggregate::apply`] does.
    /// The command is borrowed: a conflict decides it again, and a handler
    /// that takes it by value gets a copy.
    fn handle(&self, command: &C, services: &Self::Services) -> Result<Vec<Self::Event>, Self::Error>;
}
