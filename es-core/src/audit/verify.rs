//! Verifying a store, and proving one event.

use std::fmt;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::merkle::{MerkleLog, verify_inclusion};
use super::seal::{AuditError, PublicKey, SEAL_EVENT, SEAL_STREAM_ID, SEAL_STREAM_TYPE, Seal};
use crate::store::{ContextFields, EventStore, FOREIGN, Heads, Link, RecordedEvent};
use crate::{EventId, StreamId, Timestamp};

/// What [`verify`] checks against besides the store itself.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The keys seals may be signed with. Empty: any key (the report then
    /// says so: a seal proves only that it is intact, not who made it).
    pub trusted: Vec<PublicKey>,
    /// A head exported earlier and kept elsewhere: the log must have grown
    /// from it (its first `size` events still have its root).
    pub head: Option<Seal>,
    /// How many problems the report lists (the rest are counted).
    pub max_problems: usize,
    /// How many events each read of the log asks for.
    pub page: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            trusted: Vec::new(),
            head: None,
            max_problems: 100,
            page: 4_096,
        }
    }
}

/// A place where the store is not what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The event's stored form does not hash to its link chained to the one
    /// before it: its payload, metadata, name, id, time or place changed,
    /// or an event before it in its stream did.
    Changed {
        /// Its stream.
        stream: StreamId,
        /// Its version.
        version: u64,
        /// Its position.
        position: u64,
    },
    /// The stream skips versions (events removed, or moved out of order).
    Missing {
        /// Its stream.
        stream: StreamId,
        /// The version that should have come next.
        expected: u64,
        /// The version found.
        found: u64,
        /// Where it was found.
        position: u64,
    },
    /// A seal's root is not the root of the events it covers: an event
    /// among them was changed, removed, added or reordered with its chain
    /// recomputed. The first difference is among the events at positions
    /// `first..=last`.
    SealMismatch {
        /// The seal's position in the log.
        seal_position: u64,
        /// How many events it covers.
        size: u64,
        /// The first position of the range the difference is in.
        first: u64,
        /// The last position of that range.
        last: u64,
    },
    /// A seal that does not hold for another reason: its signature, its
    /// key, its predecessor, or the position it names.
    BadSeal {
        /// The seal's position in the log.
        seal_position: u64,
        /// What is wrong.
        detail: String,
    },
    /// The log is not the one an exported head describes: it did not only
    /// grow since. The first difference is among the events at positions
    /// `first..=last`.
    HeadMismatch {
        /// The head's size.
        size: u64,
        /// The first position of the range the difference is in.
        first: u64,
        /// The last position of that range.
        last: u64,
    },
    /// The exported head does not hold (signature, key), or covers more
    /// events than the log has: its tail was cut.
    BadHead {
        /// What is wrong.
        detail: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Changed {
                stream,
                version,
                position,
            } => write!(
                f,
                "version {version} of stream `{stream}` (position {position}) is not what was written: its stored form does not match its link"
            ),
            Problem::Missing {
                stream,
                expected,
                found,
                position,
            } => write!(
                f,
                "stream `{stream}` goes from version {} to {found} at position {position}: version {expected} is missing or out of order",
                expected - 1
            ),
            Problem::SealMismatch {
                seal_position,
                size,
                first,
                last,
            } => write!(
                f,
                "the seal at position {seal_position} (of {size} events) does not match the log: an event at positions {first}..={last} was changed, removed, added or reordered"
            ),
            Problem::BadSeal { seal_position, detail } => {
                write!(f, "the seal at position {seal_position} does not hold: {detail}")
            }
            Problem::HeadMismatch { size, first, last } => write!(
                f,
                "the log does not extend the exported head of {size} events: an event at positions {first}..={last} was changed, removed, added or reordered"
            ),
            Problem::BadHead { detail } => write!(f, "the exported head does not hold: {detail}"),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Events read (foreign entries aside).
    pub events: u64,
    /// Streams seen.
    pub streams: u64,
    /// Seals checked.
    pub seals: u64,
    /// Entries of the log that are not events, skipped.
    pub foreign: u64,
    /// The last seal in the log.
    pub last_seal: Option<Seal>,
    /// Events after the last seal's size: their chains are checked, but
    /// nothing signed covers them yet.
    pub unsealed: u64,
    /// Whether seals were checked without trusted keys.
    pub any_key: bool,
    /// Whether an exported head was checked.
    pub head_checked: bool,
    /// The problems found, in log order, up to the limit.
    pub problems: Vec<Problem>,
    /// Problems found beyond the limit.
    pub more_problems: u64,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.more_problems == 0
    }
}

struct Verifier {
    options: VerifyOptions,
    heads: Heads,
    tree: MerkleLog,
    /// The log position of each leaf.
    positions: Vec<u64>,
    report: Report,
}

impl Verifier {
    fn problem(&mut self, problem: Problem) {
        if self.report.problems.len() < self.options.max_problems {
            self.report.problems.push(problem);
        } else {
            self.report.more_problems += 1;
        }
    }

    fn event(&mut self, e: &RecordedEvent<'_>) {
        if e.name == FOREIGN {
            self.report.foreign += 1;
            return;
        }
        self.report.events += 1;
        let head = self.heads.get(e.aggregate_type, e.aggregate_id);
        let expected = head.map_or(1, |h| h.0 + 1);
        let previous = head.map_or(Link::GENESIS, |h| h.1);
        if e.version != expected {
            self.problem(Problem::Missing {
                stream: e.stream(),
                expected,
                found: e.version,
                position: e.position,
            });
        } else if e.compute_link(&previous) != e.link {
            self.problem(Problem::Changed {
                stream: e.stream(),
                version: e.version,
                position: e.position,
            });
        }
        if head.is_none() {
            self.report.streams += 1;
        }
        // The stored link goes on: one changed event is reported once.
        self.heads.set(e.aggregate_type, e.aggregate_id, e.version, e.link);
        self.tree.push(&e.link);
        self.positions.push(e.position);
        if e.name == SEAL_EVENT && e.aggregate_type == SEAL_STREAM_TYPE && e.aggregate_id == SEAL_STREAM_ID {
            self.seal(e.position, e.payload);
        }
    }

    fn seal(&mut self, at: u64, payload: &[u8]) {
        self.report.seals += 1;
        let bad = |detail: String| Problem::BadSeal {
            seal_position: at,
            detail,
        };
        let seal: Seal = match serde_json::from_slice(payload) {
            Ok(seal) => seal,
            Err(e) => return self.problem(bad(format!("it does not read: {e}"))),
        };
        if let Err(e) = seal.verify(&self.options.trusted) {
            self.problem(bad(e.to_string()));
        }
        let previous = self.report.last_seal.as_ref().map_or(Link::GENESIS, Seal::hash);
        if seal.previous != previous {
            self.problem(bad("it does not name the seal before it".to_owned()));
        }
        // The leaves before this seal's own.
        let before = self.tree.len() - 1;
        if seal.size > before {
            // Fewer events than it covers: some after the seal before it
            // were removed.
            let since = self.report.last_seal.as_ref().map_or(0, |s| s.size.min(before));
            let first = match before {
                0 => 1,
                _ => self.positions[since.min(before - 1) as usize],
            };
            let (first, last) = (first, at - 1);
            self.problem(Problem::SealMismatch {
                seal_position: at,
                size: seal.size,
                first,
                last,
            });
        } else if let Some((first, last)) = self.difference(&seal) {
            self.problem(Problem::SealMismatch {
                seal_position: at,
                size: seal.size,
                first,
                last,
            });
        } else if seal.size > 0 && self.positions[seal.size as usize - 1] != seal.position {
            self.problem(bad(format!(
                "it names position {} as its last event's, which is at {}",
                seal.position,
                self.positions[seal.size as usize - 1]
            )));
        }
        self.report.last_seal = Some(seal);
    }

    /// Where the tree of `seal.size` leaves differs from the seal (the
    /// first of its perfect subtrees whose root differs, as positions), or
    /// `None` if its root is the seal's.
    fn difference(&self, seal: &Seal) -> Option<(u64, u64)> {
        let root = self.tree.root(seal.size)?;
        if root == seal.root {
            return None;
        }
        let ours = self.tree.frontier(seal.size).unwrap_or_default();
        let range = match ours.len() == seal.frontier.len() {
            true => ours
                .iter()
                .zip(&seal.frontier)
                .find(|((_, _, a), b)| a != *b)
                .map(|((lo, n, _), _)| (*lo, lo + n - 1)),
            false => None,
        };
        let (lo, hi) = range.unwrap_or((0, seal.size - 1));
        Some((self.positions[lo as usize], self.positions[hi as usize]))
    }

    fn head(&mut self, head: &Seal) {
        self.report.head_checked = true;
        if let Err(e) = head.verify(&self.options.trusted) {
            self.problem(Problem::BadHead { detail: e.to_string() });
        }
        if head.size > self.tree.len() {
            self.problem(Problem::BadHead {
                detail: format!(
                    "it covers {} events but the log has {}: events were removed from its tail",
                    head.size,
                    self.tree.len()
                ),
            });
        } else if let Some((first, last)) = self.difference(head) {
            self.problem(Problem::HeadMismatch {
                size: head.size,
                first,
                last,
            });
        }
    }
}

/// A page of the log copied out of the store's buffers into one arena, to
/// be checked on another thread while the next page is read.
#[derive(Default)]
struct Page {
    bytes: Vec<u8>,
    events: Vec<Packed>,
}

/// An event of a [`Page`]: its fixed-size fields, and where its
/// variable-length ones are in the arena.
struct Packed {
    event_id: EventId,
    version: u64,
    position: u64,
    schema_version: u32,
    recorded_at: Timestamp,
    link: Link,
    /// The ends of aggregate type, aggregate id, name, metadata and payload,
    /// back to back from `start`.
    start: usize,
    ends: [usize; 5],
}

impl Page {
    fn push(&mut self, e: &RecordedEvent<'_>) {
        let start = self.bytes.len();
        let mut ends = [0; 5];
        for (end, part) in ends.iter_mut().zip([
            e.aggregate_type.as_bytes(),
            e.aggregate_id.as_bytes(),
            e.name.as_bytes(),
            e.metadata,
            e.payload,
        ]) {
            self.bytes.extend_from_slice(part);
            *end = self.bytes.len();
        }
        self.events.push(Packed {
            event_id: e.event_id,
            version: e.version,
            position: e.position,
            schema_version: e.schema_version,
            recorded_at: e.recorded_at,
            link: e.link,
            start,
            ends,
        });
    }

    fn each(&self, mut f: impl FnMut(&RecordedEvent<'_>)) {
        for p in &self.events {
            let part = |i: usize| &self.bytes[if i == 0 { p.start } else { p.ends[i - 1] }..p.ends[i]];
            // Copied from `&str`s: still UTF-8.
            let text = |i: usize| std::str::from_utf8(part(i)).unwrap_or_default();
            f(&RecordedEvent {
                event_id: p.event_id,
                aggregate_type: text(0),
                aggregate_id: text(1),
                version: p.version,
                position: p.position,
                name: text(2),
                schema_version: p.schema_version,
                payload: part(4),
                metadata: part(3),
                recorded_at: p.recorded_at,
                link: p.link,
            });
        }
    }
}

/// Reads the whole log of `store` once and checks every stream's chain,
/// every seal (root, signature, predecessor) and, given one, the exported
/// head. `progress` hears of each page: events read, last position.
///
/// Reading and checking overlap: each page is copied out of the store's
/// buffers and checked on a blocking thread while the next is read.
/// Memory: the Merkle tree's levels (64 bytes per event), one head per
/// stream, and two pages.
pub async fn verify<S: EventStore>(
    store: &S,
    options: &VerifyOptions,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<Report, AuditError> {
    let mut v = Verifier {
        options: options.clone(),
        heads: Heads::default(),
        tree: MerkleLog::new(),
        positions: Vec::new(),
        report: Report::default(),
    };
    let (pages, checked) = std::sync::mpsc::sync_channel::<Page>(2);
    let checker = tokio::task::spawn_blocking(move || {
        for page in checked {
            page.each(|e| v.event(e));
        }
        v
    });
    let mut after = 0;
    let mut events = 0;
    let read = async {
        loop {
            let mut page = Page::default();
            store
                .read_all(
                    after,
                    options.page.max(1),
                    ContextFields::ALL,
                    |e: &RecordedEvent<'_>| {
                        after = e.position;
                        page.push(e);
                        ControlFlow::Continue(())
                    },
                )
                .await?;
            if page.events.is_empty() {
                return Ok::<_, AuditError>(());
            }
            events += page.events.len() as u64;
            progress(events, after);
            if pages.send(page).is_err() {
                // The checker stopped: its panic is reported below.
                return Ok(());
            }
        }
    }
    .await;
    drop(pages);
    let mut v = checker
        .await
        .map_err(|e| AuditError::Unreadable(format!("the verification failed: {e}")))?;
    read?;
    if let Some(head) = &options.head {
        v.head(head);
    }
    let sealed = v.report.last_seal.as_ref().map_or(0, |s| s.size);
    v.report.unsealed = v.tree.len().saturating_sub(sealed);
    v.report.any_key = options.trusted.is_empty() && (v.report.seals > 0 || options.head.is_some());
    Ok(v.report)
}

/// An event as stored, in the form an [`InclusionProof`] carries: every
/// field its link covers, bytes in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenEvent {
    /// The stored aggregate type of its stream.
    pub aggregate_type: String,
    /// The aggregate id of its stream.
    pub aggregate_id: String,
    /// Its version.
    pub version: u64,
    /// Its position in the log (not covered by its link; the proof's
    /// `index` places it).
    pub position: u64,
    /// Its id.
    pub event_id: EventId,
    /// Its stored name.
    pub name: String,
    /// Its schema version.
    pub schema_version: u32,
    /// When it was committed, in microseconds since the Unix epoch.
    pub recorded_at: i64,
    /// The metadata bytes as stored, in hex.
    pub metadata: String,
    /// The payload bytes as stored, in hex.
    pub payload: String,
}

/// That one event is in the log a seal signs: the event's stored form, the
/// link before it in its stream, its leaf index and audit path, and the
/// seal. [`check_proof`] checks it with the public key alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The event.
    pub event: ProvenEvent,
    /// The link of the event before it in its stream.
    pub previous: Link,
    /// Its leaf's index in the tree (its place among the log's events).
    pub index: u64,
    /// The audit path from its leaf to the seal's root (RFC 9162).
    pub path: Vec<Link>,
    /// The seal whose tree holds it.
    pub seal: Seal,
}

/// An inclusion proof for the event at `position` of `store`'s log, under
/// `seal` (the latest seal when `None`), which must cover it.
pub async fn prove<S: EventStore>(store: &S, position: u64, seal: Option<Seal>) -> Result<InclusionProof, AuditError> {
    let seal = match seal {
        Some(seal) => seal,
        None => super::latest_seal(store).await?.1.ok_or_else(|| {
            AuditError::Unreadable("the store has no seal yet: seal it first (`es audit seal`)".to_owned())
        })?,
    };
    let mut heads = Heads::default();
    let mut tree = MerkleLog::new();
    let mut found: Option<(u64, Link, ProvenEvent)> = None;
    let mut after = 0;
    while tree.len() < seal.size {
        let mut read = 0;
        store
            .read_all(after, 4_096, ContextFields::ALL, |e: &RecordedEvent<'_>| {
                read += 1;
                after = e.position;
                if e.name == FOREIGN || tree.len() >= seal.size {
                    return ControlFlow::Continue(());
                }
                let previous = heads
                    .get(e.aggregate_type, e.aggregate_id)
                    .map_or(Link::GENESIS, |h| h.1);
                if e.position == position {
                    found = Some((
                        tree.len(),
                        previous,
                        ProvenEvent {
                            aggregate_type: e.aggregate_type.to_owned(),
                            aggregate_id: e.aggregate_id.to_owned(),
                            version: e.version,
                            position: e.position,
                            event_id: e.event_id,
                            name: e.name.to_owned(),
                            schema_version: e.schema_version,
                            recorded_at: e.recorded_at.as_micros(),
                            metadata: crate::util::hex(e.metadata),
                            payload: crate::util::hex(e.payload),
                        },
                    ));
                }
                heads.set(e.aggregate_type, e.aggregate_id, e.version, e.link);
                tree.push(&e.link);
                ControlFlow::Continue(())
            })
            .await?;
        if read == 0 {
            break;
        }
    }
    let Some((index, previous, event)) = found else {
        return Err(AuditError::Unreadable(format!(
            "no event at position {position} among the {} events the seal covers (up to position {}); \
             a newer event needs a newer seal (`es audit seal`)",
            seal.size, seal.position
        )));
    };
    if tree.root(seal.size) != Some(seal.root) {
        return Err(AuditError::Unreadable(format!(
            "the log does not match the seal of {} events; run `es audit verify`",
            seal.size
        )));
    }
    let path = tree
        .inclusion_path(index, seal.size)
        .expect("the index is below the size");
    Ok(InclusionProof {
        event,
        previous,
        index,
        path,
        seal,
    })
}

/// Checks an inclusion proof with the public key alone: the event's link
/// from its stored form, the audit path to the seal's root, the seal's
/// signature by `key`. Returns the event's link.
pub fn check_proof(proof: &InclusionProof, key: &PublicKey) -> Result<Link, AuditError> {
    let refused = |why: &str| AuditError::Unreadable(format!("the proof does not hold: {why}"));
    let metadata = crate::util::from_hex(&proof.event.metadata).ok_or_else(|| refused("its metadata is not hex"))?;
    let payload = crate::util::from_hex(&proof.event.payload).ok_or_else(|| refused("its payload is not hex"))?;
    let e = &proof.event;
    let link = RecordedEvent {
        event_id: e.event_id,
        aggregate_type: &e.aggregate_type,
        aggregate_id: &e.aggregate_id,
        version: e.version,
        position: e.position,
        name: &e.name,
        schema_version: e.schema_version,
        payload: &payload,
        metadata: &metadata,
        recorded_at: Timestamp::from_micros(e.recorded_at),
        link: Link::GENESIS,
    }
    .compute_link(&proof.previous);
    proof.seal.verify(std::slice::from_ref(key))?;
    if !verify_inclusion(&link, proof.index, proof.seal.size, &proof.path, &proof.seal.root) {
        return Err(refused(
            "the event, as given, is not in the tree the seal signs (changed, or not at that index)",
        ));
    }
    Ok(link)
}
