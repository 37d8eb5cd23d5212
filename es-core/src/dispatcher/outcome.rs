//! What a command returns: the committed events, or why it could not load.

use std::fmt;
use std::sync::Arc;

use crate::aggregate::Aggregate;
use crate::envelope::{Envelope, EventId, Metadata, StreamId, Timestamp};
use crate::error::{DecodeError, DispatchError, StoreError};
use crate::event::Event;
use crate::store::{Appended, Positions};

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
    /// Appended by this command: the decided events; the rest of each
    /// envelope is worked out from the batch's first id, time and the
    /// command's version and position. Kept small (a `Committed` is moved
    /// several times on its way to the caller).
    Appended {
        payloads: Vec<E>,
        first_id: EventId,
        recorded_at: Timestamp,
        /// What few commands have: metadata, a second event, positions
        /// with gaps.
        more: Option<Box<More>>,
    },
    /// Read back from the store: an earlier outcome of the command's id.
    Read(Vec<Envelope<E>>),
}

/// What an appended batch keeps beside its first id and time, when it has
/// any of it.
#[derive(Clone)]
pub(crate) struct More {
    metadata: Option<Arc<Metadata>>,
    /// The ids after the first.
    ids: Vec<EventId>,
    /// Each event's position, where they are not consecutive.
    positions: Option<Vec<u64>>,
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

    /// The outcome of an append: `payloads` with their ids (`first_id`,
    /// then `more_ids`), committed at `appended`.
    pub(crate) fn appended(
        stream: StreamId,
        appended: Appended,
        payloads: Vec<A::Event>,
        first_id: EventId,
        more_ids: Vec<EventId>,
        recorded_at: Timestamp,
        metadata: Option<Arc<Metadata>>,
    ) -> Self {
        let position = appended.positions.last();
        let positions = match appended.positions {
            Positions::Consecutive { .. } => None,
            Positions::Listed(list) => Some(list),
        };
        let more = (metadata.is_some() || !more_ids.is_empty() || positions.is_some()).then(|| {
            Box::new(More {
                metadata,
                ids: more_ids,
                positions,
            })
        });
        Committed {
            stream,
            version: appended.last_version,
            position,
            deduplicated: false,
            events: Events::Appended {
                payloads,
                first_id,
                recorded_at,
                more,
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
    /// metadata, with the event borrowed (`e.map(Clone::clone)` owns one;
    /// [`into_events`](Committed::into_events) owns them all).
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
            Events::Appended { payloads, .. } => self.envelope(i, payloads.len(), &payloads[i]),
            Events::Read(events) => events[i].as_ref(),
        })
    }

    /// The envelope of the `i`-th of `len` appended events, around
    /// `payload`.
    fn envelope<P>(&self, i: usize, len: usize, payload: P) -> Envelope<P> {
        let Events::Appended {
            first_id,
            recorded_at,
            more,
            ..
        } = &self.events
        else {
            unreachable!("only appended events are enveloped here")
        };
        let back = (len - 1 - i) as u64;
        let more = more.as_deref();
        Envelope {
            event_id: match i {
                0 => *first_id,
                _ => more.and_then(|m| m.ids.get(i - 1).copied()).unwrap_or_default(),
            },
            stream: self.stream.clone(),
            version: self.version - back,
            position: match more.and_then(|m| m.positions.as_ref()) {
                Some(listed) => listed.get(i).copied().unwrap_or_default(),
                None => self.position.unwrap_or_default() - back,
            },
            recorded_at: *recorded_at,
            metadata: more
                .and_then(|m| m.metadata.clone())
                .unwrap_or_else(Metadata::shared_empty),
            payload,
        }
    }

    /// The committed events without their envelopes.
    pub fn payloads(&self) -> impl ExactSizeIterator<Item = &A::Event> + DoubleEndedIterator {
        (0..self.len()).map(move |i| match &self.events {
            Events::Appended { payloads, .. } => &payloads[i],
            Events::Read(events) => &events[i].payload,
        })
    }

    /// The committed events in their envelopes, owned.
    pub fn into_events(mut self) -> Vec<Envelope<A::Event>> {
        match &mut self.events {
            Events::Appended { payloads, .. } => {
                let payloads = std::mem::take(payloads);
                let len = payloads.len();
                payloads
                    .into_iter()
                    .enumerate()
                    .map(|(i, payload)| self.envelope(i, len, payload))
                    .collect()
            }
            Events::Read(events) => std::mem::take(events),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::{Agg, Ev};

    fn ids(n: u128) -> Vec<EventId> {
        (1..=n).map(|i| EventId::from(uuid::Uuid::from_u128(i))).collect()
    }

    /// Each envelope as the store would have it, whichever of the compact
    /// forms the batch took.
    #[test]
    fn envelopes_are_worked_out_from_the_batch() {
        let stream = StreamId::new("agg", "1");
        let metadata = Arc::new(Metadata::new().command_id("c-1"));
        let cases = [
            // One event, no metadata: nothing beyond the inline fields.
            (1, Positions::Consecutive { first: 8, count: 1 }, None),
            (3, Positions::Consecutive { first: 8, count: 3 }, Some(metadata.clone())),
            (3, Positions::Listed(vec![5, 9, 12]), None),
        ];
        for (n, positions, metadata) in cases {
            let appended = Appended {
                first_version: 4,
                last_version: 3 + n as u64,
                positions: positions.clone(),
            };
            let committed = Committed::<Agg>::appended(
                stream.clone(),
                appended,
                vec![Ev; n],
                ids(n as u128)[0],
                ids(n as u128)[1..].to_vec(),
                Timestamp::from_micros(77),
                metadata.clone(),
            );
            assert_eq!(committed.position, positions.get(n - 1));
            let expected: Vec<Envelope<Ev>> = (0..n)
                .map(|i| Envelope {
                    event_id: ids(n as u128)[i],
                    stream: stream.clone(),
                    version: 4 + i as u64,
                    position: positions.get(i).unwrap(),
                    recorded_at: Timestamp::from_micros(77),
                    metadata: metadata.clone().unwrap_or_default(),
                    payload: Ev,
                })
                .collect();
            let borrowed: Vec<Envelope<Ev>> = committed.events().map(|e| e.map(Clone::clone)).collect();
            assert_eq!(borrowed, expected, "{n} events at {positions:?}");
            assert_eq!(committed.payloads().len(), n);
            assert_eq!(committed.clone().into_events(), expected);
        }
    }

    #[test]
    fn nothing_has_no_events() {
        let committed = Committed::<Agg>::nothing(StreamId::new("agg", "1"), 2);
        assert_eq!((committed.events().len(), committed.position), (0, None));
        assert!(committed.into_events().is_empty());
    }
}
