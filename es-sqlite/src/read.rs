//! Reading rows back: checked cells and the visitor each read feeds.

use std::ops::ControlFlow;

use es_core::store::{ContextFields, RecordedEvent, Visitor};
use es_core::{EventId, StoreError, Timestamp};

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

/// Reads one event row with the columns of `fields.sql_columns()`; the
/// fields outside `fields` are left empty.
pub(crate) fn visit_row(
    row: &rusqlite::Row<'_>,
    fields: ContextFields,
    visit: &mut impl Visitor,
) -> Result<ControlFlow<()>, StoreError> {
    let raw_position = cell(row, 0, "position", &|| "an event".to_owned(), |v| v.as_i64())?;
    let position = u64::try_from(raw_position)
        .map_err(|_| corrupt(format!("the log holds an event at position {raw_position}")))?;
    let at_position = || format!("the event at position {position}");
    let text = |field, column| match fields.column(field) {
        Some(i) => cell(row, i, column, &at_position, |v| v.as_str()),
        None => Ok(""),
    };
    let aggregate_type = text(ContextFields::AGGREGATE_TYPE, "aggregate_type")?;
    let aggregate_id = text(ContextFields::AGGREGATE_ID, "aggregate_id")?;
    let at = || format!("the event at position {position} (stream `{aggregate_type}/{aggregate_id}`)");
    let event_id = match fields.column(ContextFields::EVENT_ID) {
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
        version: match fields.column(ContextFields::VERSION) {
            Some(i) => version_cell(row, i, &at)?,
            None => 0,
        },
        position,
        name: cell(row, 1, "name", &at, |v| v.as_str())?,
        schema_version: schema_version_cell(row, 2, &at)?,
        payload: cell(row, 3, "payload", &at, |v| v.as_blob())?,
        metadata: match fields.column(ContextFields::METADATA) {
            Some(i) => cell(row, i, "metadata", &at, |v| v.as_blob())?,
            None => &[],
        },
        recorded_at: Timestamp::from_micros(match fields.column(ContextFields::RECORDED_AT) {
            Some(i) => cell(row, i, "recorded_at", &at, |v| v.as_i64())?,
            None => 0,
        }),
    };
    Ok(visit(&event))
}

pub(crate) fn uuid_from(bytes: &[u8]) -> Option<EventId> {
    let bytes: [u8; 16] = bytes.try_into().ok()?;
    Some(EventId::from(uuid::Uuid::from_bytes(bytes)))
}
