//! A projection run as partitions shared by runners in several processes,
//! through leases in the store.

use std::sync::Arc;
use std::time::Duration;

use es_core::subscription::{
    self, Member, OwnedPartitions, Partition, PartitionOptions, PartitionRunner, fair_share, free_partitions,
    random_start, runner_name,
};
use es_core::{Codec, EventStore, Json, ReadModelIn, StoreError, SubscriptionError};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqlSafeStr, SqlStr};

use crate::projection::Pages;
use crate::{PgProjection, PostgresStore, error};

/// A [`PgProjection`] run as partitions: each stream's events go to one of
/// `count` partitions ([`stream_partition`](es_core::subscription::stream_partition)),
/// each partition has its own checkpoint, lock and epoch, and the runners
/// of every process that [`spawn`](Self::spawn)s it share the partitions
/// between them. Made by [`PgProjection::partitioned`].
///
/// # What order is kept
///
/// A partition applies its events in log order, one page (one transaction)
/// at a time, so the events of one stream are applied in their order, each
/// exactly once. Events of streams in different partitions are applied in
/// no set order: a read model whose rows combine several streams (a total
/// over all accounts) must be written so that the order does not matter
/// (an `UPDATE ... SET total = total + $1`), or run unpartitioned.
///
/// # Leases
///
/// Each runner records itself in the store schema's `runners` table and
/// renews that record every [`heartbeat`](PartitionOptions::heartbeat).
/// The runners whose record is younger than the
/// [`lease`](PartitionOptions::lease) share the partitions: each claims
/// free ones up to its share (the partition count divided by the live
/// runners, rounded up), and one over its share gives partitions up, after
/// the page it is applying, when another joins.
///
/// A partition is owned, as an unpartitioned projection is, through a
/// session advisory lock on a connection of its own, and fenced by an epoch
/// that every page checks before it commits: a runner that lost a
/// partition cannot commit to it. A runner's connections carry its name
/// (`application_name`), and the others count it live only while one of
/// them is open: a runner whose process dies loses its connections, and
/// so its locks and its place, at once, and the others take its partitions
/// over at their next heartbeat. A runner that stops renewing its record
/// while its connections stay open (a hung process, a network cut the
/// database has not noticed) is dropped after the lease: the runner that
/// finds its record expired ends the sessions it left
/// (`pg_terminate_backend`, which needs every runner to connect as the
/// same role, or one with `pg_signal_backend`). Failover takes about one
/// heartbeat after a process dies, and at most about one lease plus one
/// heartbeat after it hangs. A page's transaction that sits idle for
/// longer than the lease is ended by the database
/// (`idle_in_transaction_session_timeout`), so a runner that hung in the
/// middle of a page holds up no one: a handler must not wait longer than
/// the lease between two statements of its page.
///
/// # Changing the number of partitions
///
/// The store remembers how many partitions a projection's checkpoints are
/// of: a runner started with another number stops with
/// [`SubscriptionError::Partitions`] before it applies anything. The
/// number changes only through [`rebuild`](Self::rebuild) (or
/// [`PgProjection::rebuild`] back to one), which empties the read model's
/// tables and resets the checkpoints of the new number in one transaction.
///
/// A projection whose name contains `#` must not be partitioned: the
/// partitions' checkpoints are named `projection:<name>#<index>/<count>`.
pub struct PgPartitioned<R, C = Json> {
    projection: Arc<PgProjection<R, C>>,
    count: u32,
}

impl<R: ReadModelIn<PgConnection>, C: Codec> PgProjection<R, C> {
    /// Runs this projection as `count` partitions (0 is taken as 1).
    pub fn partitioned(self, count: u32) -> PgPartitioned<R, C> {
        PgPartitioned {
            projection: Arc::new(self),
            count: count.max(1),
        }
    }
}

/// What the store says of one partition: where its checkpoint is and which
/// runner claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRecord {
    /// Which partition.
    pub partition: Partition,
    /// Its checkpoint (0 when it never ran).
    pub position: u64,
    /// The live runner whose last heartbeat listed it, if any.
    pub owner: Option<String>,
}

impl<R, C> PgPartitioned<R, C>
where
    R: ReadModelIn<PgConnection> + 'static,
    C: Codec + 'static,
{
    /// How many partitions.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The partitioned projection.
    pub fn projection(&self) -> &PgProjection<R, C> {
        &self.projection
    }

    /// Applies every event after each partition's checkpoint, one partition
    /// after another, waiting for each partition's lock (a runner may own
    /// it) and giving it back. Returns the lowest checkpoint reached.
    pub async fn catch_up(&self) -> Result<u64, SubscriptionError> {
        let mut lowest = u64::MAX;
        for partition in Partition::all(self.count) {
            let mut sink = subscription::Paged::new(Pages::new(&*self.projection, partition));
            sink.get_mut().wait_until_owned().await?;
            let reached = subscription::catch_up(self.projection.store(), &mut sink).await;
            subscription::Sink::release(&mut sink).await;
            lowest = lowest.min(reached?);
        }
        Ok(lowest)
    }

    /// Empties the tables the read model owns and resets the checkpoints of
    /// `count` partitions to 0, in one transaction, fencing out every
    /// runner of the projection mid-page, whatever its partitioning; a
    /// runner of another partitioning then stops. The runners of this one
    /// (or [`catch_up`](Self::catch_up)) replay the log into the tables.
    /// This is how the number of partitions changes.
    pub async fn rebuild(&self) -> Result<(), SubscriptionError> {
        self.projection.reset(self.count).await
    }

    /// Each partition's checkpoint and the live runner that owns it, as the
    /// store has them (runners whose record is younger than `lease`). It
    /// only reads.
    pub async fn partitions(&self, lease: Duration) -> Result<Vec<PartitionRecord>, StoreError> {
        let store = self.projection.store();
        let sql = MemberSql::new(store.schema());
        // A read: no runner ever ran here if the table is missing.
        let table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(format!(r#""{}".runners"#, store.schema()))
            .fetch_one(store.pool())
            .await
            .map_err(error("look for the runners table"))?;
        let live: Vec<(String, Vec<i32>)> = match table {
            None => Vec::new(),
            Some(_) => sqlx::query_as(sql.live.clone())
                .bind(self.projection.checkpoint_name())
                .bind(lease.as_secs_f64())
                .bind("")
                .fetch_all(store.pool())
                .await
                .map_err(error("read a projection's runners"))?,
        };
        let mut records = Vec::new();
        for partition in Partition::all(self.count) {
            let name = format!("{}{}", self.projection.checkpoint_name(), partition.suffix());
            let position = store.load_checkpoint(&name).await?.unwrap_or(0);
            let owner = live
                .iter()
                .find(|(_, owns)| owns.contains(&(partition.index() as i32)))
                .map(|(runner, _)| runner.clone());
            records.push(PartitionRecord {
                partition,
                position,
                owner,
            });
        }
        Ok(records)
    }

    /// Runs this process's share of the partitions in the background: see
    /// the type's documentation for how runners share them.
    pub fn spawn(self, options: PartitionOptions) -> PartitionRunner {
        let runner = runner_name();
        PartitionRunner::spawn(PgMember {
            sql: MemberSql::new(self.projection.store().schema()),
            projection: self.projection,
            count: self.count,
            options,
            tag: format!("es-runner {runner}"),
            runner,
            probe: None,
            table_ready: false,
        })
    }
}

struct PgMember<R, C> {
    projection: Arc<PgProjection<R, C>>,
    count: u32,
    options: PartitionOptions,
    sql: MemberSql,
    runner: String,
    tag: String,
    /// A connection that asks for free partitions' locks; the one that gets
    /// a lock becomes that partition's lock connection.
    probe: Option<PgConnection>,
    /// Whether the `runners` table is known to exist.
    table_ready: bool,
}

impl<R, C> Member for PgMember<R, C>
where
    R: ReadModelIn<PgConnection> + 'static,
    C: Codec + 'static,
{
    fn subscription(&self) -> &str {
        self.projection.name()
    }

    fn runner(&self) -> &str {
        &self.runner
    }

    fn count(&self) -> u32 {
        self.count
    }

    fn heartbeat(&self) -> Duration {
        self.options.heartbeat
    }

    /// Another number of partitions in the store stops the runner before
    /// it claims anything.
    async fn refuse(&mut self) -> Option<SubscriptionError> {
        match self.projection.check_partitions(self.count).await {
            Err(e @ SubscriptionError::Partitions { .. }) => Some(e),
            _ => None,
        }
    }

    /// Drops partitions whose runner lost them, renews the record, ends
    /// expired runners' lock sessions, then gives up or claims partitions
    /// to reach the share.
    async fn beat(&mut self, owned: &mut OwnedPartitions, claim: bool) -> Result<(usize, u32), StoreError> {
        for index in owned.drop_lost().await {
            tracing::info!(projection = %self.projection.name(), partition = index, "lost a partition");
        }
        let store = self.projection.store().clone();
        if !self.table_ready {
            ensure_table(&store).await?;
            self.table_ready = true;
        }
        // The probe connection is this runner's presence: the others count
        // it live only while a session named after it exists.
        self.open_probe().await?;
        let subscription = self.projection.checkpoint_name();
        let owns: Vec<i32> = owned.indices().into_iter().map(|i| i as i32).collect();
        sqlx::query(self.sql.renew.clone())
            .bind(&subscription)
            .bind(&self.runner)
            .bind(self.count as i32)
            .bind(&owns)
            .execute(store.pool())
            .await
            .map_err(error("renew a runner's lease"))?;
        let lease = self.options.lease.as_secs_f64();
        let expired: Vec<String> = sqlx::query_scalar(self.sql.expire.clone())
            .bind(&subscription)
            .bind(lease)
            .bind(&self.runner)
            .fetch_all(store.pool())
            .await
            .map_err(error("expire runners' leases"))?;
        for runner in expired {
            let ended = sqlx::query_scalar::<_, i64>(self.sql.terminate.clone())
                .bind(format!("es-runner {runner}"))
                .fetch_one(store.pool())
                .await;
            match ended {
                Ok(n) => tracing::warn!(
                    projection = %self.projection.name(),
                    runner,
                    sessions = n,
                    "a runner's lease ran out; ended its lock sessions"
                ),
                Err(e) => tracing::warn!(
                    projection = %self.projection.name(),
                    runner,
                    error = %e,
                    "a runner's lease ran out, and its lock sessions could not be ended; its partitions wait for its connections to close"
                ),
            }
        }
        let live: Vec<(String, Vec<i32>)> = sqlx::query_as(self.sql.live.clone())
            .bind(&subscription)
            .bind(lease)
            .bind(&self.runner)
            .fetch_all(store.pool())
            .await
            .map_err(error("count the live runners"))?;
        let share = fair_share(self.count, live.len());
        for index in owned.give_up_to(share) {
            tracing::info!(projection = %self.projection.name(), partition = index, share, "gave a partition up to a runner that joined");
        }
        let others: Vec<u32> = live
            .iter()
            .filter(|(runner, _)| *runner != self.runner)
            .flat_map(|(_, owns)| owns.iter().map(|&i| i as u32))
            .collect();
        for index in free_partitions(self.count, &others, owned, random_start(self.count)) {
            if !claim || owned.len() >= share as usize {
                break;
            }
            if self.try_take(index, owned).await? {
                tracing::info!(projection = %self.projection.name(), partition = index, "took a partition");
            }
        }
        Ok((live.len().max(1), share))
    }

    async fn leave(&mut self) {
        let store = self.projection.store();
        let left = sqlx::query(self.sql.leave.clone())
            .bind(self.projection.checkpoint_name())
            .bind(&self.runner)
            .execute(store.pool())
            .await;
        if let Err(e) = left {
            tracing::warn!(projection = %self.projection.name(), error = %e, "could not remove a stopped runner's record");
        }
        if let Some(probe) = self.probe.take() {
            let _ = probe.close().await;
        }
    }
}

impl<R, C> PgMember<R, C>
where
    R: ReadModelIn<PgConnection> + 'static,
    C: Codec + 'static,
{
    /// Asks for partition `index`'s lock on the probe connection; if it gets
    /// it, that connection becomes the partition's and a runner starts.
    async fn try_take(&mut self, index: u32, owned: &mut OwnedPartitions) -> Result<bool, StoreError> {
        let Some(partition) = Partition::new(index, self.count) else {
            return Ok(false);
        };
        self.open_probe().await?;
        let store = self.projection.store().clone();
        let Some(probe) = self.probe.as_mut() else {
            return Ok(false);
        };
        let pages = Pages::new(Arc::clone(&self.projection), partition);
        let got: bool = match sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(pages.lock_key())
            .fetch_one(probe)
            .await
        {
            Ok(got) => got,
            Err(e) => {
                self.probe = None;
                return Err(error("ask for a partition's lock")(e));
            }
        };
        if !got {
            return Ok(false);
        }
        let lock = self.probe.take();
        let pages = pages.with_lock(lock, self.tag.clone(), self.options.lease);
        let runner = subscription::spawn(store.clone(), subscription::Paged::new(pages), self.options.run);
        owned.insert(index, runner);
        Ok(true)
    }

    /// Opens the probe connection, named after this runner, if it is not
    /// open.
    async fn open_probe(&mut self) -> Result<(), StoreError> {
        if let Some(probe) = self.probe.as_mut()
            && probe.ping().await.is_ok()
        {
            return Ok(());
        }
        let mut conn = self.projection.store().own_connection().await?;
        name_connection(&mut conn, &self.tag).await?;
        self.probe = Some(conn);
        Ok(())
    }
}

/// Names a lock connection (its `application_name`), so the runner that
/// finds its owner's lease expired can end it.
pub(crate) async fn name_connection(conn: &mut PgConnection, tag: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('application_name', $1, false)")
        .bind(tag)
        .execute(conn)
        .await
        .map_err(error("name a lock connection"))?;
    Ok(())
}

/// Creates the `runners` table if the schema lacks it.
async fn ensure_table(store: &PostgresStore) -> Result<(), StoreError> {
    let s = store.schema();
    let mut tx = store.pool().begin().await.map_err(error("create the runners table"))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("es-runners-table:{s}"))
        .execute(&mut *tx)
        .await
        .map_err(error("create the runners table"))?;
    sqlx::query(AssertSqlSafe(format!(
        r#"CREATE TABLE IF NOT EXISTS "{s}".runners (
               subscription TEXT        NOT NULL,
               runner       TEXT        NOT NULL,
               partitions   INTEGER     NOT NULL,
               owns         INTEGER[]   NOT NULL,
               started_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
               seen_at      TIMESTAMPTZ NOT NULL,
               PRIMARY KEY (subscription, runner)
           )"#
    )))
    .execute(&mut *tx)
    .await
    .map_err(error("create the runners table"))?;
    tx.commit().await.map_err(error("create the runners table"))
}

/// The statements of the runners' records.
struct MemberSql {
    renew: SqlStr,
    expire: SqlStr,
    live: SqlStr,
    terminate: SqlStr,
    leave: SqlStr,
}

impl MemberSql {
    fn new(s: &str) -> Self {
        let sql = |text: String| AssertSqlSafe(text).into_sql_str();
        MemberSql {
            renew: sql(format!(
                r#"INSERT INTO "{s}".runners (subscription, runner, partitions, owns, seen_at)
                   VALUES ($1, $2, $3, $4, clock_timestamp())
                   ON CONFLICT (subscription, runner) DO UPDATE
                   SET partitions = excluded.partitions, owns = excluded.owns, seen_at = excluded.seen_at"#
            )),
            // Gone: not renewed within the lease (hung, cut off), or
            // without a session of its own any more (its process died,
            // and the database closed its connections).
            expire: sql(format!(
                r#"DELETE FROM "{s}".runners r
                   WHERE r.subscription = $1 AND r.runner <> $3
                     AND (r.seen_at <= clock_timestamp() - $2 * interval '1 second'
                          OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                                         WHERE a.application_name = 'es-runner ' || r.runner))
                   RETURNING r.runner"#
            )),
            live: sql(format!(
                r#"SELECT r.runner, r.owns FROM "{s}".runners r
                   WHERE r.subscription = $1 AND r.seen_at > clock_timestamp() - $2 * interval '1 second'
                     AND (r.runner = $3 OR EXISTS (SELECT 1 FROM pg_stat_activity a
                                                   WHERE a.application_name = 'es-runner ' || r.runner))
                   ORDER BY r.runner"#
            )),
            terminate: sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = $1 AND pid <> pg_backend_pid()"
                .to_owned()),
            leave: sql(format!(
                r#"DELETE FROM "{s}".runners WHERE subscription = $1 AND runner = $2"#
            )),
        }
    }
}
