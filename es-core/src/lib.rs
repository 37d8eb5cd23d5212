//! Event-sourced aggregates and CQRS, where derive macros write the plumbing
//! and the compiler checks the wiring.
//!
//! (The full tour is below the module list; it is written last.)

#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
mod cache;
pub mod codec;
mod command;
mod dispatcher;
mod envelope;
pub mod error;
mod event;
pub mod store;
pub mod testing;
mod util;

pub use crate::aggregate::{Aggregate, AggregateId, Handle};
#[cfg(feature = "binary")]
pub use crate::codec::Binary;
pub use crate::codec::{Codec, CodecError, Json};
pub use crate::command::{Command, Dispatchable};
pub use crate::dispatcher::{Committed, Dispatcher, DispatcherBuilder, LoadError, Receipt};
pub use crate::envelope::{Envelope, EventId, Metadata, StreamId, Timestamp};
pub use crate::error::{
    AppendError, BoxError, Conflict, DecodeError, DispatchError, EventDecodeError, Rejection, StoreError,
};
pub use crate::event::{Apply, ApplyTo, Event, IntoEvents, events_of};
pub use crate::store::{EventStore, EventStoreExt, ExpectedVersion, InMemoryStore};

/// The derive macros, re-exported under the names of their traits.
#[cfg(feature = "derive")]
pub use es_derive::{Aggregate, Command, Event, handlers};

/// Everything a domain module needs: `use es_core::prelude::*;`.
///
/// [`Apply`] is left out on purpose: with both it and [`Aggregate`] in
/// scope, `state.apply(&event)` would be ambiguous. Import it where you
/// write an `Apply` impl by hand.
pub mod prelude {
    #[cfg(feature = "derive")]
    pub use crate::handlers;
    pub use crate::{
        Aggregate, Command, Committed, DispatchError, Dispatcher, Envelope, Event, EventStore, Handle, InMemoryStore,
        IntoEvents, Metadata, StreamId,
    };
}

/// What generated code needs. Not public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::dispatcher::route;

    /// The future of a routed command.
    pub type RouteFuture<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<crate::Receipt, crate::DispatchError>> + Send + 'a>>;
    pub use crate::util::{first_overlap, names_overlap};
    pub use serde;

    use crate::aggregate::Aggregate;
    use crate::event::IntoEvents;

    /// The return value of a `#[handle]` method, turned into what
    /// [`Handle::handle`](crate::Handle::handle) returns.
    #[diagnostic::on_unimplemented(
        message = "a `#[handle]` handler of `{A}` must return `Result<events, error>`, not `{Self}`",
        label = "this return type",
        note = "return `Result<X, E>` where X is an event of the aggregate (or an `Option`, `Vec` or tuple of them, or `()`) and E converts into its error type"
    )]
    pub trait Decision<A: Aggregate> {
        /// The events, or the error converted into the aggregate's.
        fn into_decision(self) -> Result<Vec<A::Event>, A::Error>;
    }

    impl<A, T, E> Decision<A> for Result<T, E>
    where
        A: Aggregate,
        T: IntoEvents<A::Event>,
        E: Into<A::Error>,
    {
        #[inline]
        fn into_decision(self) -> Result<Vec<A::Event>, A::Error> {
            match self {
                Ok(events) => {
                    let mut out = Vec::new();
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
        /// Decodes a value with `codec`.
        fn decode_with<C: crate::Codec>(codec: &C, payload: &[u8]) -> Result<Self, crate::EventDecodeError>;
    }

    #[diagnostic::do_not_recommend]
    impl<T: serde::Serialize + serde::de::DeserializeOwned> Storable for T {
        #[inline]
        fn encode_with<C: crate::Codec>(&self, codec: &C) -> Result<Vec<u8>, crate::CodecError> {
            codec.encode(self)
        }

        #[inline]
        fn decode_with<C: crate::Codec>(codec: &C, payload: &[u8]) -> Result<Self, crate::EventDecodeError> {
            match codec.decode(payload) {
                Ok(event) => Ok(event),
                Err(e) => Err(crate::EventDecodeError::Codec(e)),
            }
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
}
