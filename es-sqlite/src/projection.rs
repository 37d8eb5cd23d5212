//! Read models kept in the SQLite file, updated in the same transaction as
//! their checkpoint.

use std::borrow::Borrow;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use es_core::store::StoredEvent;
use es_core::subscription::{self, PageSink, Paged, RunOptions};
use es_core::{Codec, EventStore, Json, ReadModelIn, Runner, SubscriptionError, Tables};
use rusqlite::Connection;

use crate::{SqliteStore, blocking, error, lock};

/// How many events one transaction applies.
const PAGE: usize = 500;

/// A read model in the store's SQLite file: its handlers get the connection
/// inside the transaction that also moves its checkpoint, so each event is
/// applied exactly once, whatever crashes or panics.
///
/// Handlers are plain rusqlite calls: they may be `async fn`s for symmetry
/// with PostgreSQL, but they run inside SQLite's write transaction and must
/// not wait for anything (a handler that does is reported as an error).
///
/// Several runners of one projection (in one process or several sharing the
/// file) never apply an event twice: a page commits only if the checkpoint
/// is still where the page started, checked under SQLite's write lock.
///
/// The read model's tables are declared with [`tables`](Self::tables): the
/// runner creates and upgrades them before its first page, and
/// [`rebuild`](Self::rebuild) empties them.
pub struct SqliteProjection<R, C = Json> {
    store: SqliteStore,
    name: String,
    checkpoint: String,
    tables: Tables,
    model: R,
    codec: C,
}

impl<R: ReadModelIn<Connection>> SqliteProjection<R, Json> {
    /// A projection named `name` (its checkpoint) feeding `model`.
    pub fn new(store: SqliteStore, name: impl Into<String>, model: R) -> Self {
        let name = name.into();
        SqliteProjection {
            store,
            checkpoint: format!("projection:{name}"),
            name,
            tables: Tables::new(),
            model,
            codec: Json,
        }
    }
}

impl<R: ReadModelIn<Connection>, C: Codec> SqliteProjection<R, C> {
    /// Decodes events with `codec` instead of JSON.
    pub fn codec<C2: Codec>(self, codec: C2) -> SqliteProjection<R, C2> {
        SqliteProjection {
            store: self.store,
            name: self.name,
            checkpoint: self.checkpoint,
            tables: self.tables,
            model: self.model,
            codec,
        }
    }

    /// Declares the read model's tables: their migrations run before the
    /// first page (each once, in its own transaction with the version it
    /// reaches, recorded in `es_read_models`), and a rebuild empties the
    /// tables it owns.
    pub fn tables(mut self, tables: Tables) -> Self {
        self.tables = tables;
        self
    }

    /// The read model.
    pub fn model(&self) -> &R {
        &self.model
    }

    /// The checkpoint's name in the store.
    pub fn checkpoint_name(&self) -> String {
        self.checkpoint.clone()
    }

    /// Migrates the read model's tables, then applies every event after the
    /// checkpoint, a page per transaction. Returns the new checkpoint.
    pub async fn catch_up(&self) -> Result<u64, SubscriptionError> {
        self.migrate()?;
        subscription::catch_up(&self.store, &mut Pages::paged(self)).await
    }

    /// Empties the tables the read model owns (see [`tables`](Self::tables))
    /// and replays the whole log into them; the emptied tables and the
    /// zeroed checkpoint commit together, so a reader sees the old read
    /// model or the rebuilt one's first page, never a mix.
    pub async fn rebuild(&self) -> Result<u64, SubscriptionError> {
        let owned = self.tables.for_rebuild("sqlite", &self.name)?;
        self.migrate()?;
        blocking(|| {
            let mut conn = lock(&self.store.inner.writer);
            let tx = conn.transaction().map_err(error("begin a rebuild"))?;
            for table in owned {
                tx.execute(&format!("DELETE FROM {table}"), [])
                    .map_err(error("empty a read model's table"))?;
            }
            tx.execute("DELETE FROM es_checkpoints WHERE name = ?1", [self.checkpoint.as_str()])
                .map_err(error("reset a projection checkpoint"))?;
            tx.commit().map_err(error("commit a rebuild"))
        })?;
        subscription::catch_up(&self.store, &mut Pages::paged(self)).await
    }

    /// Runs the migrations the file lacks.
    fn migrate(&self) -> Result<(), SubscriptionError> {
        if self.tables.version() == 0 {
            return Ok(());
        }
        Ok(blocking(|| {
            crate::read_models::migrate(&mut lock(&self.store.inner.writer), &self.name, &self.tables)
        })?)
    }

    /// Catches up now, then follows new events (woken by this process's
    /// appends, or every poll) in a background task. Failures are retried
    /// with backoff and shown in the runner's status. `options` are the
    /// engine's [`RunOptions`], or just the poll as a `Duration`.
    pub fn spawn(self, options: impl Into<RunOptions>) -> Runner
    where
        R: 'static,
        C: 'static,
    {
        let store = self.store.clone();
        subscription::spawn(store, Pages::paged(Arc::new(self)), options.into())
    }
}

/// A SQLite projection as a [`PageSink`]: each page in one write
/// transaction with the checkpoint.
struct Pages<P, R, C> {
    projection: P,
    /// Whether the read model's tables were migrated by this runner.
    migrated: bool,
    _model: std::marker::PhantomData<fn() -> (R, C)>,
}

impl<P, R, C> PageSink for Pages<P, R, C>
where
    P: Borrow<SqliteProjection<R, C>> + Send,
    R: ReadModelIn<Connection>,
    C: Codec,
{
    fn name(&self) -> &str {
        &self.projection.borrow().name
    }

    fn page_size(&self) -> usize {
        PAGE
    }

    /// The first time: migrates the read model's tables.
    fn acquire(&mut self) -> impl Future<Output = Result<bool, SubscriptionError>> + Send {
        let migrated = if self.migrated {
            Ok(())
        } else {
            self.projection.borrow().migrate()
        };
        self.migrated = migrated.is_ok();
        std::future::ready(migrated.map(|()| true))
    }

    fn checkpoint(&mut self) -> impl Future<Output = Result<u64, SubscriptionError>> + Send {
        let p = self.projection.borrow();
        async move { Ok(p.store.load_checkpoint(&p.checkpoint).await?.unwrap_or(0)) }
    }

    fn handles(&self, name: &str) -> bool {
        R::handles(name)
    }

    fn apply_page(
        &mut self,
        from: u64,
        to: u64,
        events: Vec<StoredEvent>,
    ) -> impl Future<Output = Result<(), SubscriptionError>> + Send {
        let p = self.projection.borrow();
        async move {
            let Some(keyring) = EventStore::keyring(&p.store) else {
                return blocking(|| p.apply_page(from, to, &events, None));
            };
            // Personal values open with cached keys; a page that met a key
            // not cached yet is rolled back, the key fetched, and the page
            // applied again.
            let mut opener = es_core::personal::Opener::new(keyring);
            let mut runs = 0;
            loop {
                let applied = blocking(|| p.apply_page(from, to, &events, Some(&mut opener)));
                if !opener.again(applied.is_err(), &mut runs).await? {
                    return applied;
                }
            }
        }
    }
}

impl<P, R, C> Pages<P, R, C> {
    fn paged(projection: P) -> Paged<Self> {
        Paged::new(Pages {
            projection,
            migrated: false,
            _model: std::marker::PhantomData,
        })
    }
}

/// An open write transaction on a connection, rolled back when dropped
/// before [`commit`](Self::commit) — also when a handler panics through it,
/// so the write lock is never left held.
struct WriteTransaction<'c> {
    conn: &'c mut Connection,
    open: bool,
}

impl<'c> WriteTransaction<'c> {
    fn begin(conn: &'c mut Connection) -> rusqlite::Result<Self> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(WriteTransaction { conn, open: true })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.open = false;
        self.conn.execute_batch("COMMIT")
    }
}

impl Deref for WriteTransaction<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl DerefMut for WriteTransaction<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
    }
}

impl Drop for WriteTransaction<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

impl<R: ReadModelIn<Connection>, C: Codec> SqliteProjection<R, C> {
    /// One page in one write transaction: the handlers, then the
    /// checkpoint, or nothing.
    fn apply_page(
        &self,
        from: u64,
        to: u64,
        events: &[StoredEvent],
        mut opener: Option<&mut es_core::personal::Opener>,
    ) -> Result<(), SubscriptionError> {
        let mut conn = lock(&self.store.inner.writer);
        let mut tx = WriteTransaction::begin(&mut conn).map_err(error("begin a projection transaction"))?;
        // Another runner (in this process or another sharing the file) may
        // have moved the checkpoint since the page was read.
        let current = tx
            .prepare_cached("SELECT position FROM es_checkpoints WHERE name = ?1")
            .and_then(|mut s| {
                rusqlite::OptionalExtension::optional(s.query_row([&self.checkpoint], |r| r.get::<_, i64>(0)))
            })
            .map_err(error("read a projection checkpoint"))?;
        if current.unwrap_or(0) != crate::to_i64(from, "position")? {
            return Err(SubscriptionError::Moved {
                subscription: self.name.clone(),
            });
        }
        for event in events {
            let recorded = event.as_recorded();
            let mut apply = || {
                std::panic::catch_unwind(AssertUnwindSafe(|| {
                    let future = pin!(self.model.apply_recorded_in(&self.codec, &recorded, &mut tx));
                    future.poll(&mut Context::from_waker(Waker::noop()))
                }))
            };
            let applied = match opener.as_deref_mut() {
                None => apply(),
                Some(opener) => opener.run(&recorded, apply),
            };
            match applied {
                Ok(Poll::Ready(result)) => {
                    result?;
                }
                Ok(Poll::Pending) => {
                    return Err(SubscriptionError::Handler {
                        subscription: self.name.clone(),
                        event_name: event.name.clone(),
                        position: event.position,
                        source: "a SQLite read model handler awaited something; it runs inside the write transaction and must not wait".into(),
                    });
                }
                Err(payload) => {
                    return Err(SubscriptionError::Panicked {
                        subscription: self.name.clone(),
                        event_name: event.name.clone(),
                        position: event.position,
                        message: subscription::panic_message(&*payload),
                    });
                }
            }
        }
        tx.execute(
            "INSERT INTO es_checkpoints (name, position) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            rusqlite::params![self.checkpoint, crate::to_i64(to, "position")?],
        )
        .map_err(error("save a projection checkpoint"))?;
        tx.commit().map_err(error("commit a projection page"))?;
        Ok(())
    }
}
