//! What a store reads and writes: appends and their outcomes, events as
//! read (borrowed, narrowed, owned), snapshots.

use std::fmt;

use super::FOREIGN;
use super::chain::Link;
use crate::envelope::{EventId, StreamId, Timestamp};

/// What the writer believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the version.
    Any,
    /// The stream must not exist yet (version 0).
    NoStream,
    /// The stream must be at exactly this version (0 for a new stream).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `actual` satisfies the expectation.
    pub fn matches(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// One event to append, already encoded. It borrows its name and payload:
/// the dispatcher encodes a command's events into one buffer it reuses, and
/// a store copies what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewEvent<'a> {
    /// Its unique id.
    pub event_id: EventId,
    /// Its stored name.
    pub name: &'a str,
    /// Its schema version.
    pub schema_version: u32,
    /// The encoded event.
    pub payload: &'a [u8],
}

/// A batch to append to one stream: all of it or nothing.
///
/// It borrows everything it carries. Appending already-encoded events by
/// hand (a test, a migration tool) keeps the payloads alive beside it:
///
/// ```
/// # use es_core::prelude::*;
/// # use es_core::store::{AppendRequest, NewEvent};
/// # use es_core::{EventId, ExpectedVersion};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = InMemoryStore::new();
/// let stream = StreamId::new("account", "a-1");
/// let amounts: Vec<String> = (1..=3).map(|n| format!(r#"{{"amount":{n}}}"#)).collect();
/// let events: Vec<NewEvent<'_>> = amounts
///     .iter()
///     .map(|payload| NewEvent {
///         event_id: EventId::new(),
///         name: "account.deposited",
///         schema_version: 1,
///         payload: payload.as_bytes(),
///     })
///     .collect();
/// store
///     .append(AppendRequest {
///         stream: &stream,
///         expected: ExpectedVersion::NoStream,
///         events: &events,
///         metadata: b"",
///         command_id: None,
///         recorded_at: Timestamp::now(),
///     })
///     .await?;
/// assert_eq!(store.stream_version(&stream).await?, 3);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AppendRequest<'a> {
    /// The stream to append to.
    pub stream: &'a StreamId,
    /// The version the writer loaded.
    pub expected: ExpectedVersion,
    /// The events, in order; the first gets version `current + 1`.
    pub events: &'a [NewEvent<'a>],
    /// Encoded [`Metadata`](crate::Metadata), stored with every event.
    pub metadata: &'a [u8],
    /// The command's id: a store records it with the batch, atomically, and
    /// answers a second batch with the same id *on the same stream* with the
    /// first one's record. The same id on another stream is another command.
    pub command_id: Option<&'a str>,
    /// The commit time recorded with every event.
    pub recorded_at: Timestamp,
}

/// An [`AppendRequest`] that owns what it carries: for a store that hands
/// appends to another task or thread (a group committer) and borrows them
/// back as a request there.
#[derive(Debug, Clone)]
pub struct OwnedAppend {
    /// The stream to append to.
    pub stream: StreamId,
    /// The version the writer loaded.
    pub expected: ExpectedVersion,
    /// The events, in order.
    pub events: Vec<OwnedEvent>,
    /// Encoded metadata, stored with every event.
    pub metadata: Vec<u8>,
    /// The command's id.
    pub command_id: Option<String>,
    /// The commit time recorded with every event.
    pub recorded_at: Timestamp,
}

/// A [`NewEvent`] that owns its name and payload.
#[derive(Debug, Clone)]
pub struct OwnedEvent {
    /// Its unique id.
    pub event_id: EventId,
    /// Its stored name.
    pub name: String,
    /// Its schema version.
    pub schema_version: u32,
    /// The encoded event.
    pub payload: Vec<u8>,
}

impl OwnedEvent {
    /// The event, borrowed as a request carries it.
    pub fn as_new(&self) -> NewEvent<'_> {
        NewEvent {
            event_id: self.event_id,
            name: &self.name,
            schema_version: self.schema_version,
            payload: &self.payload,
        }
    }
}

impl OwnedAppend {
    /// A copy of `request`.
    pub fn new(request: &AppendRequest<'_>) -> Self {
        OwnedAppend {
            stream: request.stream.clone(),
            expected: request.expected,
            events: request
                .events
                .iter()
                .map(|e| OwnedEvent {
                    event_id: e.event_id,
                    name: e.name.to_owned(),
                    schema_version: e.schema_version,
                    payload: e.payload.to_vec(),
                })
                .collect(),
            metadata: request.metadata.to_vec(),
            command_id: request.command_id.map(str::to_owned),
            recorded_at: request.recorded_at,
        }
    }

    /// Its events, borrowed as a request carries them.
    pub fn new_events(&self) -> Vec<NewEvent<'_>> {
        self.events.iter().map(OwnedEvent::as_new).collect()
    }

    /// The request, borrowing `events` (from [`new_events`](Self::new_events)).
    pub fn request<'a>(&'a self, events: &'a [NewEvent<'a>]) -> AppendRequest<'a> {
        AppendRequest {
            stream: &self.stream,
            expected: self.expected,
            events,
            metadata: &self.metadata,
            command_id: self.command_id.as_deref(),
            recorded_at: self.recorded_at,
        }
    }
}

/// Where an appended batch landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The version of the first event of the batch.
    pub first_version: u64,
    /// The stream's version after the batch.
    pub last_version: u64,
    /// The global position of each event, in order.
    pub positions: Positions,
}

/// The global positions of an appended batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Positions {
    /// `count` positions from `first` on, one apart (the usual case, and
    /// the one that needs no allocation).
    Consecutive {
        /// The first event's position.
        first: u64,
        /// How many events.
        count: u64,
    },
    /// Each event's position, where they are not consecutive.
    Listed(Vec<u64>),
}

impl Positions {
    /// The positions of a batch, in order: [`Consecutive`](Self::Consecutive)
    /// when they are.
    pub fn from_vec(positions: Vec<u64>) -> Self {
        match positions.first() {
            Some(&first) if positions.windows(2).all(|w| w[1] == w[0] + 1) => Positions::Consecutive {
                first,
                count: positions.len() as u64,
            },
            Some(_) => Positions::Listed(positions),
            None => Positions::Consecutive { first: 0, count: 0 },
        }
    }

    /// The position of the `i`-th event of the batch.
    pub fn get(&self, i: usize) -> Option<u64> {
        match self {
            Positions::Consecutive { first, count } => ((i as u64) < *count).then(|| first + i as u64),
            Positions::Listed(list) => list.get(i).copied(),
        }
    }

    /// The position of the last event, if any.
    pub fn last(&self) -> Option<u64> {
        match self {
            Positions::Consecutive { first, count } => (*count > 0).then(|| first + count - 1),
            Positions::Listed(list) => list.last().copied(),
        }
    }

    /// How many events.
    pub fn len(&self) -> usize {
        match self {
            Positions::Consecutive { count, .. } => *count as usize,
            Positions::Listed(list) => list.len(),
        }
    }

    /// Whether the batch was empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All positions, in order.
    pub fn to_vec(&self) -> Vec<u64> {
        (0..self.len()).filter_map(|i| self.get(i)).collect()
    }
}

/// What an earlier command with the same id committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// The command id.
    pub command_id: String,
    /// The stream it appended to.
    pub stream: StreamId,
    /// The version of its first event.
    pub first_version: u64,
    /// The version of its last event.
    pub last_version: u64,
}

/// The result of an append that did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The batch is committed.
    Appended(Appended),
    /// A batch with the same command id was committed earlier; nothing was
    /// appended now.
    Duplicate(CommandRecord),
}

/// A stored event, borrowed from the store while it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedEvent<'a> {
    /// Its unique id.
    pub event_id: EventId,
    /// The stored aggregate type of its stream.
    pub aggregate_type: &'a str,
    /// The aggregate id of its stream.
    pub aggregate_id: &'a str,
    /// Its version in the stream.
    pub version: u64,
    /// Its position in the global log.
    pub position: u64,
    /// Its stored name.
    pub name: &'a str,
    /// Its schema version.
    pub schema_version: u32,
    /// The encoded event.
    pub payload: &'a [u8],
    /// The encoded metadata (empty when there was none).
    pub metadata: &'a [u8],
    /// When it was committed.
    pub recorded_at: Timestamp,
    /// Its link in its stream's hash chain ([`Link::GENESIS`] when the
    /// read left it out: see [`ContextFields::LINK`]).
    pub link: Link,
}

impl RecordedEvent<'_> {
    /// The stream it belongs to.
    pub fn stream(&self) -> StreamId {
        StreamId::new(self.aggregate_type.to_owned(), self.aggregate_id)
    }

    /// An owned copy.
    pub fn to_owned(&self) -> StoredEvent {
        StoredEvent {
            event_id: self.event_id,
            stream: self.stream(),
            version: self.version,
            position: self.position,
            name: self.name.to_owned(),
            schema_version: self.schema_version,
            payload: self.payload.to_vec(),
            metadata: self.metadata.to_vec(),
            recorded_at: self.recorded_at,
            link: self.link,
        }
    }
}

/// Which parts of a stored event's context a reader uses, so a store can
/// leave the rest unread: an argument of
/// [`EventStore::read_all`](super::EventStore::read_all) and
/// [`EventStore::read_stream`](super::EventStore::read_stream).
///
/// The name, schema version and payload of an event are always read; so is
/// its position in a read of the log, and its stream and version in a read
/// of a stream. The derives work out a read model's set from its handlers: a
/// handler that takes no context needs none; one that reads
/// `context.aggregate_id` needs [`AGGREGATE_ID`](Self::AGGREGATE_ID); one
/// that uses its context in any other way (passes it on, prints it) needs
/// [`ALL`](Self::ALL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContextFields(u8);

impl ContextFields {
    /// Nothing beyond position, name, schema version and payload.
    pub const NONE: Self = ContextFields(0);
    /// [`RecordedEvent::event_id`].
    pub const EVENT_ID: Self = ContextFields(1);
    /// [`RecordedEvent::aggregate_type`].
    pub const AGGREGATE_TYPE: Self = ContextFields(1 << 1);
    /// [`RecordedEvent::aggregate_id`].
    pub const AGGREGATE_ID: Self = ContextFields(1 << 2);
    /// [`RecordedEvent::version`].
    pub const VERSION: Self = ContextFields(1 << 3);
    /// [`RecordedEvent::metadata`].
    pub const METADATA: Self = ContextFields(1 << 4);
    /// [`RecordedEvent::recorded_at`].
    pub const RECORDED_AT: Self = ContextFields(1 << 5);
    /// [`RecordedEvent::position`] in a read of a stream (a read of the
    /// log always has it).
    pub const POSITION: Self = ContextFields(1 << 6);
    /// [`RecordedEvent::link`], the event's link in its stream's hash chain.
    pub const LINK: Self = ContextFields(1 << 7);
    /// What loading an aggregate uses: the version and commit time.
    pub const LOAD: Self = ContextFields(Self::VERSION.0 | Self::RECORDED_AT.0);
    /// Every field an [`EventContext`](crate::EventContext) carries: all
    /// but the link.
    pub const CONTEXT: Self = ContextFields(Self::LINK.0 - 1);
    /// Every field, the link included.
    pub const ALL: Self = ContextFields(u8::MAX);

    /// The fields of both.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        ContextFields(self.0 | other.0)
    }

    /// Whether every field of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The set whose [`bits`](Self::bits) are `bits`.
    pub const fn from_bits(bits: u8) -> Self {
        ContextFields(bits)
    }

    /// The set as a number (each field one bit), to index a table of
    /// prepared statements by.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The SQL select list of an event row, for a store whose table names
    /// its columns after the fields of [`RecordedEvent`]: `position, name,
    /// schema_version, payload`, then, of `event_id, aggregate_type,
    /// aggregate_id, version, metadata, recorded_at, link`, those in `self`, in
    /// that order ([`column`](Self::column) tells where each is). The
    /// position is always selected: it costs an SQL store nothing.
    pub fn sql_columns(self) -> String {
        let mut list = String::from("position, name, schema_version, payload");
        for (field, name) in Self::OPTIONAL {
            if self.contains(field) {
                list.push_str(", ");
                list.push_str(name);
            }
        }
        list
    }

    /// The index of `field`'s column in [`sql_columns`](Self::sql_columns)
    /// (`field` one of the constants), or `None` when it is left out.
    pub const fn column(self, field: Self) -> Option<usize> {
        if field.0.count_ones() != 1 || !self.contains(field) {
            return None;
        }
        if field.0 == Self::POSITION.0 {
            return Some(0);
        }
        // The fields before it, in bit order, that are read (the position,
        // always column 0, aside).
        let before = self.0 & (field.0 - 1) & !Self::POSITION.0;
        Some(4 + before.count_ones() as usize)
    }

    /// The optional fields in column order, with their column names.
    const OPTIONAL: [(Self, &'static str); 7] = [
        (Self::EVENT_ID, "event_id"),
        (Self::AGGREGATE_TYPE, "aggregate_type"),
        (Self::AGGREGATE_ID, "aggregate_id"),
        (Self::VERSION, "version"),
        (Self::METADATA, "metadata"),
        (Self::RECORDED_AT, "recorded_at"),
        (Self::LINK, "link"),
    ];
}

/// An owned stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its unique id.
    pub event_id: EventId,
    /// Its stream.
    pub stream: StreamId,
    /// Its version in the stream.
    pub version: u64,
    /// Its position in the global log.
    pub position: u64,
    /// Its stored name.
    pub name: String,
    /// Its schema version.
    pub schema_version: u32,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// The encoded metadata.
    pub metadata: Vec<u8>,
    /// When it was committed.
    pub recorded_at: Timestamp,
    /// Its link in its stream's hash chain.
    pub link: Link,
}

impl StoredEvent {
    /// The event as JSON, the one rendering tools and services show: its
    /// place (`position`, `stream`, `version`), `event_id`, `name`,
    /// `schema_version`, `recorded_at` (RFC 3339, UTC) and
    /// `recorded_at_micros`, the `payload` as stored when it is JSON
    /// (`{"hex": ..}` otherwise: another codec), and the decoded `metadata`
    /// (`{"undecodable": ..}` when it does not decode). An entry that is not
    /// an event ([`FOREIGN`]) renders as `{"position", "foreign", "bytes"}`.
    pub fn to_json(&self) -> serde_json::Value {
        if self.name == FOREIGN {
            return serde_json::json!({
                "position": self.position,
                "foreign": self.stream.aggregate_id(),
                "bytes": self.payload.len(),
            });
        }
        let payload = serde_json::from_slice::<serde_json::Value>(&self.payload)
            .unwrap_or_else(|_| serde_json::json!({ "hex": crate::util::hex(&self.payload) }));
        let metadata = match crate::Metadata::decode(&self.metadata) {
            Ok(m) => serde_json::to_value(m).unwrap_or_default(),
            Err(_) => serde_json::json!({ "undecodable": String::from_utf8_lossy(&self.metadata) }),
        };
        serde_json::json!({
            "position": self.position,
            "stream": self.stream.to_string(),
            "version": self.version,
            "event_id": self.event_id.to_string(),
            "name": self.name,
            "schema_version": self.schema_version,
            "recorded_at": self.recorded_at.to_string(),
            "recorded_at_micros": self.recorded_at.as_micros(),
            "link": self.link.to_string(),
            "payload": payload,
            "metadata": metadata,
        })
    }

    /// A borrowed view.
    pub fn as_recorded(&self) -> RecordedEvent<'_> {
        RecordedEvent {
            event_id: self.event_id,
            aggregate_type: self.stream.aggregate_type(),
            aggregate_id: self.stream.aggregate_id(),
            version: self.version,
            position: self.position,
            name: &self.name,
            schema_version: self.schema_version,
            payload: &self.payload,
            metadata: &self.metadata,
            recorded_at: self.recorded_at,
            link: self.link,
        }
    }
}

/// A stored snapshot of an aggregate's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream version the state reflects.
    pub version: u64,
    /// [`Aggregate::SNAPSHOT_VERSION`](crate::Aggregate::SNAPSHOT_VERSION) when it was written.
    pub schema_version: u32,
    /// The fingerprint of the state's serialized shape when it was written
    /// ([`Aggregate::snapshot_fingerprint`](crate::Aggregate::snapshot_fingerprint));
    /// 0 when unknown. A store keeps it as it is given.
    pub fingerprint: u64,
    /// The encoded state.
    pub payload: Vec<u8>,
}
