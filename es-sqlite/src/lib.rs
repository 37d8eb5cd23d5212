//! A durable, single-file event store on SQLite, for one application process
//! (or a few on one machine).
//!
//! ```no_run
//! # async fn run() -> Result<(), es_core::StoreError> {
//! use es_sqlite::SqliteStore;
//!
//! let store = SqliteStore::open("bank.db").await?; // created on first open
//! let app = es_core::Dispatcher::new(store);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! SQLite is compiled in (the `bundled` feature of rusqlite), so nothing is
//! needed on the machine. The file uses write-ahead logging and, by default,
//! `synchronous = FULL`: a committed batch survives a power cut. Appends run
//! in one `BEGIN IMMEDIATE` transaction, so a batch is stored whole or not at
//! all, also when the process is killed in the middle, and the expected
//! version is checked under the write lock, so several processes can share
//! one file safely.
//!
//! The schema (see `schema.rs`) is created on first open and its version
//! recorded in the file header (`PRAGMA user_version`); later releases
//! migrate it, and a file written by a newer release is refused.
//!
//! # Threads
//!
//! rusqlite is synchronous. Each operation runs on the calling task: inside
//! `tokio::task::block_in_place` on a multi-threaded runtime, so other tasks
//! move to other workers while SQLite works; directly on a current-thread
//! runtime. Reads use a small pool of connections and run beside the writer
//! (WAL allows that).

mod projection;
mod schema;

pub use projection::SqliteProjection;

use std::future::Future;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use es_core::store::{
    AppendOutcome, AppendRequest, Appended, CommandRecord, EventStore, LoadedEvent, Positions, RecordedEvent, Snapshot,
    Visitor,
};
use es_core::{AppendError, Conflict, EventId, StoreError, StreamId, Timestamp};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::watch;

/// The schema version this release writes (stored in `PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;

const STORE: &str = "sqlite";

/// How hard a commit works to survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = FULL`: every commit is on disk before `append` returns.
    #[default]
    Full,
    /// `synchronous = NORMAL`: a commit survives the process being killed,
    /// but the last ones may be lost on a power cut. Faster.
    Normal,
}

/// Settings for [`SqliteStore::open_with`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// See [`Durability`].
    pub durability: Durability,
    /// How long a write waits for another process's write to finish.
    pub busy_timeout: Duration,
    /// At most this many idle read connections are kept.
    pub max_readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(5),
            max_readers: 4,
        }
    }
}

/// An [`EventStore`] in one SQLite file. Clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    /// Idle read connections; `None` for an in-memory database, which
    /// reads through the writer (its data lives in that connection).
    readers: Option<Mutex<Vec<Connection>>>,
    path: Option<PathBuf>,
    options: SqliteOptions,
    head: watch::Sender<u64>,
    last_position: AtomicU64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("durability", &self.inner.options.durability)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves SQLite itself consistent
    // (an open transaction is rolled back when its guard drops).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs blocking SQLite work without stalling the runtime: on a
/// multi-threaded runtime other tasks move to other workers meanwhile.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Maps a rusqlite error, telling "cannot reach the database" apart.
fn error(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| {
        let unavailable = matches!(
            e.sqlite_error_code(),
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull
            )
        );
        if unavailable {
            StoreError::Unavailable {
                store: STORE,
                operation,
                source: Box::new(e),
            }
        } else {
            StoreError::Backend {
                store: STORE,
                operation,
                source: Box::new(e),
            }
        }
    }
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { store: STORE, detail }
}

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt(format!("{what} {v} does not fit in SQLite's 64-bit integers")))
}

impl SqliteStore {
    /// Opens (or creates) the store in the file at `path`, durable commits.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (or creates) the store at `path` with `options`.
    pub async fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        blocking(|| {
            let writer = Self::connect(&path, &options)?;
            writer
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(error("enable write-ahead logging"))?;
            Self::finish(writer, Some(path), options)
        })
    }

    /// A store in memory, for tests: the same SQL, nothing on disk.
    pub async fn memory() -> Result<Self, StoreError> {
        let options = SqliteOptions::default();
        blocking(|| {
            let writer = Connection::open_in_memory().map_err(error("open an in-memory database"))?;
            Self::finish(writer, None, options)
        })
    }

    fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(error("open the database file"))?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(error("set the busy timeout"))?;
        let synchronous = match options.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(error("set the synchronous mode"))?;
        Ok(conn)
    }

    fn finish(mut writer: Connection, path: Option<PathBuf>, options: SqliteOptions) -> Result<Self, StoreError> {
        migrate(&mut writer)?;
        let last: i64 = writer
            .query_row("SELECT COALESCE(MAX(position), 0) FROM es_events", [], |r| r.get(0))
            .map_err(error("read the last position"))?;
        let last = stored_u64(last, || format!("the log ends at position {last}"))?;
        let readers = path.as_ref().map(|_| Mutex::new(Vec::new()));
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                path,
                options,
                head: watch::channel(last).0,
                last_position: AtomicU64::new(last),
            }),
        })
    }

    /// The file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Watches the position of the last event committed through this
    /// process's handle on the store.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    /// Runs `f` with the store's write connection: for a read model's own
    /// tables (create them, change them outside a projection).
    pub fn with_connection<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        blocking(|| f(&mut lock(&self.inner.writer)))
    }

    /// Runs `f` with a read connection: for queries over a read model's own
    /// tables.
    pub fn read_with<R>(&self, f: impl FnOnce(&Connection) -> R) -> Result<R, StoreError> {
        blocking(|| self.read(|conn| Ok(f(conn))))
    }

    /// Runs `f` with a read connection: a pooled one beside the writer for a
    /// file, the writer itself in memory.
    fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let (Some(pool), Some(path)) = (&self.inner.readers, &self.inner.path) else {
            return f(&lock(&self.inner.writer));
        };
        let conn = match lock(pool).pop() {
            Some(conn) => conn,
            None => Self::connect(path, &self.inner.options)?,
        };
        let result = f(&conn);
        let mut idle = lock(pool);
        if idle.len() < self.inner.options.max_readers {
            idle.push(conn);
        }
        result
    }

    fn append_now(&self, request: AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        es_core::store::validate_append(STORE, &request)?;
        let mut conn = lock(&self.inner.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(error("begin an append"))?;
        let stream = request.stream;
        if let Some(id) = request.command_id
            && let Some(record) = find_command(&tx, stream, id)?
        {
            return Ok(AppendOutcome::Duplicate(record));
        }
        let actual: i64 = tx
            .prepare_cached(
                "SELECT COALESCE(MAX(version), 0) FROM es_events WHERE aggregate_type = ?1 AND aggregate_id = ?2",
            )
            .and_then(|mut s| s.query_row(params![stream.aggregate_type(), stream.aggregate_id()], |r| r.get(0)))
            .map_err(error("read a stream's version"))?;
        let actual = stored_u64(actual, || format!("stream `{stream}` has version {actual}"))?;
        if !request.expected.matches(actual) {
            return Err(Conflict {
                stream: stream.clone(),
                expected: request.expected,
                actual,
            }
            .into());
        }
        let count = request.events.len() as u64;
        let mut first_position = 0;
        let mut last_position = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO es_events (event_id, aggregate_type, aggregate_id, version, name, schema_version, \
                     payload, metadata, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(error("prepare an append"))?;
            for (i, event) in request.events.iter().enumerate() {
                let version = to_i64(actual + 1 + i as u64, "version")?;
                insert
                    .execute(params![
                        event.event_id.as_uuid().as_bytes().as_slice(),
                        stream.aggregate_type(),
                        stream.aggregate_id(),
                        version,
                        event.name.as_ref(),
                        event.schema_version,
                        event.payload.as_slice(),
                        request.metadata,
                        request.recorded_at.as_micros(),
                    ])
                    .map_err(|e| match e.sqlite_error_code() {
                        Some(rusqlite::ErrorCode::ConstraintViolation) if e.to_string().contains("event_id") => {
                            StoreError::DuplicateEventId {
                                store: STORE,
                                event_id: event.event_id,
                            }
                        }
                        _ => error("append an event")(e),
                    })?;
                last_position = tx.last_insert_rowid() as u64;
                if i == 0 {
                    first_position = last_position;
                }
            }
        }
        if let (Some(id), true) = (request.command_id, count > 0) {
            tx.prepare_cached(
                "INSERT INTO es_commands (command_id, aggregate_type, aggregate_id, first_version, last_version) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    stream.aggregate_type(),
                    stream.aggregate_id(),
                    actual as i64 + 1,
                    (actual + count) as i64
                ])
            })
            .map_err(error("record a command id"))?;
        }
        tx.commit().map_err(error("commit an append"))?;
        if count > 0 {
            self.inner.last_position.fetch_max(last_position, Ordering::Relaxed);
            if self.inner.head.receiver_count() > 0 {
                self.inner.head.send_replace(last_position);
            }
        }
        // One writer at a time: the rowids of one batch are consecutive.
        let positions = if count == 0 || last_position - first_position + 1 == count {
            Positions::Consecutive {
                first: if count == 0 { last_position + 1 } else { first_position },
                count,
            }
        } else {
            Positions::Listed((first_position..=last_position).collect())
        };
        Ok(AppendOutcome::Committed(Appended {
            first_version: actual + 1,
            last_version: actual + count,
            positions,
        }))
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(error("begin the schema check"))?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(error("read the schema version"))?;
    if found > schema::SCHEMA_VERSION {
        return Err(corrupt(format!(
            "the file has schema version {found}, written by a newer es-sqlite; this one reads up to version {}",
            schema::SCHEMA_VERSION
        )));
    }
    if found < 0 {
        return Err(corrupt(format!("the file has schema version {found}")));
    }
    for (version, migration) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(migration).map_err(error("migrate the schema"))?;
        tracing::info!(from = version, to = version + 1, "migrated the es-sqlite schema");
    }
    tx.pragma_update(None, "user_version", schema::SCHEMA_VERSION)
        .map_err(error("record the schema version"))?;
    tx.commit().map_err(error("commit the schema"))
}

fn find_command(conn: &Connection, stream: &StreamId, id: &str) -> Result<Option<CommandRecord>, StoreError> {
    conn.prepare_cached(
        "SELECT first_version, last_version FROM es_commands \
         WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND command_id = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![stream.aggregate_type(), stream.aggregate_id(), id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })
        .optional()
    })
    .map_err(error("look up a command id"))?
    .map(|(first, last)| {
        Ok(CommandRecord {
            command_id: id.to_owned(),
            stream: stream.clone(),
            first_version: stored_u64(first, || {
                format!("a command record of stream `{stream}` has version {first}")
            })?,
            last_version: stored_u64(last, || {
                format!("a command record of stream `{stream}` has version {last}")
            })?,
        })
    })
    .transpose()
}

/// A count, version or position read from a row, which must not be negative.
fn stored_u64(v: i64, what: impl FnOnce() -> String) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(what()))
}

/// Reads column `i` of `row` with `read`, naming the event (`at`) and the
/// column in the error: a row that does not read is corrupt, and says where.
fn cell<'r, T>(
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
fn version_cell(row: &rusqlite::Row<'_>, i: usize, at: &dyn Fn() -> String) -> Result<u64, StoreError> {
    let v = cell(row, i, "version", at, |v| v.as_i64())?;
    u64::try_from(v).map_err(|_| corrupt(format!("{} has version {v}", at())))
}

/// A stored schema version, which must fit a `u32`.
fn schema_version_cell(row: &rusqlite::Row<'_>, i: usize, at: &dyn Fn() -> String) -> Result<u32, StoreError> {
    let v = cell(row, i, "schema_version", at, |v| v.as_i64())?;
    u32::try_from(v).map_err(|_| corrupt(format!("{} has schema version {v}, outside 0..=4294967295", at())))
}

/// Reads one event row in the column order of the `SELECT`s below:
/// event_id, aggregate_type, aggregate_id, version, position, name,
/// schema_version, payload, metadata, recorded_at.
fn visit_row(row: &rusqlite::Row<'_>, visit: &mut impl Visitor) -> Result<ControlFlow<()>, StoreError> {
    let raw_position = cell(row, 4, "position", &|| "an event".to_owned(), |v| v.as_i64())?;
    let position = u64::try_from(raw_position)
        .map_err(|_| corrupt(format!("the log holds an event at position {raw_position}")))?;
    let at_position = || format!("the event at position {position}");
    let aggregate_type = cell(row, 1, "aggregate_type", &at_position, |v| v.as_str())?;
    let aggregate_id = cell(row, 2, "aggregate_id", &at_position, |v| v.as_str())?;
    let at = || format!("the event at position {position} (stream `{aggregate_type}/{aggregate_id}`)");
    let id_bytes = cell(row, 0, "event_id", &at, |v| v.as_blob())?;
    let event_id = uuid_from(id_bytes)
        .ok_or_else(|| corrupt(format!("{} has an id of {} bytes, not 16", at(), id_bytes.len())))?;
    let event = RecordedEvent {
        event_id,
        aggregate_type,
        aggregate_id,
        version: version_cell(row, 3, &at)?,
        position,
        name: cell(row, 5, "name", &at, |v| v.as_str())?,
        schema_version: schema_version_cell(row, 6, &at)?,
        payload: cell(row, 7, "payload", &at, |v| v.as_blob())?,
        metadata: cell(row, 8, "metadata", &at, |v| v.as_blob())?,
        recorded_at: Timestamp::from_micros(cell(row, 9, "recorded_at", &at, |v| v.as_i64())?),
    };
    Ok(visit(&event))
}

fn uuid_from(bytes: &[u8]) -> Option<EventId> {
    let bytes: [u8; 16] = bytes.try_into().ok()?;
    Some(EventId::from(uuid::Uuid::from_bytes(bytes)))
}

const EVENT_COLUMNS: &str =
    "event_id, aggregate_type, aggregate_id, version, position, name, schema_version, payload, metadata, recorded_at";

impl EventStore for SqliteStore {
    const NAME: &'static str = STORE;

    fn append(&self, request: AppendRequest<'_>) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send {
        std::future::ready(blocking(|| self.append_now(request)))
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        mut visit: impl Visitor,
    ) -> Result<(), StoreError> {
        let from = to_i64(from_version, "version")?;
        blocking(|| {
            self.read(|conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM es_events \
                         WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND version >= ?3 ORDER BY version"
                    ))
                    .map_err(error("prepare a stream read"))?;
                let mut rows = stmt
                    .query(params![stream.aggregate_type(), stream.aggregate_id(), from])
                    .map_err(error("read a stream"))?;
                while let Some(row) = rows.next().map_err(error("read a stream"))? {
                    if visit_row(row, &mut visit)?.is_break() {
                        break;
                    }
                }
                Ok(())
            })
        })
    }

    async fn load_events(
        &self,
        stream: &StreamId,
        from_version: u64,
        mut visit: impl FnMut(&LoadedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        let from = to_i64(from_version, "version")?;
        blocking(|| {
            self.read(|conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT version, name, schema_version, payload, recorded_at FROM es_events \
                         WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND version >= ?3 ORDER BY version",
                    )
                    .map_err(error("prepare a stream load"))?;
                let mut rows = stmt
                    .query(params![stream.aggregate_type(), stream.aggregate_id(), from])
                    .map_err(error("load a stream"))?;
                while let Some(row) = rows.next().map_err(error("load a stream"))? {
                    let version = version_cell(row, 0, &|| format!("an event of stream `{stream}`"))?;
                    let at = || format!("version {version} of stream `{stream}`");
                    let event = LoadedEvent {
                        version,
                        name: cell(row, 1, "name", &at, |v| v.as_str())?,
                        schema_version: schema_version_cell(row, 2, &at)?,
                        payload: cell(row, 3, "payload", &at, |v| v.as_blob())?,
                        recorded_at: Timestamp::from_micros(cell(row, 4, "recorded_at", &at, |v| v.as_i64())?),
                    };
                    if visit(&event).is_break() {
                        break;
                    }
                }
                Ok(())
            })
        })
    }

    async fn read_all(&self, after: u64, limit: usize, mut visit: impl Visitor) -> Result<(), StoreError> {
        let after = to_i64(after, "position")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        blocking(|| {
            self.read(|conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM es_events WHERE position > ?1 ORDER BY position LIMIT ?2"
                    ))
                    .map_err(error("prepare a log read"))?;
                let mut rows = stmt.query(params![after, limit]).map_err(error("read the log"))?;
                while let Some(row) = rows.next().map_err(error("read the log"))? {
                    if visit_row(row, &mut visit)?.is_break() {
                        break;
                    }
                }
                Ok(())
            })
        })
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        blocking(|| {
            self.read(|conn| {
                conn.prepare_cached(
                    "SELECT COALESCE(MAX(version), 0) FROM es_events WHERE aggregate_type = ?1 AND aggregate_id = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![stream.aggregate_type(), stream.aggregate_id()], |r| {
                        r.get::<_, i64>(0)
                    })
                })
                .map_err(error("read a stream's version"))
                .and_then(|v| stored_u64(v, || format!("stream `{stream}` has version {v}")))
            })
        })
    }

    async fn last_position(&self) -> Result<u64, StoreError> {
        blocking(|| {
            self.read(|conn| {
                conn.query_row("SELECT COALESCE(MAX(position), 0) FROM es_events", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(error("read the last position"))
                .and_then(|v| stored_u64(v, || format!("the log ends at position {v}")))
            })
        })
    }

    async fn find_command(&self, stream: &StreamId, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        es_core::store::validate_command_id(STORE, command_id)?;
        blocking(|| self.read(|conn| find_command(conn, stream, command_id)))
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        blocking(|| {
            self.read(|conn| {
                conn.prepare_cached(
                    "SELECT version, schema_version, payload, fingerprint FROM es_snapshots \
                     WHERE aggregate_type = ?1 AND aggregate_id = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![stream.aggregate_type(), stream.aggregate_id()], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    })
                    .optional()
                })
                .map_err(error("load a snapshot"))?
                .map(|(version, schema_version, payload, fingerprint)| {
                    let bad = |what| corrupt(format!("the snapshot of stream `{stream}` has {what}"));
                    Ok(Snapshot {
                        version: u64::try_from(version).map_err(|_| bad(format!("version {version}")))?,
                        schema_version: u32::try_from(schema_version)
                            .map_err(|_| bad(format!("schema version {schema_version}")))?,
                        payload,
                        // The bits of the u64, as stored.
                        fingerprint: fingerprint as u64,
                    })
                })
                .transpose()
            })
        })
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), StoreError> {
        let version = to_i64(snapshot.version, "version")?;
        blocking(|| {
            lock(&self.inner.writer)
                .prepare_cached(
                    "INSERT INTO es_snapshots (aggregate_type, aggregate_id, version, schema_version, payload, fingerprint) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET \
                     version = excluded.version, schema_version = excluded.schema_version, payload = excluded.payload, \
                     fingerprint = excluded.fingerprint \
                     WHERE excluded.version > es_snapshots.version OR excluded.schema_version <> es_snapshots.schema_version \
                     OR excluded.fingerprint <> es_snapshots.fingerprint",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        stream.aggregate_type(),
                        stream.aggregate_id(),
                        version,
                        snapshot.schema_version,
                        snapshot.payload,
                        snapshot.fingerprint as i64
                    ])
                })
                .map(drop)
                .map_err(error("save a snapshot"))
        })
    }

    fn notifications(&self) -> Option<watch::Receiver<u64>> {
        Some(self.watch_head())
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>, StoreError> {
        blocking(|| {
            self.read(|conn| {
                conn.prepare_cached("SELECT position FROM es_checkpoints WHERE name = ?1")
                    .and_then(|mut s| s.query_row([name], |r| r.get::<_, i64>(0)).optional())
                    .map_err(error("load a checkpoint"))?
                    .map(|p| stored_u64(p, || format!("checkpoint `{name}` is at position {p}")))
                    .transpose()
            })
        })
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError> {
        let position = to_i64(position, "position")?;
        blocking(|| {
            lock(&self.inner.writer)
                .prepare_cached(
                    "INSERT INTO es_checkpoints (name, position) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                )
                .and_then(|mut s| s.execute(params![name, position]))
                .map(drop)
                .map_err(error("save a checkpoint"))
        })
    }
}
