//! Reading rows back: checked cells and the visitor each read feeds.

use std::ops::ControlFlow;

use es_core::store::{ContextFields, Link, RecordedEvent};
use es_core::{EventId, StoreError, StreamId, Timestamp};

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
/// fields it selects (`ContextFields::sql_columns`); `None` for a field
/// left out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Columns {
    event_id: Option<usize>,
    aggregate_type: Option<usize>,
    aggregate_id: Option<usize>,
    version: Option<usize>,
    metadata: Option<usize>,
    recorded_at: Option<usize>,
    link: Option<usize>,
}

impl Columns {
    pub(crate) const fn of(fields: ContextFields) -> Self {
        Columns {
            event_id: fields.column(ContextFields::EVENT_ID),
            aggregate_type: fields.column(ContextFields::AGGREGATE_TYPE),
            aggregate_id: fields.column(ContextFields::AGGREGATE_ID),
            version: fields.column(ContextFields::VERSION),
            metadata: fields.column(ContextFields::METADATA),
            recorded_at: fields.column(ContextFields::RECORDED_AT),
            link: fields.column(ContextFields::LINK),
        }
    }
}

/// Reads one event row with the columns of `columns`; the fields left out
/// are empty. A row whose every cell has the type it should is read
/// straight; any other goes to [`visit_checked_row`], which names what is
/// wrong with it.
#[inline]
pub(crate) fn visit_row(
    row: &rusqlite::Row<'_>,
    columns: &Columns,
    stream: Option<&StreamId>,
    visit: &mut (impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send),
) -> Result<ControlFlow<()>, StoreError> {
    match plain_row(row, columns, stream) {
        Some(event) => Ok(visit(&event)),
        None => visit_checked_row(row, columns, stream, visit),
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
    Some(RecordedEvent {
        position: u64::try_from(int(0)?).ok()?,
        name: text(Some(1))?,
        schema_version: u32::try_from(int(2)?).ok()?,
        payload: blob(Some(3))?,
        event_id: match columns.event_id {
            Some(_) => uuid_from(blob(columns.event_id)?)?,
            None => EventId::from(uuid::Uuid::nil()),
        },
        aggregate_type: match stream {
            Some(stream) => stream.aggregate_type(),
            None => text(columns.aggregate_type)?,
        },
        aggregate_id: match stream {
            Some(stream) => stream.aggregate_id(),
            None => text(columns.aggregate_id)?,
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
    row: &rusqlite::Row<'_>,
    columns: &Columns,
    stream: Option<&StreamId>,
    visit: &mut (impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send),
) -> Result<ControlFlow<()>, StoreError> {
    let raw_position = cell(row, 0, "position", &|| "an event".to_owned(), |v| v.as_i64())?;
    let position = u64::try_from(raw_position)
        .map_err(|_| corrupt(format!("the log holds an event at position {raw_position}")))?;
    let at_position = || format!("the event at position {position}");
    let text = |at: Option<usize>, column| match at {
        Some(i) => cell(row, i, column, &at_position, |v| v.as_str()),
        None => Ok(""),
    };
    let (aggregate_type, aggregate_id) = match stream {
        Some(stream) => (stream.aggregate_type(), stream.aggregate_id()),
        None => (
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
    let event = RecordedEvent {
        event_id,
        aggregate_type,
        aggregate_id,
        version,
        position,
        name: cell(row, 1, "name", &at, |v| v.as_str())?,
        schema_version: schema_version_cell(row, 2, &at)?,
        payload: cell(row, 3, "payload", &at, |v| v.as_blob())?,
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

pub(crate) fn uuid_from(bytes: &[u8]) -> Option<EventId> {
    let bytes: [u8; 16] = bytes.try_into().ok()?;
    Some(EventId::from(uuid::Uuid::from_bytes(bytes)))
}
