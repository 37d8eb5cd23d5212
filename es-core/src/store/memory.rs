//! A store in process memory, for tests and single-process tools.

use std::collections::HashMap;
use std::future::{Future, ready};
use std::hash::BuildHasher;
use std::ops::ControlFlow;
use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::HashTable;
use tokio::sync::watch;

use super::{
    AppendOutcome, AppendRequest, Appended, CommandRecord, ContextFields, EventStore, Link, Positions, RecordedEvent,
    Snapshot,
};
use crate::envelope::{EventId, StreamId, Timestamp};
use crate::error::{AppendError, Conflict, StoreError};
use crate::personal::{KeyProvider, Keyring, StoredKey};
use crate::util::FastMap;

/// An [`EventStore`] in process memory.
///
/// It holds encoded events, like a durable store, so the codec runs on every
/// append and load. Clones share the same data. Everything is lost when the
/// last clone is dropped.
#[derive(Clone)]
pub struct InMemoryStore {
    pub(super) shared: Arc<Shared>,
    keyring: Option<Arc<Keyring>>,
}

pub(super) struct Shared {
    state: RwLock<State>,
    /// The links of the log's first events, by log index: computed when a
    /// read first asks for them, in log order, from the stored bytes (which
    /// never change here), so appends hash nothing.
    links: std::sync::Mutex<Vec<Link>>,
    head: watch::Sender<u64>,
    /// The data keys of personal data, by subject.
    pub(super) keys: std::sync::Mutex<std::collections::BTreeMap<String, StoredKey>>,
}

/// The data, laid out for memory: an event costs its 56-byte entry, its
/// payload bytes (and 32 bytes of link once a read asked for links), 4 bytes in its stream's index and 4 in the index of
/// ascending event ids (about 10 in the event-id table instead, for an id
/// that arrives out of order); names, streams and metadata are stored once
/// each and referred to by number.
#[derive(Default)]
struct State {
    /// The global log; position `p` is at index `p - 1`.
    log: Vec<Entry>,
    /// Every payload, back to back; entries hold offsets.
    payloads: Vec<u8>,
    /// Each distinct (stored name, schema version), once.
    kinds: Vec<(Arc<str>, u32)>,
    kinds_by_name: HashMap<Arc<str>, Vec<u32>>,
    last_kind: u32,
    streams: Vec<StreamEntries>,
    stream_index: FastMap<StreamId, u32>,
    /// Each batch's metadata, once per batch; index 0 is "none".
    metadata: Vec<Box<[u8]>>,
    /// The log indexes of the events whose id was greater than every id
    /// stored before it, in log order, so their ids ascend: ids made by one
    /// process (UUID v7 with a counter) mostly arrive in order, and checking
    /// one then takes a comparison with the last. Together with
    /// `event_ids`, every event once: ids are checked for uniqueness without
    /// storing each a second time.
    ascending: Vec<u32>,
    /// The log indexes of the other events, found by the event id they hold.
    event_ids: HashTable<u32>,
    id_hasher: foldhash::fast::RandomState,
    snapshots: HashMap<StreamId, Snapshot>,
    checkpoints: HashMap<String, u64>,
}

struct StreamEntries {
    id: StreamId,
    /// Indexes into the log; version `v` is at index `v - 1`.
    entries: Vec<u32>,
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
    version: u64,
    recorded_at: Timestamp,
    payload_at: u64,
    payload_len: u32,
    stream: u32,
    kind: u32,
    /// Index into `State::metadata`; 0 when the command had none (most do
    /// not).
    metadata: u32,
}

impl State {
    fn payload(&self, e: &Entry) -> &[u8] {
        let at = e.payload_at as usize;
        &self.payloads[at..at + e.payload_len as usize]
    }

    /// The event at `index`, with `link`.
    fn recorded(&self, index: usize, link: Link) -> RecordedEvent<'_> {
        let e = &self.log[index];
        let stream = &self.streams[e.stream as usize].id;
        let (name, schema_version) = &self.kinds[e.kind as usize];
        RecordedEvent {
            event_id: e.event_id,
            aggregate_type: stream.aggregate_type(),
            aggregate_id: stream.aggregate_id(),
            version: e.version,
            position: index as u64 + 1,
            name,
            schema_version: *schema_version,
            payload: self.payload(e),
            metadata: if e.metadata == 0 {
                &[]
            } else {
                &self.metadata[e.metadata as usize - 1]
            },
            recorded_at: e.recorded_at,
            link,
        }
    }

    /// The kind of events named `name` at `schema_version`, added when it
    /// is new. A name is checked when its first kind is added: the names of
    /// kinds the store holds need no check again.
    fn kind(&mut self, name: &str, schema_version: u32) -> Result<u32, StoreError> {
        // Runs of one kind are common (a stream of deposits): check the
        // last one before hashing the name.
        if let Some((last_name, last_version)) = self.kinds.get(self.last_kind as usize)
            && *last_version == schema_version
            && **last_name == *name
        {
            return Ok(self.last_kind);
        }
        let k = self.find_or_add_kind(name, schema_version)?;
        self.last_kind = k;
        Ok(k)
    }

    fn find_or_add_kind(&mut self, name: &str, schema_version: u32) -> Result<u32, StoreError> {
        match self.kinds_by_name.get(name) {
            Some(kinds) => {
                if let Some(&k) = kinds.iter().find(|&&k| self.kinds[k as usize].1 == schema_version) {
                    return Ok(k);
                }
            }
            None => super::validate_event_name(InMemoryStore::NAME, name)?,
        }
        let k = self.kinds.len() as u32;
        let name: Arc<str> = Arc::from(name);
        self.kinds.push((name.clone(), schema_version));
        self.kinds_by_name.entry(name).or_default().push(k);
        Ok(k)
    }

    /// Whether `id` is greater than every stored id: then it is new.
    fn is_greatest(&self, id: &EventId) -> bool {
        self.ascending
            .last()
            .is_none_or(|&i| self.log[i as usize].event_id < *id)
    }

    fn holds_event_id(&self, id: &EventId) -> bool {
        if self.is_greatest(id) {
            return false;
        }
        let log = &self.log;
        self.ascending
            .binary_search_by(|&i| log[i as usize].event_id.cmp(id))
            .is_ok()
            || self
                .event_ids
                .find(self.id_hasher.hash_one(id), |&i| log[i as usize].event_id == *id)
                .is_some()
    }

    /// Indexes the id of the event just pushed at log index `index`.
    fn index_event_id(&mut self, index: u32) {
        let id = self.log[index as usize].event_id;
        if self.is_greatest(&id) {
            self.ascending.push(index);
            return;
        }
        let State {
            log,
            event_ids,
            id_hasher,
            ..
        } = self;
        let hash = id_hasher.hash_one(id);
        event_ids.insert_unique(hash, index, |&i| id_hasher.hash_one(log[i as usize].event_id));
    }
}

/// The most events the store holds: log indexes are 32-bit.
const MAX_EVENTS: usize = u32::MAX as usize;

/// What an empty batch commits to a stream at version `actual`: nothing.
fn nothing_appended(actual: u64, log: &[Entry]) -> AppendOutcome {
    AppendOutcome::Appended(Appended {
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
                links: std::sync::Mutex::default(),
                head: watch::channel(0).0,
                keys: std::sync::Mutex::default(),
            }),
            keyring: None,
        }
    }

    /// This store, sealing personal data with data keys it keeps wrapped
    /// by `provider`'s master keys (see [`personal`](crate::personal)).
    /// Clones made before this call do not seal.
    #[must_use]
    pub fn with_keys(mut self, provider: impl KeyProvider) -> Self {
        let backend = InMemoryStore {
            shared: self.shared.clone(),
            keyring: None,
        };
        self.keyring = Some(Arc::new(Keyring::new(provider, backend)));
        self
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
        // What `validate_append` checks, but only what the store does not
        // hold already: a stream it holds, and the name of a kind of event
        // it holds, were checked when first written.
        if let Some(id) = request.command_id {
            super::validate_command_id(Self::NAME, id)?;
        }
        let mut state = self.shared.write();
        let state = &mut *state;
        let stream_at = state.stream_index.get(request.stream).copied();
        if stream_at.is_none() {
            super::validate_stream(Self::NAME, request.stream)?;
        }
        // The kind of each event, its name checked if it is new (a kind
        // added for a batch refused below stays unused). One event, the
        // usual batch, needs no list.
        let mut first_kind = 0;
        let mut more_kinds = Vec::new();
        for (i, event) in request.events.iter().enumerate() {
            let kind = state.kind(event.name, event.schema_version)?;
            if i == 0 {
                first_kind = kind;
            } else {
                more_kinds.push(kind);
            }
        }
        // Everything checked, as every store does before it looks for the
        // command id.
        if let (Some(at), Some(id)) = (stream_at, request.command_id)
            && let Some(record) = state.streams[at as usize].command(request.stream, id)
        {
            return Ok(AppendOutcome::Duplicate(record));
        }
        let actual = stream_at.map_or(0, |at| state.streams[at as usize].entries.len() as u64);
        if !request.expected.matches(actual) {
            return Err(Conflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual,
            }
            .into());
        }
        let count = request.events.len() as u64;
        // An empty batch commits nothing (and does not create a new stream).
        if count == 0 {
            return Ok(nothing_appended(actual, &state.log));
        }
        if state.log.len() + request.events.len() > MAX_EVENTS {
            return Err(StoreError::Invalid {
                store: Self::NAME,
                detail: format!("the in-memory store holds at most {MAX_EVENTS} events"),
            }
            .into());
        }
        if let Some(big) = request.events.iter().find(|e| e.payload.len() > u32::MAX as usize) {
            return Err(StoreError::Invalid {
                store: Self::NAME,
                detail: format!(
                    "event `{}` has a payload of {} bytes; the in-memory store holds payloads up to 4 GiB",
                    big.name,
                    big.payload.len()
                ),
            }
            .into());
        }
        // Validate the whole batch before writing any of it.
        let mut batch_ids = (request.events.len() > 16).then(std::collections::HashSet::new);
        for (i, event) in request.events.iter().enumerate() {
            let in_batch = match &mut batch_ids {
                None => request.events[..i].iter().any(|e| e.event_id == event.event_id),
                Some(ids) => !ids.insert(event.event_id),
            };
            if in_batch || state.holds_event_id(&event.event_id) {
                return Err(StoreError::DuplicateEventId {
                    store: Self::NAME,
                    event_id: event.event_id,
                }
                .into());
            }
        }
        let stream_at = match stream_at {
            Some(at) => at,
            None => {
                let at = state.streams.len() as u32;
                state.streams.push(StreamEntries {
                    id: request.stream.clone(),
                    entries: Vec::new(),
                    commands: HashMap::new(),
                });
                state.stream_index.insert(request.stream.clone(), at);
                at
            }
        };
        let metadata = if request.metadata.is_empty() {
            0
        } else {
            state.metadata.push(request.metadata.into());
            state.metadata.len() as u32
        };
        let first_position = state.log.len() as u64 + 1;
        if request.events.len() > 1 {
            state.log.reserve(request.events.len());
            state.streams[stream_at as usize].entries.reserve(request.events.len());
        }
        for (i, event) in request.events.iter().enumerate() {
            let index = state.log.len() as u32;
            let kind = if i == 0 { first_kind } else { more_kinds[i - 1] };
            let payload_at = state.payloads.len() as u64;
            state.payloads.extend_from_slice(event.payload);
            let version = actual + 1 + i as u64;
            state.log.push(Entry {
                event_id: event.event_id,
                version,
                recorded_at: request.recorded_at,
                payload_at,
                payload_len: event.payload.len() as u32,
                stream: stream_at,
                kind,
                metadata,
            });
            state.index_event_id(index);
            state.streams[stream_at as usize].entries.push(index);
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
            state.streams[stream_at as usize]
                .commands
                .insert(id.to_owned(), (appended.first_version, appended.last_version));
        }
        let head = state.log.len() as u64;
        // Waking watchers costs more than the append itself; with none
        // watching, only the value is updated.
        if self.shared.head.receiver_count() > 0 {
            self.shared.head.send_replace(head);
        }
        Ok(AppendOutcome::Appended(appended))
    }

    /// Visits the entries of `stream` from `from_version`, with their
    /// links if `fields` asks for them.
    fn visit_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        fields: ContextFields,
        mut visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()>,
    ) {
        let state = self.shared.read();
        let Some(&at) = state.stream_index.get(stream) else {
            return;
        };
        let entries = &state.streams[at as usize].entries;
        let skip = from_version.saturating_sub(1).min(entries.len() as u64) as usize;
        let links = self.links(&state, fields, entries.last().map_or(0, |&i| i as usize + 1));
        for &index in &entries[skip..] {
            let link = links.as_ref().map_or(Link::GENESIS, |l| l[index as usize]);
            if visit(&state.recorded(index as usize, link)).is_break() {
                return;
            }
        }
    }

    /// The links of the log's first `end` events, computed as far as they
    /// are not yet, if `fields` asks for links.
    fn links<'a>(
        &'a self,
        state: &State,
        fields: ContextFields,
        end: usize,
    ) -> Option<std::sync::MutexGuard<'a, Vec<Link>>> {
        if !fields.contains(ContextFields::LINK) {
            return None;
        }
        let mut links = self.shared.links.lock().unwrap_or_else(PoisonError::into_inner);
        for index in links.len()..end {
            let event = state.recorded(index, Link::GENESIS);
            // The event before it in its stream is earlier in the log.
            let previous = match event.version {
                1 => Link::GENESIS,
                v => links[state.streams[state.log[index].stream as usize].entries[v as usize - 2] as usize],
            };
            let link = event.compute_link(&previous);
            links.push(link);
        }
        Some(links)
    }

    fn read_all_now(
        &self,
        after: u64,
        limit: usize,
        fields: ContextFields,
        mut visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) {
        let state = self.shared.read();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(state.log.len());
        let end = start.saturating_add(limit).min(state.log.len());
        let links = self.links(&state, fields, end);
        for index in start..end {
            let link = links.as_ref().map_or(Link::GENESIS, |l| l[index]);
            if visit(&state.recorded(index, link)).is_break() {
                return;
            }
        }
    }
}

impl EventStore for InMemoryStore {
    const NAME: &'static str = "memory";

    fn keyring(&self) -> Option<&Arc<Keyring>> {
        self.keyring.as_ref()
    }

    fn append(&self, request: AppendRequest<'_>) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send {
        ready(self.append_now(request))
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        fields: ContextFields,
        visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        // Every field but the link is at hand: leaving some out saves nothing.
        if let Err(e) = super::validate_stream(Self::NAME, stream) {
            return ready(Err(e));
        }
        self.visit_stream(stream, from_version, fields, visit);
        ready(Ok(()))
    }

    fn read_all(
        &self,
        after: u64,
        limit: usize,
        fields: ContextFields,
        visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.read_all_now(after, limit, fields, visit);
        ready(Ok(()))
    }

    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64, StoreError>> + Send {
        if let Err(e) = super::validate_stream(Self::NAME, stream) {
            return ready(Err(e));
        }
        let state = self.shared.read();
        ready(Ok(state
            .stream_index
            .get(stream)
            .map_or(0, |&at| state.streams[at as usize].entries.len() as u64)))
    }

    fn last_position(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        ready(Ok(self.shared.read().log.len() as u64))
    }

    fn events_after(&self, position: u64) -> impl Future<Output = Result<u64, StoreError>> + Send {
        // Positions are 1, 2, 3, ...: one per event, no gaps.
        ready(Ok((self.shared.read().log.len() as u64).saturating_sub(position)))
    }

    fn find_command(
        &self,
        stream: &StreamId,
        command_id: &str,
    ) -> impl Future<Output = Result<Option<CommandRecord>, StoreError>> + Send {
        if let Err(e) = super::validate_stream(Self::NAME, stream) {
            return ready(Err(e));
        }
        if let Err(e) = super::validate_command_id(Self::NAME, command_id) {
            return ready(Err(e));
        }
        let state = self.shared.read();
        ready(Ok(state
            .stream_index
            .get(stream)
            .and_then(|&at| state.streams[at as usize].command(stream, command_id))))
    }

    fn load_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
        if let Err(e) = super::validate_stream(Self::NAME, stream) {
            return ready(Err(e));
        }
        ready(Ok(self.shared.read().snapshots.get(stream).cloned()))
    }

    fn save_snapshot(
        &self,
        stream: &StreamId,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        if let Err(e) = super::validate_stream(Self::NAME, stream) {
            return ready(Err(e));
        }
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

    fn event<'a>(name: &'static str, payload: &'a str) -> NewEvent<'a> {
        NewEvent {
            event_id: EventId::new(),
            name,
            schema_version: 1,
            payload: payload.as_bytes(),
        }
    }

    fn request<'a>(stream: &'a StreamId, expected: ExpectedVersion, events: &'a [NewEvent<'a>]) -> AppendRequest<'a> {
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
                &[event("a", "1"), event("b", "2")],
            ))
            .await
            .unwrap();
        assert_eq!(
            out,
            AppendOutcome::Appended(Appended {
                first_version: 1,
                last_version: 2,
                positions: Positions::Consecutive { first: 1, count: 2 }
            })
        );
        let err = store
            .append(request(&s, ExpectedVersion::Exact(1), &[event("c", "3")]))
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

    #[tokio::test]
    async fn duplicate_ids_in_long_batches_and_against_the_log_write_nothing() {
        let store = InMemoryStore::new();
        let s = StreamId::new("t", "1");
        let payloads: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        let mut batch: Vec<NewEvent<'_>> = payloads.iter().map(|p| event("a", p)).collect();
        let repeated = batch[3].event_id;
        batch[19].event_id = repeated;
        let err = store
            .append(request(&s, ExpectedVersion::Any, &batch))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&repeated.as_uuid().to_string()), "{err}");
        assert_eq!(store.last_position().await.unwrap(), 0);

        let first = event("a", "1");
        let taken = first.event_id;
        store.append(request(&s, ExpectedVersion::Any, &[first])).await.unwrap();
        let mut again = event("b", "2");
        again.event_id = taken;
        let other = StreamId::new("t", "2");
        let err = store
            .append(request(&other, ExpectedVersion::Any, &[event("c", "3"), again]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&taken.as_uuid().to_string()), "{err}");
        assert_eq!(store.last_position().await.unwrap(), 1);
        assert_eq!(store.stream_version(&other).await.unwrap(), 0);
    }

    /// Ids arriving in order (the ascending index), out of order (the
    /// table), and a batch that is not sorted itself: a second use of any
    /// of them is refused, whichever index holds the first.
    #[tokio::test]
    async fn every_stored_id_is_refused_again_whatever_order_the_ids_came_in() {
        let store = InMemoryStore::new();
        let s = StreamId::new("t", "1");
        let id = |n: u128| EventId::from(uuid::Uuid::from_u128(n << 64));
        let with_id = |n: u128| NewEvent {
            event_id: id(n),
            ..event("a", "")
        };
        let batches: [&[u128]; 5] = [&[10, 20], &[15], &[30, 25, 40], &[5], &[50]];
        for batch in batches {
            let events: Vec<NewEvent<'_>> = batch.iter().map(|&n| with_id(n)).collect();
            store.append(request(&s, ExpectedVersion::Any, &events)).await.unwrap();
        }
        let stored = [10, 20, 15, 30, 25, 40, 5, 50];
        for n in stored {
            let err = store
                .append(request(&s, ExpectedVersion::Any, &[with_id(n)]))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, AppendError::Store(StoreError::DuplicateEventId { event_id, .. }) if *event_id == id(n)),
                "id {n}: {err}"
            );
        }
        // Ids between, below and above the stored ones are new.
        for n in [12, 1, 45, 60] {
            store
                .append(request(&s, ExpectedVersion::Any, &[with_id(n)]))
                .await
                .unwrap_or_else(|e| panic!("id {n}: {e}"));
        }
        assert_eq!(store.last_position().await.unwrap(), stored.len() as u64 + 4);
    }

    /// A batch longer than 16 events checks its own ids through a set
    /// (shorter ones compare each with those before it): a repeat in it is
    /// refused, and nothing of the batch is written.
    #[tokio::test]
    async fn a_long_batch_with_an_id_twice_is_refused_whole() {
        let store = InMemoryStore::new();
        let s = StreamId::new("t", "1");
        let with_id = |n: u128| NewEvent {
            event_id: EventId::from(uuid::Uuid::from_u128(n)),
            ..event("a", "")
        };
        let mut ids: Vec<u128> = (1..=20).collect();
        ids[17] = 3;
        let events: Vec<NewEvent<'_>> = ids.iter().map(|&n| with_id(n)).collect();
        let err = store
            .append(request(&s, ExpectedVersion::Any, &events))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AppendError::Store(StoreError::DuplicateEventId { event_id, .. }) if *event_id == with_id(3).event_id),
            "{err}"
        );
        assert_eq!(store.last_position().await.unwrap(), 0);
        let events: Vec<NewEvent<'_>> = (1..=20).map(with_id).collect();
        store.append(request(&s, ExpectedVersion::Any, &events)).await.unwrap();
        assert_eq!(store.last_position().await.unwrap(), 20);
    }

    proptest::proptest! {
        /// Batches of small ids in any order, repeats among them: each
        /// batch is refused exactly when one of its ids is stored already or
        /// repeats in the batch, as a set of the stored ids says.
        #[test]
        fn duplicate_ids_are_found_as_a_set_would(
            batches in proptest::collection::vec(proptest::collection::vec(0u128..40, 1..4), 1..30),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let store = InMemoryStore::new();
            let s = StreamId::new("t", "1");
            let mut stored = std::collections::HashSet::new();
            for batch in batches {
                let events: Vec<NewEvent<'_>> = batch
                    .iter()
                    .map(|&n| NewEvent { event_id: EventId::from(uuid::Uuid::from_u128(n)), ..event("a", "") })
                    .collect();
                let mut seen = std::collections::HashSet::new();
                let fresh = batch.iter().all(|n| !stored.contains(n) && seen.insert(*n));
                let appended = rt.block_on(store.append(request(&s, ExpectedVersion::Any, &events)));
                proptest::prop_assert_eq!(appended.is_ok(), fresh, "batch {:?} after {:?}", batch, stored);
                if fresh {
                    stored.extend(batch);
                }
            }
            proptest::prop_assert_eq!(rt.block_on(store.last_position()).unwrap(), stored.len() as u64);
        }
    }

    #[tokio::test]
    async fn names_versions_and_metadata_are_kept_per_event() {
        let store = InMemoryStore::new();
        let s = StreamId::new("t", "1");
        let mut v2 = event("a", "{}");
        v2.schema_version = 2;
        let batch = [event("a", "[1]"), v2, event("b", "")];
        let mut req = request(&s, ExpectedVersion::Any, &batch);
        req.metadata = b"meta";
        store.append(req).await.unwrap();
        store
            .append(request(&s, ExpectedVersion::Any, &[event("a", "[2]")]))
            .await
            .unwrap();
        let read = store.read_stream_vec(&s, 1).await.unwrap();
        let seen: Vec<(&str, u32, &[u8], &[u8])> = read
            .iter()
            .map(|e| (e.name.as_str(), e.schema_version, &e.payload[..], &e.metadata[..]))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("a", 1, &b"[1]"[..], &b"meta"[..]),
                ("a", 2, &b"{}"[..], &b"meta"[..]),
                ("b", 1, &b""[..], &b"meta"[..]),
                ("a", 1, &b"[2]"[..], &b""[..]),
            ]
        );
    }
}
