//! What is stored around an event: its stream, position, time and metadata.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Identifies one stream: an aggregate type and the id of one instance.
///
/// The aggregate type is the stored name from `#[aggregate(name = "..")]`,
/// the id is the aggregate id's `Display` form.
///
/// Cloning is cheap (the id is shared), so every envelope of a stream can
/// carry it.
#[derive(Debug, Clone, Eq, PartialOrd, Ord)]
pub struct StreamId {
    aggregate_type: Cow<'static, str>,
    aggregate_id: Arc<str>,
}

/// Equal when type and id are: the usual case, one stream id cloned from
/// another (the store's, the dispatcher's), is told by the addresses alone,
/// without reading the texts (a store's copy is often out of the CPU's
/// caches).
impl PartialEq for StreamId {
    fn eq(&self, other: &Self) -> bool {
        let same_type = std::ptr::eq(self.aggregate_type.as_ref(), other.aggregate_type.as_ref())
            || self.aggregate_type == other.aggregate_type;
        same_type && (Arc::ptr_eq(&self.aggregate_id, &other.aggregate_id) || self.aggregate_id == other.aggregate_id)
    }
}

/// The text of type and id, as equality compares them.
impl std::hash::Hash for StreamId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.aggregate_type.hash(state);
        self.aggregate_id.hash(state);
    }
}

impl StreamId {
    /// A stream of aggregate type `aggregate_type` with id `aggregate_id`.
    pub fn new(aggregate_type: impl Into<Cow<'static, str>>, aggregate_id: impl AsRef<str>) -> Self {
        StreamId {
            aggregate_type: aggregate_type.into(),
            aggregate_id: Arc::from(aggregate_id.as_ref()),
        }
    }

    /// The stream of aggregate `A` with id `id`.
    pub fn of<A: crate::Aggregate>(id: &A::Id) -> Self {
        StreamId {
            aggregate_type: Cow::Borrowed(A::NAME),
            aggregate_id: Arc::from(id.to_string()),
        }
    }

    /// The stored aggregate type name.
    pub fn aggregate_type(&self) -> &str {
        &self.aggregate_type
    }

    /// The aggregate id, as text.
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.aggregate_type, self.aggregate_id)
    }
}

/// A point in time, in microseconds since the Unix epoch (UTC).
///
/// Displays as RFC 3339 (`2026-11-23T18:04:05.123456Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// The time `micros` microseconds after the Unix epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        // Microseconds of a duration, in 64-bit arithmetic (`as_micros` is
        // 128-bit), saturating.
        fn micros(d: Duration) -> i64 {
            i64::try_from(d.as_secs())
                .ok()
                .and_then(|s| s.checked_mul(1_000_000))
                .and_then(|m| m.checked_add(i64::from(d.subsec_micros())))
                .unwrap_or(i64::MAX)
        }
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(micros(d)),
            Err(e) => Timestamp(-micros(e.duration())),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        if t.0 >= 0 {
            UNIX_EPOCH + Duration::from_micros(t.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_micros(t.0.unsigned_abs())
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A UUID v7 timestamp has 48 bits.
const MILLIS_MASK: u64 = (1 << 48) - 1;

/// How far back a time may step and still continue the sequence.
const STEP_BACK_MILLIS: u64 = 10_000;

/// The last id's timestamp (48 bits) and counter (12 bits), packed so that
/// adding one to a full counter carries into the timestamp.
static LAST_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The timestamp and counter of the next id made at `millis`: one past the
/// last id's when `millis` is not after it, else `millis` with the counter
/// at `start()` (drawn only then: most ids continue the sequence). A time
/// far before the last id's (an import of old events) gets `millis` and
/// `start()` and leaves the sequence alone: the ids made now, on other
/// threads too, go on increasing.
fn next_millis_and_counter(millis: u64, start: impl Fn() -> u16) -> (u64, u16) {
    use std::sync::atomic::Ordering;
    let mut last = LAST_ID.load(Ordering::Relaxed);
    loop {
        let last_millis = last >> 12;
        if millis + STEP_BACK_MILLIS < last_millis {
            return (millis, start());
        }
        let next = if millis > last_millis {
            (millis << 12) | u64::from(start())
        } else {
            last + 1
        };
        match LAST_ID.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return ((next >> 12) & MILLIS_MASK, (next & 0xFFF) as u16),
            Err(now) => last = now,
        }
    }
}

/// The unique id of one stored event: a UUID version 7, so ids sort by
/// creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(uuid::Uuid);

/// The UUID's order, its bytes compared in turn, as one big-endian number:
/// two instructions instead of a call to `memcmp`.
impl Ord for EventId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_u128().cmp(&other.0.as_u128())
    }
}

impl PartialOrd for EventId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl EventId {
    /// A new id from the current time.
    ///
    /// Ids made by one process are monotonic, as RFC 9562 (section 6.2,
    /// method 1) describes: within a millisecond a 12-bit counter in
    /// `rand_a`, started at a random value below 2,048, orders them; a
    /// counter that runs out moves the timestamp on by a millisecond. The
    /// other 62 bits are random, so ids from different processes differ.
    pub fn new() -> Self {
        Self::at(Timestamp::now())
    }

    /// A new id for an event recorded at `at`.
    ///
    /// Monotonic with the process's other ids while the times given move
    /// forward or step back by less than ten seconds (a clock that was set
    /// back, threads reading the clock in another order). An id for a time
    /// further back (an import of old events) keeps that time, with a
    /// random counter, and does not disturb the sequence of the ids made
    /// now.
    pub fn at(at: Timestamp) -> Self {
        let millis = u64::try_from(at.as_millis()).unwrap_or(0) & MILLIS_MASK;
        let (millis, counter) = next_millis_and_counter(millis, || crate::util::random_u64() as u16 & 0x7FF);
        // RFC 9562's layout, most significant first: 48 bits of
        // milliseconds, the version (7), 12 bits of counter (`rand_a`), the
        // variant (0b10), 62 random bits (`rand_b`).
        let value = (u128::from(millis) << 80)
            | (0x7 << 76)
            | (u128::from(counter & 0xFFF) << 64)
            | (0b10 << 62)
            | u128::from(crate::util::random_u64() >> 2);
        EventId(uuid::Uuid::from_u128(value))
    }

    /// The id as a UUID.
    pub const fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<uuid::Uuid> for EventId {
    fn from(u: uuid::Uuid) -> Self {
        EventId(u)
    }
}

impl From<EventId> for uuid::Uuid {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Data about a command that travels into every event it produced.
///
/// Stored as JSON beside each event, whatever the event codec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Groups every command and event of one business transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The message (usually an event id) that caused this command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The command's own id. The dispatcher answers a command id it has
    /// already committed on the stream with the earlier outcome instead of
    /// appending again, and refuses it for a command of another type
    /// ([`DispatchError::CommandIdReused`](crate::DispatchError::CommandIdReused)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The type name of the command that carried the command id, recorded
    /// by the dispatcher. A later command with the same id on the same
    /// stream but another name is refused
    /// ([`DispatchError::CommandIdReused`](crate::DispatchError::CommandIdReused))
    /// instead of being answered with this one's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_name: Option<String>,
    /// The fingerprint of that command's content
    /// ([`Command::fingerprint`](crate::Command::fingerprint), in hex),
    /// recorded by the dispatcher with the name. A later command with the
    /// same id and name but another fingerprint is refused too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_fingerprint: Option<String>,
    /// Free key/values (user, tenant, request id, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty metadata, shared: commands without metadata hand this one
    /// allocation to all their envelopes.
    pub(crate) fn shared_empty() -> Arc<Metadata> {
        static EMPTY: std::sync::LazyLock<Arc<Metadata>> = std::sync::LazyLock::new(Arc::default);
        EMPTY.clone()
    }

    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the command id, which makes the command idempotent.
    pub fn command_id(mut self, id: impl Into<String>) -> Self {
        self.command_id = Some(id.into());
        self
    }

    /// Adds a free key/value.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.values.insert(key.into(), value.into());
        self
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.causation_id.is_none()
            && self.command_id.is_none()
            && self.command_name.is_none()
            && self.command_fingerprint.is_none()
            && self.values.is_empty()
    }

    /// The stored form: empty bytes for empty metadata, JSON otherwise.
    pub fn encode(&self) -> Vec<u8> {
        if self.is_empty() {
            Vec::new()
        } else {
            // A struct of strings always serializes.
            serde_json::to_vec(self).unwrap_or_default()
        }
    }

    /// Reads the stored form written by [`Metadata::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        if bytes.is_empty() {
            Ok(Metadata::default())
        } else {
            serde_json::from_slice(bytes)
        }
    }
}

/// One stored event with everything known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E> {
    /// The event's unique id.
    pub event_id: EventId,
    /// The stream (aggregate type and id) it belongs to.
    pub stream: StreamId,
    /// Its version in the stream: 1 for the first event.
    pub version: u64,
    /// Its position in the store's global log.
    pub position: u64,
    /// When it was committed.
    pub recorded_at: Timestamp,
    /// The metadata of the command that produced it.
    pub metadata: Arc<Metadata>,
    /// The event.
    pub payload: E,
}

impl<E> Envelope<E> {
    /// The same envelope with the payload borrowed.
    pub fn as_ref(&self) -> Envelope<&E> {
        Envelope {
            event_id: self.event_id,
            stream: self.stream.clone(),
            version: self.version,
            position: self.position,
            recorded_at: self.recorded_at,
            metadata: self.metadata.clone(),
            payload: &self.payload,
        }
    }

    /// Replaces the payload, keeping everything else.
    pub fn map<F>(self, f: impl FnOnce(E) -> F) -> Envelope<F> {
        Envelope {
            event_id: self.event_id,
            stream: self.stream,
            version: self.version,
            position: self.position,
            recorded_at: self.recorded_at,
            metadata: self.metadata,
            payload: f(self.payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_display_as_rfc3339() {
        assert_eq!(Timestamp::from_micros(0).to_string(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            Timestamp::from_micros(1_795_440_245_123_456).to_string(),
            "2026-11-23T13:24:05.123456Z"
        );
        assert_eq!(
            Timestamp::from_micros(951_782_400_000_000).to_string(),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(Timestamp::from_micros(-1).to_string(), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn timestamps_round_trip_through_system_time() {
        for micros in [0, 1, -1, 1_795_363_445_123_456, -86_400_000_001] {
            let t = Timestamp::from_micros(micros);
            assert_eq!(Timestamp::from(SystemTime::from(t)), t);
        }
        // What is finer than a microsecond is dropped.
        assert_eq!(
            Timestamp::from(UNIX_EPOCH + Duration::from_nanos(1_999)),
            Timestamp::from_micros(1)
        );
        assert_eq!(
            Timestamp::from(UNIX_EPOCH - Duration::from_nanos(1_999)),
            Timestamp::from_micros(-1)
        );
    }

    #[test]
    fn event_ids_order_as_their_bytes() {
        let mut ids: Vec<EventId> = (0..16)
            .flat_map(|byte| {
                let mut low = [0u8; 16];
                low[byte] = 1;
                let mut high = [0xFFu8; 16];
                high[byte] = 0x7F;
                [low, high]
            })
            .map(|bytes| EventId::from(uuid::Uuid::from_bytes(bytes)))
            .collect();
        ids.extend((0..64).map(|_| EventId::new()));
        for a in &ids {
            for b in &ids {
                assert_eq!(
                    a.cmp(b),
                    a.as_uuid().as_bytes().cmp(b.as_uuid().as_bytes()),
                    "{a:?} {b:?}"
                );
                assert_eq!(a.partial_cmp(b), Some(a.cmp(b)));
            }
        }
    }

    #[test]
    fn event_ids_are_version_7_and_unique() {
        let at = Timestamp::from_micros(1_795_363_445_123_456);
        let a = EventId::at(at);
        let b = EventId::at(at);
        assert_ne!(a, b);
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert_eq!(a.as_uuid().get_variant(), uuid::Variant::RFC4122);
        assert!(a < b, "ids made one after another ascend");
        let (secs, nanos) = a.as_uuid().get_timestamp().unwrap().to_unix();
        assert_eq!((secs, nanos / 1_000_000), (1_795_363_445, 123));
    }

    #[test]
    fn metadata_encodes_empty_as_nothing() {
        assert!(Metadata::new().encode().is_empty());
        assert_eq!(Metadata::decode(b"").unwrap(), Metadata::new());
        let m = Metadata::new().correlation_id("c-1").with("user", "ann");
        assert_eq!(
            std::str::from_utf8(&m.encode()).unwrap(),
            r#"{"correlation_id":"c-1","values":{"user":"ann"}}"#
        );
        assert_eq!(Metadata::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn stream_ids_display_type_and_id() {
        assert_eq!(StreamId::new("bank_account", "42").to_string(), "bank_account/42");
    }
}
