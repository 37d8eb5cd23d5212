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
//!
//! # Group commit
//!
//! An append made while no other is in flight runs at once on the calling
//! task, as above. Appends made while one is in flight queue for the
//! store's committer, a thread of its own, which writes every append
//! waiting for it in one transaction (one disk flush for all of them), each
//! in a savepoint of its own with its own version check: a conflict, a
//! reused event id or a repeated command id fails (or answers) only its
//! own append, and the others commit. A second append to a stream waits for
//! the next transaction. The committer starts with the first queued append
//! and ends when the last clone of the store is dropped.

mod append;
mod keys;
pub mod packed;
mod projection;
mod read;
mod read_models;
mod schema;
mod store;

pub use projection::SqliteProjection;
/// The rusqlite this store is built on, for read models' handlers: depend
/// on it through here and its version always matches the store's.
pub use rusqlite;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use es_core::StoreError;
use es_core::store::ContextFields;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::watch;

use crate::read::stored_u64;

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
    /// Opens the file read-only, for tools that inspect a store: nothing is
    /// created, migrated or written (appends and checkpoint saves fail),
    /// so an inspection during a rolling upgrade cannot move the file to a
    /// schema the running application does not know. A file at an older
    /// schema is read as it is (from schema version 5 on an event's
    /// names and payload are in one `packed` cell; an older file is read
    /// from its own cells); a newer one is refused.
    pub read_only: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(5),
            max_readers: 4,
            read_only: false,
        }
    }
}

/// An [`EventStore`](es_core::EventStore) in one SQLite file. Clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    keyring: Option<Arc<es_core::personal::Keyring>>,
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
    /// Whether the file has the `link` column: a file opened read-only
    /// below schema 4 (written before chaining) has none, and reads of it
    /// give every event [`Link::GENESIS`](es_core::store::Link::GENESIS).
    chained: bool,
    /// Whether the file has the `packed` column (see [`packed`]): a file
    /// opened read-only below schema 5 has none, and is read from the
    /// cells each field had before.
    packed: bool,
    /// Where appends wait for the committer.
    group: es_core::store::GroupCommit,
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
        StoreError::from_engine(STORE, operation, unavailable, e)
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
            if !options.read_only {
                writer
                    .pragma_update(None, "journal_mode", "WAL")
                    .map_err(error("enable write-ahead logging"))?;
            }
            Self::finish(writer, Some(path), options)
        })
    }

    /// A store in memory, for tests: the same SQL, nothing on disk.
    pub async fn memory() -> Result<Self, StoreError> {
        let options = SqliteOptions::default();
        blocking(|| {
            let writer = Connection::open_in_memory().map_err(error("open an in-memory database"))?;
            writer
                .pragma_update(None, "secure_delete", "ON")
                .map_err(error("turn on secure delete"))?;
            Self::finish(writer, None, options)
        })
    }

    fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
        let flags = if options.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(path, flags).map_err(error("open the database file"))?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(error("set the busy timeout"))?;
        if options.read_only {
            return Ok(conn);
        }
        let synchronous = match options.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(error("set the synchronous mode"))?;
        // Freed space is zeroed: a forgotten subject's key leaves no copy
        // in the file's free pages or cells.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(error("turn on secure delete"))?;
        Ok(conn)
    }

    fn finish(mut writer: Connection, path: Option<PathBuf>, options: SqliteOptions) -> Result<Self, StoreError> {
        let (chained, packed) = if options.read_only {
            let found = check_readable(&writer)?;
            (found >= schema::CHAINED_FROM, found >= schema::PACKED_FROM)
        } else {
            migrate(&mut writer)?;
            (true, true)
        };
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
                chained,
                packed,
                group: Default::default(),
            }),
            keyring: None,
        })
    }

    /// The fields a read selects: all asked for, but the link where the
    /// file has none.
    pub(crate) fn readable(&self, fields: ContextFields) -> ContextFields {
        match self.inner.chained {
            true => fields,
            false => ContextFields::from_bits(fields.bits() & !ContextFields::LINK.bits()),
        }
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
}

/// Refuses a file a read-only store cannot read: one written by a newer
/// es-sqlite, or one without a store. Returns its schema version.
fn check_readable(conn: &Connection) -> Result<i64, StoreError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(error("read the schema version"))?;
    if found > schema::SCHEMA_VERSION {
        return Err(corrupt(format!(
            "the file has schema version {found}, written by a newer es-sqlite; this one reads up to version {}",
            schema::SCHEMA_VERSION
        )));
    }
    if found < 1 {
        return Err(corrupt(format!("the file holds no es store (schema version {found})")));
    }
    Ok(found)
}

/// Gives the events stored before chaining their links, in log order: what
/// this proves is that nothing changed after the migration (see the
/// README's "Audit trail you can prove").
fn chain_stored_events(tx: &Connection) -> Result<(), StoreError> {
    let mut heads = es_core::store::Heads::default();
    // Every field the link covers, read as any read reads them.
    let (list, columns) = read::Columns::select(ContextFields::CONTEXT, true);
    let mut select = tx
        .prepare(&format!("SELECT {list} FROM es_events ORDER BY position"))
        .map_err(error("read the events to chain"))?;
    let mut update = tx
        .prepare("UPDATE es_events SET link = ?1 WHERE position = ?2")
        .map_err(error("chain the stored events"))?;
    let mut rows = select.query([]).map_err(error("read the events to chain"))?;
    let mut count = 0_u64;
    while let Some(row) = rows.next().map_err(error("read the events to chain"))? {
        let mut linked = None;
        let _ = read::visit_row(tx, row, &columns, None, &mut |e: &es_core::store::RecordedEvent<'_>| {
            linked = Some((e.position, heads.advance(e)));
            std::ops::ControlFlow::Continue(())
        })?;
        if let Some((position, link)) = linked {
            update
                .execute(rusqlite::params![
                    link.as_bytes().as_slice(),
                    to_i64(position, "position")?
                ])
                .map_err(error("chain the stored events"))?;
            count += 1;
        }
    }
    tracing::info!(
        events = count,
        streams = heads.len(),
        "chained the events stored before chaining"
    );
    Ok(())
}

/// Moves each stored event's names, schema version and payload into its
/// `packed` cell, emptying its `payload` cell, in the migration to schema
/// version 5. A row whose cells do not read (corrupt) is left as it is:
/// reads find no packed cell there and read its own cells, which name what
/// is wrong with it.
fn pack_stored_events(tx: &Connection) -> Result<(), StoreError> {
    let (list, columns) =
        read::Columns::select(ContextFields::AGGREGATE_TYPE.union(ContextFields::AGGREGATE_ID), false);
    let mut select = tx
        .prepare(&format!("SELECT {list} FROM es_events ORDER BY position"))
        .map_err(error("read the events to pack"))?;
    let mut update = tx
        .prepare("UPDATE es_events SET packed = ?1, payload = x'' WHERE position = ?2")
        .map_err(error("pack the stored events"))?;
    let mut rows = select.query([]).map_err(error("read the events to pack"))?;
    let (mut count, mut left) = (0_u64, 0_u64);
    let mut cell = Vec::new();
    while let Some(row) = rows.next().map_err(error("read the events to pack"))? {
        let mut position = None;
        let read = read::visit_row(tx, row, &columns, None, &mut |e: &es_core::store::RecordedEvent<'_>| {
            packed::pack_into(
                &mut cell,
                e.aggregate_type,
                e.aggregate_id,
                e.name,
                e.schema_version,
                e.payload,
            );
            position = Some(e.position);
            std::ops::ControlFlow::Continue(())
        });
        match (read, position) {
            (Ok(_), Some(position)) => {
                update
                    .execute(rusqlite::params![cell, to_i64(position, "position")?])
                    .map_err(error("pack the stored events"))?;
                count += 1;
            }
            (read, _) => {
                tracing::warn!(error = ?read.err(), "an event row does not read; it keeps its own cells");
                left += 1;
            }
        }
    }
    tracing::info!(events = count, unreadable = left, "packed the stored events");
    Ok(())
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
    if found > 0 && found < schema::PACKED_FROM {
        pack_stored_events(&tx)?;
    }
    if found > 0 && found < schema::CHAINED_FROM {
        chain_stored_events(&tx)?;
    }
    tx.pragma_update(None, "user_version", schema::SCHEMA_VERSION)
        .map_err(error("record the schema version"))?;
    tx.commit().map_err(error("commit the schema"))
}
