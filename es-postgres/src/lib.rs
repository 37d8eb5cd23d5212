//! A PostgreSQL event store, for many application instances sharing one
//! database.
//!
//! ```no_run
//! # async fn run() -> Result<(), es_core::StoreError> {
//! use es_postgres::PostgresStore;
//!
//! let store = PostgresStore::connect("postgres://postgres@127.0.0.1/app").await?;
//! store.migrate().await?; // creates or upgrades schema `es`
//! let app = es_core::Dispatcher::new(store);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//!
//! - **Optimistic concurrency across processes.** An append is one SQL
//!   statement that reads the stream's version and inserts the batch only if
//!   it matches; the unique index on (stream, version) makes the loser of a
//!   race fail with a conflict, whichever process it runs in.
//! - **Whole batches.** The statement is one transaction: a batch is stored
//!   entirely or not at all, also when the writer dies half-way.
//! - **The log in commit order.** Positions come from a sequence when rows
//!   are inserted, so a transaction can commit *after* a later position is
//!   already visible. [`EventStore::read_all`] never skips it: each append
//!   pins its transaction id before drawing positions, and a reader that
//!   meets a hole in the positions only reads past it once every transaction
//!   that was running when it looked has finished (a hole left then was
//!   rolled back). Readers wait behind an open append; they never lose it.
//!
//! # Schema
//!
//! Tables live in one schema (default `es`, see [`PostgresOptions::schema`]):
//!
//! | table | what |
//! |---|---|
//! | `events` | `position` (identity), `transaction_id` (xid8), `event_id` (uuid, unique), `aggregate_type`, `aggregate_id`, `version` (unique per stream), `name`, `schema_version`, `payload` (bytea), `metadata` (bytea, JSON), `recorded_at` (timestamptz) |
//! | `commands` | command ids and the versions they committed |
//! | `snapshots` | the latest snapshot per stream |
//! | `checkpoints` | readers' positions by name |
//! | `schema_version` | the version [`PostgresStore::migrate`] brought it to |
//!
//! The view `events_text` shows JSON payloads and metadata as text.

mod projection;
mod schema;

pub use projection::PgProjection;

use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use es_core::store::{
    AppendOutcome, AppendRequest, Appended, CommandRecord, EventStore, ExpectedVersion, LoadedEvent, Positions,
    RecordedEvent, Snapshot, Visitor,
};
use es_core::{AppendError, Conflict, EventId, StoreError, StreamId, Timestamp};
use futures_core::Stream;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row, SqlSafeStr};

use crate::schema::Sql;

const STORE: &str = "postgres";

/// Settings for [`PostgresStore::connect_with`] and
/// [`PostgresStore::from_pool_with`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The PostgreSQL schema holding the tables (default `es`). Only
    /// lowercase letters, digits and `_`; anything else is refused.
    pub schema: String,
    /// Connections in the pool [`connect_with`](PostgresStore::connect_with) makes.
    pub max_connections: u32,
    /// How long to wait for a connection before failing.
    pub acquire_timeout: Duration,
    /// How long a log reader waits for open appends to finish before it
    /// returns what it could read (the next read continues).
    pub gap_wait: Duration,
    /// Whether appends `NOTIFY` the schema's channel, so runners following
    /// the log wake at once instead of at their next poll.
    pub notify: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "es".to_owned(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            gap_wait: Duration::from_millis(200),
            notify: true,
        }
    }
}

/// An [`EventStore`] in PostgreSQL. Clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    schema: String,
    sql: Sql,
    gap_wait: Duration,
    notify: bool,
    /// Bumped for each notification on the schema's channel.
    head: tokio::sync::watch::Sender<u64>,
    listening: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

/// Maps an sqlx error, telling "cannot reach the database" apart.
fn error(operation: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable {
            store: STORE,
            operation,
            source: Box::new(e),
        },
        sqlx::Error::Database(ref db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) => {
            // admin shutdown, crash shutdown, cannot connect now, connection failures
            StoreError::Unavailable {
                store: STORE,
                operation,
                source: Box::new(e),
            }
        }
        other => StoreError::Backend {
            store: STORE,
            operation,
            source: Box::new(other),
        },
    }
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { store: STORE, detail }
}

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt(format!("{what} {v} does not fit in PostgreSQL's BIGINT")))
}

impl PostgresStore {
    /// Connects a pool to `url` with the default options (schema `es`).
    /// Call [`migrate`](Self::migrate) once before first use.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects a pool to `url` with `options`.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let connect: PgConnectOptions = url.parse().map_err(error("parse the connection URL"))?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(error("connect"))?;
        Self::from_pool_with(pool, options)
    }

    /// Uses an existing pool (shared with the application's read models, for
    /// instance) with the default schema `es`.
    pub fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        Self::from_pool_with(pool, PostgresOptions::default())
    }

    /// Uses an existing pool with `options` (its pool settings are ignored).
    pub fn from_pool_with(pool: PgPool, options: PostgresOptions) -> Result<Self, StoreError> {
        schema::valid_schema_name(&options.schema).map_err(|detail| StoreError::Backend {
            store: STORE,
            operation: "configure the schema",
            source: detail.into(),
        })?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                sql: Sql::new(&options.schema),
                schema: options.schema,
                pool,
                gap_wait: options.gap_wait,
                notify: options.notify,
                head: tokio::sync::watch::channel(0).0,
                listening: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The pool, for the application's own queries.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// A connection of its own, outside the pool, with the pool's settings:
    /// for what holds a connection for long (a projection's lock), so the
    /// pool's connections stay free for pages and commands.
    pub(crate) async fn own_connection(&self) -> Result<PgConnection, StoreError> {
        let options = self.inner.pool.connect_options();
        PgConnection::connect_with(&options)
            .await
            .map_err(error("open a connection of its own"))
    }

    /// Creates the schema and tables, or upgrades them to this release's
    /// version. Safe to run from several processes at once (they take turns
    /// under an advisory lock). A database already migrated by a newer
    /// release is refused.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let s = &self.inner.schema;
        let mut tx = self.inner.pool.begin().await.map_err(error("begin the migration"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("es-migrate:{s}"))
            .execute(&mut *tx)
            .await
            .map_err(error("lock the migration"))?;
        let ddl = |text: String| AssertSqlSafe(text).into_sql_str();
        sqlx::query(ddl(format!(r#"CREATE SCHEMA IF NOT EXISTS "{s}""#)))
            .execute(&mut *tx)
            .await
            .map_err(error("create the schema"))?;
        sqlx::query(ddl(format!(
            r#"CREATE TABLE IF NOT EXISTS "{s}".schema_version (version INTEGER NOT NULL)"#
        )))
        .execute(&mut *tx)
        .await
        .map_err(error("create the version table"))?;
        let found: Option<i32> = sqlx::query_scalar(ddl(format!(r#"SELECT MAX(version) FROM "{s}".schema_version"#)))
            .fetch_one(&mut *tx)
            .await
            .map_err(error("read the schema version"))?;
        let found = found.unwrap_or(0);
        if found > schema::SCHEMA_VERSION {
            return Err(corrupt(format!(
                "schema `{s}` has version {found}, written by a newer es-postgres; this one knows up to {}",
                schema::SCHEMA_VERSION
            )));
        }
        for (version, migration) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
            sqlx::raw_sql(ddl(migration.replace("{s}", s)))
                .execute(&mut *tx)
                .await
                .map_err(error("migrate the schema"))?;
            tracing::info!(schema = %s, from = version, to = version + 1, "migrated the es-postgres schema");
        }
        if found < schema::SCHEMA_VERSION {
            sqlx::query(ddl(format!(r#"DELETE FROM "{s}".schema_version"#)))
                .execute(&mut *tx)
                .await
                .map_err(error("record the schema version"))?;
            sqlx::query(ddl(format!(
                r#"INSERT INTO "{s}".schema_version (version) VALUES ($1)"#
            )))
            .bind(schema::SCHEMA_VERSION)
            .execute(&mut *tx)
            .await
            .map_err(error("record the schema version"))?;
        }
        tx.commit().await.map_err(error("commit the migration"))
    }

    /// Appends on `conn`, which may be inside the caller's transaction: the
    /// events then commit (or roll back) with the caller's own writes.
    pub async fn append_with(
        &self,
        conn: &mut PgConnection,
        request: AppendRequest<'_>,
    ) -> Result<AppendOutcome, AppendError> {
        let stream = request.stream;
        let expected = match request.expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(v) => Some(to_i64(v, "version")?),
        };
        let n = request.events.len();
        let mut ids = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        for e in &request.events {
            ids.push(*e.event_id.as_uuid());
            names.push(e.name.as_ref());
            versions.push(e.schema_version as i32);
            payloads.push(e.payload.as_slice());
        }
        let result = sqlx::query(self.inner.sql.append.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(expected)
            .bind(&ids)
            .bind(&names)
            .bind(&versions)
            .bind(&payloads)
            .bind(request.metadata)
            .bind(request.recorded_at.as_micros())
            .bind(request.command_id)
            .bind(self.inner.notify.then_some(self.inner.schema.as_str()))
            .fetch_one(&mut *conn)
            .await;
        let row = match result {
            Ok(row) => row,
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return match db.constraint() {
                    Some("events_stream_version") => {
                        // A concurrent writer took the version first.
                        let actual = self.version_on(conn, stream).await?;
                        Err(Conflict {
                            stream: stream.clone(),
                            expected: request.expected,
                            actual,
                        }
                        .into())
                    }
                    Some("commands_pkey") => match request.command_id {
                        Some(id) => match self.find_command_on(conn, stream, id).await? {
                            Some(record) => Ok(AppendOutcome::Duplicate(record)),
                            None => Err(error("record a command id")(sqlx::Error::Database(db)).into()),
                        },
                        None => Err(error("append")(sqlx::Error::Database(db)).into()),
                    },
                    Some("events_event_id") => {
                        let taken = self.taken_event_id(conn, &ids).await?;
                        Err(StoreError::DuplicateEventId {
                            store: STORE,
                            event_id: taken.unwrap_or_else(|| EventId::from(ids[0])),
                        }
                        .into())
                    }
                    _ => Err(error("append")(sqlx::Error::Database(db)).into()),
                };
            }
            Err(e) => return Err(error("append")(e).into()),
        };
        let actual: i64 = row.try_get("actual").map_err(error("read the append's result"))?;
        let matched: i64 = row.try_get("matched").map_err(error("read the append's result"))?;
        let actual = actual as u64;
        if matched == 0 {
            return Err(Conflict {
                stream: stream.clone(),
                expected: request.expected,
                actual,
            }
            .into());
        }
        let positions: Option<Vec<i64>> = row.try_get("positions").map_err(error("read the append's result"))?;
        let positions: Vec<u64> = positions.unwrap_or_default().into_iter().map(|p| p as u64).collect();
        if positions.len() != n {
            return Err(corrupt(format!(
                "an append of {n} events returned {} positions",
                positions.len()
            ))
            .into());
        }
        let consecutive = positions.windows(2).all(|w| w[1] == w[0] + 1);
        let positions = match positions.first() {
            Some(&first) if consecutive => Positions::Consecutive { first, count: n as u64 },
            Some(_) => Positions::Listed(positions),
            None => Positions::Consecutive { first: 0, count: 0 },
        };
        Ok(AppendOutcome::Committed(Appended {
            first_version: actual + 1,
            last_version: actual + n as u64,
            positions,
        }))
    }

    async fn version_on(&self, conn: &mut PgConnection, stream: &StreamId) -> Result<u64, StoreError> {
        sqlx::query_scalar::<_, i64>(self.inner.sql.stream_version.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .fetch_one(conn)
            .await
            .map(|v| v as u64)
            .map_err(error("read a stream's version"))
    }

    async fn find_command_on(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        id: &str,
    ) -> Result<Option<CommandRecord>, StoreError> {
        let row = sqlx::query(self.inner.sql.find_command.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(id)
            .fetch_optional(conn)
            .await
            .map_err(error("look up a command id"))?;
        row.map(|r| command_record(stream, id, &r)).transpose()
    }

    async fn taken_event_id(&self, conn: &mut PgConnection, ids: &[uuid::Uuid]) -> Result<Option<EventId>, StoreError> {
        // Within the batch itself first, then against the table.
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Ok(Some(EventId::from(*id)));
            }
        }
        let s = &self.inner.schema;
        let taken: Option<uuid::Uuid> = sqlx::query_scalar(
            AssertSqlSafe(format!(
                r#"SELECT event_id FROM "{s}".events WHERE event_id = ANY($1) LIMIT 1"#
            ))
            .into_sql_str(),
        )
        .bind(ids)
        .fetch_optional(conn)
        .await
        .map_err(error("find a reused event id"))?;
        Ok(taken.map(EventId::from))
    }

    /// Reads up to `limit` rows after `after`, in position order, and the
    /// transactions that were running in the same snapshot.
    async fn fetch_page(&self, after: i64, limit: i64) -> Result<(Vec<PgRow>, Vec<i64>), StoreError> {
        let rows = sqlx::query(self.inner.sql.read_all.clone())
            .bind(after)
            .bind(limit)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(error("read the log"))?;
        let running = match rows.first() {
            Some(row) => row
                .try_get::<Option<Vec<i64>>, _>("running")
                .map_err(error("read the running transactions"))?
                .unwrap_or_default(),
            None => Vec::new(),
        };
        Ok((rows, running))
    }

    /// Whether every transaction in `running` has finished.
    async fn all_finished(&self, running: &[i64]) -> Result<bool, StoreError> {
        let Some(max) = running.iter().max() else {
            return Ok(true);
        };
        sqlx::query_scalar::<_, bool>("SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::TEXT::XID8")
            .bind(max.to_string())
            .fetch_one(&self.inner.pool)
            .await
            .map_err(error("check the running transactions"))
    }
}

fn command_record(stream: &StreamId, id: &str, r: &PgRow) -> Result<CommandRecord, StoreError> {
    let get = error("read a command record");
    let version = |i| -> Result<u64, StoreError> {
        let v = r.try_get::<i64, _>(i).map_err(&get)?;
        u64::try_from(v).map_err(|_| corrupt(format!("a command record of stream `{stream}` has version {v}")))
    };
    Ok(CommandRecord {
        command_id: id.to_owned(),
        stream: stream.clone(),
        first_version: version(0)?,
        last_version: version(1)?,
    })
}

/// Hands one event row (in the column order of `schema::COLUMNS`) to the
/// visitor, borrowing its text and bytes from the row.
fn visit_row(row: &PgRow, visit: &mut impl Visitor) -> Result<ControlFlow<()>, StoreError> {
    let get = error("read an event row");
    let position = row.try_get::<i64, _>(4).map_err(&get)? as u64;
    let event = RecordedEvent {
        event_id: EventId::from(row.try_get::<uuid::Uuid, _>(0).map_err(&get)?),
        aggregate_type: row.try_get(1).map_err(&get)?,
        aggregate_id: row.try_get(2).map_err(&get)?,
        version: row.try_get::<i64, _>(3).map_err(&get)? as u64,
        position,
        name: row.try_get(5).map_err(&get)?,
        schema_version: u32::try_from(row.try_get::<i32, _>(6).map_err(&get)?).map_err(|_| {
            corrupt(format!(
                "the event at position {position} has a negative schema version"
            ))
        })?,
        payload: row.try_get(7).map_err(&get)?,
        metadata: row.try_get(8).map_err(&get)?,
        recorded_at: timestamp(row, 9)?,
    };
    Ok(visit(&event))
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` column, read from its binary form (microseconds since
/// 2000-01-01) without a date-time crate.
fn timestamp(row: &PgRow, index: usize) -> Result<Timestamp, StoreError> {
    let raw = row.try_get_raw(index).map_err(error("read a timestamp"))?;
    let bytes = raw
        .as_bytes()
        .map_err(|e| corrupt(format!("an unreadable timestamp: {e}")))?;
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt(format!("a timestamp of {} bytes", bytes.len())))?;
    Ok(Timestamp::from_micros(i64::from_be_bytes(bytes) + PG_EPOCH_MICROS))
}

/// Forwards notifications on the schema's channel to `inner.head` until the
/// store is dropped, reconnecting after failures.
async fn listen(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let listener = async {
            // A connection of its own, outside the application's pool: a
            // listener holds it for good, and a pool of one must stay free.
            let own = PgPoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(strong.pool.connect_options().as_ref().clone())
                .await?;
            let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
            listener.ignore_pool_close_event(true);
            listener.listen(&strong.schema).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listener {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, "cannot LISTEN for new events; readers poll meanwhile");
                drop(strong);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        drop(strong);
        loop {
            let next = tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await;
            let Some(strong) = inner.upgrade() else { return };
            match next {
                Ok(Ok(Some(_))) => {
                    strong.head.send_modify(|n| *n += 1);
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    // The connection was lost: wake readers (events may have
                    // come meanwhile) and listen again.
                    strong.head.send_modify(|n| *n += 1);
                    break;
                }
                Err(_) => {
                    if strong.head.receiver_count() == 0 {
                        strong.listening.store(false, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
    }
}

/// The next row of a streaming query.
async fn next_row<S>(rows: &mut Pin<Box<S>>) -> Option<Result<PgRow, sqlx::Error>>
where
    S: Stream<Item = Result<PgRow, sqlx::Error>> + ?Sized,
{
    std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await
}

impl EventStore for PostgresStore {
    const NAME: &'static str = STORE;

    async fn append(&self, request: AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        let mut conn = self.inner.pool.acquire().await.map_err(error("acquire a connection"))?;
        self.append_with(&mut conn, request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        mut visit: impl Visitor,
    ) -> Result<(), StoreError> {
        let from = to_i64(from_version, "version")?;
        let mut rows = sqlx::query(self.inner.sql.read_stream.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(from)
            .fetch(&self.inner.pool);
        while let Some(row) = next_row(&mut rows).await {
            let row = row.map_err(error("read a stream"))?;
            if visit_row(&row, &mut visit)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    async fn load_events(
        &self,
        stream: &StreamId,
        from_version: u64,
        mut visit: impl FnMut(&LoadedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        let from = to_i64(from_version, "version")?;
        let mut rows = sqlx::query(self.inner.sql.load_events.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(from)
            .fetch(&self.inner.pool);
        let get = error("read an event row");
        while let Some(row) = next_row(&mut rows).await {
            let row = row.map_err(error("read a stream"))?;
            let version = row.try_get::<i64, _>(0).map_err(&get)? as u64;
            let event = LoadedEvent {
                version,
                name: row.try_get(1).map_err(&get)?,
                schema_version: u32::try_from(row.try_get::<i32, _>(2).map_err(&get)?).map_err(|_| {
                    corrupt(format!(
                        "version {version} of stream `{stream}` has a negative schema version"
                    ))
                })?,
                payload: row.try_get(3).map_err(&get)?,
                recorded_at: timestamp(&row, 4)?,
            };
            if visit(&event).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Reads the log in commit order. Rows come in position order; where a
    /// position is missing, its transaction may still be running (positions
    /// are drawn before commit) or may have rolled back. Appends pin their
    /// transaction id before drawing positions, so the holder of a missing
    /// position was running when the rows were read: the read stops at the
    /// hole until every transaction running then has finished, and a hole
    /// still there afterwards was rolled back and is passed.
    async fn read_all(&self, after: u64, limit: usize, mut visit: impl Visitor) -> Result<(), StoreError> {
        let mut next = after + 1;
        let mut left = limit;
        // Holes before this position were waited for and are permanent.
        let mut settled_below = 0u64;
        while left > 0 {
            let asked = left;
            let (page, running) = self
                .fetch_page(to_i64(next - 1, "position")?, i64::try_from(asked).unwrap_or(i64::MAX))
                .await?;
            let mut blocked_at = None;
            for row in &page {
                let position = row.try_get::<i64, _>(4).map_err(error("read an event row"))? as u64;
                if position > next && position > settled_below && !running.is_empty() {
                    blocked_at = Some(position);
                    break;
                }
                if visit_row(row, &mut visit)?.is_break() {
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
            // Wait, briefly, for the transactions that might fill the hole.
            let deadline = tokio::time::Instant::now() + self.inner.gap_wait;
            loop {
                if self.all_finished(&running).await? {
                    settled_below = blocked;
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    tracing::debug!(at = next, "the log has a hole held by a running append; read later");
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        Ok(())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let mut conn = self.inner.pool.acquire().await.map_err(error("acquire a connection"))?;
        self.version_on(&mut conn, stream).await
    }

    async fn last_position(&self) -> Result<u64, StoreError> {
        sqlx::query_scalar::<_, i64>(self.inner.sql.last_position.clone())
            .fetch_one(&self.inner.pool)
            .await
            .map(|p| p as u64)
            .map_err(error("read the last position"))
    }

    async fn find_command(&self, stream: &StreamId, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        let mut conn = self.inner.pool.acquire().await.map_err(error("acquire a connection"))?;
        self.find_command_on(&mut conn, stream, command_id).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let row = sqlx::query(self.inner.sql.load_snapshot.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(error("load a snapshot"))?;
        let get = error("read a snapshot");
        row.map(|r| {
            Ok(Snapshot {
                version: r.try_get::<i64, _>(0).map_err(&get)? as u64,
                schema_version: r.try_get::<i32, _>(1).map_err(&get)? as u32,
                payload: r.try_get(2).map_err(&get)?,
            })
        })
        .transpose()
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), StoreError> {
        sqlx::query(self.inner.sql.save_snapshot.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(to_i64(snapshot.version, "version")?)
            .bind(snapshot.schema_version as i32)
            .bind(snapshot.payload)
            .execute(&self.inner.pool)
            .await
            .map(drop)
            .map_err(error("save a snapshot"))
    }

    /// LISTENs on the schema's channel (once per store, in the background)
    /// and changes the receiver on each notification.
    fn notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        let receiver = self.inner.head.subscribe();
        if self.inner.notify && !self.inner.listening.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let inner = Arc::downgrade(&self.inner);
            tokio::spawn(listen(inner));
        }
        Some(receiver)
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>, StoreError> {
        sqlx::query_scalar::<_, i64>(self.inner.sql.load_checkpoint.clone())
            .bind(name)
            .fetch_optional(&self.inner.pool)
            .await
            .map(|p| p.map(|p| p as u64))
            .map_err(error("load a checkpoint"))
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError> {
        sqlx::query(self.inner.sql.save_checkpoint.clone())
            .bind(name)
            .bind(to_i64(position, "position")?)
            .execute(&self.inner.pool)
            .await
            .map(drop)
            .map_err(error("save a checkpoint"))
    }
}
