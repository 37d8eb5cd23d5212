//! An event store for es-core on NATS JetStream (server 2.9 or newer).
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
//! - **One JetStream stream** (`<prefix>_events`) holds every event, on the
//!   subjects `<prefix>.events.x<type>.x<id>` (type and id hex-encoded, so
//!   any text is a valid subject): one subject per aggregate stream.
//! - **One message per batch.** A command's events are encoded together
//!   into one message, so a batch is stored whole or not at all. Server 2.9
//!   has no atomic multi-message publish (2.12 adds batches); one message
//!   is atomic on every version. The batch's size is limited by the
//!   server's `max_payload`: a larger batch is refused with
//!   [`StoreError::Invalid`] before anything is sent.
//! - **Optimistic concurrency per stream:** the store reads the subject's
//!   last message (its sequence and the batch's last version), checks the
//!   expected version, and publishes with `Nats-Expected-Last-Subject-Sequence`
//!   set to that sequence: a writer that got there in between makes the
//!   server refuse the message, which is a [`Conflict`].
//! - **The global log is the stream's sequence.** JetStream assigns
//!   sequences as it stores messages, one at a time, so a reader can never
//!   see sequence `n + 1` before `n`: there is no late commit to wait for,
//!   unlike PostgreSQL. An event's position is `sequence << 16 | index`
//!   within its batch: positions increase in commit order but are not
//!   consecutive across batches (a batch holds at most 65,535 events).
//! - **Command ids**: the publish carries `Nats-Msg-Id` (a hash of stream and
//!   command id), so the server itself answers a repeated command inside its
//!   duplicate window ([`NatsOptions::duplicate_window`]) with the first
//!   message; each committed command is also recorded in the records stream
//!   (below), which answers later repeats. A process that dies between the
//!   publish and that record leaves only the window's protection.
//! - **Records** — command ids, event ids, snapshots, checkpoints — live in a
//!   second JetStream stream, `<prefix>_records`, that keeps the last message
//!   of each subject: what JetStream's key-value buckets are made of (the
//!   key-value API of async-nats 0.46 cannot read server 2.9's answer when it
//!   creates a bucket). Conditional writes use the same expected-sequence
//!   headers as appends.
//! - **Event ids** are unique across the store: each is reserved as a record
//!   before the publish (and released if the batch is refused).
//! - **Replicated streams on servers before 2.10.20** check the per-subject
//!   expected sequence outside the replicated write (nats-server#4320, and
//!   #5794 for an expected 0), so two racing writers could both pass it.
//!   There every conditional write is guarded stream-wide instead
//!   (`Nats-Expected-Last-Sequence`, read before the subject): correct, at
//!   the price of writers retrying when any other lands first.
//! - **Followers are woken by the server:** the store subscribes to
//!   `<prefix>.events.>` and wakes readers on each committed batch, from any
//!   process.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use es_core::store::{
    AppendOutcome, AppendRequest, Appended, CommandRecord, EventStore, LoadedEvent, NewEvent, Positions, RecordedEvent,
    Snapshot, Visitor,
};
use es_core::{AppendError, Conflict, ExpectedVersion, StoreError, StreamId};
use futures_util::StreamExt;
use tokio::sync::watch;

mod batch;
mod records;

use batch::Batch;
use records::Records;

const STORE: &str = "nats";

/// How conditional writes are guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// `Nats-Expected-Last-Subject-Sequence`: writers of different streams
    /// never wait for each other.
    Subject,
    /// `Nats-Expected-Last-Sequence` on the whole JetStream stream, read
    /// before the subject: replicated streams on servers before 2.10.20,
    /// whose per-subject check is not part of the replicated write (two
    /// racing publishes can both pass it, nats-server#4320, fixed in
    /// 2.9.21; an expected sequence of 0 is not checked at all on the
    /// replicated path, nats-server#5794, fixed in 2.10.20). Correct there,
    /// at the price of every conditional write of the store retrying when
    /// any other lands first.
    Stream,
}

/// The guard a server of `version` gives streams of `replicas` copies.
fn guard_for(version: &str, replicas: usize) -> Guard {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    if replicas > 1 && (major, minor, patch) < (2, 10, 20) {
        Guard::Stream
    } else {
        Guard::Subject
    }
}

/// Events a batch may hold: positions keep 16 bits for the index.
pub const MAX_BATCH_EVENTS: usize = 0xFFFF;

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
    /// Names the JetStream stream, its subjects and its records stream: letters,
    /// digits, `_` and `-`, at most 32.
    pub prefix: String,
    /// Copies of every message and record in a cluster (1, 3 or 5).
    pub replicas: usize,
    /// File or memory.
    pub storage: Storage,
    /// How long the server remembers a command's message id and answers a
    /// repeat with the first message.
    pub duplicate_window: Duration,
    /// How long a JetStream request (a read, a publish's acknowledgement)
    /// may take before it fails as unavailable. While a cluster elects a new
    /// leader, requests to the old one wait this long; a shorter timeout
    /// fails them sooner, to be retried (a publish that did land is then
    /// answered by its command id).
    pub request_timeout: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            prefix: "es".to_owned(),
            replicas: 1,
            storage: Storage::File,
            duplicate_window: Duration::from_secs(120),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// An event store on NATS JetStream; see the crate docs. Clones share the
/// connection.
#[derive(Clone)]
pub struct NatsStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    context: jetstream::Context,
    stream: stream::Stream,
    prefix: String,
    commands: Records,
    event_ids: Records,
    snapshots: Records,
    checkpoints: Records,
    /// Bumped by each batch committed, here or (once listening) anywhere.
    head: watch::Sender<u64>,
    guard: Guard,
    listening: AtomicBool,
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore").field("prefix", &self.inner.prefix).finish()
    }
}

fn failed<'c, E: std::error::Error + Send + Sync + 'static>(
    client: &'c async_nats::Client,
    operation: &'static str,
) -> impl Fn(E) -> StoreError + 'c {
    move |e| {
        let unavailable = client.connection_state() != async_nats::connection::State::Connected;
        StoreError::from_engine(STORE, operation, unavailable, e)
    }
}

fn invalid(detail: String) -> StoreError {
    StoreError::Invalid { store: STORE, detail }
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { store: STORE, detail }
}

/// Lower-case hex, for subjects and keys that must hold any text.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// A stable 128-bit hash (two FNV-1a passes with different bases), for keys
/// that would be too long as hex; the value stored under them repeats what
/// they stand for, and reads check it.
fn key_hash(parts: &[&[u8]]) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for part in parts {
        for &byte in part.iter().chain(&[0xff]) {
            a = (a ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
            b = (b ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(5);
        }
    }
    format!("{a:016x}{b:016x}")
}

fn position(sequence: u64, index: usize) -> u64 {
    sequence << 16 | index as u64
}

fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "the prefix {prefix:?}: it names a JetStream stream and its subjects, so it takes 1 to 32 letters, digits, `_` or `-`"
        )))
    }
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

    /// A store on an existing connection.
    pub async fn from_client(client: async_nats::Client, options: NatsOptions) -> Result<Self, StoreError> {
        validate_prefix(&options.prefix)?;
        if ![1, 3, 5].contains(&options.replicas) {
            return Err(invalid(format!(
                "{} replicas: JetStream keeps 1, 3 or 5",
                options.replicas
            )));
        }
        let context = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .build(client.clone());
        let prefix = options.prefix.clone();
        let storage = match options.storage {
            Storage::File => stream::StorageType::File,
            Storage::Memory => stream::StorageType::Memory,
        };
        let stream = context
            .get_or_create_stream(stream::Config {
                name: format!("{prefix}_events"),
                subjects: vec![format!("{prefix}.events.>")],
                storage,
                num_replicas: options.replicas,
                duplicate_window: options.duplicate_window,
                allow_direct: true,
                deny_delete: true,
                deny_purge: true,
                ..Default::default()
            })
            .await
            .map_err(failed(&client, "create the event stream"))?;
        // The last record per subject is all a record needs.
        let records = context
            .get_or_create_stream(stream::Config {
                name: format!("{prefix}_records"),
                subjects: vec![format!("{prefix}.records.>")],
                storage,
                num_replicas: options.replicas,
                max_messages_per_subject: 1,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(failed(&client, "create the records stream"))?;
        let guard = guard_for(&client.server_info().version, options.replicas);
        if guard == Guard::Stream {
            tracing::info!(
                version = client.server_info().version,
                "a replicated store on a server before 2.10.20: conditional writes are guarded stream-wide (nats-server#4320, #5794)"
            );
        }
        let space = |kind: &str| Records {
            context: context.clone(),
            stream: records.clone(),
            client: client.clone(),
            space: format!("{prefix}.records.{kind}"),
            guard,
        };
        let (commands, event_ids, snapshots, checkpoints) = (
            space("commands"),
            space("event_ids"),
            space("snapshots"),
            space("checkpoints"),
        );
        Ok(NatsStore {
            inner: Arc::new(Inner {
                client,
                context,
                stream,
                commands,
                event_ids,
                snapshots,
                checkpoints,
                prefix,
                head: watch::channel(0).0,
                guard,
                listening: AtomicBool::new(false),
            }),
        })
    }

    /// The connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The prefix naming its stream, subjects and records.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    fn subject(&self, stream: &StreamId) -> String {
        format!(
            "{}.events.x{}.x{}",
            self.inner.prefix,
            hex(stream.aggregate_type().as_bytes()),
            hex(stream.aggregate_id().as_bytes())
        )
    }

    fn stream_of(&self, subject: &str) -> Result<StreamId, StoreError> {
        let mut tokens = subject.rsplit('.');
        let text = |token: Option<&str>| {
            token
                .and_then(|t| t.strip_prefix('x'))
                .and_then(unhex)
                .and_then(|b| String::from_utf8(b).ok())
        };
        let id = text(tokens.next());
        let kind = text(tokens.next());
        match (kind, id) {
            (Some(kind), Some(id)) => Ok(StreamId::new(kind, id)),
            _ => Err(corrupt(format!("subject `{subject}` names no stream"))),
        }
    }

    fn command_key(stream: &StreamId, command_id: &str) -> String {
        key_hash(&[
            stream.aggregate_type().as_bytes(),
            stream.aggregate_id().as_bytes(),
            command_id.as_bytes(),
        ])
    }

    /// `subject`'s last message: its sequence and payload, `None` for a
    /// stream without events.
    async fn last_batch(&self, subject: &str) -> Result<Option<(u64, Bytes)>, StoreError> {
        match self.inner.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some((message.sequence, message.payload))),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(failed(&self.inner.client, "read a stream's last batch")(e)),
        }
    }

    /// The sequence of `subject`'s last message and the stream version it
    /// ends at; `(0, 0)` for a stream without events.
    async fn last_of(&self, subject: &str) -> Result<(u64, u64), StoreError> {
        match self.last_batch(subject).await? {
            Some((sequence, payload)) => {
                let batch =
                    Batch::decode(&payload).map_err(|e| corrupt(format!("message {sequence} on `{subject}`: {e}")))?;
                Ok((sequence, batch.last_version()))
            }
            None => Ok((0, 0)),
        }
    }

    /// The payload of the message at `sequence`.
    async fn batch_at(&self, sequence: u64) -> Result<Bytes, StoreError> {
        let message = self
            .inner
            .stream
            .get_raw_message(sequence)
            .await
            .map_err(failed(&self.inner.client, "read a batch"))?;
        Ok(message.payload)
    }

    /// Reserves each event id, or fails naming the first that is taken
    /// (releasing what it reserved).
    async fn reserve_ids(&self, events: &[NewEvent<'_>]) -> Result<(), StoreError> {
        let records = &self.inner.event_ids;
        let results = futures_util::future::join_all(
            events
                .iter()
                .map(|e| records.create(hex(e.event_id.as_uuid().as_bytes()), Vec::new())),
        )
        .await;
        let mut taken = None;
        let mut error = None;
        for (event, result) in events.iter().zip(&results) {
            match result {
                Ok(true) => {}
                Ok(false) => {
                    taken.get_or_insert(event.event_id);
                }
                Err(_) => {
                    error.get_or_insert(event.event_id);
                }
            }
        }
        if taken.is_none() && error.is_none() {
            return Ok(());
        }
        let reserved = events
            .iter()
            .zip(&results)
            .filter(|(_, r)| matches!(r, Ok(true)))
            .map(|(e, _)| e);
        self.release_ids(reserved).await;
        match taken {
            Some(event_id) => Err(StoreError::DuplicateEventId { store: STORE, event_id }),
            None => results.into_iter().find_map(Result::err).map_or(Ok(()), Err),
        }
    }

    async fn release_ids<'e>(&self, events: impl Iterator<Item = &'e NewEvent<'e>>) {
        let records = &self.inner.event_ids;
        let removals = events.map(|e| records.remove(hex(e.event_id.as_uuid().as_bytes())));
        for result in futures_util::future::join_all(removals).await {
            if let Err(error) = result {
                tracing::warn!(%error, "could not release a reserved event id");
            }
        }
    }

    async fn append_now(&self, request: AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        es_core::store::validate_append(STORE, &request)?;
        if request.events.len() > MAX_BATCH_EVENTS {
            return Err(invalid(format!(
                "a batch of {} events: one message holds at most {MAX_BATCH_EVENTS}",
                request.events.len()
            ))
            .into());
        }
        let stream = request.stream;
        if let Some(command_id) = request.command_id
            && let Some(record) = self.find_command_now(stream, command_id).await?
        {
            return Ok(AppendOutcome::Duplicate(record));
        }
        let subject = self.subject(stream);
        if !request.events.is_empty() {
            self.reserve_ids(request.events).await?;
        }
        let outcome = self.publish(&request, &subject).await;
        if !matches!(outcome, Ok(AppendOutcome::Committed(_))) && !request.events.is_empty() {
            self.release_ids(request.events.iter()).await;
        }
        outcome
    }

    async fn publish(&self, request: &AppendRequest<'_>, subject: &str) -> Result<AppendOutcome, AppendError> {
        let stream = request.stream;
        let max_payload = self.inner.client.server_info().max_payload;
        loop {
            // Stream-wide guard: the stream's last sequence first, so any
            // message after it (the subject's included) fails the publish.
            let stream_last = match self.inner.guard {
                Guard::Stream => Some(self.last_sequence().await?),
                Guard::Subject => None,
            };
            let (last_sequence, version) = self.last_of(subject).await?;
            if !request.expected.matches(version) {
                return Err(AppendError::Conflict(Conflict {
                    stream: stream.clone(),
                    expected: request.expected,
                    actual: version,
                }));
            }
            let count = request.events.len() as u64;
            if count == 0 {
                return Ok(AppendOutcome::Committed(Appended {
                    first_version: version + 1,
                    last_version: version,
                    positions: Positions::from_vec(Vec::new()),
                }));
            }
            let payload = batch::encode(version + 1, request);
            if payload.len() > max_payload {
                return Err(invalid(format!(
                    "a batch of {} bytes for `{stream}`: the server takes messages of up to {max_payload} bytes (its `max_payload`)",
                    payload.len()
                ))
                .into());
            }
            let message = jetstream::message::PublishMessage::build().payload(payload.into());
            let mut message = match stream_last {
                Some(last) => message.expected_last_sequence(last),
                None => message.expected_last_subject_sequence(last_sequence),
            };
            if let Some(command_id) = request.command_id {
                message = message.message_id(Self::command_key(stream, command_id));
            }
            let sent = self
                .inner
                .context
                .send_publish(subject.to_owned(), message)
                .await
                .map_err(failed(&self.inner.client, "publish a batch"))?;
            match sent.await {
                Ok(ack) if ack.duplicate => {
                    let payload = self.batch_at(ack.sequence).await?;
                    let batch =
                        Batch::decode(&payload).map_err(|e| corrupt(format!("message {}: {e}", ack.sequence)))?;
                    return Ok(AppendOutcome::Duplicate(CommandRecord {
                        command_id: request.command_id.unwrap_or_default().to_owned(),
                        stream: stream.clone(),
                        first_version: batch.first_version,
                        last_version: batch.last_version(),
                    }));
                }
                Ok(ack) => {
                    let first_version = version + 1;
                    let last_version = version + count;
                    if let Some(command_id) = request.command_id {
                        self.record_command(stream, command_id, first_version, last_version)
                            .await;
                    }
                    self.inner.head.send_modify(|n| *n = n.wrapping_add(1));
                    return Ok(AppendOutcome::Committed(Appended {
                        first_version,
                        last_version,
                        positions: Positions::Consecutive {
                            first: position(ack.sequence, 0),
                            count,
                        },
                    }));
                }
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                    // Another writer got there between the read and the
                    // publish. Under the stream-wide guard it may have
                    // written to another stream: read again and retry.
                    if stream_last.is_some() {
                        continue;
                    }
                    let (_, actual) = self.last_of(subject).await?;
                    if request.expected != ExpectedVersion::Any {
                        return Err(AppendError::Conflict(Conflict {
                            stream: stream.clone(),
                            expected: request.expected,
                            actual,
                        }));
                    }
                }
                Err(e) => return Err(failed(&self.inner.client, "publish a batch")(e).into()),
            }
        }
    }

    async fn record_command(&self, stream: &StreamId, command_id: &str, first: u64, last: u64) {
        let value = batch::encode_command(stream, command_id, first, last);
        if let Err(error) = self
            .inner
            .commands
            .put(&Self::command_key(stream, command_id), value)
            .await
        {
            // The message is committed; within the duplicate window the
            // server still answers a repeat of the command.
            tracing::warn!(%stream, command_id, %error, "a committed command's id could not be recorded");
        }
    }

    async fn find_command_now(&self, stream: &StreamId, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        es_core::store::validate_command_id(STORE, command_id)?;
        let value = self.inner.commands.get(&Self::command_key(stream, command_id)).await?;
        Ok(value.and_then(|v| batch::decode_command(&v, stream, command_id)))
    }

    /// The stream's batches from the one holding `from_version`, each with
    /// its sequence.
    async fn stream_batches(
        &self,
        stream: &StreamId,
        from_version: u64,
        mut each: impl FnMut(u64, &Batch<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        let subject = self.subject(stream);
        let Some((last_sequence, payload)) = self.last_batch(&subject).await? else {
            return Ok(());
        };
        let batch = Batch::decode(&payload).map_err(|e| corrupt(format!("message {last_sequence}: {e}")))?;
        if from_version > batch.last_version() {
            return Ok(());
        }
        // The usual tail read: everything asked for is in the last batch.
        if batch.first_version <= from_version.max(1) {
            let _ = each(last_sequence, &batch);
            return Ok(());
        }
        self.read_messages(Some(subject), 1, last_sequence, |sequence, batch| {
            if batch.last_version() < from_version {
                ControlFlow::Continue(())
            } else {
                each(sequence, batch)
            }
        })
        .await
    }

    /// Messages from `start` to `end` (sequences), on `subject` or all,
    /// through an ordered consumer.
    async fn read_messages(
        &self,
        subject: Option<String>,
        start: u64,
        end: u64,
        mut each: impl FnMut(u64, &Batch<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let client = &self.inner.client;
        let consumer = self
            .inner
            .stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: subject.unwrap_or_default(),
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
                ..Default::default()
            })
            .await
            .map_err(failed(client, "open a reader"))?;
        let mut messages = consumer.messages().await.map_err(failed(client, "read messages"))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(failed(client, "read a message"))?;
            let sequence = message
                .info()
                .map_err(|e| corrupt(format!("a message without stream info: {e}")))?
                .stream_sequence;
            let batch = Batch::decode(&message.payload).map_err(|e| corrupt(format!("message {sequence}: {e}")))?;
            if each(sequence, &batch).is_break() || sequence >= end {
                break;
            }
        }
        Ok(())
    }

    async fn last_sequence(&self) -> Result<u64, StoreError> {
        let info = self
            .inner
            .stream
            .get_info()
            .await
            .map_err(failed(&self.inner.client, "read the log's head"))?;
        Ok(info.state.last_sequence)
    }

    /// Wakes readers on every batch any process commits.
    fn start_listening(&self) {
        if self.inner.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let client = self.inner.client.clone();
        let subject = format!("{}.events.>", self.inner.prefix);
        tokio::spawn(async move {
            let Ok(mut subscriber) = client.subscribe(subject).await else {
                return;
            };
            while subscriber.next().await.is_some() {
                let Some(inner) = weak.upgrade() else { return };
                inner.head.send_modify(|n| *n = n.wrapping_add(1));
            }
        });
    }
}

/// One stream's head, for operators' tools ([`NatsStore::stream_heads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    /// The stream.
    pub stream: StreamId,
    /// Its version.
    pub version: u64,
    /// When its last batch was committed.
    pub last_recorded_at: es_core::Timestamp,
    /// The JetStream sequence of its last batch.
    pub last_sequence: u64,
}

impl NatsStore {
    /// Every stream with events, newest last write first. The server lists
    /// the subjects; each head costs one more request: for tools, not for
    /// the command path.
    pub async fn stream_heads(&self) -> Result<Vec<StreamHead>, StoreError> {
        let client = &self.inner.client;
        let mut subjects = self
            .inner
            .stream
            .info_with_subjects(format!("{}.events.>", self.inner.prefix))
            .await
            .map_err(failed(client, "list streams"))?;
        let mut names = Vec::new();
        while let Some(entry) = subjects.next().await {
            names.push(entry.map_err(failed(client, "list streams"))?.0);
        }
        let mut heads = Vec::with_capacity(names.len());
        for subject in names {
            let stream = self.stream_of(&subject)?;
            let message = self
                .inner
                .stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .map_err(failed(client, "read a stream's last batch"))?;
            let batch =
                Batch::decode(&message.payload).map_err(|e| corrupt(format!("message {}: {e}", message.sequence)))?;
            heads.push(StreamHead {
                stream,
                version: batch.last_version(),
                last_recorded_at: batch.recorded_at,
                last_sequence: message.sequence,
            });
        }
        heads.sort_by_key(|h| std::cmp::Reverse(h.last_sequence));
        Ok(heads)
    }

    /// Every saved checkpoint and its position.
    pub async fn checkpoints(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let client = &self.inner.client;
        let space = &self.inner.checkpoints.space;
        let mut subjects = self
            .inner
            .checkpoints
            .stream
            .info_with_subjects(format!("{space}.>"))
            .await
            .map_err(failed(client, "list checkpoints"))?;
        let mut names = Vec::new();
        while let Some(entry) = subjects.next().await {
            let subject = entry.map_err(failed(client, "list checkpoints"))?.0;
            let name = subject
                .rsplit('.')
                .next()
                .and_then(|key| key.strip_prefix('c'))
                .and_then(unhex)
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| corrupt(format!("record `{subject}` names no checkpoint")))?;
            names.push(name);
        }
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(position) = self.load_checkpoint(&name).await? {
                out.push((name, position));
            }
        }
        Ok(out)
    }
}

/// Visits each event of `batch` (at `sequence`, in `stream`) from version
/// `from_version` and after position `after`.
fn visit_batch(
    stream: &StreamId,
    sequence: u64,
    batch: &Batch<'_>,
    from_version: u64,
    after: u64,
    visit: &mut impl Visitor,
) -> ControlFlow<()> {
    for (index, event) in batch.events.iter().enumerate() {
        let version = batch.first_version + index as u64;
        let position = position(sequence, index);
        if version < from_version || position <= after {
            continue;
        }
        visit(&RecordedEvent {
            event_id: event.event_id,
            aggregate_type: stream.aggregate_type(),
            aggregate_id: stream.aggregate_id(),
            version,
            position,
            name: event.name,
            schema_version: event.schema_version,
            payload: event.payload,
            metadata: batch.metadata,
            recorded_at: batch.recorded_at,
        })?;
    }
    ControlFlow::Continue(())
}

impl EventStore for NatsStore {
    const NAME: &'static str = STORE;

    fn append(&self, request: AppendRequest<'_>) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send {
        self.append_now(request)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        mut visit: impl Visitor,
    ) -> Result<(), StoreError> {
        self.stream_batches(stream, from_version, |sequence, batch| {
            visit_batch(stream, sequence, batch, from_version, 0, &mut visit)
        })
        .await
    }

    async fn load_events(
        &self,
        stream: &StreamId,
        from_version: u64,
        mut visit: impl FnMut(&LoadedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        self.stream_batches(stream, from_version, |_, batch| {
            for (index, event) in batch.events.iter().enumerate() {
                let version = batch.first_version + index as u64;
                if version < from_version {
                    continue;
                }
                visit(&LoadedEvent {
                    version,
                    name: event.name,
                    schema_version: event.schema_version,
                    payload: event.payload,
                    recorded_at: batch.recorded_at,
                })?;
            }
            ControlFlow::Continue(())
        })
        .await
    }

    async fn read_all(&self, after: u64, limit: usize, mut visit: impl Visitor) -> Result<(), StoreError> {
        if limit == 0 {
            return Ok(());
        }
        let end = self.last_sequence().await?;
        let start = (after >> 16).max(1);
        if start > end {
            return Ok(());
        }
        let mut seen = 0;
        self.read_messages(None, start, end, |sequence, batch| {
            let stream = StreamId::new(batch.aggregate_type.to_owned(), batch.aggregate_id);
            let mut counted = |e: &RecordedEvent<'_>| {
                seen += 1;
                let flow = visit(e);
                if seen >= limit { ControlFlow::Break(()) } else { flow }
            };
            visit_batch(&stream, sequence, batch, 0, after, &mut counted)
        })
        .await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        Ok(self.last_of(&self.subject(stream)).await?.1)
    }

    async fn last_position(&self) -> Result<u64, StoreError> {
        let last = self.last_sequence().await?;
        if last == 0 {
            return Ok(0);
        }
        let payload = self.batch_at(last).await?;
        let batch = Batch::decode(&payload).map_err(|e| corrupt(format!("message {last}: {e}")))?;
        Ok(position(last, batch.events.len().saturating_sub(1)))
    }

    async fn find_command(&self, stream: &StreamId, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        self.find_command_now(stream, command_id).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        let key = key_hash(&[stream.aggregate_type().as_bytes(), stream.aggregate_id().as_bytes()]);
        let value = self.inner.snapshots.get(&key).await?;
        match value {
            None => Ok(None),
            Some(v) => batch::decode_snapshot(&v, stream)
                .map(Some)
                .ok_or_else(|| corrupt(format!("the snapshot of `{stream}` cannot be read"))),
        }
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        let key = key_hash(&[stream.aggregate_type().as_bytes(), stream.aggregate_id().as_bytes()]);
        // An older snapshot never replaces a newer one of the same shape;
        // a compare-and-set keeps that true when writers race.
        loop {
            let (revision, current) = self.inner.snapshots.get_versioned(&key).await?;
            if let Some(current) = current.as_deref().and_then(|v| batch::decode_snapshot(v, stream))
                && current.schema_version == snapshot.schema_version
                && current.fingerprint == snapshot.fingerprint
                && current.version >= snapshot.version
            {
                return Ok(());
            }
            let value = batch::encode_snapshot(stream, &snapshot);
            if self.inner.snapshots.replace(&key, value, revision).await? {
                return Ok(());
            }
        }
    }

    fn notifications(&self) -> Option<watch::Receiver<u64>> {
        let receiver = self.inner.head.subscribe();
        self.start_listening();
        Some(receiver)
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let value = self
            .inner
            .checkpoints
            .get(&format!("c{}", hex(name.as_bytes())))
            .await?;
        match value {
            None => Ok(None),
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|t| t.parse().ok())
                .map(Some)
                .ok_or_else(|| corrupt(format!("checkpoint `{name}` is not a position"))),
        }
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError> {
        self.inner
            .checkpoints
            .put(&format!("c{}", hex(name.as_bytes())), position.to_string().into_bytes())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_any_text() {
        for text in ["", "a", "ünïcødé/数据 😀.*>"] {
            assert_eq!(unhex(&hex(text.as_bytes())).unwrap(), text.as_bytes());
        }
        assert!(unhex("abc").is_none() && unhex("zz").is_none());
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(validate_prefix("es_test-1").is_ok());
        for bad in ["", "a.b", "a b", "a*", &"x".repeat(33)] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replicated_streams_on_old_servers_are_guarded_stream_wide() {
        assert_eq!(guard_for("2.9.10", 3), Guard::Stream);
        assert_eq!(guard_for("2.9.10", 1), Guard::Subject);
        assert_eq!(guard_for("2.9.21", 3), Guard::Stream);
        assert_eq!(guard_for("2.10.20", 3), Guard::Subject);
        assert_eq!(guard_for("2.12.1", 5), Guard::Subject);
    }

    #[test]
    fn positions_order_batches_then_events() {
        assert!(position(1, 0xFFFF) < position(2, 0));
        assert_eq!(position(3, 2) >> 16, 3);
    }
}
