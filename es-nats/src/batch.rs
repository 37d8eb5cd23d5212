//! The bytes of a stored batch, a command record and a snapshot.
//!
//! A batch message (format 1), integers little-endian:
//!
//! ```text
//! u8 format = 1
//! u16 len, aggregate type | u16 len, aggregate id      (UTF-8)
//! u64 first version | i64 recorded at (µs since the epoch)
//! u32 len, metadata | u16 len, command id (0: none)
//! u32 event count, then per event:
//!   [16] event id | u16 len, name | u32 schema version | u32 len, payload
//! ```

use es_core::store::{AppendRequest, Snapshot};
use es_core::{EventId, StreamId, Timestamp};

const FORMAT: u8 = 1;

/// One event of a decoded batch, borrowing the message.
pub(crate) struct BatchEvent<'a> {
    pub(crate) event_id: EventId,
    pub(crate) name: &'a str,
    pub(crate) schema_version: u32,
    pub(crate) payload: &'a [u8],
}

/// A decoded batch message.
pub(crate) struct Batch<'a> {
    pub(crate) aggregate_type: &'a str,
    pub(crate) aggregate_id: &'a str,
    pub(crate) first_version: u64,
    pub(crate) recorded_at: Timestamp,
    pub(crate) metadata: &'a [u8],
    pub(crate) events: Vec<BatchEvent<'a>>,
}

impl Batch<'_> {
    /// The stream version after the batch.
    pub(crate) fn last_version(&self) -> u64 {
        (self.first_version + self.events.len() as u64).saturating_sub(1)
    }
}

fn put_len(out: &mut Vec<u8>, bytes: &[u8], wide: bool) {
    if wide {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(bytes);
}

/// Encodes `request`'s events as a batch starting at `first_version`.
pub(crate) fn encode(first_version: u64, request: &AppendRequest<'_>) -> Vec<u8> {
    let size: usize = request
        .events
        .iter()
        .map(|e| 26 + e.name.len() + e.payload.len())
        .sum::<usize>()
        + 64
        + request.metadata.len()
        + request.stream.aggregate_id().len();
    let mut out = Vec::with_capacity(size);
    out.push(FORMAT);
    put_len(&mut out, request.stream.aggregate_type().as_bytes(), false);
    put_len(&mut out, request.stream.aggregate_id().as_bytes(), false);
    out.extend_from_slice(&first_version.to_le_bytes());
    out.extend_from_slice(&request.recorded_at.as_micros().to_le_bytes());
    put_len(&mut out, request.metadata, true);
    put_len(&mut out, request.command_id.unwrap_or_default().as_bytes(), false);
    out.extend_from_slice(&(request.events.len() as u32).to_le_bytes());
    for e in request.events {
        out.extend_from_slice(e.event_id.as_uuid().as_bytes());
        put_len(&mut out, e.name.as_bytes(), false);
        out.extend_from_slice(&e.schema_version.to_le_bytes());
        put_len(&mut out, e.payload, true);
    }
    out
}

/// Reads what [`encode`] wrote.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!("{} bytes missing at the end", n - self.bytes.len()));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().map_err(|_| "short")?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "short")?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "short")?))
    }

    fn bytes(&mut self, wide: bool) -> Result<&'a [u8], String> {
        let len = if wide {
            self.u32()? as usize
        } else {
            usize::from(self.u16()?)
        };
        self.take(len)
    }

    fn text(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes(false)?).map_err(|e| format!("a name that is not UTF-8: {e}"))
    }
}

impl<'a> Batch<'a> {
    /// Decodes a batch message.
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<Self, String> {
        let mut r = Reader { bytes };
        let format = r.take(1)?[0];
        if format != FORMAT {
            return Err(format!(
                "batch format {format}, which this release cannot read (it reads {FORMAT})"
            ));
        }
        let aggregate_type = r.text()?;
        let aggregate_id = r.text()?;
        let first_version = r.u64()?;
        let recorded_at = Timestamp::from_micros(r.u64()? as i64);
        let metadata = r.bytes(true)?;
        let _command_id = r.text()?;
        let count = r.u32()? as usize;
        let mut events = Vec::with_capacity(count.min(bytes.len() / 26));
        for _ in 0..count {
            let id: [u8; 16] = r.take(16)?.try_into().map_err(|_| "short id")?;
            let name = r.text()?;
            let schema_version = r.u32()?;
            let payload = r.bytes(true)?;
            events.push(BatchEvent {
                event_id: EventId::from(uuid::Uuid::from_bytes(id)),
                name,
                schema_version,
                payload,
            });
        }
        if first_version == 0 || events.is_empty() {
            return Err("an empty batch, or one starting at version 0".to_owned());
        }
        Ok(Batch {
            aggregate_type,
            aggregate_id,
            first_version,
            recorded_at,
            metadata,
            events,
        })
    }
}

/// A command's record: its versions, and the stream and id it stands for
/// (the key is a hash of them).
pub(crate) fn encode_command(stream: &StreamId, command_id: &str, first: u64, last: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&last.to_le_bytes());
    put_len(&mut out, stream.aggregate_type().as_bytes(), false);
    put_len(&mut out, stream.aggregate_id().as_bytes(), false);
    put_len(&mut out, command_id.as_bytes(), false);
    out
}

/// The record of `command_id` on `stream`, if `bytes` is that record.
pub(crate) fn decode_command(
    bytes: &[u8],
    stream: &StreamId,
    command_id: &str,
) -> Option<es_core::store::CommandRecord> {
    let mut r = Reader { bytes };
    let first_version = r.u64().ok()?;
    let last_version = r.u64().ok()?;
    let same = r.text().ok()? == stream.aggregate_type()
        && r.text().ok()? == stream.aggregate_id()
        && r.text().ok()? == command_id;
    same.then(|| es_core::store::CommandRecord {
        command_id: command_id.to_owned(),
        stream: stream.clone(),
        first_version,
        last_version,
    })
}

/// A snapshot with the stream it belongs to.
pub(crate) fn encode_snapshot(stream: &StreamId, snapshot: &Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(snapshot.payload.len() + 64);
    put_len(&mut out, stream.aggregate_type().as_bytes(), false);
    put_len(&mut out, stream.aggregate_id().as_bytes(), false);
    out.extend_from_slice(&snapshot.version.to_le_bytes());
    out.extend_from_slice(&snapshot.schema_version.to_le_bytes());
    out.extend_from_slice(&snapshot.fingerprint.to_le_bytes());
    put_len(&mut out, &snapshot.payload, true);
    out
}

/// The snapshot of `stream`, if `bytes` is one of it.
pub(crate) fn decode_snapshot(bytes: &[u8], stream: &StreamId) -> Option<Snapshot> {
    let mut r = Reader { bytes };
    if r.text().ok()? != stream.aggregate_type() || r.text().ok()? != stream.aggregate_id() {
        return None;
    }
    Some(Snapshot {
        version: r.u64().ok()?,
        schema_version: r.u32().ok()?,
        fingerprint: r.u64().ok()?,
        payload: r.bytes(true).ok()?.to_vec(),
    })
}
