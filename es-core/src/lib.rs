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
    AppendError, BoxError, Conflict, DecodeError, DispatchError, EventDecodeError, StoreError,
};
pub use crate::event::{Apply, ApplyTo, Event, IntoEvents, events_of};
pub use crate::store::{EventStore, EventStoreExt, ExpectedVersion, InMemoryStore};

/// The derive macros, re-exported under the names of their traits.
#[cfg(feature = "derive")]
pub use es_derive::{Aggregate, Command, Event, handlers};

/// Everything a domain module needs: `use es_core::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "derive")]
    pub use crate::handlers;
    pub use crate::{
        Aggregate, Apply, Command, Committed, DispatchError, Dispatcher, Envelope, Event, EventStore, Handle,
        InMemoryStore, IntoEvents, Metadata, StreamId,
    };
}

/// What generated code needs. Not public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::dispatcher::route;
    pub use serde;
    pub use crate::util::{first_overlap, names_overlap};

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
