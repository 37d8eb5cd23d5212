//! Read models kept in PostgreSQL, updated in the same transaction as their
//! checkpoint, with one runner per projection across all processes.

use std::borrow::Borrow;
use std::future::Future;
use std::sync::Arc;

use es_core::store::StoredEvent;
use es_core::subscription::{self, PageSink, Paged, Partition, RunOptions, Sink};
use es_core::{Codec, Json, ReadModelIn, Runner, SubscriptionError, Tables};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqlSafeStr, SqlStr};

use crate::{PostgresStore, error};

/// How many events one transaction applies.
const PAGE: usize = 500;

/// A read model in PostgreSQL: its handlers get the transaction that also
/// moves its checkpoint, so each event is applied exactly once, whatever
/// crashes.
///
/// # One runner at a time, fenced
///
/// A runner owns its projection while it holds a session advisory lock on a
/// connection of its own (outside the pool). When its process dies, that
/// connection closes, the lock is released, and a standby runner elsewhere
/// takes over. Taking over bumps the projection's *epoch* in its checkpoint
/// row, and every page's transaction locks that row and commits only if the
/// epoch is still the one its runner took: a runner that lost its lock
/// without noticing (its lock connection was killed, or timed out on the
/// server) cannot commit a page once another runner has taken over. It
/// finds out at its next page ([`SubscriptionError::Fenced`]) and stands by.
///
/// A page needs one pooled connection at a time (it reads the log, then
/// applies in one transaction), so a runner works with a pool of one.
///
/// # Its tables
///
/// The read model's tables are declared with [`tables`](Self::tables): a
/// runner that takes the projection over runs the migrations the database
/// lacks before its first page, and [`rebuild`](Self::rebuild) empties the
/// tables the read model owns.
pub struct PgProjection<R, C = Json> {
    store: PostgresStore,
    name: String,
    checkpoint: String,
    lock_key: String,
    sql: ProjectionSql,
    tables: Tables,
    model: R,
    codec: C,
}

/// The statements a projection runs, with the store's schema filled in.
pub(crate) struct ProjectionSql {
    load: SqlStr,
    claim: SqlStr,
    lock_row: SqlStr,
    save: SqlStr,
    /// The names of a projection's checkpoints, of whatever partitioning.
    layout: SqlStr,
    /// The same, locked, for a rebuild.
    layout_for_update: SqlStr,
    /// Deletes them.
    forget_layout: SqlStr,
    /// Writes a new layout's checkpoints at 0, above every earlier epoch.
    new_layout: SqlStr,
}

impl ProjectionSql {
    fn new(s: &str) -> Self {
        let sql = |text: String| AssertSqlSafe(text).into_sql_str();
        ProjectionSql {
            load: sql(format!(r#"SELECT position FROM "{s}".checkpoints WHERE name = $1"#)),
            // Taking over: a new epoch fences out every earlier owner.
            claim: sql(format!(
                r#"INSERT INTO "{s}".checkpoints (name, position, epoch) VALUES ($1, 0, 1)
                   ON CONFLICT (name) DO UPDATE SET epoch = checkpoints.epoch + 1
                   RETURNING epoch"#
            )),
            lock_row: sql(format!(
                r#"SELECT position, epoch FROM "{s}".checkpoints WHERE name = $1 FOR UPDATE"#
            )),
            save: sql(format!(r#"UPDATE "{s}".checkpoints SET position = $2 WHERE name = $1"#)),
            layout: sql(format!(
                r#"SELECT name FROM "{s}".checkpoints WHERE name = $1 OR starts_with(name, $1 || '#')"#
            )),
            layout_for_update: sql(format!(
                r#"SELECT name, epoch FROM "{s}".checkpoints WHERE name = $1 OR starts_with(name, $1 || '#')
                   FOR UPDATE"#
            )),
            forget_layout: sql(format!(
                r#"DELETE FROM "{s}".checkpoints WHERE name = $1 OR starts_with(name, $1 || '#')"#
            )),
            new_layout: sql(format!(
                r#"INSERT INTO "{s}".checkpoints (name, position, epoch) SELECT unnest($1::text[]), 0, $2"#
            )),
        }
    }
}

impl<R: ReadModelIn<PgConnection>> PgProjection<R, Json> {
    /// A projection named `name` (its checkpoint and lock key) feeding `model`.
    pub fn new(store: PostgresStore, name: impl Into<String>, model: R) -> Self {
        let name = name.into();
        PgProjection {
            checkpoint: format!("projection:{name}"),
            lock_key: format!("es-projection:{}:{name}", store.schema()),
            sql: ProjectionSql::new(store.schema()),
            store,
            name,
            tables: Tables::new(),
            model,
            codec: Json,
        }
    }
}

impl<R: ReadModelIn<PgConnection>, C: Codec> PgProjection<R, C> {
    /// Decodes events with `codec` instead of JSON.
    pub fn codec<C2: Codec>(self, codec: C2) -> PgProjection<R, C2> {
        PgProjection {
            store: self.store,
            name: self.name,
            checkpoint: self.checkpoint,
            lock_key: self.lock_key,
            sql: self.sql,
            tables: self.tables,
            model: self.model,
            codec,
        }
    }

    /// Declares the read model's tables: the runner that owns the
    /// projection runs their migrations before its first page (each once,
    /// in its own transaction with the version it reaches, recorded in the
    /// store schema's `read_models` table), and a rebuild empties the
    /// tables it owns. Name tables with their schema where the pool's
    /// search path would not find them.
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

    /// Waits until this caller owns the projection (another runner may),
    /// applies every event after its checkpoint, and gives ownership back.
    /// Returns the new checkpoint.
    pub async fn catch_up(&self) -> Result<u64, SubscriptionError> {
        let mut sink = Paged::new(Pages::new(self, Partition::WHOLE));
        sink.get_mut().wait_until_owned().await?;
        let result = subscription::catch_up(&self.store, &mut sink).await;
        sink.release().await;
        result
    }

    /// Empties the tables the read model owns (see [`tables`](Self::tables))
    /// and replays the whole log into them, once this caller owns the
    /// projection; the emptied tables and the zeroed checkpoint commit
    /// together, so a reader sees the old read model or the rebuilt one's
    /// first page, never a mix.
    ///
    /// A projection that ran in partitions ([`partitioned`](Self::partitioned))
    /// runs as one again after this: its partitions' checkpoints go with
    /// the tables, and their runners, fenced out, stop with
    /// [`SubscriptionError::Partitions`].
    pub async fn rebuild(&self) -> Result<u64, SubscriptionError> {
        let mut sink = Paged::new(Pages::new(self, Partition::WHOLE));
        sink.get_mut().lock().await?;
        let result = async {
            self.reset(1).await?;
            sink.get_mut().claim().await?;
            subscription::catch_up(&self.store, &mut sink).await
        }
        .await;
        sink.release().await;
        result
    }

    /// Runs the projection in the background: stands by until it owns the
    /// projection (another process may), then catches up and follows the
    /// log (woken by notifications, or every poll), checking on every
    /// wake-up that it still owns it. Failures are retried with backoff and
    /// shown in the runner's status. `options` are the engine's
    /// [`RunOptions`], or just the poll as a `Duration`.
    pub fn spawn(self, options: impl Into<RunOptions>) -> Runner
    where
        R: 'static,
        C: 'static,
    {
        let store = self.store.clone();
        subscription::spawn(
            store,
            Paged::new(Pages::new(Arc::new(self), Partition::WHOLE)),
            options.into(),
        )
    }
}

impl<R: ReadModelIn<PgConnection>, C: Codec> PgProjection<R, C> {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn store(&self) -> &PostgresStore {
        &self.store
    }

    fn fenced(&self, detail: impl Into<String>) -> SubscriptionError {
        SubscriptionError::Fenced {
            subscription: self.name.clone(),
            detail: detail.into(),
        }
    }

    /// Locks checkpoint `checkpoint`'s row in `tx` and returns its position,
    /// if the runner that took `epoch` still owns it. Pages check this
    /// last, just before they commit: a takeover never waits behind the old
    /// owner's page, and that page is rolled back.
    async fn check_owner(
        &self,
        tx: &mut PgConnection,
        checkpoint: &str,
        epoch: Option<i64>,
    ) -> Result<u64, SubscriptionError> {
        let (position, current): (i64, i64) = sqlx::query_as(self.sql.lock_row.clone())
            .bind(checkpoint)
            .fetch_optional(tx)
            .await
            .map_err(error("lock a projection checkpoint"))?
            .ok_or_else(|| self.fenced(format!("its checkpoint `{checkpoint}` is gone (a rebuild)")))?;
        if Some(current) != epoch {
            return Err(self.fenced(format!(
                "another runner took it over (epoch {current}, this runner's is {})",
                epoch.map_or("none".to_owned(), |e| e.to_string())
            )));
        }
        Ok(crate::append::stored_u64(position, || {
            format!("checkpoint `{checkpoint}` is at position {position}")
        })?)
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, SubscriptionError> {
        Ok(self
            .store
            .pool()
            .begin()
            .await
            .map_err(error("begin a projection transaction"))?)
    }

    /// Locks the projection's layout (how many partitions its checkpoints
    /// are of) for the rest of `tx`.
    async fn lock_layout(&self, tx: &mut PgConnection) -> Result<(), SubscriptionError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("{}#layout", self.lock_key))
            .execute(tx)
            .await
            .map_err(error("lock a projection's partitions"))?;
        Ok(())
    }

    /// Refuses to run `count` partitions if `names` (the projection's
    /// checkpoints) are of another number of partitions.
    fn check_layout(&self, names: &[String], count: u32) -> Result<(), SubscriptionError> {
        let stored = names
            .iter()
            .filter_map(|n| n.strip_prefix(self.checkpoint.as_str()))
            .filter_map(Partition::from_suffix)
            .map(Partition::count)
            .find(|&stored| stored != count);
        match stored {
            None => Ok(()),
            Some(stored) => Err(SubscriptionError::partitions(&self.name, stored, count)),
        }
    }

    /// Refuses `count` partitions if the store holds checkpoints of this
    /// projection of another number.
    pub(crate) async fn check_partitions(&self, count: u32) -> Result<(), SubscriptionError> {
        let names: Vec<String> = sqlx::query_scalar(self.sql.layout.clone())
            .bind(&self.checkpoint)
            .fetch_all(self.store.pool())
            .await
            .map_err(error("read a projection's partitions"))?;
        self.check_layout(&names, count)
    }

    /// In one transaction: fences out every runner of the projection, of
    /// any partitioning (their checkpoint rows are locked, then replaced),
    /// empties the tables it owns, and writes `count` partitions'
    /// checkpoints at position 0 with an epoch above every earlier one.
    pub(crate) async fn reset(&self, count: u32) -> Result<(), SubscriptionError> {
        let owned = self.tables.for_rebuild("postgres", &self.name)?;
        let mut tx = self.begin().await?;
        self.lock_layout(&mut tx).await?;
        let rows: Vec<(String, i64)> = sqlx::query_as(self.sql.layout_for_update.clone())
            .bind(&self.checkpoint)
            .fetch_all(&mut *tx)
            .await
            .map_err(error("lock a projection's checkpoints"))?;
        let epoch = rows.iter().map(|(_, e)| *e).max().unwrap_or(0) + 1;
        for table in owned {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await
                .map_err(error("empty a read model's table"))?;
        }
        sqlx::query(self.sql.forget_layout.clone())
            .bind(&self.checkpoint)
            .execute(&mut *tx)
            .await
            .map_err(error("reset a projection's checkpoints"))?;
        let names: Vec<String> = Partition::all(count.max(1))
            .map(|p| format!("{}{}", self.checkpoint, p.suffix()))
            .collect();
        sqlx::query(self.sql.new_layout.clone())
            .bind(&names)
            .bind(epoch)
            .execute(&mut *tx)
            .await
            .map_err(error("reset a projection's checkpoints"))?;
        tx.commit().await.map_err(error("commit a rebuild"))?;
        Ok(())
    }
}

/// A PostgreSQL projection (or one partition of it) as a [`PageSink`]:
/// ownership through the lock connection and the epoch, pages applied in
/// one transaction each.
pub(crate) struct Pages<P, R, C> {
    projection: P,
    partition: Partition,
    /// The projection's name, with the partition's suffix.
    label: String,
    /// The partition's checkpoint.
    checkpoint: String,
    /// The partition's advisory lock key.
    lock_key: String,
    /// The connection holding the advisory lock (or asking for it).
    lock: Option<PgConnection>,
    /// What lock connections call themselves (`application_name`), so a
    /// runner whose lease ran out can be told apart.
    tag: Option<String>,
    /// The epoch taken with the lock; `None` while not owned.
    pub(crate) epoch: Option<i64>,
    /// A partition's lease: how long a page's transaction may sit idle
    /// before the database ends it (a runner that hung holding the
    /// checkpoint's row lock must not hold up the runner that takes over).
    lease: Option<std::time::Duration>,
    _model: std::marker::PhantomData<fn() -> (R, C)>,
}

impl<P, R, C> Pages<P, R, C>
where
    P: Borrow<PgProjection<R, C>> + Send,
    R: ReadModelIn<PgConnection>,
    C: Codec,
{
    pub(crate) fn new(projection: P, partition: Partition) -> Self {
        let p = projection.borrow();
        let suffix = partition.suffix();
        Pages {
            label: format!("{}{suffix}", p.name),
            checkpoint: format!("{}{suffix}", p.checkpoint),
            lock_key: format!("{}{suffix}", p.lock_key),
            projection,
            partition,
            lock: None,
            tag: None,
            epoch: None,
            lease: None,
            _model: std::marker::PhantomData,
        }
    }

    /// Takes over a connection that already holds this partition's lock
    /// (or will ask for it), naming its lock connections `tag`, with pages
    /// whose transactions the database ends when idle for `lease`.
    pub(crate) fn with_lock(mut self, lock: Option<PgConnection>, tag: String, lease: std::time::Duration) -> Self {
        self.lock = lock;
        self.tag = Some(tag);
        self.lease = Some(lease);
        self
    }

    fn p(&self) -> &PgProjection<R, C> {
        self.projection.borrow()
    }

    /// The partition's advisory lock key.
    pub(crate) fn lock_key(&self) -> &str {
        &self.lock_key
    }

    /// Owns the projection, waiting for the lock if another runner holds it.
    pub(crate) async fn wait_until_owned(&mut self) -> Result<(), SubscriptionError> {
        self.lock().await?;
        self.claim().await
    }

    /// Waits for the lock, without taking an epoch.
    async fn lock(&mut self) -> Result<(), SubscriptionError> {
        let mut conn = self.p().store.own_connection().await?;
        sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
            .bind(&self.lock_key)
            .execute(&mut conn)
            .await
            .map_err(error("take the projection lock"))?;
        self.lock = Some(conn);
        Ok(())
    }

    /// Takes a new epoch, fencing out every earlier owner, and migrates the
    /// read model's tables. On failure (a build older than the tables, a
    /// broken migration, another partitioning) it gives the lock back, so a
    /// runner that can do the work takes the projection instead of waiting
    /// behind this one.
    async fn claim(&mut self) -> Result<(), SubscriptionError> {
        let claimed = self.take_epoch().await;
        if claimed.is_err() {
            self.release().await;
        }
        claimed
    }

    async fn take_epoch(&mut self) -> Result<(), SubscriptionError> {
        let p = self.projection.borrow();
        let mut tx = p.begin().await?;
        p.lock_layout(&mut tx).await?;
        let names: Vec<String> = sqlx::query_scalar(p.sql.layout.clone())
            .bind(&p.checkpoint)
            .fetch_all(&mut *tx)
            .await
            .map_err(error("read a projection's partitions"))?;
        p.check_layout(&names, self.partition.count())?;
        let epoch: i64 = sqlx::query_scalar(p.sql.claim.clone())
            .bind(&self.checkpoint)
            .fetch_one(&mut *tx)
            .await
            .map_err(error("claim a projection"))?;
        tx.commit().await.map_err(error("claim a projection"))?;
        tracing::info!(projection = %self.label, epoch, "took over the projection");
        if p.tables.version() > 0 {
            crate::read_models::migrate(&p.store, &p.name, &p.tables).await?;
        }
        self.epoch = Some(epoch);
        Ok(())
    }
}

impl<P, R, C> PageSink for Pages<P, R, C>
where
    P: Borrow<PgProjection<R, C>> + Send,
    R: ReadModelIn<PgConnection>,
    C: Codec,
{
    fn name(&self) -> &str {
        &self.label
    }

    fn page_size(&self) -> usize {
        PAGE
    }

    fn partition(&self) -> Partition {
        self.partition
    }

    /// Still owned if the lock connection answers; otherwise asks for the
    /// lock again on a new connection, and takes a new epoch if it gets it.
    async fn acquire(&mut self) -> Result<bool, SubscriptionError> {
        if self.epoch.is_some() {
            let alive = match self.lock.as_mut() {
                Some(conn) => conn.ping().await.is_ok(),
                None => false,
            };
            if alive {
                return Ok(true);
            }
            tracing::warn!(projection = %self.label, "the projection's lock connection is gone; asking for the lock again");
            self.epoch = None;
            self.lock = None;
        }
        if self.lock.is_none() {
            let mut conn = self.p().store.own_connection().await?;
            if let Some(tag) = &self.tag {
                crate::partitioned::name_connection(&mut conn, tag).await?;
            }
            self.lock = Some(conn);
        }
        let key = self.lock_key.clone();
        let Some(conn) = self.lock.as_mut() else {
            return Ok(false);
        };
        // Asked again by the session that holds it, the lock is granted
        // again (and released with the connection).
        let got = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(key)
            .fetch_one(conn)
            .await;
        match got {
            Ok(true) => {
                self.claim().await?;
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                self.lock = None;
                Err(error("ask for the projection lock")(e).into())
            }
        }
    }

    fn release(&mut self) -> impl Future<Output = ()> + Send {
        self.epoch = None;
        let lock = self.lock.take();
        async move {
            if let Some(conn) = lock {
                let _ = conn.close().await;
            }
        }
    }

    fn checkpoint(&mut self) -> impl Future<Output = Result<u64, SubscriptionError>> + Send {
        let p = self.projection.borrow();
        let checkpoint = &self.checkpoint;
        async move {
            let position: Option<i64> = sqlx::query_scalar(p.sql.load.clone())
                .bind(checkpoint)
                .fetch_optional(p.store.pool())
                .await
                .map_err(error("read a projection checkpoint"))?;
            Ok(crate::append::stored_u64(position.unwrap_or(0), || {
                format!("checkpoint `{checkpoint}` is at a negative position")
            })?)
        }
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
        let epoch = self.epoch;
        let lease = self.lease;
        let p = self.projection.borrow();
        let checkpoint = &self.checkpoint;
        async move {
            let page = Page {
                from,
                to,
                events: &events,
                epoch,
                checkpoint,
                lease,
            };
            // Personal values open with cached keys; a page that met a key
            // not cached yet is rolled back, the key fetched, and the page
            // applied again.
            let Some(keyring) = es_core::EventStore::keyring(&p.store) else {
                return p.apply_page(&page, None).await;
            };
            let mut opener = es_core::personal::Opener::new(keyring);
            let mut runs = 0;
            loop {
                let applied = p.apply_page(&page, Some(&mut opener)).await;
                if !opener.again(applied.is_err(), &mut runs).await? {
                    return applied;
                }
            }
        }
    }
}

/// One page to apply: its events and where its checkpoint moves.
struct Page<'a> {
    from: u64,
    to: u64,
    events: &'a [StoredEvent],
    epoch: Option<i64>,
    checkpoint: &'a str,
    lease: Option<std::time::Duration>,
}

impl<R: ReadModelIn<PgConnection>, C: Codec> PgProjection<R, C> {
    async fn apply_page(
        &self,
        page: &Page<'_>,
        mut opener: Option<&mut es_core::personal::Opener>,
    ) -> Result<(), SubscriptionError> {
        let p = self;
        let mut tx = p.begin().await?;
        if let Some(lease) = page.lease {
            sqlx::query("SELECT set_config('idle_in_transaction_session_timeout', $1, true)")
                .bind(format!("{}ms", lease.as_millis().max(1)))
                .execute(&mut *tx)
                .await
                .map_err(error("bound a projection page's idle time"))?;
        }
        for event in page.events {
            let recorded = event.as_recorded();
            let apply = subscription::catch_panic_async(p.model.apply_recorded_in(&p.codec, &recorded, &mut tx));
            let applied = match opener.as_deref_mut() {
                None => apply.await,
                Some(opener) => opener.run_async(&recorded, apply).await,
            };
            let applied = applied.map_err(|message| SubscriptionError::Panicked {
                subscription: p.name.clone(),
                event_name: event.name.clone(),
                position: event.position,
                message,
            })?;
            applied?;
        }
        if p.check_owner(&mut tx, page.checkpoint, page.epoch).await? != page.from {
            return Err(SubscriptionError::Moved {
                subscription: p.name.clone(),
            });
        }
        sqlx::query(p.sql.save.clone())
            .bind(page.checkpoint)
            .bind(crate::to_i64(page.to, "position")?)
            .execute(&mut *tx)
            .await
            .map_err(error("save a projection checkpoint"))?;
        tx.commit().await.map_err(error("commit a projection page"))?;
        Ok(())
    }
}
