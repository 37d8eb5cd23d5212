//! The bytes of what es-nats stores, integers little-endian.
//!
//! An event message, on `<prefix>.events.x<type>.x<id>` (format 3):
//!
//! ```text
//! [2] 0xE5 0x03
//! u16 len, aggregate type | u16 len, aggregate id          (UTF-8)
//! u64 version | u32 index within its append | i64 recorded at (µs)
//! [16] event id | u16 len, name | u32 schema version
//! [32] link in its stream's hash chain
//! u32 len, metadata | the payload: the rest of the message
//! ```
//!
//! Format 2 (written before chaining) is the same without the link; such an
//! event reads with [`Link::GENESIS`], which verification reports as a
//! changed event: JetStream messages cannot be rewritten in place.
//!
//! A message on the event subjects that does not read as one (or names
//! another stream than its subject) is foreign: readers skip it.
//!
//! A command record, on `<prefix>.cmds.<key>`: `[2] 0xE5 'C'`, `u64` first
//! and last version, then the stream and the command id it stands for
//! (`u16` lengths), which a lookup compares (the key is a hash of them).
//!
//! A snapshot, on `<prefix>.records.snapshots.<key>`: `[2] 0xE5 'S'`, the
//! stream, `u64` version, `u32` schema version, `u64` fingerprint, `u32`
//! length and the state.

use es_core::store::{CommandRecord, Link, RecordedEvent, Snapshot};
use es_core::{EventId, StreamId, Timestamp};

const MAGIC: u8 = 0xE5;
const EVENT: u8 = 3;
const EVENT_UNCHAINED: u8 = 2;
const COMMAND: u8 = b'C';
const SNAPSHOT: u8 = b'S';

/// The bytes of an event message before its name and payload, at most.
const EVENT_OVERHEAD: usize = 2 + 2 + 2 + 8 + 4 + 8 + 16 + 2 + 4 + 32 + 4;

/// One event message, borrowing its bytes.
#[derive(Debug)]
pub(crate) struct EventMessage<'a> {
    pub(crate) aggregate_type: &'a str,
    pub(crate) aggregate_id: &'a str,
    pub(crate) version: u64,
    /// Its place in the append that stored it: the append's first event
    /// is at the sequence of this one minus `index`.
    pub(crate) index: u32,
    pub(crate) recorded_at: Timestamp,
    pub(crate) event_id: EventId,
    pub(crate) name: &'a str,
    pub(crate) schema_version: u32,
    pub(crate) link: Link,
    pub(crate) metadata: &'a [u8],
    pub(crate) payload: &'a [u8],
}

/// What an event message holds, to encode.
pub(crate) struct NewEventMessage<'a> {
    pub(crate) stream: &'a StreamId,
    pub(crate) version: u64,
    pub(crate) index: u32,
    pub(crate) recorded_at: Timestamp,
    pub(crate) event_id: EventId,
    pub(crate) name: &'a str,
    pub(crate) schema_version: u32,
    pub(crate) link: Link,
    pub(crate) metadata: &'a [u8],
    pub(crate) payload: &'a [u8],
}

fn put_len(out: &mut Vec<u8>, bytes: &[u8], wide: bool) {
    if wide {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(bytes);
}

fn put_stream(out: &mut Vec<u8>, stream: &StreamId) {
    put_len(out, stream.aggregate_type().as_bytes(), false);
    put_len(out, stream.aggregate_id().as_bytes(), false);
}

impl NewEventMessage<'_> {
    /// The message's size.
    pub(crate) fn len(&self) -> usize {
        EVENT_OVERHEAD
            + self.stream.aggregate_type().len()
            + self.stream.aggregate_id().len()
            + self.name.len()
            + self.metadata.len()
            + self.payload.len()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&[MAGIC, EVENT]);
        put_stream(&mut out, self.stream);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.recorded_at.as_micros().to_le_bytes());
        out.extend_from_slice(self.event_id.as_uuid().as_bytes());
        put_len(&mut out, self.name.as_bytes(), false);
        out.extend_from_slice(&self.schema_version.to_le_bytes());
        out.extend_from_slice(self.link.as_bytes());
        put_len(&mut out, self.metadata, true);
        out.extend_from_slice(self.payload);
        out
    }
}

/// Reads what the encoders wrote; `None` at the first thing out of place.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn bytes(&mut self, wide: bool) -> Option<&'a [u8]> {
        let len = if wide {
            self.u32()? as usize
        } else {
            usize::from(self.u16()?)
        };
        self.take(len)
    }

    fn text(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes(false)?).ok()
    }

    fn tag(&mut self, kind: u8) -> Option<()> {
        (self.array::<2>()? == [MAGIC, kind]).then_some(())
    }
}

impl<'a> EventMessage<'a> {
    /// Decodes an event message; `None` if the bytes are not one.
    pub(crate) fn decode(bytes: &'a [u8]) -> Option<Self> {
        let mut r = Reader { bytes };
        let chained = match r.array::<2>()? {
            [MAGIC, EVENT] => true,
            [MAGIC, EVENT_UNCHAINED] => false,
            _ => return None,
        };
        let aggregate_type = r.text()?;
        let aggregate_id = r.text()?;
        let version = r.u64()?;
        let index = r.u32()?;
        let recorded_at = Timestamp::from_micros(r.u64()? as i64);
        let event_id = EventId::from(uuid::Uuid::from_bytes(r.array()?));
        let name = r.text()?;
        let schema_version = r.u32()?;
        let link = match chained {
            true => Link(r.array()?),
            false => Link::GENESIS,
        };
        let metadata = r.bytes(true)?;
        let payload = r.bytes;
        if version == 0 || aggregate_type.is_empty() || u64::from(index) >= version {
            return None;
        }
        Some(EventMessage {
            aggregate_type,
            aggregate_id,
            version,
            index,
            recorded_at,
            event_id,
            name,
            schema_version,
            link,
            metadata,
            payload,
        })
    }

    /// The event as stored at `position`.
    pub(crate) fn recorded(&self, position: u64) -> RecordedEvent<'a> {
        RecordedEvent {
            event_id: self.event_id,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            version: self.version,
            position,
            name: self.name,
            schema_version: self.schema_version,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
            link: self.link,
        }
    }

    /// Whether it belongs to `stream`.
    pub(crate) fn is_of(&self, stream: &StreamId) -> bool {
        self.aggregate_type == stream.aggregate_type() && self.aggregate_id == stream.aggregate_id()
    }
}

/// A command's record.
pub(crate) fn encode_command(stream: &StreamId, command_id: &str, first: u64, last: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + stream.aggregate_id().len() + command_id.len() + 32);
    out.extend_from_slice(&[MAGIC, COMMAND]);
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&last.to_le_bytes());
    put_stream(&mut out, stream);
    put_len(&mut out, command_id.as_bytes(), false);
    out
}

/// The record of `command_id` on `stream`, if `bytes` is that record.
pub(crate) fn decode_command(bytes: &[u8], stream: &StreamId, command_id: &str) -> Option<CommandRecord> {
    let mut r = Reader { bytes };
    r.tag(COMMAND)?;
    let first_version = r.u64()?;
    let last_version = r.u64()?;
    let same = r.text()? == stream.aggregate_type() && r.text()? == stream.aggregate_id() && r.text()? == command_id;
    same.then(|| CommandRecord {
        command_id: command_id.to_owned(),
        stream: stream.clone(),
        first_version,
        last_version,
    })
}

/// A snapshot with the stream it belongs to.
pub(crate) fn encode_snapshot(stream: &StreamId, snapshot: &Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(snapshot.payload.len() + 64 + stream.aggregate_id().len());
    out.extend_from_slice(&[MAGIC, SNAPSHOT]);
    put_stream(&mut out, stream);
    out.extend_from_slice(&snapshot.version.to_le_bytes());
    out.extend_from_slice(&snapshot.schema_version.to_le_bytes());
    out.extend_from_slice(&snapshot.fingerprint.to_le_bytes());
    put_len(&mut out, &snapshot.payload, true);
    out
}

/// The snapshot of `stream`, if `bytes` is one of it.
pub(crate) fn decode_snapshot(bytes: &[u8], stream: &StreamId) -> Option<Snapshot> {
    let mut r = Reader { bytes };
    r.tag(SNAPSHOT)?;
    if r.text()? != stream.aggregate_type() || r.text()? != stream.aggregate_id() {
        return None;
    }
    Some(Snapshot {
        version: r.u64()?,
        schema_version: r.u32()?,
        fingerprint: r.u64()?,
        payload: r.bytes(true)?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<'a>(stream: &'a StreamId, payload: &'a [u8]) -> NewEventMessage<'a> {
        NewEventMessage {
            stream,
            version: 7,
            index: 2,
            recorded_at: Timestamp::from_micros(1_700_000_000_000_000),
            event_id: EventId::new(),
            name: "account.opened",
            schema_version: 3,
            link: Link([9; 32]),
            metadata: b"{\"m\":1}",
            payload,
        }
    }

    #[test]
    fn an_event_message_round_trips() {
        let stream = StreamId::new("bank_account", "ünï/cødé.*>");
        let new = message(&stream, b"{\"owner\":\"Ada\"}");
        let bytes = new.encode();
        assert_eq!(bytes.len(), new.len());
        let read = EventMessage::decode(&bytes).expect("decodes");
        assert!(read.is_of(&stream) && !read.is_of(&StreamId::new("bank_account", "other")));
        assert_eq!((read.version, read.index, read.schema_version), (7, 2, 3));
        assert_eq!((read.name, read.event_id), ("account.opened", new.event_id));
        assert_eq!(
            (read.metadata, read.payload),
            (&b"{\"m\":1}"[..], &b"{\"owner\":\"Ada\"}"[..])
        );
        assert_eq!(read.recorded_at, new.recorded_at);
    }

    #[test]
    fn anything_else_is_not_an_event_message() {
        let stream = StreamId::new("t", "1");
        let bytes = message(&stream, b"x").encode();
        // Every cut into what comes before the payload (the last byte here)
        // fails; the payload is the rest, whatever its length.
        for cut in 0..bytes.len() - 1 {
            assert!(EventMessage::decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        for foreign in [&b"hello"[..], b"", b"{\"json\":true}", &[0xE5, 1, 0, 0], &[0xE5, b'C']] {
            assert!(EventMessage::decode(foreign).is_none());
        }
        // A version of 0, or an index past the version, is not ours either.
        let mut zero = message(&stream, b"x");
        zero.version = 0;
        assert!(EventMessage::decode(&zero.encode()).is_none());
        let mut past = message(&stream, b"x");
        past.index = 7;
        assert!(EventMessage::decode(&past.encode()).is_none());
    }

    #[test]
    fn records_name_what_they_stand_for() {
        let stream = StreamId::new("t", "1");
        let bytes = encode_command(&stream, "cmd-1", 4, 6);
        let record = decode_command(&bytes, &stream, "cmd-1").expect("the record");
        assert_eq!((record.first_version, record.last_version), (4, 6));
        assert!(decode_command(&bytes, &stream, "cmd-2").is_none());
        assert!(decode_command(&bytes, &StreamId::new("t", "2"), "cmd-1").is_none());
        let snapshot = Snapshot {
            version: 9,
            schema_version: 2,
            fingerprint: 77,
            payload: b"state".to_vec(),
        };
        let bytes = encode_snapshot(&stream, &snapshot);
        assert_eq!(decode_snapshot(&bytes, &stream), Some(snapshot));
        assert!(decode_snapshot(&bytes, &StreamId::new("u", "1")).is_none());
        assert!(decode_command(&bytes, &stream, "cmd-1").is_none());
    }
}
