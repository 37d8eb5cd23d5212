//! The `packed` column: what a read of the log needs of an event, in one
//! cell.
//!
//! SQLite reads a row's cells one at a time, and each costs about what its
//! bytes do: a catch-up that read the stream's names, the event's name,
//! its schema version and its payload from five cells spent more time on
//! the cells than on its own work. Since schema version 5 each event row
//! carries those fields in one blob, `packed`, and its `payload` cell is
//! empty; the other cells (`aggregate_type`, `aggregate_id`, `version`,
//! `name`, `schema_version`, ...) stay, for the indexes and for queries.
//! A row written before, which the migration could not read, keeps its
//! cells and no `packed` value, and reads from its cells.
//!
//! The layout, for tools that read or repair the file directly: a format
//! byte (1), then the aggregate type, the aggregate id and the event's
//! name, each as a little-endian `u32` length and its UTF-8 bytes, then the
//! schema version as a little-endian `u32`, then the payload to the end.
//!
//! ```
//! use es_sqlite::packed::{Packed, pack};
//!
//! let cell = pack("bank_account", "a", "account.deposited", 1, br#"{"amount":5}"#);
//! let read = Packed::read(&cell).unwrap();
//! assert_eq!(read.aggregate_id, "a");
//! assert_eq!(read.payload, br#"{"amount":5}"#);
//! let edited = read.with_payload(br#"{"amount":500}"#);
//! assert_eq!(Packed::read(&edited).unwrap().payload, br#"{"amount":500}"#);
//! ```

/// The format byte this release writes.
const FORMAT: u8 = 1;

/// An event's packed fields, borrowed from the cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed<'a> {
    /// The stream's aggregate type.
    pub aggregate_type: &'a str,
    /// The stream's aggregate id.
    pub aggregate_id: &'a str,
    /// The event's stored name.
    pub name: &'a str,
    /// The event's schema version.
    pub schema_version: u32,
    /// The encoded event.
    pub payload: &'a [u8],
}

/// Why a `packed` cell does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackedError {
    /// The format byte is not one this release reads.
    #[error("it has format {0}, and this release reads format 1")]
    Format(u8),
    /// The cell ends inside a field.
    #[error("it ends after {len} bytes, inside its {field}")]
    Short {
        /// The cell's length.
        len: usize,
        /// The field it ends in.
        field: &'static str,
    },
    /// A name is not UTF-8.
    #[error("its {0} is not UTF-8")]
    NotUtf8(&'static str),
}

/// The `packed` cell of an event.
pub fn pack(aggregate_type: &str, aggregate_id: &str, name: &str, schema_version: u32, payload: &[u8]) -> Vec<u8> {
    let mut cell = Vec::new();
    pack_into(&mut cell, aggregate_type, aggregate_id, name, schema_version, payload);
    cell
}

/// [`pack`] into `cell`, which is cleared first: an appender reuses one
/// buffer for its events.
pub(crate) fn pack_into(
    cell: &mut Vec<u8>,
    aggregate_type: &str,
    aggregate_id: &str,
    name: &str,
    schema_version: u32,
    payload: &[u8],
) {
    cell.clear();
    cell.reserve(1 + 16 + aggregate_type.len() + aggregate_id.len() + name.len() + payload.len());
    cell.push(FORMAT);
    for text in [aggregate_type, aggregate_id, name] {
        // Stream ids and names are checked to be far shorter than 4 GiB
        // before an append gets here.
        cell.extend_from_slice(&(text.len() as u32).to_le_bytes());
        cell.extend_from_slice(text.as_bytes());
    }
    cell.extend_from_slice(&schema_version.to_le_bytes());
    cell.extend_from_slice(payload);
}

impl<'a> Packed<'a> {
    /// Reads a `packed` cell.
    #[inline]
    pub fn read(cell: &'a [u8]) -> Result<Self, PackedError> {
        let mut rest = match cell.split_first() {
            Some((&FORMAT, rest)) => rest,
            Some((&other, _)) => return Err(PackedError::Format(other)),
            None => {
                return Err(PackedError::Short {
                    len: 0,
                    field: "format",
                });
            }
        };
        let short = |field| PackedError::Short { len: cell.len(), field };
        let u32_of = |rest: &mut &'a [u8], field| -> Result<u32, PackedError> {
            let (bytes, tail) = rest.split_first_chunk::<4>().ok_or_else(|| short(field))?;
            *rest = tail;
            Ok(u32::from_le_bytes(*bytes))
        };
        let text = |rest: &mut &'a [u8], field| -> Result<&'a str, PackedError> {
            let len = u32_of(rest, field)? as usize;
            if rest.len() < len {
                return Err(short(field));
            }
            let (bytes, tail) = rest.split_at(len);
            *rest = tail;
            std::str::from_utf8(bytes).map_err(|_| PackedError::NotUtf8(field))
        };
        let aggregate_type = text(&mut rest, "aggregate type")?;
        let aggregate_id = text(&mut rest, "aggregate id")?;
        let name = text(&mut rest, "name")?;
        let (schema_version, payload) = rest.split_first_chunk::<4>().ok_or_else(|| short("schema version"))?;
        Ok(Packed {
            aggregate_type,
            aggregate_id,
            name,
            schema_version: u32::from_le_bytes(*schema_version),
            payload,
        })
    }

    /// The cell of the same event with `payload` instead of its own: what
    /// a repair (or, in tests, a forgery) writes.
    pub fn with_payload(&self, payload: &[u8]) -> Vec<u8> {
        pack(
            self.aggregate_type,
            self.aggregate_id,
            self.name,
            self.schema_version,
            payload,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_reads_back_and_every_cut_is_refused_by_name() {
        let cell = pack("t", "id-é", "n", u32::MAX, b"\x00\x01");
        let read = Packed::read(&cell).unwrap();
        assert_eq!(
            read,
            Packed {
                aggregate_type: "t",
                aggregate_id: "id-é",
                name: "n",
                schema_version: u32::MAX,
                payload: b"\x00\x01",
            }
        );
        let fields = 1 + 4 + 1 + 4 + 5 + 4 + 1 + 4;
        for len in 0..fields {
            assert!(
                matches!(Packed::read(&cell[..len]), Err(PackedError::Short { .. })),
                "{len}"
            );
        }
        assert_eq!(Packed::read(&cell[..fields]).unwrap().payload, b"");
        let mut other = cell.clone();
        other[0] = 2;
        assert_eq!(Packed::read(&other), Err(PackedError::Format(2)));
        let mut bad = cell.clone();
        bad[1 + 4 + 1 + 4] = 0xff;
        assert_eq!(Packed::read(&bad), Err(PackedError::NotUtf8("aggregate id")));
        assert_eq!(
            PackedError::Short { len: 3, field: "name" }.to_string(),
            "it ends after 3 bytes, inside its name"
        );
    }
}
