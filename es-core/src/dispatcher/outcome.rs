//! What a command returns: the committed events, or why it could not load.

use std::fmt;
use std::sync::Arc;

use crate::aggregate::Aggregate;
use crate::envelope::{Envelope, EventId, Metadata, StreamId, Timestamp};
use crate::error::{DecodeError, DispatchError, StoreError};
use crate::event::Event;
use crate::store::{Appended, Positions};
use crate::util::OneOrMore;

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
///
/// The events are kept as they were decided; [`events`](Committed::events)
/// puts each in its envelope when asked (most callers read only the
/// version, and a command's result costs no allocation beyond its events).
pub struct Committed<A: Aggregate> {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The stream's version after the command.
    pub version: u64,
    /// The global position of the last event, `None` if the command produced
    /// no events.
    pub position: Option<u64>,
    /// Whether the command id had been committed before and this is the
    /// earlier outcome, read back from the store.
    pub deduplicated: bool,
    events: Events<A::Event>,
}

/// The committed events.
#[derive(Clone)]
pub(crate) enum Events<E> {
    /// Appended by this command: the decided events and their ids; the rest
    /// of each envelope is the batch's.
    Appended {
        payloads: Vec<E>,
        ids: OneOrMore<EventId>,
        first_version: u64,
        positions: Positions,
        recorded_at: Timestamp,
        /// `None`: the command had none.
        metadata: Option<Arc<Metadata>>,
    },
    /// Read back from the store: an earlier outcome of the command's id.
    Read(Vec<Envelope<E>>),
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
            .field("deduplicated", &self.deduplicated)
            .field("events", &self.events().collect::<Vec<_>>())
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
            deduplicated: self.deduplicated,
            events: self.events.clone(),
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
            deduplicated: false,
            events: Events::Read(Vec::new()),
        }
    }

    /// The outcome of an append: `payloads` with `ids`, committed at
    /// `appended`.
    pub(crate) fn appended(
        stream: StreamId,
        appended: Appended,
        payloads: Vec<A::Event>,
        ids: OneOrMore<EventId>,
        recorded_at: Timestamp,
        metadata: Option<Arc<Metadata>>,
    ) -> Self {
        Committed {
            stream,
            version: appended.last_version,
            position: appended.positions.last(),
            deduplicated: false,
            events: Events::Appended {
                payloads,
                ids,
                first_version: appended.first_version,
                positions: appended.positions,
                recorded_at,
                metadata,
            },
        }
    }

    /// An earlier outcome, read back from the store.
    pub(crate) fn read_back(stream: StreamId, version: u64, events: Vec<Envelope<A::Event>>) -> Self {
        Committed {
            position: events.last().map(|e| e.position),
            stream,
            version,
            deduplicated: true,
            events: Events::Read(events),
        }
    }

    fn len(&self) -> usize {
        match &self.events {
            Events::Appended { payloads, .. } => payloads.len(),
            Events::Read(events) => events.len(),
        }
    }

    /// The committed events, in order, each in its envelope: its id,
    /// stream, version, global position, commit time and the command's
    /// metadata, with the event borrowed.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    /// # pub struct Opened { pub owner: String }
    /// # #[derive(Debug, thiserror::Error)] #[error("never")] pub struct Never;
    /// # #[derive(Debug, Default, Clone, Aggregate)]
    /// # #[aggregate(id = String, event = Opened, error = Never)]
    /// # pub struct Account;
    /// # #[derive(Debug, Command)] #[command(aggregate = Account)]
    /// # pub struct Open { #[aggregate_id] pub id: String }
    /// # #[es_core::handlers] impl Account {
    /// #     #[handle] fn open(&self, _: &Open) -> Result<Opened, Never> { Ok(Opened { owner: "Ada".into() }) }
    /// #     #[apply] fn opened(&mut self, _: &Opened) {}
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let app = Dispatcher::new(InMemoryStore::new());
    /// let committed = app.dispatch(Open { id: "a-1".into() }).await?;
    /// for e in committed.events() {
    ///     println!("{} #{} at {}: {:?}", e.stream, e.version, e.position, e.payload);
    /// }
    /// let first = committed.events().next().expect("one event");
    /// assert_eq!((first.version, first.payload.owner.as_str()), (1, "Ada"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn events(&self) -> impl ExactSizeIterator<Item = Envelope<&A::Event>> + DoubleEndedIterator {
        (0..self.len()).map(move |i| match &self.events {
            Events::Appended {
                payloads,
                ids,
                first_version,
                positions,
                recorded_at,
                metadata,
            } => Envelope {
                event_id: ids.get(i).unwrap_or_default(),
                stream: self.stream.clone(),
                version: first_version + i as u64,
                position: positions.get(i).unwrap_or_default(),
                recorded_at: *recorded_at,
                metadata: metadata.clone().unwrap_or_else(Metadata::shared_empty),
                payload: &payloads[i],
            },
            Events::Read(events) => {
                let e = &events[i];
                Envelope {
                    event_id: e.event_id,
                    stream: e.stream.clone(),
                    version: e.version,
                    position: e.position,
                    recorded_at: e.recorded_at,
                    metadata: e.metadata.clone(),
                    payload: &e.payload,
                }
            }
        })
    }

    /// The committed events without their envelopes.
    pub fn payloads(&self) -> impl ExactSizeIterator<Item = &A::Event> + DoubleEndedIterator {
        (0..self.len()).map(move |i| match &self.events {
            Events::Appended { payloads, .. } => &payloads[i],
            Events::Read(events) => &events[i].payload,
        })
    }

    /// The committed events in their envelopes, owned.
    pub fn into_events(self) -> Vec<Envelope<A::Event>> {
        match self.events {
            Events::Appended {
                payloads,
                ids,
                first_version,
                positions,
                recorded_at,
                metadata,
            } => {
                let metadata = metadata.unwrap_or_else(Metadata::shared_empty);
                payloads
                    .into_iter()
                    .enumerate()
                    .map(|(i, payload)| Envelope {
                        event_id: ids.get(i).unwrap_or_default(),
                        stream: self.stream.clone(),
                        version: first_version + i as u64,
                        position: positions.get(i).unwrap_or_default(),
                        recorded_at,
                        metadata: metadata.clone(),
                        payload,
                    })
                    .collect()
            }
            Events::Read(events) => events,
        }
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
            events: c.payloads().map(|e| e.name()).collect(),
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
