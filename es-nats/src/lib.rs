//! An event store for es-core on NATS JetStream (nats-server 2.12 or newer).
//!
//! ```no_run
//! # async fn demo() -> Result<(), es_core::StoreError> {
//! let store = es_nats::NatsStore::connect("nats://127.0.0.1:4222").await?;
//! let app = es_core::Dispatcher::new(store);
//! # Ok(()) }
//! ```
//!
//! # How it maps onto JetStream
//!
//! - **One JetStream stream for the log** (`<prefix>_events`). Each event is
//!   one message on its aggregate stream's subject,
//!   `<prefix>.events.x<type>.x<id>` (type and id hex-encoded, so any text
//!   is a valid subject). An event's global position is its message's
//!   sequence: positions increase in commit order, and JetStream stores
//!   sequence `n` before `n + 1`, so a reader never sees a later commit
//!   first.
//! - **Each append is one atomic batch** (ADR-50, server 2.12): the events'
//!   messages, the command-id record (`<prefix>.cmds.<key>`) and one
//!   record per event id (`<prefix>.ids.<id>`) are stored together or not
//!   at all. There is no second write to lose: a command's id is recorded
//!   exactly when its events are, on every replica, across failovers and
//!   power cuts.
//! - **Every check is part of that write.** The first event carries
//!   `Nats-Expected-Last-Subject-Sequence` (the stream's last message, as
//!   the writer read it), the command-id and event-id records carry an
//!   expected sequence of 0 (the subject holds nothing yet). The server
//!   checks them in its replicated write (2.10.20 and newer), per subject:
//!   writers of different streams never wait for each other. A refused
//!   batch is a [`Conflict`](es_core::Conflict), the earlier command's
//!   record, or a [`StoreError::DuplicateEventId`], found by reading back
//!   what the batch collided with.
//! - **Nothing is ever removed.** The event stream denies deletes and
//!   purges (the server refuses to lift either), and no limit drops a
//!   message. The records stream (`<prefix>_records`: snapshots,
//!   checkpoints, the store's identity) keeps the last message per subject
//!   and denies purges too.
//! - **Reads use no consumers.** A stream's newest message and the records
//!   are read from the stream's leader (`STREAM.MSG.GET`: what a writer
//!   just committed is there); pages of events come from batched direct
//!   gets (ADR-31, server 2.11), which any replica answers. A replica a
//!   little behind answers with less, never with a gap: readers ask again
//!   until they have what the leader or a notification said is committed.
//! - **Readers are woken by the server:** the event stream republishes the
//!   headers of each stored message on `<prefix>.committed.>`, after it is
//!   stored, and every store listens there.
//! - **A foreign message** — anything another client publishes on
//!   `<prefix>.events.>`, which the stream keeps and nobody can delete —
//!   is never taken for an event: the log hands it to readers as
//!   [`es_core::store::FOREIGN`] (runners skip it, count it in their
//!   status, and warn), and stream reads step over it.
//! - **A store refuses to open** when its event stream was deleted, replaced
//!   or lost events, instead of starting on an empty log: the records
//!   stream names the event stream it belongs to, and no checkpoint may
//!   point past the end of the log.
//!
//! # Limits
//!
//! An append is at most 1,000 messages, the server's default
//! `max_batch_size`: 499 events with a command id (each event has its
//! event-id record). Each event's message must fit the server's
//! `max_payload`. Both are refused before anything is stored, with the
//! limit named.

use std::collections::HashMap;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use es_core::store::{AppendOutcome, AppendRequest, CommandRecord, ContextFields, EventStore, RecordedEvent, Snapshot};
use es_core::{AppendError, StoreError, StreamId};
use futures_util::StreamExt;
use tokio::sync::watch;

mod admin;
mod append;
mod commit;
mod js;
mod keys;
mod partitioned;
mod personal;
mod read;
mod records;
mod setup;
mod wire;

pub use admin::{ForeignMessage, Heads, StreamHead};
pub use partitioned::{Lease, NatsPartitioned};
pub use setup::MIN_SERVER;

pub(crate) use keys::{checkpoint_name, hex, is_hex_of, key_hash, unhex, validate_prefix};

const STORE: &str = "nats";

/// Where JetStream keeps the store's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// On disk: survives a server restart.
    #[default]
    File,
    /// In memory: fast, lost with the server.
    Memory,
}

/// Settings for [`NatsStore::connect_with`].
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Names the JetStream streams and their subjects: letters, digits, `_`
    /// and `-`, at most 32.
    pub prefix: String,
    /// Copies of every message and record in a cluster (1, 3 or 5). Used
    /// when the streams are created; an existing stream keeps its own.
    pub replicas: usize,
    /// File or memory; used when the streams are created.
    pub storage: Storage,
    /// How long a JetStream request (a read, a batch's commit) may take
    /// before it fails as unavailable. While a cluster elects a new leader,
    /// requests to the old one wait this long; a shorter timeout fails them
    /// sooner, to be retried (a command retried with its command id is
    /// answered with its first outcome if it did land).
    pub request_timeout: Duration,
    /// Opens a store whose records stream (checkpoints, snapshots) is
    /// missing or was replaced, starting it anew, instead of refusing to:
    /// read models and process managers then start from the beginning of
    /// the log (a process's commands are still answered once by their
    /// command ids, which live with the events). Off by default.
    pub accept_lost_records: bool,
    /// Creates the store's streams when there are none (the default).
    /// Tools that inspect a store turn it off: a mistyped prefix is then an
    /// error naming the streams looked for, not a new empty store.
    pub create: bool,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            prefix: "es".to_owned(),
            replicas: 1,
            storage: Storage::File,
            request_timeout: Duration::from_secs(5),
            accept_lost_records: false,
            create: true,
        }
    }
}

/// An event store on NATS JetStream; see the crate docs. Clones share the
/// connection.
#[derive(Clone)]
pub struct NatsStore {
    inner: Arc<Inner>,
    keyring: Option<Arc<es_core::personal::Keyring>>,
}

/// A stream's last message as a writer last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// The sequence of the subject's last message (0: none).
    sequence: u64,
    /// The stream's version: its last event's.
    version: u64,
    /// Its last event's link ([`Link::GENESIS`] for none).
    link: es_core::store::Link,
}

struct Inner {
    client: async_nats::Client,
    context: jetstream::Context,
    events: stream::Stream,
    records: stream::Stream,
    /// The data keys of personal data (`None`: opened without creating
    /// what is missing, on a store that has none).
    keys: Option<stream::Stream>,
    names: setup::Names,
    timeout: Duration,
    /// Heads of streams this process wrote or read, so that the next
    /// append to one needs no read first (the server checks it anyway).
    heads: Mutex<HashMap<String, Head>>,
    /// The highest sequence known to be stored on the event subjects: by
    /// this process's appends, or (once listening) any process's.
    known: watch::Sender<u64>,
    listening: AtomicBool,
    committer: commit::Committer,
    tail: tokio::sync::Mutex<read::Tail>,
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore")
            .field("prefix", &self.inner.names.prefix)
            .finish()
    }
}

/// A JetStream failure while doing `operation`: unavailable when the
/// connection is down or the server did not answer.
fn failed<'c, E: std::error::Error + Send + Sync + 'static>(
    client: &'c async_nats::Client,
    operation: &'static str,
) -> impl Fn(E) -> StoreError + 'c {
    move |e| {
        let unavailable = client.connection_state() != async_nats::connection::State::Connected;
        StoreError::from_engine(STORE, operation, unavailable, e)
    }
}

fn js_failed(operation: &'static str) -> impl Fn(js::JsError) -> StoreError {
    move |e| {
        let unavailable = matches!(e, js::JsError::Transport(_)) || e.is_transient();
        StoreError::from_engine(STORE, operation, unavailable, e)
    }
}

fn invalid(detail: String) -> StoreError {
    StoreError::Invalid { store: STORE, detail }
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { store: STORE, detail }
}

impl NatsStore {
    /// Connects to `url` with the default options (prefix `es`, one
    /// replica, file storage), creating its two streams if missing.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, NatsOptions::default()).await
    }

    /// Connects to `url` with `options`. `url` may list several servers of
    /// a cluster, separated by commas; the client also learns the others
    /// from the server it reaches, and moves to one of them when its server
    /// goes away.
    pub async fn connect_with(url: &str, options: NatsOptions) -> Result<Self, StoreError> {
        validate_prefix(&options.prefix)?;
        let servers: Vec<&str> = url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let client = async_nats::connect(servers)
            .await
            .map_err(|e| StoreError::Unavailable {
                store: STORE,
                operation: "connect",
                source: Box::new(e),
            })?;
        Self::from_client(client, options).await
    }

    /// A store on an existing connection. Refuses a server older than
    /// [`MIN_SERVER`] or without JetStream, naming the version found, and
    /// a store whose streams do not belong together (see the crate docs).
    pub async fn from_client(client: async_nats::Client, options: NatsOptions) -> Result<Self, StoreError> {
        validate_prefix(&options.prefix)?;
        if ![1, 3, 5].contains(&options.replicas) {
            return Err(invalid(format!(
                "{} replicas: JetStream keeps 1, 3 or 5",
                options.replicas
            )));
        }
        setup::check_server(&client.server_info())?;
        let context = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .build(client.clone());
        let names = setup::Names::new(&options.prefix);
        let (events, records) = setup::open(&client, &context, &names, &options).await?;
        let keys = setup::open_keys(&context, &names, &options).await?;
        Ok(NatsStore {
            inner: Arc::new(Inner {
                client,
                context,
                events,
                records,
                keys,
                names,
                timeout: options.request_timeout,
                heads: Mutex::new(HashMap::new()),
                known: watch::channel(0).0,
                listening: AtomicBool::new(false),
                committer: commit::Committer::default(),
                tail: tokio::sync::Mutex::new(read::Tail::default()),
            }),
            keyring: None,
        })
    }

    /// The connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The prefix naming its streams and subjects.
    pub fn prefix(&self) -> &str {
        &self.inner.names.prefix
    }

    /// The subject of `stream`'s events.
    fn subject(&self, stream: &StreamId) -> String {
        format!(
            "{}.events.x{}.x{}",
            self.inner.names.prefix,
            hex(stream.aggregate_type().as_bytes()),
            hex(stream.aggregate_id().as_bytes())
        )
    }

    /// The stream an event subject names, if it names one.
    fn stream_of(&self, subject: &str) -> Option<StreamId> {
        let rest = subject
            .strip_prefix(self.inner.names.prefix.as_str())?
            .strip_prefix(".events.x")?;
        let (kind, id) = rest.split_once(".x")?;
        let text = |t: &str| unhex(t).and_then(|b| String::from_utf8(b).ok());
        Some(StreamId::new(text(kind)?, text(id)?))
    }

    /// Whether `subject` is the subject of the stream `aggregate_type` /
    /// `aggregate_id`.
    fn names_stream(&self, subject: &str, aggregate_type: &str, aggregate_id: &str) -> bool {
        let Some(rest) = subject
            .strip_prefix(self.inner.names.prefix.as_str())
            .and_then(|r| r.strip_prefix(".events.x"))
        else {
            return false;
        };
        match rest.split_once(".x") {
            Some((kind, id)) => is_hex_of(kind, aggregate_type.as_bytes()) && is_hex_of(id, aggregate_id.as_bytes()),
            None => false,
        }
    }

    fn command_subject(&self, stream: &StreamId, command_id: &str) -> String {
        let key = key_hash(&[
            stream.aggregate_type().as_bytes(),
            stream.aggregate_id().as_bytes(),
            command_id.as_bytes(),
        ]);
        format!("{}.cmds.{key}", self.inner.names.prefix)
    }

    fn event_id_subject(&self, event_id: es_core::EventId) -> String {
        format!("{}.ids.{}", self.inner.names.prefix, hex(event_id.as_uuid().as_bytes()))
    }

    /// The last message on `subject` of the event stream, from its leader.
    async fn last_on(&self, subject: &str) -> Result<Option<jetstream::message::StreamMessage>, StoreError> {
        let read = || self.inner.events.raw_message_builder().last_by_subject(subject).send();
        self.leader_read(read, "read a stream's last message").await
    }

    /// The first message on `subject` at `sequence` or after, from the
    /// event stream's leader.
    async fn next_on(
        &self,
        subject: &str,
        sequence: u64,
    ) -> Result<Option<jetstream::message::StreamMessage>, StoreError> {
        let read = || {
            self.inner
                .events
                .raw_message_builder()
                .sequence(sequence)
                .next_by_subject(subject)
                .send()
        };
        self.leader_read(read, "read a message").await
    }

    /// A read from a stream's leader, within the request timeout (the
    /// client's own is ten seconds, a leader election's length).
    ///
    /// While the stream has no leader (an election: the server answers
    /// "temporarily unavailable") it asks again, within the same timeout.
    async fn leader_read<F>(
        &self,
        read: impl Fn() -> F,
        operation: &'static str,
    ) -> Result<Option<jetstream::message::StreamMessage>, StoreError>
    where
        F: Future<Output = Result<jetstream::message::StreamMessage, stream::RawMessageError>>,
    {
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        loop {
            match tokio::time::timeout_at(deadline, read()).await {
                Ok(Ok(message)) => return Ok(Some(message)),
                Ok(Err(e)) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => return Ok(None),
                Ok(Err(e)) => {
                    let electing = matches!(e.kind(), stream::RawMessageErrorKind::JetStream(ref j) if j.code() == 503);
                    if !electing {
                        return Err(failed(&self.inner.client, operation)(e));
                    }
                    if tokio::time::Instant::now() + Duration::from_millis(20) >= deadline {
                        return Err(StoreError::Unavailable {
                            store: STORE,
                            operation,
                            source: Box::new(e),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => {
                    return Err(StoreError::Unavailable {
                        store: STORE,
                        operation,
                        source: format!("no answer from the stream's leader within {:?}", self.inner.timeout).into(),
                    });
                }
            }
        }
    }

    /// A batched direct get on the event stream. While no replica answers
    /// direct gets (each turns them off while it catches up, after a
    /// restart), it asks again for up to a request timeout.
    async fn page(&self, start: u64, filter: &str, batch: usize, headers: bool) -> Result<js::Page, StoreError> {
        let started = std::time::Instant::now();
        loop {
            let page = js::direct_batch(
                &self.inner.client,
                &self.inner.names.events,
                start,
                filter,
                batch,
                headers,
                self.inner.timeout,
            )
            .await;
            match page {
                Err(e) if e.is_transient() && started.elapsed() < self.inner.timeout => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                page => return page.map_err(js_failed("read events")),
            }
        }
    }

    fn cached_head(&self, subject: &str) -> Option<Head> {
        self.inner.heads.lock().ok()?.get(subject).copied()
    }

    /// Remembers `subject`'s head, unless a newer one is known.
    fn remember_head(&self, subject: &str, head: Head) {
        let Ok(mut heads) = self.inner.heads.lock() else { return };
        // A bound on memory: a process that touches more streams than this
        // reads their heads again.
        if heads.len() >= 100_000 && !heads.contains_key(subject) {
            heads.clear();
        }
        let entry = heads.entry(subject.to_owned()).or_insert(head);
        if head.sequence >= entry.sequence {
            *entry = head;
        }
    }

    fn forget_head(&self, subject: &str) {
        if let Ok(mut heads) = self.inner.heads.lock() {
            heads.remove(subject);
        }
    }

    /// Notes that the event subjects hold messages up to `sequence`.
    fn saw(&self, sequence: u64) {
        self.inner.known.send_if_modified(|known| {
            let newer = sequence > *known;
            if newer {
                *known = sequence;
            }
            newer
        });
    }

    /// Wakes readers on every event any process stores: the stream
    /// republishes each stored message's headers.
    fn start_listening(&self) {
        if self.inner.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let client = self.inner.client.clone();
        let subject = self.inner.names.committed();
        tokio::spawn(async move {
            let Ok(mut subscriber) = client.subscribe(subject).await else {
                if let Some(inner) = weak.upgrade() {
                    inner.listening.store(false, Ordering::Release);
                }
                return;
            };
            while let Some(message) = subscriber.next().await {
                let Some(inner) = weak.upgrade() else { return };
                let sequence = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_SEQUENCE))
                    .and_then(|s| s.as_str().parse::<u64>().ok());
                match sequence {
                    Some(sequence) => NatsStore { inner, keyring: None }.saw(sequence),
                    // Not the server's: wake readers anyway, they read.
                    None => inner.known.send_modify(|_| {}),
                }
            }
        });
    }
}

impl EventStore for NatsStore {
    const NAME: &'static str = STORE;

    fn keyring(&self) -> Option<&Arc<es_core::personal::Keyring>> {
        self.keyring.as_ref()
    }

    fn append(&self, request: AppendRequest<'_>) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send {
        self.append_now(request)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        fields: ContextFields,
        mut visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        // The position is in a message's headers: a read that needs none
        // (an aggregate's load) goes without them, and is cheaper.
        let positions = fields.contains(ContextFields::POSITION);
        self.read_stream_now(stream, from_version, positions, |sequence, e| {
            visit(&e.recorded(sequence))
        })
        .await
    }

    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        _fields: ContextFields,
        visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        // Every field is in the message already read: leaving some out
        // saves nothing.
        self.read_log(after, limit, visit).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        Ok(self.head_of(&self.subject(stream), stream).await?.version)
    }

    async fn last_position(&self) -> Result<u64, StoreError> {
        let last = self
            .last_on(&self.inner.names.all_events)
            .await?
            .map_or(0, |m| m.sequence);
        self.saw(last);
        Ok(last)
    }

    async fn events_after(&self, position: u64) -> Result<u64, StoreError> {
        self.count_after(position).await
    }

    async fn find_command(&self, stream: &StreamId, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        self.find_command_now(stream, command_id).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.load_snapshot_now(stream).await
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), StoreError> {
        self.save_snapshot_now(stream, snapshot).await
    }

    fn notifications(&self) -> Option<watch::Receiver<u64>> {
        let receiver = self.inner.known.subscribe();
        self.start_listening();
        Some(receiver)
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.load_checkpoint_now(name).await
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError> {
        self.save_checkpoint_now(name, position).await
    }
}
