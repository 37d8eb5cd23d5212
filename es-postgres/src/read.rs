//! Reads: streams, aggregate loads, and the global log in commit order.

use std::ops::ControlFlow;
use std::pin::Pin;
use std::time::Duration;

use es_core::store::{ContextFields, Link, RecordedEvent};
use es_core::{EventId, StoreError, StreamId, Timestamp};
use futures_core::Stream;
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::append::stored_u64;
use crate::{PostgresStore, corrupt, error, to_i64};

impl PostgresStore {
    pub(crate) async fn read_stream_rows(
        &self,
        stream: &StreamId,
        from_version: u64,
        fields: ContextFields,
        mut visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        es_core::store::validate_stream(crate::STORE, stream)?;
        let from = to_i64(from_version, "version")?;
        // The version always; the stream's names come from the caller.
        let names = ContextFields::AGGREGATE_TYPE.union(ContextFields::AGGREGATE_ID);
        let fields = ContextFields::from_bits((fields.bits() | ContextFields::VERSION.bits()) & !names.bits());
        let mut rows = sqlx::query(self.inner.sql.read_stream[usize::from(fields.bits())].clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(from)
            .fetch(&self.inner.pool);
        while let Some(row) = next_row(&mut rows).await {
            let row = row.map_err(error("read a stream"))?;
            if visit_row(&row, fields, Some(stream), &mut visit)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Reads the log in commit order. Rows come in position order; where a
    /// position is missing, the append holding it may still be running
    /// (positions are drawn before commit) or may have rolled back. Every
    /// append of this schema holds a shared advisory lock from before it
    /// draws positions until it ends, so the appends that can still fill a
    /// hole are among the holders of that lock: the read stops at the hole
    /// until those that held it when it looked have ended, and a hole still
    /// there afterwards was rolled back and is passed. Transactions that do
    /// not append to this schema — in this database or another — are never
    /// waited for.
    pub(crate) async fn read_log(
        &self,
        after: u64,
        limit: usize,
        fields: ContextFields,
        mut visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        let mut next = after + 1;
        let mut left = limit;
        // Holes before this position were waited for and are permanent.
        let mut settled_below = 0u64;
        while left > 0 {
            let asked = left;
            let page = sqlx::query(self.inner.sql.read_all[usize::from(fields.bits())].clone())
                .bind(to_i64(next - 1, "position")?)
                .bind(i64::try_from(asked).unwrap_or(i64::MAX))
                .fetch_all(&self.inner.pool)
                .await
                .map_err(error("read the log"))?;
            let mut blocked_at = None;
            for row in &page {
                let position = position(row)?;
                if position > next && position > settled_below {
                    blocked_at = Some(position);
                    break;
                }
                if visit_row(row, fields, None, &mut visit)?.is_break() {
                    return Ok(());
                }
                next = position + 1;
                left -= 1;
            }
            let Some(blocked) = blocked_at else {
                if page.len() < asked {
                    return Ok(());
                }
                continue;
            };
            if !self.wait_for_appenders(next).await? {
                return Ok(());
            }
            settled_below = blocked;
        }
        Ok(())
    }

    /// Waits, for at most the store's `gap_wait`, until every append of this
    /// schema running now has ended. Returns whether they did.
    async fn wait_for_appenders(&self, hole: u64) -> Result<bool, StoreError> {
        let running: Vec<String> = sqlx::query_scalar(self.inner.sql.appenders.clone())
            .fetch_one(&self.inner.pool)
            .await
            .map_err(error("find the running appends"))?;
        if running.is_empty() {
            return Ok(true);
        }
        let deadline = tokio::time::Instant::now() + self.inner.gap_wait;
        loop {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let still: bool = sqlx::query_scalar(self.inner.sql.appenders_running.clone())
                .bind(&running)
                .fetch_one(&self.inner.pool)
                .await
                .map_err(error("check the running appends"))?;
            if !still {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::debug!(at = hole, "the log has a hole held by a running append; read later");
                return Ok(false);
            }
        }
    }
}

fn position(row: &PgRow) -> Result<u64, StoreError> {
    let raw = row.try_get_unchecked::<i64, _>(0).map_err(error("read an event row"))?;
    stored_u64(raw, || format!("the log holds an event at position {raw}"))
}

/// A stored schema version, which must fit a `u32`.
fn schema_version(raw: i32, at: impl Fn() -> String) -> Result<u32, StoreError> {
    u32::try_from(raw).map_err(|_| corrupt(format!("{} has schema version {raw}", at())))
}

/// Hands one event row (with the columns of `fields.sql_columns()`; the
/// fields outside `fields` are left empty) to the visitor, borrowing its
/// text and bytes from the row.
///
/// Columns are read without sqlx's type check (`try_get_unchecked`): the
/// statements select columns of known types from the store's own tables,
/// the check costs a type clone per column, and decoding still refuses a
/// value of the wrong size.
pub(crate) fn visit_row(
    row: &PgRow,
    fields: ContextFields,
    stream: Option<&StreamId>,
    visit: &mut (impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send),
) -> Result<ControlFlow<()>, StoreError> {
    let get = error("read an event row");
    let position = position(row)?;
    let text = |field| match fields.column(field) {
        Some(i) => row.try_get_unchecked::<&str, _>(i).map_err(&get),
        None => Ok(""),
    };
    let (aggregate_type, aggregate_id) = match stream {
        Some(stream) => (stream.aggregate_type(), stream.aggregate_id()),
        None => (text(ContextFields::AGGREGATE_TYPE)?, text(ContextFields::AGGREGATE_ID)?),
    };
    let in_log = || format!("the event at position {position} (stream `{aggregate_type}/{aggregate_id}`)");
    let version = match fields.column(ContextFields::VERSION) {
        Some(i) => {
            let raw = row.try_get_unchecked::<i64, _>(i).map_err(&get)?;
            stored_u64(raw, || format!("{} has version {raw}", in_log()))?
        }
        None => 0,
    };
    // A read of a stream names the event by its version there.
    let at = || match stream {
        Some(stream) => format!("version {version} of stream `{stream}`"),
        None => in_log(),
    };
    let event = RecordedEvent {
        event_id: match fields.column(ContextFields::EVENT_ID) {
            Some(i) => EventId::from(row.try_get_unchecked::<uuid::Uuid, _>(i).map_err(&get)?),
            None => EventId::from(uuid::Uuid::nil()),
        },
        aggregate_type,
        aggregate_id,
        version,
        position,
        name: row.try_get_unchecked(1).map_err(&get)?,
        schema_version: schema_version(row.try_get_unchecked::<i32, _>(2).map_err(&get)?, at)?,
        payload: row.try_get_unchecked(3).map_err(&get)?,
        metadata: match fields.column(ContextFields::METADATA) {
            Some(i) => row.try_get_unchecked(i).map_err(&get)?,
            None => &[],
        },
        recorded_at: match fields.column(ContextFields::RECORDED_AT) {
            Some(i) => timestamp(row, i, at)?,
            None => Timestamp::from_micros(0),
        },
        link: match fields.column(ContextFields::LINK) {
            Some(i) => {
                let bytes: Option<&[u8]> = row.try_get_unchecked(i).map_err(&get)?;
                bytes
                    .and_then(Link::from_slice)
                    .ok_or_else(|| corrupt(format!("{} has no readable link", at())))?
            }
            None => Link::GENESIS,
        },
    };
    Ok(visit(&event))
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` column, read from its binary form (microseconds since
/// 2000-01-01) without a date-time crate. `infinity` and `-infinity`, and
/// anything else out of range, are refused as corrupt rather than wrapped.
fn timestamp(row: &PgRow, index: usize, at: impl Fn() -> String) -> Result<Timestamp, StoreError> {
    let raw = row.try_get_raw(index).map_err(error("read a timestamp"))?;
    let bytes = raw
        .as_bytes()
        .map_err(|e| corrupt(format!("{} has an unreadable timestamp: {e}", at())))?;
    let bytes: [u8; 8] = match bytes.try_into() {
        Ok(bytes) => bytes,
        Err(_) => return Err(corrupt(format!("{} has a timestamp of {} bytes", at(), bytes.len()))),
    };
    let micros = i64::from_be_bytes(bytes);
    // Described only when refused: nothing is formatted for a good row.
    let refused = || {
        let shown = match micros {
            i64::MAX => "infinity".to_owned(),
            i64::MIN => "-infinity".to_owned(),
            m => format!("{m} µs after 2000-01-01"),
        };
        corrupt(format!("{} was recorded at {shown}, which is no point in time", at()))
    };
    micros
        .checked_add(PG_EPOCH_MICROS)
        .filter(|_| micros != i64::MIN && micros != i64::MAX)
        .map(Timestamp::from_micros)
        .ok_or_else(refused)
}

/// The next row of a streaming query.
async fn next_row<S>(rows: &mut Pin<Box<S>>) -> Option<Result<PgRow, sqlx::Error>>
where
    S: Stream<Item = Result<PgRow, sqlx::Error>> + ?Sized,
{
    std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await
}
