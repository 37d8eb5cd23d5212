//! What a command returns: the committed events, or why it could not load.

use std::fmt;

use crate::aggregate::Aggregate;
use crate::envelope::{Envelope, StreamId};
use crate::error::{DecodeError, DispatchError, StoreError};
use crate::event::Event;

/// An aggregate's state and the stream version it reflects: what
/// [`Dispatcher::load_versioned`](crate::Dispatcher::load_versioned),
/// [`load_at_version`](crate::Dispatcher::load_at_version) and
/// [`load_as_of`](crate::Dispatcher::load_as_of) return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<A> {
    /// The state.
    pub state: A,
    /// How many of the stream's events it reflects (0: none, the default
    /// state).
    pub version: u64,
}

/// What one command committed.
pub struct Committed<A: Aggregate> {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The stream's version after the command.
    pub version: u64,
    /// The global position of the last event, `None` if the command produced
    /// no events.
    pub position: Option<u64>,
    /// The committed events, in order.
    pub events: Vec<Envelope<A::Event>>,
    /// Whether the command id had been committed before and this is the
    /// earlier outcome, read back from the store.
    pub deduplicated: bool,
}

impl<A: Aggregate> fmt::Debug for Committed<A>
where
    A::Event: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Committed")
            .field("stream", &self.stream)
            .field("version", &self.version)
            .field("position", &self.position)
            .field("events", &self.events)
            .field("deduplicated", &self.deduplicated)
            .finish()
    }
}

impl<A: Aggregate> Clone for Committed<A>
where
    A::Event: Clone,
{
    fn clone(&self) -> Self {
        Committed {
            stream: self.stream.clone(),
            version: self.version,
            position: self.position,
            events: self.events.clone(),
            deduplicated: self.deduplicated,
        }
    }
}

impl<A: Aggregate> Committed<A> {
    /// The outcome of a command that decided no events.
    pub(crate) fn nothing(stream: StreamId, version: u64) -> Self {
        Committed {
            stream,
            version,
            position: None,
            events: Vec::new(),
            deduplicated: false,
        }
    }

    /// The committed events without their envelopes.
    pub fn payloads(&self) -> impl Iterator<Item = &A::Event> {
        self.events.iter().map(|e| &e.payload)
    }
}

/// What a routed command (a variant of a command enum) committed, without
/// the aggregate's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnyCommitted {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The stream's version after the command.
    pub version: u64,
    /// The global position of the last event, if any.
    pub position: Option<u64>,
    /// The stored names of the committed events, in order.
    pub events: Vec<&'static str>,
    /// Whether this is an earlier outcome of the same command id.
    pub deduplicated: bool,
}

impl<A: Aggregate> From<Committed<A>> for AnyCommitted {
    fn from(c: Committed<A>) -> Self {
        AnyCommitted {
            events: c.events.iter().map(|e| e.payload.name()).collect(),
            stream: c.stream,
            version: c.version,
            position: c.position,
            deduplicated: c.deduplicated,
        }
    }
}

/// Why an aggregate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A stored event could not be decoded (boxed: it is rare and large).
    #[error(transparent)]
    Decode(Box<DecodeError>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DecodeError> for LoadError {
    fn from(e: DecodeError) -> Self {
        LoadError::Decode(Box::new(e))
    }
}

impl<E> From<LoadError> for DispatchError<E> {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Decode(e) => DispatchError::Decode(e),
            LoadError::Store(e) => DispatchError::Store(e),
        }
    }
}
