//! A store in process memory, for tests and single-process tools.

use std::collections::HashMap;
use std::future::{Future, ready};
use std::ops::ControlFlow;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

use super::{
    AppendOutcome, AppendRequest, Appended, CommandRecord, EventStore, LoadedEvent, Positions, RecordedEvent, Snapshot,
    Visitor,
};
use crate::envelope::{EventId, StreamId, Timestamp};
use crate::error::{AppendError, Conflict, StoreError};
use crate::util::FxHashMap;

/// An [`EventStore`] in process memory.
///
/// It holds encoded events, like a durable store, so the codec runs on every
/// append and load. Clones share the same data. Everything is lost when the
/// last clone is dropped.
#[derive(Clone)]
pub struct InMemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    state: RwLock<State>,
    head: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// The global log; position `p` is at index `p - 1`.
    log: Vec<Entry>,
    streams: FxHashMap<StreamId, StreamEntries>,
    event_ids: std::collections::HashSet<EventId, std::hash::BuildHasherDefault<crate::util::FxHasher>>,
    snapshots: HashMap<StreamId, Snapshot>,
    checkpoints: HashMap<String, u64>,
}

struct StreamEntries {
    id: Arc<StreamId>,
    /// Indexes into the log; version `v` is at index `v - 1`.
    entries: Vec<usize>,
    /// The command ids recorded on this stream, with the versions of their
    /// batches: a command id is scoped to its stream.
    commands: HashMap<String, (u64, u64)>,
}

impl StreamEntries {
    fn command(&self, stream: &StreamId, id: &str) -> Option<CommandRecord> {
        self.commands
            .get(id)
            .map(|&(first_version, last_version)| CommandRecord {
                command_id: id.to_owned(),
                stream: stream.clone(),
                first_version,
                last_version,
            })
    }
}

struct Entry {
    event_id: EventId,
    stream: Arc<StreamId>,
    version: u64,
    name: std::borrow::Cow<'static, str>,
    schema_version: u32,
    payload: Vec<u8>,
    /// `None` when the command had no metadata (most do not).
    metadata: Option<Arc<[u8]>>,
    recorded_at: Timestamp,
}

impl Entry {
    fn recorded(&self, position: u64) -> RecordedEvent<'_> {
        RecordedEvent {
            event_id: self.event_id,
            aggregate_type: self.stream.aggregate_type(),
            aggregate_id: self.stream.aggregate_id(),
            version: self.version,
            position,
            name: &self.name,
            schema_version: self.schema_version,
            payload: &self.payload,
            metadata: self.metadata.as_deref().unwrap_or_default(),
            recorded_at: self.recorded_at,
        }
    }

    fn loaded(&self) -> LoadedEvent<'_> {
        LoadedEvent {
            version: self.version,
            name: &self.name,
            schema_version: self.schema_version,
            payload: &self.payload,
            recorded_at: self.recorded_at,
        }
    }
}

/// What an empty batch commits to a stream at version `actual`: nothing.
fn nothing_appended(actual: u64, log: &[Entry]) -> AppendOutcome {
    AppendOutcome::Committed(Appended {
        first_version: actual + 1,
        last_version: actual,
        positions: Positions::Consecutive {
            first: log.len() as u64 + 1,
            count: 0,
        },
    })
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("events", &self.shared.read().log.len())
            .finish()
    }
}

impl Shared {
    // A panic while holding the lock cannot leave a half-written batch:
    // appends validate first and then only push, so the data stays usable.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        InMemoryStore {
            shared: Arc::new(Shared {
                state: RwLock::new(State::default()),
                head: watch::channel(0).0,
            }),
        }
    }

    /// Watches the position of the last committed event.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        // Appends only publish while someone watches: subscribe first, then
        // publish the current head, so no append falls in between.
        let receiver = self.shared.head.subscribe();
        let head = self.shared.read().log.len() as u64;
        self.shared.head.send_if_modified(|value| {
            let changed = *value < head;
            *value = (*value).max(head);
            changed
        });
        receiver
    }

    fn append_now(&self, request: AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        super::validate_append(Self::NAME, &request)?;
        let mut state = self.shared.write();
        let state = &mut *state;
        let stream = match state.streams.get_mut(request.stream) {
            Some(s) => {
                if let Some(record) = request.command_id.and_then(|id| s.command(request.stream, id)) {
                    return Ok(AppendOutcome::Duplicate(record));
                }
                s
            }
            None => {
                if !request.expected.matches(0) {
                    return Err(Conflict {
                        stream: request.stream.clone(),
                        expected: request.expected,
                        actual: 0,
                    }
                    .into());
                }
                // An empty batch on a new stream does not create it.
                if request.events.is_empty() {
                    return Ok(nothing_appended(0, &state.log));
                }
                state
                    .streams
                    .entry(request.stream.clone())
                    .or_insert_with(|| StreamEntries {
                        id: Arc::new(request.stream.clone()),
                        entries: Vec::new(),
                        commands: HashMap::new(),
                    })
            }
        };
        let actual = stream.entries.len() as u64;
        if !request.expected.matches(actual) {
            return Err(Conflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual,
            }
            .into());
        }
        let count = request.events.len() as u64;
        if count == 0 {
            return Ok(nothing_appended(actual, &state.log));
        }
        // Validate the whole batch before writing any of it: claim each id,
        // and give the claims back if one is taken.
        for (i, event) in request.events.iter().enumerate() {
            if !state.event_ids.insert(event.event_id) {
                for claimed in &request.events[..i] {
                    state.event_ids.remove(&claimed.event_id);
                }
                return Err(StoreError::DuplicateEventId {
                    store: Self::NAME,
                    event_id: event.event_id,
                }
                .into());
            }
        }
        let metadata: Option<Arc<[u8]>> = (!request.metadata.is_empty()).then(|| Arc::from(request.metadata));
        let first_position = state.log.len() as u64 + 1;
        stream.entries.reserve(request.events.len());
        state.log.reserve(request.events.len());
        for (i, event) in request.events.into_iter().enumerate() {
            let index = state.log.len();
            state.log.push(Entry {
                event_id: event.event_id,
                stream: stream.id.clone(),
                version: actual + 1 + i as u64,
                name: event.name,
                schema_version: event.schema_version,
                payload: event.payload,
                metadata: metadata.clone(),
                recorded_at: request.recorded_at,
            });
            stream.entries.push(index);
        }
        let appended = Appended {
            first_version: actual + 1,
            last_version: actual + count,
            positions: Positions::Consecutive {
                first: first_position,
                count,
            },
        };
        if let Some(id) = request.command_id {
            stream
                .commands
                .insert(id.to_owned(), (appended.first_version, appended.last_version));
        }
        let head = state.log.len() as u64;
        // Waking watchers costs more than the append itself; with none
        // watching, only the value is updated.
        if self.shared.head.receiver_count() > 0 {
            self.shared.head.send_replace(head);
        }
        Ok(AppendOutcome::Committed(appended))
    }

    /// Visits the entries of `stream` from `from_version`, with their
    /// positions in the log.
    fn visit_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        mut visit: impl FnMut(&Entry, u64) -> ControlFlow<()>,
    ) {
        let state = self.shared.read();
        let Some(entries) = state.streams.get(stream) else {
            return;
        };
        let skip = from_version.saturating_sub(1).min(entries.entries.len() as u64) as usize;
        for &index in &entries.entries[skip..] {
            if visit(&state.log[index], index as u64 + 1).is_break() {
                return;
            }
        }
    }

    fn read_all_now(&self, after: u64, limit: usize, mut visit: impl Visitor) {
        let state = self.shared.read();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(state.log.len());
        let end = start.saturating_add(limit).min(state.log.len());
        for (i, entry) in state.log[start..end].iter().enumerate() {
            if visit(&entry.recorded((start + i) as u64 + 1)).is_break() {
                return;
            }
        }
    }
}

impl EventStore for InMemoryStore {
    const NAME: &'static str = "memory";

    fn append(&self, request: AppendRequest<'_>) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send {
        ready(self.append_now(request))
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        mut visit: impl Visitor,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.visit_stream(stream, from_version, |e, position| visit(&e.recorded(position)));
        ready(Ok(()))
    }

    fn load_events(
        &self,
        stream: &StreamId,
        from_version: u64,
        mut visit: impl FnMut(&LoadedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.visit_stream(stream, from_version, |e, _| visit(&e.loaded()));
        ready(Ok(()))
    }

    fn read_all(
        &self,
        after: u64,
        limit: usize,
        visit: impl Visitor,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.read_all_now(after, limit, visit);
        ready(Ok(()))
    }

    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let state = self.shared.read();
        ready(Ok(state.streams.get(stream).map_or(0, |s| s.entries.len() as u64)))
    }

    fn last_position(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        ready(Ok(self.shared.read().log.len() as u64))
    }

    fn find_command(
        &self,
        stream: &StreamId,
        command_id: &str,
    ) -> impl Future<Output = Result<Option<CommandRecord>, StoreError>> + Send {
        if let Err(e) = super::validate_command_id(Self::NAME, command_id) {
            return ready(Err(e));
        }
        let state = self.shared.read();
        ready(Ok(state
            .streams
            .get(stream)
            .and_then(|s| s.command(stream, command_id))))
    }

    fn load_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
        ready(Ok(self.shared.read().snapshots.get(stream).cloned()))
    }

    fn save_snapshot(
        &self,
        stream: &StreamId,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let mut state = self.shared.write();
        match state.snapshots.get(stream) {
            Some(old)
                if old.version >= snapshot.version
                    && old.schema_version == snapshot.schema_version
                    && old.fingerprint == snapshot.fingerprint => {}
            _ => {
                state.snapshots.insert(stream.clone(), snapshot);
            }
        }
        ready(Ok(()))
    }

    fn load_checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        ready(Ok(self.shared.read().checkpoints.get(name).copied()))
    }

    fn notifications(&self) -> Option<watch::Receiver<u64>> {
        Some(self.watch_head())
    }

    fn save_checkpoint(&self, name: &str, position: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.shared.write().checkpoints.insert(name.to_owned(), position);
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventStoreExt, ExpectedVersion, NewEvent};

    fn event(name: &'static str, payload: &str) -> NewEvent {
        NewEvent {
            event_id: EventId::new(),
            name: name.into(),
            schema_version: 1,
            payload: payload.as_bytes().to_vec(),
        }
    }

    fn request(stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest<'_> {
        AppendRequest {
            stream,
            expected,
            events,
            metadata: b"",
            command_id: None,
            recorded_at: Timestamp::from_micros(5),
        }
    }

    #[tokio::test]
    async fn append_read_and_conflict() {
        let store = InMemoryStore::new();
        let s = StreamId::new("t", "1");
        let out = store
            .append(request(
                &s,
                ExpectedVersion::NoStream,
                vec![event("a", "1"), event("b", "2")],
            ))
            .await
            .unwrap();
        assert_eq!(
            out,
            AppendOutcome::Committed(Appended {
                first_version: 1,
                last_version: 2,
                positions: Positions::Consecutive { first: 1, count: 2 }
            })
        );
        let err = store
            .append(request(&s, ExpectedVersion::Exact(1), vec![event("c", "3")]))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "stream `t/1` is at version 2, but the append expected version 1"
        );
        let read = store.read_stream_vec(&s, 2).await.unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!((read[0].name.as_str(), read[0].version, read[0].position), ("b", 2, 2));
        assert_eq!(store.stream_version(&s).await.unwrap(), 2);
        assert_eq!(*store.watch_head().borrow(), 2);
    }
}
