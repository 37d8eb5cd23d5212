//! What generated code needs. Not public API: it changes without notice.

pub use crate::dispatcher::{RouteFuture, route};

/// The decoding failure of `event`, with where it is stored.
pub fn decode_error(event: &crate::store::RecordedEvent<'_>, source: crate::EventDecodeError) -> crate::DecodeError {
    crate::error::decode_error(event, source)
}

pub use crate::command::Fingerprint;

/// The fingerprint `#[derive(Aggregate)]` records with snapshots: the state
/// shape's, or — when the shape cannot be traced (a validated newtype that
/// refuses the tracer's samples, say) — [`UNTRACED_SHAPE`](crate::aggregate::UNTRACED_SHAPE),
/// which turns the aggregate's snapshots off and says so once, naming the
/// fix: never a silent 0 that turns the check off.
pub fn snapshot_fingerprint<T: serde::de::DeserializeOwned>(aggregate: &str) -> u64 {
    match crate::shape::of::<T>() {
        Ok(shape) => match shape.fingerprint() {
            // 0 and UNTRACED_SHAPE mean something else.
            0 | crate::aggregate::UNTRACED_SHAPE => 1,
            f => f,
        },
        Err(error) => {
            tracing::error!(
                aggregate,
                %error,
                "the state's shape cannot be traced, so its snapshots are off: a snapshot of another shape \
                 could be loaded into it unnoticed. Make its `Deserialize` accept the tracer's samples, or \
                 write `#[aggregate(snapshot_untraced)]` and bump `snapshot_version` whenever the state changes"
            );
            crate::aggregate::UNTRACED_SHAPE
        }
    }
}
pub use crate::util::{ConstMessage, first_overlap, names_overlap};
pub use serde;

/// `#[derive(Command)]`'s fingerprint: through serde where the command is
/// `Serialize`, none otherwise, chosen at compile time by method lookup
/// (`(&Probe(cmd)).es_fingerprint(name)` finds `BySerde` on `Probe` first
/// when it applies, else `Unavailable` on `&Probe`).
pub mod fingerprint {
    use crate::command::Fingerprint;

    /// Wraps the command for the lookup.
    pub struct Probe<'a, T>(pub &'a T);

    /// The command is `Serialize`: fingerprint its JSON.
    pub trait BySerde {
        /// The fingerprint.
        fn es_fingerprint(&self, name: &str) -> Option<Fingerprint>;
    }

    impl<T: serde::Serialize> BySerde for Probe<'_, T> {
        fn es_fingerprint(&self, name: &str) -> Option<Fingerprint> {
            crate::command::command_fingerprint(name, self.0)
        }
    }

    /// The command is not `Serialize`: no fingerprint.
    pub trait Unavailable {
        /// None.
        fn es_fingerprint(&self, name: &str) -> Option<Fingerprint>;
    }

    impl<T> Unavailable for &Probe<'_, T> {
        fn es_fingerprint(&self, _name: &str) -> Option<Fingerprint> {
            None
        }
    }
}

use crate::event::IntoEvents;

/// The return value of a `#[handle]` method, turned into what
/// [`Handle::handle`](crate::Handle::handle) returns.
#[diagnostic::on_unimplemented(
    message = "a `#[handle]` handler of `{A}` must return `Result<events, error>`, not `{Self}`",
    label = "this return type",
    note = "return `Result<X, E>` where X is an event of the aggregate (or an `Option`, `Vec` or tuple of them, or `()`) and E converts into its error type"
)]
pub trait Decision<A, Ev, Er> {
    /// The events, or the error converted into the aggregate's.
    fn into_decision(self) -> Result<Vec<Ev>, Er>;
}

// `A` is only named in the message. The aggregate's event and error types
// come as parameters, so that when `A` is not an aggregate this impl does
// not fail too: the one failure is naming those types, at the handlers
// block's type, and not one more at every handler's return type.
impl<A, Ev, Er, T, E> Decision<A, Ev, Er> for Result<T, E>
where
    T: IntoEvents<Ev>,
    E: Into<Er>,
{
    #[inline]
    fn into_decision(self) -> Result<Vec<Ev>, Er> {
        match self {
            Ok(events) => {
                // One event is the common case: room for exactly that.
                let mut out = Vec::with_capacity(1);
                events.into_events(&mut out);
                Ok(out)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// What an event struct needs to be stored: serde's two traits. The
/// generated `encode` and `decode` both go through this one trait, so a
/// missing serde derive gives one error, with a message naming the fix.
#[diagnostic::on_unimplemented(
    message = "event `{Self}` must implement serde's `Serialize` and `Deserialize`",
    label = "`{Self}` cannot be stored",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`: events are stored through a serde codec"
)]
pub trait Storable: Sized {
    /// Encodes `self` with `codec`.
    fn encode_with<C: crate::Codec>(&self, codec: &C) -> Result<Vec<u8>, crate::CodecError>;
    /// Encodes `self` with `codec` at the end of `out`.
    fn encode_into_with<C: crate::Codec>(&self, codec: &C, out: &mut Vec<u8>) -> Result<(), crate::CodecError>;
    /// Decodes a value with `codec`.
    fn decode_with<C: crate::Codec>(codec: &C, payload: &[u8]) -> Result<Self, crate::EventDecodeError>;
    /// The stored shape.
    fn shape() -> Result<crate::shape::Shape, crate::shape::ShapeError>;
}

/// Decodes an event struct with personal fields and binds each to its
/// subject.
#[inline]
pub fn decode_bound<E: crate::Event + Storable, C: crate::Codec>(
    codec: &C,
    payload: &[u8],
) -> Result<E, crate::EventDecodeError> {
    let mut event = E::decode_with(codec, payload)?;
    event.bind_personal().map_err(crate::EventDecodeError::Personal)?;
    Ok(event)
}

/// An event struct's entry in the schema lock.
pub fn describe<T>(
    name: &'static str,
    version: u32,
    aliases: &'static [&'static str],
    current: bool,
    shape: Result<crate::shape::Shape, crate::shape::ShapeError>,
    out: &mut Vec<crate::event::EventShape>,
) {
    out.push(crate::event::EventShape {
        name,
        version,
        aliases,
        rust_type: std::any::type_name::<T>(),
        current,
        shape: match shape {
            Ok(shape) => shape.structure(),
            Err(e) => format!("untraceable: {}", e.message),
        },
    });
}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Storable for T {
    fn shape() -> Result<crate::shape::Shape, crate::shape::ShapeError> {
        crate::shape::of::<T>()
    }

    #[inline]
    fn encode_with<C: crate::Codec>(&self, codec: &C) -> Result<Vec<u8>, crate::CodecError> {
        codec.encode(self)
    }

    #[inline]
    fn encode_into_with<C: crate::Codec>(&self, codec: &C, out: &mut Vec<u8>) -> Result<(), crate::CodecError> {
        codec.encode_into(self, out)
    }

    #[inline]
    fn decode_with<C: crate::Codec>(codec: &C, payload: &[u8]) -> Result<Self, crate::EventDecodeError> {
        match codec.decode(payload) {
            Ok(event) => Ok(event),
            Err(e) => Err(crate::EventDecodeError::Codec(e)),
        }
    }
}

/// What an aggregate's state needs to start: its `Default`.
#[diagnostic::on_unimplemented(
    message = "aggregate `{Self}` must implement `Default`: its state starts as the default value",
    label = "`{Self}` has no `Default`",
    note = "add `#[derive(Default)]` to `{Self}`, or implement `Default` for it: the state before the first event"
)]
pub trait InitialState {
    /// The state before the first event.
    fn initial_state() -> Self;
}

#[diagnostic::do_not_recommend]
impl<T: Default> InitialState for T {
    #[inline]
    fn initial_state() -> Self {
        T::default()
    }
}

/// A command a process's handler returns, as the process's command type.
#[diagnostic::on_unimplemented(
    message = "this process handler returns `{Self}`, which is not one of the process's commands `{C}`",
    label = "returns `{Self}`",
    note = "add a variant holding `{Self}` to `{C}` (the `command = ..` of the `#[es_core::handlers(process, ..)]` block), or return one of its commands"
)]
pub trait IntoCommand<C> {
    /// `self` as a `C`.
    fn into_command(self) -> C;
}

#[diagnostic::do_not_recommend]
impl<T: Into<C>, C> IntoCommand<C> for T {
    #[inline]
    fn into_command(self) -> C {
        self.into()
    }
}

/// What a command taken by value needs: `Clone`, with the reason.
#[diagnostic::on_unimplemented(
    message = "command `{Self}` must implement `Clone` for a handler that takes it by value",
    label = "`{Self}` is not `Clone`",
    note = "the dispatcher keeps each command to decide it again when another writer appended to the stream first (a version conflict), and a handler taking it by value gets a copy: take it by reference (`command: &{Self}`), or add `#[derive(Clone)]` to `{Self}`"
)]
pub trait CommandClone: Sized {
    /// A copy of the command, to decide it again.
    fn clone_command(&self) -> Self;
}

#[diagnostic::do_not_recommend]
impl<T: Clone> CommandClone for T {
    #[inline]
    fn clone_command(&self) -> Self {
        self.clone()
    }
}

/// The `#[aggregate_id]` field of a command, which must have the type of
/// its aggregate's id.
#[diagnostic::on_unimplemented(
    message = "the `#[aggregate_id]` field has type `{Self}`, but the aggregate's id is `{Id}`",
    label = "expected `{Id}`",
    note = "change the field's type to `{Id}`, or the aggregate's `#[aggregate(id = ..)]`"
)]
pub trait IdField<Id> {
    /// The field as the aggregate's id.
    fn id_field(&self) -> &Id;
}

impl<T> IdField<T> for T {
    #[inline]
    fn id_field(&self) -> &T {
        self
    }
}

/// The event type of an aggregate whose `#[aggregate(..)]` lacks
/// `event = ..`: the derive reports that, and implements the aggregate
/// with this uninhabited type so its handlers still type-check and the
/// mistake gives one error. Every event derive makes its type
/// `IntoEvents<MissingEvents>` for the same reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingEvents {}

impl crate::Event for MissingEvents {
    const NAMES: &'static [&'static str] = &[];

    fn name(&self) -> &'static str {
        match *self {}
    }

    fn version(&self) -> u32 {
        match *self {}
    }

    fn encode<C: crate::Codec>(&self, _: &C) -> Result<Vec<u8>, crate::CodecError> {
        match *self {}
    }

    fn decode<C: crate::Codec>(_: &C, name: &str, _: u32, _: &[u8]) -> Result<Self, crate::EventDecodeError> {
        Err(unknown_name::<Self>(name, Self::NAMES))
    }
}

/// A query nobody asks, answered by every type. It exists so that no
/// read model has exactly one `Answer` impl: with one, rustc infers the
/// query type from that impl instead of from the argument, and asking
/// the wrong query reads "expected `Total`, found `Names`" instead of
/// "`Totals` does not answer query `Names`".
#[derive(Debug)]
pub struct NoQuery;

impl crate::Query for NoQuery {
    type Output = ();
}

impl<R: ?Sized> crate::Answer<NoQuery> for R {
    fn answer(&self, _: NoQuery) {}
}

/// The output of a query handler, which must be the query's output.
#[diagnostic::on_unimplemented(
    message = "this query handler returns `{Self}`, but the query's output is `{Output}`",
    label = "expected `{Output}`",
    note = "return the type in the query's `#[query(output = ..)]`, or change that"
)]
pub trait QueryOutput<Output> {
    /// The value, as the query's output.
    fn into_output(self) -> Output;
}

impl<T> QueryOutput<T> for T {
    #[inline]
    fn into_output(self) -> T {
        self
    }
}

/// "`Self` upcasts to `N`": what the current version's `older = [..]`
/// requires of each step of its chain.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not upcast to `{N}`",
    label = "the version after `{Self}` in this list is `{N}`",
    note = "give `{Self}` `#[event(.., next = {N})]`: each older version's `next` is the one after it in `older = [..]`, and the last one's is the current struct"
)]
pub trait UpcastTo<N> {
    /// Pushes what `self` is at version `N` onto `out`.
    fn upcast_to(self, out: &mut Vec<N>);
}

#[diagnostic::do_not_recommend]
impl<T: crate::Upcast> UpcastTo<T::Next> for T {
    #[inline]
    fn upcast_to(self, out: &mut Vec<T::Next>) {
        self.upcast(out)
    }
}

/// The conversion a `next = N` step without `custom_upcast` goes
/// through.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be made from the older version `{Old}`",
    label = "no `From<{Old}>` for `{Self}`",
    note = "implement `From<{Old}> for {Self}` (one event to one), or add `custom_upcast` to the `#[event(..)]` of `{Old}` and implement `es_core::Upcast` for it (none, one or several events)"
)]
pub trait FromOlder<Old> {
    /// `Self` made from `old`.
    fn from_older(old: Old) -> Self;
}

#[diagnostic::do_not_recommend]
impl<Old, T: From<Old>> FromOlder<Old> for T {
    #[inline]
    fn from_older(old: Old) -> Self {
        T::from(old)
    }
}

/// The one event an upcast chain made, for a caller that needs one.
#[inline]
pub fn exactly_one<T>(mut events: Vec<T>, name: &'static str, stored: u32) -> Result<T, crate::EventDecodeError> {
    if events.len() == 1
        && let Some(one) = events.pop()
    {
        return Ok(one);
    }
    Err(crate::EventDecodeError::UpcastCount {
        name,
        stored,
        produced: events.len(),
    })
}

/// Why a stored version is none the code knows, for generated `decode`s.
#[cold]
pub fn unknown_version(name: &'static str, stored: u32, current: u32) -> crate::EventDecodeError {
    crate::EventDecodeError::UnknownVersion { name, stored, current }
}

/// Concatenates name lists into one array of `N` names; usable in
/// constants (an event enum's names, aliases included).
pub const fn concat_names<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut k = 0;
    let mut i = 0;
    while i < parts.len() {
        let mut j = 0;
        while j < parts[i].len() {
            out[k] = parts[i][j];
            k += 1;
            j += 1;
        }
        i += 1;
    }
    out
}

/// Why a stored event has an unknown name, for generated `decode`s.
#[cold]
pub fn unknown_name<T>(name: &str, known: &'static [&'static str]) -> crate::EventDecodeError {
    crate::EventDecodeError::UnknownName {
        name: name.to_owned(),
        type_name: std::any::type_name::<T>(),
        known,
    }
}

/// Why a stored event is newer than the code, for generated `decode`s.
#[cold]
pub fn newer_version(name: &'static str, stored: u32, supported: u32) -> crate::EventDecodeError {
    crate::EventDecodeError::NewerVersion {
        name,
        stored,
        supported,
    }
}
