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
//!   takes a shared advisory lock of its schema (the *appender lock*) before
//!   it draws positions and holds it to its end, and a reader that meets a
//!   hole in the positions only reads past it once every transaction that
//!   held the appender lock when it looked has ended (a hole left then was
//!   rolled back). Readers wait behind an open append of their store; they
//!   never lose it, and they never wait for transactions that do not append
//!   to it, in this database or another.
//! - **Appends at any version** ([`ExpectedVersion::Any`](es_core::ExpectedVersion))
//!   never conflict: the store tries again when a concurrent append took the
//!   version first.
//! - **Waking readers without slowing writers.** An append does not `NOTIFY`
//!   in its transaction (PostgreSQL serialises notifying commits); committed
//!   appends wake this process's readers at once and a background task sends
//!   one `NOTIFY` per burst to other processes, whose readers also poll.
//! - **Read models exactly once, one runner at a time**: see
//!   [`PgProjection`].
//!
//! - **Group commit.** Appends go to the store's committer, which writes
//!   every append waiting for it in one statement and one commit, each with
//!   its own version check and outcome (see [`PostgresOptions::committers`]).
//!
//! Connections: reads take one pooled connection at a time; the committer
//! keeps one connection of its own for appends, a projection runner one for
//! its lock, and the store one for `LISTEN`, all outside the pool, so a
//! pool of one works.
//!
//! # Schema
//!
//! Tables live in one schema (default `es`, see [`PostgresOptions::schema`]):
//!
//! | table | what |
//! |---|---|
//! | `events` | `position` (identity), `transaction_id` (xid8), `event_id` (uuid, unique), `aggregate_type`, `aggregate_id`, `version` (unique per stream), `name`, `schema_version`, `payload` (bytea), `metadata` (bytea, JSON), `recorded_at` (timestamptz) |
//! | `commands` | command ids, per stream, and the versions they committed |
//! | `snapshots` | the latest snapshot per stream |
//! | `checkpoints` | readers' positions by name, and each projection's fencing epoch |
//! | `schema_version` | the version [`PostgresStore::migrate`] brought it to |
//!
//! The view `events_text` shows JSON payloads and metadata as text.

mod append;
mod group;
mod keys;
mod notify;
mod partitioned;
mod projection;
mod read;
mod read_models;
mod schema;

pub use partitioned::{PartitionRecord, PgPartitioned};
pub use projection::PgProjection;
/// The sqlx this store is built on, for read models' handlers: depend on
/// it through here and its version always matches the store's.
pub use sqlx;

/// The schema version this release writes (and the newest it reads).
pub const SCHEMA_VERSION: i32 = schema::SCHEMA_VERSION;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use es_core::store::{AppendOutcome, AppendRequest, CommandRecord, ContextFields, EventStore, RecordedEvent, Snapshot};
use es_core::{AppendError, StoreError, StreamId};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqlSafeStr};
use std::ops::ControlFlow;

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
    /// Whether committed appends `NOTIFY` the schema's channel (after their
    /// commit, one notification per burst), so runners in other processes
    /// wake at once instead of at their next poll. Runners in this process
    /// are woken either way.
    pub notify: bool,
    /// How many committers the store runs (default 1, at least 1). Appends
    /// go to a committer, which writes all the appends waiting for it in
    /// one statement and one commit (group commit: see the crate docs).
    /// Each committer keeps one connection of its own, outside the pool,
    /// and runs one statement at a time; more committers run more
    /// statements at once, with fewer appends in each.
    pub committers: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "es".to_owned(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            gap_wait: Duration::from_millis(200),
            notify: true,
            committers: 1,
        }
    }
}

/// An [`EventStore`] in PostgreSQL. Clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
    keyring: Option<Arc<es_core::personal::Keyring>>,
}

struct Inner {
    pool: PgPool,
    schema: String,
    sql: Sql,
    gap_wait: Duration,
    notify: bool,
    /// Changed when events may have been appended: by this process's
    /// appends, and by notifications from others.
    head: tokio::sync::watch::Sender<u64>,
    listening: AtomicBool,
    /// Appends committed since the last `NOTIFY` was sent.
    notify_pending: AtomicBool,
    notify_wanted: Arc<tokio::sync::Notify>,
    notifier: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// How many committers run (see [`PostgresOptions::committers`]).
    committers: usize,
    group: es_core::store::GroupCommit,
    /// The heads of streams this store appended to or read the head of.
    heads: Mutex<append::HeadCache>,
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
    move |e| {
        let unavailable = match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // admin shutdown, crash shutdown, cannot connect now, connection failures
            sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
            _ => false,
        };
        StoreError::from_engine(STORE, operation, unavailable, e)
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
                listening: AtomicBool::new(false),
                notify_pending: AtomicBool::new(false),
                notify_wanted: Arc::default(),
                notifier: Mutex::new(None),
                committers: options.committers.max(1),
                group: Default::default(),
                heads: Mutex::default(),
            }),
            keyring: None,
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
        if found > 0 && found < schema::CHAINED_FROM {
            chain_stored_events(&mut tx, s).await?;
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
}

/// Gives the events stored before chaining their links, in log order, a
/// page at a time, inside the migration's transaction: what this proves is
/// that nothing changed after the migration (see the README's "Audit trail
/// you can prove").
async fn chain_stored_events(tx: &mut PgConnection, s: &str) -> Result<(), StoreError> {
    let ddl = |text: String| AssertSqlSafe(text).into_sql_str();
    // Every field the link covers, read as any read reads them.
    let fields = ContextFields::CONTEXT;
    let select = format!(
        r#"SELECT {} FROM "{s}".events WHERE position > $1 ORDER BY position LIMIT 1000"#,
        fields.sql_columns()
    );
    let update = format!(
        r#"UPDATE "{s}".events e SET link = u.link FROM UNNEST($1::BIGINT[], $2::BYTEA[]) AS u(position, link)
           WHERE e.position = u.position"#
    );
    let mut heads = es_core::store::Heads::default();
    let mut after = 0_u64;
    let mut count = 0_u64;
    loop {
        let rows = sqlx::query(ddl(select.clone()))
            .bind(to_i64(after, "position")?)
            .fetch_all(&mut *tx)
            .await
            .map_err(error("read the events to chain"))?;
        if rows.is_empty() {
            break;
        }
        let mut positions = Vec::with_capacity(rows.len());
        let mut links = Vec::with_capacity(rows.len());
        for row in &rows {
            let _ = read::visit_row(row, fields, None, &mut |e: &es_core::store::RecordedEvent<'_>| {
                after = e.position;
                positions.push(e.position as i64);
                links.push(heads.advance(e).as_bytes().to_vec());
                std::ops::ControlFlow::Continue(())
            })?;
        }
        count += rows.len() as u64;
        sqlx::query(ddl(update.clone()))
            .bind(&positions)
            .bind(&links)
            .execute(&mut *tx)
            .await
            .map_err(error("chain the stored events"))?;
    }
    tracing::info!(schema = %s, events = count, streams = heads.len(), "chained the events stored before chaining");
    Ok(())
}

impl EventStore for PostgresStore {
    const NAME: &'static str = STORE;

    fn keyring(&self) -> Option<&Arc<es_core::personal::Keyring>> {
        self.keyring.as_ref()
    }

    async fn append(&self, request: AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        self.append_grouped(&request).await
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        fields: ContextFields,
        visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.read_stream_rows(stream, from_version, fields, visit)
    }

    fn read_all(
        &self,
        after: u64,
        limit: usize,
        fields: ContextFields,
        visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.read_log(after, limit, fields, visit)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        let mut conn = self.inner.pool.acquire().await.map_err(error("acquire a connection"))?;
        self.version_on(&mut conn, stream).await
    }

    async fn last_position(&self) -> Result<u64, StoreError> {
        let last = sqlx::query_scalar::<_, i64>(self.inner.sql.last_position.clone())
            .fetch_one(&self.inner.pool)
            .await
            .map_err(error("read the last position"))?;
        append::stored_u64(last, || format!("the log ends at position {last}"))
    }

    async fn events_after(&self, position: u64) -> Result<u64, StoreError> {
        let count = sqlx::query_scalar::<_, i64>(self.inner.sql.events_after.clone())
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .fetch_one(&self.inner.pool)
            .await
            .map_err(error("count the events after a position"))?;
        append::stored_u64(count, || format!("{count} events after position {position}"))
    }

    async fn find_command(&self, stream: &StreamId, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        let mut conn = self.inner.pool.acquire().await.map_err(error("acquire a connection"))?;
        self.find_command_on(&mut conn, stream, command_id).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        let row: Option<(i64, i32, Vec<u8>, i64)> = sqlx::query_as(self.inner.sql.load_snapshot.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(error("load a snapshot"))?;
        row.map(|(version, schema_version, payload, fingerprint)| {
            let bad = |what: &str, v: i64| corrupt(format!("the snapshot of stream `{stream}` has {what} {v}"));
            Ok(Snapshot {
                version: u64::try_from(version).map_err(|_| bad("version", version))?,
                schema_version: u32::try_from(schema_version)
                    .map_err(|_| bad("schema version", schema_version.into()))?,
                payload,
                // The bits of the u64, as stored.
                fingerprint: fingerprint as u64,
            })
        })
        .transpose()
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        sqlx::query(self.inner.sql.save_snapshot.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(to_i64(snapshot.version, "version")?)
            .bind(snapshot.schema_version as i32)
            .bind(snapshot.payload)
            .bind(snapshot.fingerprint as i64)
            .execute(&self.inner.pool)
            .await
            .map(drop)
            .map_err(error("save a snapshot"))
    }

    /// Changes on each append through this store, and on each notification
    /// from other processes (LISTENing once per store, in the background).
    fn notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        let receiver = self.inner.head.subscribe();
        self.start_listening();
        Some(receiver)
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let position = sqlx::query_scalar::<_, i64>(self.inner.sql.load_checkpoint.clone())
            .bind(name)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(error("load a checkpoint"))?;
        position
            .map(|p| append::stored_u64(p, || format!("checkpoint `{name}` is at position {p}")))
            .transpose()
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
