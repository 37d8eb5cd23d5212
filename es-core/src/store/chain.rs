//! The hash chain of a stream: each stored event's [`Link`] is the SHA-256
//! of its stored form and the link of the event before it in its stream.
//!
//! Every store computes the links of the events it appends (the stream's
//! head is at hand when it checks the expected version) and keeps them
//! beside the events; [`audit`](crate::audit) folds them into signed seals
//! and checks them.

use std::fmt;

use sha2::{Digest as _, Sha256};

use super::records::{NewEvent, RecordedEvent};
use crate::{EventId, StreamId, Timestamp};

/// A SHA-256 digest: an event's link, a Merkle tree's root or node, a seal's
/// hash. Shown and parsed as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Link(pub [u8; 32]);

impl Link {
    /// What the first event of a stream chains to: 32 zero bytes.
    pub const GENESIS: Link = Link([0; 32]);

    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The link stored as `bytes`, if they are 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Link> {
        bytes.try_into().ok().map(Link)
    }

    /// The link written as 64 hex digits (either case), or `None`.
    pub fn from_hex(text: &str) -> Option<Link> {
        Link::from_slice(&crate::util::from_hex(text)?)
    }

    /// The SHA-256 of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Link {
        Link(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::util::hex(&self.0))
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Link({self})")
    }
}

impl serde::Serialize for Link {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Link {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Link::from_hex(&text).ok_or_else(|| serde::de::Error::custom("not a SHA-256 digest (64 hex digits)"))
    }
}

/// The fields of a stored event that its link covers: everything but its
/// position (which the log, not the writer, gives it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Linked<'a> {
    /// The stored aggregate type of its stream.
    pub(crate) aggregate_type: &'a str,
    /// The aggregate id of its stream.
    pub(crate) aggregate_id: &'a str,
    /// Its version in the stream.
    pub(crate) version: u64,
    /// Its id.
    pub(crate) event_id: EventId,
    /// Its stored name.
    pub(crate) name: &'a str,
    /// Its schema version.
    pub(crate) schema_version: u32,
    /// When it was committed.
    pub(crate) recorded_at: Timestamp,
    /// The metadata bytes as stored.
    pub(crate) metadata: &'a [u8],
    /// The payload bytes as stored (ciphertext where fields are personal).
    pub(crate) payload: &'a [u8],
}

impl<'a> Linked<'a> {
    /// The fields of an event being appended at `version`.
    pub(crate) fn new_event(
        stream: &'a StreamId,
        version: u64,
        event: &NewEvent<'a>,
        metadata: &'a [u8],
        recorded_at: Timestamp,
    ) -> Self {
        Linked {
            aggregate_type: stream.aggregate_type(),
            aggregate_id: stream.aggregate_id(),
            version,
            event_id: event.event_id,
            name: event.name,
            schema_version: event.schema_version,
            recorded_at,
            metadata,
            payload: event.payload,
        }
    }

    /// The fields of a stored event (read with every context field).
    pub(crate) fn recorded(event: &RecordedEvent<'a>) -> Self {
        Linked {
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            version: event.version,
            event_id: event.event_id,
            name: event.name,
            schema_version: event.schema_version,
            recorded_at: event.recorded_at,
            metadata: event.metadata,
            payload: event.payload,
        }
    }

    /// The event's link, chained to `previous` (the link of the event
    /// before it in its stream, [`Link::GENESIS`] for the first):
    /// SHA-256 over a domain tag, `previous`, then each field, the
    /// variable-length ones prefixed by their length, integers big-endian.
    pub(crate) fn link(&self, previous: &Link) -> Link {
        let mut h = Sha256::new();
        h.update(b"es.link.v1\0");
        h.update(previous.0);
        let mut bytes = |b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        bytes(self.aggregate_type.as_bytes());
        bytes(self.aggregate_id.as_bytes());
        bytes(self.name.as_bytes());
        bytes(self.metadata);
        bytes(self.payload);
        h.update(self.version.to_be_bytes());
        h.update(self.schema_version.to_be_bytes());
        h.update(self.event_id.as_uuid().as_bytes());
        h.update(self.recorded_at.as_micros().to_be_bytes());
        Link(h.finalize().into())
    }
}

impl RecordedEvent<'_> {
    /// The link this event should have, chained to `previous` (the link of
    /// the event before it in its stream, [`Link::GENESIS`] for the first):
    /// SHA-256 over a domain tag, `previous`, then its stream, name,
    /// metadata and payload (each prefixed by its length), version, schema
    /// version, event id and commit time, integers big-endian. Every field
    /// but the position counts; a read that left some out gives another
    /// link.
    pub fn compute_link(&self, previous: &Link) -> Link {
        Linked::recorded(self).link(previous)
    }
}

/// The links of a batch appended after `previous`, the first event at
/// `first_version`: what a store writes beside the events.
pub fn link_batch(
    previous: Link,
    stream: &StreamId,
    first_version: u64,
    events: &[NewEvent<'_>],
    metadata: &[u8],
    recorded_at: Timestamp,
) -> Vec<Link> {
    let mut head = previous;
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            head = Linked::new_event(stream, first_version + i as u64, e, metadata, recorded_at).link(&head);
            head
        })
        .collect()
}

/// The head (version and link) of each stream's chain, for computing links
/// in log order: what a migration that chains the events stored before
/// chaining keeps, and what a verifier compares with. A lookup allocates
/// nothing; a new stream allocates its names once.
#[derive(Debug, Default)]
pub struct Heads {
    streams: std::collections::HashMap<String, std::collections::HashMap<String, (u64, Link)>>,
    len: usize,
}

impl Heads {
    /// The head of a stream's chain, if it has one.
    pub fn get(&self, aggregate_type: &str, aggregate_id: &str) -> Option<(u64, Link)> {
        self.streams.get(aggregate_type)?.get(aggregate_id).copied()
    }

    /// Chains `event` to its stream's head ([`Link::GENESIS`] for a stream
    /// not seen yet), makes it the head and returns its link (computed from
    /// its fields: its own `link` field is not read).
    pub fn advance(&mut self, event: &RecordedEvent<'_>) -> Link {
        let previous = self
            .get(event.aggregate_type, event.aggregate_id)
            .map_or(Link::GENESIS, |h| h.1);
        let link = event.compute_link(&previous);
        self.set(event.aggregate_type, event.aggregate_id, event.version, link);
        link
    }

    /// Makes `link` the head of a stream, at `version`.
    pub fn set(&mut self, aggregate_type: &str, aggregate_id: &str, version: u64, link: Link) {
        let ids = match self.streams.get_mut(aggregate_type) {
            Some(ids) => ids,
            None => self.streams.entry(aggregate_type.to_owned()).or_default(),
        };
        match ids.get_mut(aggregate_id) {
            Some(head) => *head = (version, link),
            None => {
                ids.insert(aggregate_id.to_owned(), (version, link));
                self.len += 1;
            }
        }
    }

    /// How many streams it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_covers_every_field_and_its_predecessor() {
        let stream = StreamId::new("account", "a-1");
        let id = EventId::from(uuid::Uuid::from_u128(7));
        let base = NewEvent {
            event_id: id,
            name: "Deposited",
            schema_version: 1,
            payload: br#"{"amount":100}"#,
        };
        let at = Timestamp::from_micros(1_000);
        let link_of = |stream: &StreamId, version: u64, event: NewEvent<'_>, metadata: &[u8], at: Timestamp| {
            Linked::new_event(stream, version, &event, metadata, at).link(&Link::GENESIS)
        };
        let link = link_of(&stream, 1, base, b"{}", at);
        let other_stream = StreamId::new("account", "a-2");
        let changed = [
            Linked::new_event(&stream, 1, &base, b"{}", at).link(&Link([1; 32])),
            link_of(&other_stream, 1, base, b"{}", at),
            link_of(&stream, 2, base, b"{}", at),
            link_of(&stream, 1, base, b"{ }", at),
            link_of(&stream, 1, base, b"{}", Timestamp::from_micros(1_001)),
        ];
        for c in changed {
            assert_ne!(c, link);
        }
        let changes: [fn(&mut NewEvent<'static>); 4] = [
            |e| e.payload = br#"{"amount":900}"#,
            |e| e.name = "Withdrawn",
            |e| e.schema_version = 2,
            |e| e.event_id = EventId::from(uuid::Uuid::from_u128(8)),
        ];
        for change in changes {
            let mut event = base;
            change(&mut event);
            assert_ne!(link_of(&stream, 1, event, b"{}", at), link);
        }
        // Length prefixes: moving a byte from one field to the next changes it.
        let a = StreamId::new("ab", "c");
        let b = StreamId::new("a", "bc");
        assert_ne!(
            Linked::new_event(&a, 1, &base, b"", at).link(&Link::GENESIS),
            Linked::new_event(&b, 1, &base, b"", at).link(&Link::GENESIS)
        );
    }

    #[test]
    fn links_print_and_parse_as_hex() {
        let link = Link::sha256(b"abc");
        assert_eq!(
            link.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Link::from_hex(&link.to_string()), Some(link));
        assert_eq!(Link::from_hex(&link.to_string().to_uppercase()), Some(link));
        assert_eq!(Link::from_hex("zz"), None);
        assert_eq!(Link::from_hex(&"g".repeat(64)), None);
        // A sign is not a digit, though `u8::from_str_radix` would take it.
        assert_eq!(Link::from_hex(&format!("+f{}", "0".repeat(62))), None);
    }
}
