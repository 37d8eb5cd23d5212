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
//! byte (1); the lengths in bytes of the aggregate type, the aggregate id
//! and the event's name, each a little-endian `u32`; those three texts,
//! UTF-8, one after another (checked as one: a cell is read with one UTF-8
//! check); the schema version as a little-endian `u32`; the payload to the
//! end.
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
    // Stream ids and names are checked to be far shorter than 4 GiB before
    // an append gets here.
    for text in [aggregate_type, aggregate_id, name] {
        cell.extend_from_slice(&(text.len() as u32).to_le_bytes());
    }
    for text in [aggregate_type, aggregate_id, name] {
        cell.extend_from_slice(text.as_bytes());
    }
    cell.extend_from_slice(&schema_version.to_le_bytes());
    cell.extend_from_slice(payload);
}

impl<'a> Packed<'a> {
    /// Reads a `packed` cell.
    #[inline]
    pub fn read(cell: &'a [u8]) -> Result<Self, PackedError> {
        let short = |field| PackedError::Short { len: cell.len(), field };
        let rest = match cell.split_first() {
            Some((&FORMAT, rest)) => rest,
            Some((&other, _)) => return Err(PackedError::Format(other)),
            None => return Err(short("format")),
        };
        let (lengths, rest) = rest.split_first_chunk::<12>().ok_or_else(|| short("lengths"))?;
        let length =
            |i: usize| u32::from_le_bytes([lengths[i], lengths[i + 1], lengths[i + 2], lengths[i + 3]]) as usize;
        let (type_len, id_len, name_len) = (length(0), length(4), length(8));
        // Each is under 4 GiB: on 64-bit targets their sum cannot overflow,
        // and on 32-bit ones a sum that would is refused as running short.
        let texts_len = type_len
            .checked_add(id_len)
            .and_then(|n| n.checked_add(name_len))
            .ok_or_else(|| short("aggregate type"))?;
        if rest.len() < texts_len {
            let field = match rest.len() {
                n if n < type_len => "aggregate type",
                n if n < type_len + id_len => "aggregate id",
                _ => "name",
            };
            return Err(short(field));
        }
        let (texts, rest) = rest.split_at(texts_len);
        let texts = std::str::from_utf8(texts).map_err(|e| {
            PackedError::NotUtf8(match e.valid_up_to() {
                n if n < type_len => "aggregate type",
                n if n < type_len + id_len => "aggregate id",
                _ => "name",
            })
        })?;
        // Valid as a whole, each must also start and end on a character.
        let (aggregate_type, texts) = texts
            .split_at_checked(type_len)
            .ok_or(PackedError::NotUtf8("aggregate type"))?;
        let (aggregate_id, name) = texts
            .split_at_checked(id_len)
            .ok_or(PackedError::NotUtf8("aggregate id"))?;
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
        let fields = 1 + 12 + 1 + 5 + 1 + 4;
        let expected = |len: usize| match len {
            0 => "format",
            1..13 => "lengths",
            13 => "aggregate type",
            14..19 => "aggregate id",
            19 => "name",
            _ => "schema version",
        };
        for len in 0..fields {
            assert_eq!(
                Packed::read(&cell[..len]),
                Err(PackedError::Short {
                    len,
                    field: expected(len)
                }),
                "{len}"
            );
        }
        assert_eq!(Packed::read(&cell[..fields]).unwrap().payload, b"");
        let mut other = cell.clone();
        other[0] = 2;
        assert_eq!(Packed::read(&other), Err(PackedError::Format(2)));
        let mut bad = cell.clone();
        bad[13 + 1 + 3] = 0xff;
        assert_eq!(Packed::read(&bad), Err(PackedError::NotUtf8("aggregate id")));
        // Lengths that split the `é` of the id: the whole is UTF-8, the
        // parts are not.
        let mut split = cell.clone();
        split[5] = 4;
        split[9] = 2;
        assert_eq!(Packed::read(&split), Err(PackedError::NotUtf8("aggregate id")));
        assert_eq!(
            PackedError::Short { len: 3, field: "name" }.to_string(),
            "it ends after 3 bytes, inside its name"
        );
    }
}
