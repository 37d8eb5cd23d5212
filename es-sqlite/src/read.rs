//! Reading rows back: checked cells and the visitor each read feeds.

use std::ops::ControlFlow;

use es_core::store::{ContextFields, Link, RecordedEvent};
use es_core::{EventId, StoreError, StreamId, Timestamp};

use crate::packed::Packed;
use crate::{corrupt, error};

/// A count, version or position read from a row, which must not be negative.
pub(crate) fn stored_u64(v: i64, what: impl FnOnce() -> String) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(what()))
}

/// Reads column `i` of `row` with `read`, naming the event (`at`) and the
/// column in the error: a row that does not read is corrupt, and says where.
pub(crate) fn cell<'r, T>(
    row: &'r rusqlite::Row<'_>,
    i: usize,
    column: &str,
    at: &dyn Fn() -> String,
    read: impl FnOnce(rusqlite::types::ValueRef<'r>) -> rusqlite::types::FromSqlResult<T>,
) -> Result<T, StoreError> {
    let value = row.get_ref(i).map_err(error("read an event row"))?;
    read(value).map_err(|e| corrupt(format!("{} has an unreadable `{column}`: {e}", at())))
}

/// A stored version, which must not be negative.
pub(crate) fn version_cell(row: &rusqlite::Row<'_>, i: usize, at: &dyn Fn() -> String) -> Result<u64, StoreError> {
    let v = cell(row, i, "version", at, |v| v.as_i64())?;
    u64::try_from(v).map_err(|_| corrupt(format!("{} has version {v}", at())))
}

/// A stored schema version, which must fit a `u32`.
pub(crate) fn schema_version_cell(
    row: &rusqlite::Row<'_>,
    i: usize,
    at: &dyn Fn() -> String,
) -> Result<u32, StoreError> {
    let v = cell(row, i, "schema_version", at, |v| v.as_i64())?;
    u32::try_from(v).map_err(|_| corrupt(format!("{} has schema version {v}, outside 0..=4294967295", at())))
}

/// Where a log read's columns are, worked out once per read from the
/// fields it selects; `None` for a field left out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Columns {
    /// The fields selected.
    fields: ContextFields,
    /// Whether the names, the schema version and the payload come from the
    /// row's `packed` cell (column 1, see [`crate::packed`]) rather than
    /// from cells of their own (columns 1 to 3, and the stream's names
    /// where selected): a file of schema version 5 or later.
    packed: bool,
    event_id: Option<usize>,
    aggregate_type: Option<usize>,
    aggregate_id: Option<usize>,
    version: Option<usize>,
    metadata: Option<usize>,
    recorded_at: Option<usize>,
    link: Option<usize>,
}

impl Columns {
    /// The select list of a read of `fields` and where each field is in
    /// it. With `packed` cells: `position, packed`, then those of
    /// `event_id, version, metadata, recorded_at, link` in `fields` (the
    /// stream's names are in the packed cell). Without (a file from before
    /// schema version 5, opened read-only): `ContextFields::sql_columns`.
    pub(crate) fn select(fields: ContextFields, packed: bool) -> (String, Self) {
        if !packed {
            let columns = Columns {
                fields,
                packed,
                event_id: fields.column(ContextFields::EVENT_ID),
                aggregate_type: fields.column(ContextFields::AGGREGATE_TYPE),
                aggregate_id: fields.column(ContextFields::AGGREGATE_ID),
                version: fields.column(ContextFields::VERSION),
                metadata: fields.column(ContextFields::METADATA),
                recorded_at: fields.column(ContextFields::RECORDED_AT),
                link: fields.column(ContextFields::LINK),
            };
            return (fields.sql_columns(), columns);
        }
        let mut list = String::from("position, packed");
        let mut count = 2;
        let mut take = |field: ContextFields, name: &str| {
            if !fields.contains(field) {
                return None;
            }
            list.push_str(", ");
            list.push_str(name);
            count += 1;
            Some(count - 1)
        };
        let columns = Columns {
            fields,
            packed,
            event_id: take(ContextFields::EVENT_ID, "event_id"),
            aggregate_type: None,
            aggregate_id: None,
            version: take(ContextFields::VERSION, "version"),
            metadata: take(ContextFields::METADATA, "metadata"),
            recorded_at: take(ContextFields::RECORDED_AT, "recorded_at"),
            link: take(ContextFields::LINK, "link"),
        };
        (list, columns)
    }
}

/// Reads one event row with the columns of `columns`; the fields left out
/// are empty. A row whose every cell has the type it should is read
/// straight; any other goes to [`visit_checked_row`], which names what is
/// wrong with it. `conn` is the connection reading: a row the migration
/// to packed cells could not read is read again from its own cells.
#[inline]
pub(crate) fn visit_row(
    conn: &rusqlite::Connection,
    row: &rusqlite::Row<'_>,
    columns: &Columns,
    stream: Option<&StreamId>,
    visit: &mut (impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send),
) -> Result<ControlFlow<()>, StoreError> {
    match plain_row(row, columns, stream) {
        Some(event) => Ok(visit(&event)),
        None => visit_checked_row(conn, row, columns, stream, visit),
    }
}

/// The fields a read of one stream selects: its version always, and not
/// its names, which the caller already has.
pub(crate) fn stream_fields(fields: ContextFields) -> ContextFields {
    let names = ContextFields::AGGREGATE_TYPE.union(ContextFields::AGGREGATE_ID);
    ContextFields::from_bits((fields.bits() | ContextFields::VERSION.bits()) & !names.bits())
}

/// The row as an event if every cell read has the expected type and range.
#[inline]
fn plain_row<'r>(
    row: &'r rusqlite::Row<'_>,
    columns: &Columns,
    stream: Option<&'r StreamId>,
) -> Option<RecordedEvent<'r>> {
    use rusqlite::types::ValueRef;
    let int = |i: usize| match row.get_ref(i) {
        Ok(ValueRef::Integer(v)) => Some(v),
        _ => None,
    };
    let text = |i: Option<usize>| match i {
        None => Some(""),
        Some(i) => match row.get_ref(i) {
            Ok(ValueRef::Text(t)) => std::str::from_utf8(t).ok(),
            _ => None,
        },
    };
    let blob = |i: Option<usize>| match i {
        None => Some(&[][..]),
        Some(i) => match row.get_ref(i) {
            Ok(ValueRef::Blob(b)) => Some(b),
            _ => None,
        },
    };
    let (aggregate_type, aggregate_id, name, schema_version, payload) = if columns.packed {
        let packed = Packed::read(blob(Some(1))?).ok()?;
        (
            packed.aggregate_type,
            packed.aggregate_id,
            packed.name,
            packed.schema_version,
            packed.payload,
        )
    } else {
        (
            text(columns.aggregate_type)?,
            text(columns.aggregate_id)?,
            text(Some(1))?,
            u32::try_from(int(2)?).ok()?,
            blob(Some(3))?,
        )
    };
    Some(RecordedEvent {
        position: u64::try_from(int(0)?).ok()?,
        name,
        schema_version,
        payload,
        event_id: match columns.event_id {
            Some(_) => uuid_from(blob(columns.event_id)?)?,
            None => EventId::from(uuid::Uuid::nil()),
        },
        aggregate_type: match stream {
            Some(stream) => stream.aggregate_type(),
            None => aggregate_type,
        },
        aggregate_id: match stream {
            Some(stream) => stream.aggregate_id(),
            None => aggregate_id,
        },
        version: match columns.version {
            Some(i) => u64::try_from(int(i)?).ok()?,
            None => 0,
        },
        metadata: blob(columns.metadata)?,
        recorded_at: Timestamp::from_micros(match columns.recorded_at {
            Some(i) => int(i)?,
            None => 0,
        }),
        link: match columns.link {
            Some(_) => Link::from_slice(blob(columns.link)?)?,
            None => Link::GENESIS,
        },
    })
}

/// Reads one event row with the columns of `columns`, checking each cell
/// and naming the event and the column of any that does not read; the
/// fields left out are empty.
#[cold]
pub(crate) fn visit_checked_row(
    conn: &rusqlite::Connection,
    row: &rusqlite::Row<'_>,
    columns: &Columns,
    stream: Option<&StreamId>,
    visit: &mut (impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send),
) -> Result<ControlFlow<()>, StoreError> {
    let raw_position = cell(row, 0, "position", &|| "an event".to_owned(), |v| v.as_i64())?;
    let position = u64::try_from(raw_position)
        .map_err(|_| corrupt(format!("the log holds an event at position {raw_position}")))?;
    let at_position = || format!("the event at position {position}");
    let packed = match columns.packed {
        false => None,
        true => match row.get_ref(1).map_err(error("read an event row"))? {
            // A row the migration could not read keeps its own cells.
            rusqlite::types::ValueRef::Null => return visit_unpacked_row(conn, raw_position, columns, stream, visit),
            value => {
                // Named as the other errors name it, from the other cells:
                // the packed one does not read.
                let version = || columns.version.and_then(|i| row.get_ref(i).ok()?.as_i64().ok());
                let at = || match (stream, version()) {
                    (Some(stream), Some(version)) => format!("version {version} of stream `{stream}`"),
                    _ => match stream_cells(conn, raw_position) {
                        Some(names) => format!("{} (stream `{names}`)", at_position()),
                        None => at_position(),
                    },
                };
                let bytes = value
                    .as_blob()
                    .map_err(|e| corrupt(format!("{} has an unreadable `packed`: {e}", at())))?;
                Some(Packed::read(bytes).map_err(|e| corrupt(format!("{} has an unreadable `packed`: {e}", at())))?)
            }
        },
    };
    let text = |at: Option<usize>, column| match at {
        Some(i) => cell(row, i, column, &at_position, |v| v.as_str()),
        None => Ok(""),
    };
    let (aggregate_type, aggregate_id) = match (stream, packed) {
        (Some(stream), _) => (stream.aggregate_type(), stream.aggregate_id()),
        (None, Some(packed)) => (packed.aggregate_type, packed.aggregate_id),
        (None, None) => (
            text(columns.aggregate_type, "aggregate_type")?,
            text(columns.aggregate_id, "aggregate_id")?,
        ),
    };
    let in_log = || format!("the event at position {position} (stream `{aggregate_type}/{aggregate_id}`)");
    let version = match columns.version {
        Some(i) => version_cell(row, i, &in_log)?,
        None => 0,
    };
    // A read of a stream names the event by its version there.
    let at = || match stream {
        Some(stream) => format!("version {version} of stream `{stream}`"),
        None => in_log(),
    };
    let event_id = match columns.event_id {
        Some(i) => {
            let id_bytes = cell(row, i, "event_id", &at, |v| v.as_blob())?;
            uuid_from(id_bytes)
                .ok_or_else(|| corrupt(format!("{} has an id of {} bytes, not 16", at(), id_bytes.len())))?
        }
        None => EventId::from(uuid::Uuid::nil()),
    };
    let (name, schema_version, payload) = match packed {
        Some(packed) => (packed.name, packed.schema_version, packed.payload),
        None => (
            cell(row, 1, "name", &at, |v| v.as_str())?,
            schema_version_cell(row, 2, &at)?,
            cell(row, 3, "payload", &at, |v| v.as_blob())?,
        ),
    };
    let event = RecordedEvent {
        event_id,
        aggregate_type,
        aggregate_id,
        version,
        position,
        name,
        schema_version,
        payload,
        metadata: match columns.metadata {
            Some(i) => cell(row, i, "metadata", &at, |v| v.as_blob())?,
            None => &[],
        },
        recorded_at: Timestamp::from_micros(match columns.recorded_at {
            Some(i) => cell(row, i, "recorded_at", &at, |v| v.as_i64())?,
            None => 0,
        }),
        link: match columns.link {
            Some(i) => {
                let bytes = cell(row, i, "link", &at, |v| v.as_blob())?;
                Link::from_slice(bytes)
                    .ok_or_else(|| corrupt(format!("{} has a link of {} bytes, not 32", at(), bytes.len())))?
            }
            None => Link::GENESIS,
        },
    };
    Ok(visit(&event))
}

/// Reads the row at `position` again from its own cells: a row without a
/// packed cell (one the migration to schema version 5 could not read).
#[cold]
fn visit_unpacked_row(
    conn: &rusqlite::Connection,
    position: i64,
    columns: &Columns,
    stream: Option<&StreamId>,
    visit: &mut (impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send),
) -> Result<ControlFlow<()>, StoreError> {
    let (list, unpacked) = Columns::select(columns.fields, false);
    let mut stmt = conn
        .prepare(&format!("SELECT {list} FROM es_events WHERE position = ?1"))
        .map_err(error("read an unpacked event row"))?;
    let mut rows = stmt.query([position]).map_err(error("read an unpacked event row"))?;
    match rows.next().map_err(error("read an unpacked event row"))? {
        Some(row) => visit_row(conn, row, &unpacked, stream, visit),
        None => Err(corrupt(format!(
            "the event at position {position} went away while it was read"
        ))),
    }
}

/// The stream names in the cells of the row at `position`, as
/// `type/id`, if they read: to name a row whose packed cell does not.
fn stream_cells(conn: &rusqlite::Connection, position: i64) -> Option<String> {
    conn.query_row(
        "SELECT aggregate_type, aggregate_id FROM es_events WHERE position = ?1",
        [position],
        |r| Ok(format!("{}/{}", r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
    )
    .ok()
}

pub(crate) fn uuid_from(bytes: &[u8]) -> Option<EventId> {
    let bytes: [u8; 16] = bytes.try_into().ok()?;
    Some(EventId::from(uuid::Uuid::from_bytes(bytes)))
}
