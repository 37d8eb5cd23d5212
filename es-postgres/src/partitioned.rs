//! A projection run as partitions shared by runners in several processes,
//! through leases in the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use es_core::subscription::{self, Partition, RunOptions, RunState, Status};
use es_core::{Codec, EventStore, Json, ReadModelIn, Runner, StoreError, SubscriptionError};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqlSafeStr, SqlStr};
use tokio::sync::watch;

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

/// How a partitioned runner shares its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOptions {
    /// How each partition's runner follows the log and retries.
    pub run: RunOptions,
    /// How long a runner's record lives without being renewed: a runner
    /// not heard from for this long is taken for dead and its partitions
    /// are taken over. Default 10 s.
    pub lease: Duration,
    /// How often a runner renews its record, counts the live runners and
    /// claims or gives up partitions. Default 2 s; keep it well under the
    /// lease.
    pub heartbeat: Duration,
}

impl Default for PartitionOptions {
    fn default() -> Self {
        PartitionOptions {
            run: RunOptions::default(),
            lease: Duration::from_secs(10),
            heartbeat: Duration::from_secs(2),
        }
    }
}

/// A partition this runner owns, and what its runner is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStatus {
    /// Which partition.
    pub partition: Partition,
    /// Its runner's status: position, lag, last error.
    pub status: Status,
}

/// What a partitioned runner is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionsStatus {
    /// This runner's name in the `runners` table (and in the
    /// `application_name` of its lock connections).
    pub runner: String,
    /// The live runners it counted at its last heartbeat, itself included.
    pub live: usize,
    /// How many partitions it may own.
    pub share: u32,
    /// The partitions it owns.
    pub owned: Vec<PartitionStatus>,
    /// The last failure of its heartbeat, if the last one failed, or why
    /// it stopped (the store holds another number of partitions).
    pub last_error: Option<String>,
    /// Stopped, on request or for [`last_error`](Self::last_error).
    pub stopped: bool,
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
    /// store has them.
    pub async fn partitions(&self, lease: Duration) -> Result<Vec<PartitionRecord>, StoreError> {
        let store = self.projection.store();
        let sql = MemberSql::new(store.schema());
        ensure_table(store).await?;
        let live: Vec<(String, Vec<i32>)> = sqlx::query_as(sql.live.clone())
            .bind(self.projection.checkpoint_name())
            .bind(lease.as_secs_f64())
            .bind("")
            .fetch_all(store.pool())
            .await
            .map_err(error("read a projection's runners"))?;
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
        let runner = format!("{}-{:016x}", std::process::id(), rand_u64());
        let (stop, stopped) = watch::channel(false);
        let (report, status) = watch::channel(PartitionsStatus {
            runner: runner.clone(),
            live: 0,
            share: 0,
            owned: Vec::new(),
            last_error: None,
            stopped: false,
        });
        let member = Member {
            projection: self.projection,
            count: self.count,
            options,
            sql: MemberSql::new(""),
            tag: format!("es-runner {runner}"),
            runner,
            owned: Owned(BTreeMap::new()),
            probe: None,
        };
        let task = tokio::spawn(member.run(report, stopped));
        PartitionRunner { stop, status, task }
    }
}

/// 64 bits of a new event id, 62 of them random: runner names, and where a
/// runner starts looking for free partitions, so runners that start
/// together ask for different ones.
fn rand_u64() -> u64 {
    es_core::EventId::new().as_uuid().as_u64_pair().1
}

/// A partitioned projection's runner in this process: see
/// [`PgPartitioned::spawn`].
#[derive(Debug)]
pub struct PartitionRunner {
    stop: watch::Sender<bool>,
    status: watch::Receiver<PartitionsStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl PartitionRunner {
    /// What it owns, and each owned partition's status.
    pub fn status(&self) -> PartitionsStatus {
        let mut status = self.status.borrow().clone();
        status.stopped |= self.task.is_finished();
        status
    }

    /// The partitions it owns.
    pub fn owned(&self) -> Vec<Partition> {
        self.status.borrow().owned.iter().map(|p| p.partition).collect()
    }

    /// Waits until `done` holds of its status, for at most `timeout`.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&PartitionsStatus) -> bool) -> bool {
        let mut watching = self.status.clone();
        tokio::time::timeout(timeout, watching.wait_for(|s| done(s)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops its partitions' runners after their pages, gives their locks
    /// back and removes its record, so the others take its partitions at
    /// their next heartbeat.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops at once, wherever it is, as a crash would (its record stays
    /// until the lease runs out).
    pub fn abort(self) {
        self.task.abort();
    }
}

/// The runners of the partitions this member owns; dropping it (the member
/// task aborted) aborts them.
struct Owned(BTreeMap<u32, Runner>);

impl Drop for Owned {
    fn drop(&mut self) {
        for (_, runner) in std::mem::take(&mut self.0) {
            runner.abort();
        }
    }
}

struct Member<R, C> {
    projection: Arc<PgProjection<R, C>>,
    count: u32,
    options: PartitionOptions,
    sql: MemberSql,
    runner: String,
    tag: String,
    owned: Owned,
    /// A connection that asks for free partitions' locks; the one that gets
    /// a lock becomes that partition's lock connection.
    probe: Option<PgConnection>,
}

impl<R, C> Member<R, C>
where
    R: ReadModelIn<PgConnection> + 'static,
    C: Codec + 'static,
{
    async fn run(mut self, report: watch::Sender<PartitionsStatus>, mut stopped: watch::Receiver<bool>) {
        self.sql = MemberSql::new(self.projection.store().schema());
        loop {
            if *stopped.borrow() {
                break;
            }
            // Another number of partitions in the store stops the member
            // before it claims anything: every partition would fail the
            // same way.
            let layout = match self.projection.check_partitions(self.count).await {
                Err(e @ SubscriptionError::Partitions { .. }) => Some(e.to_string()),
                _ => None,
            };
            let beat = match &layout {
                None => self.beat().await.map_err(|e| e.to_string()),
                Some(error) => Err(error.clone()),
            };
            let owned = self.owned_status();
            // So does a partition that failed for good (fenced out by a
            // rebuild to another number).
            let failed = owned
                .iter()
                .find(|p| p.status.state == RunState::Failed)
                .and_then(|p| p.status.last_error.clone());
            let fatal = layout.or(failed);
            report.send_modify(|s| {
                match &beat {
                    Ok((live, share)) => {
                        s.live = *live;
                        s.share = *share;
                        s.last_error = None;
                    }
                    Err(e) => s.last_error = Some(e.clone()),
                }
                if let Some(error) = &fatal {
                    s.last_error = Some(error.clone());
                }
                s.owned = owned;
            });
            if let Some(error) = fatal {
                tracing::error!(projection = %self.projection.name(), %error, "a partitioned runner stops");
                break;
            }
            if let Err(error) = &beat {
                tracing::warn!(projection = %self.projection.name(), %error, "a partitioned runner's heartbeat failed");
            }
            tokio::select! {
                _ = stopped.changed() => break,
                _ = tokio::time::sleep(self.options.heartbeat) => {}
            }
        }
        for (_, runner) in std::mem::take(&mut self.owned.0) {
            runner.stop().await;
        }
        if let Err(e) = self.leave().await {
            tracing::warn!(projection = %self.projection.name(), error = %e, "could not remove a stopped runner's record");
        }
        report.send_modify(|s| {
            s.stopped = true;
            s.owned = s
                .owned
                .iter()
                .filter(|p| p.status.state == RunState::Failed)
                .cloned()
                .collect();
        });
    }

    fn owned_status(&self) -> Vec<PartitionStatus> {
        self.owned
            .0
            .iter()
            .map(|(&index, runner)| PartitionStatus {
                partition: Partition::new(index, self.count).unwrap_or(Partition::WHOLE),
                status: runner.status(),
            })
            .collect()
    }

    /// One heartbeat: drops partitions whose runner lost them, renews the
    /// record, ends expired runners' lock sessions, then gives up or claims
    /// partitions to reach the share. Returns the live runners and the share.
    async fn beat(&mut self) -> Result<(usize, u32), StoreError> {
        let lost: Vec<u32> = self
            .owned
            .0
            .iter()
            .filter(|(_, r)| matches!(r.status().state, RunState::Standby | RunState::Stopped))
            .map(|(&i, _)| i)
            .collect();
        for index in lost {
            if let Some(runner) = self.owned.0.remove(&index) {
                tracing::info!(projection = %self.projection.name(), partition = index, "lost a partition");
                runner.stop().await;
            }
        }
        let store = self.projection.store().clone();
        ensure_table(&store).await?;
        // The probe connection is this runner's presence: the others count
        // it live only while a session named after it exists.
        self.open_probe().await?;
        let subscription = self.projection.checkpoint_name();
        let owns: Vec<i32> = self.owned.0.keys().map(|&i| i as i32).collect();
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
        let members = live.len().max(1);
        let share = self.count.div_ceil(members as u32);
        // Over the share: give up the highest partitions, after their page.
        while self.owned.0.len() > share as usize {
            if let Some((index, runner)) = self.owned.0.pop_last() {
                tracing::info!(projection = %self.projection.name(), partition = index, share, "giving a partition up to a runner that joined");
                runner.stop().await;
            }
        }
        if self.owned.0.len() < share as usize {
            let taken: Vec<u32> = live
                .iter()
                .filter(|(runner, _)| *runner != self.runner)
                .flat_map(|(_, owns)| owns.iter().map(|&i| i as u32))
                .collect();
            let start = (rand_u64() % u64::from(self.count)) as u32;
            let free: Vec<u32> = (0..self.count)
                .map(|i| (start + i) % self.count)
                .filter(|i| !taken.contains(i) && !self.owned.0.contains_key(i))
                .collect();
            for index in free {
                if self.owned.0.len() >= share as usize {
                    break;
                }
                if self.try_take(index).await? {
                    tracing::info!(projection = %self.projection.name(), partition = index, "took a partition");
                }
            }
        }
        Ok((members, share))
    }

    /// Asks for partition `index`'s lock on the probe connection; if it gets
    /// it, that connection becomes the partition's and a runner starts.
    async fn try_take(&mut self, index: u32) -> Result<bool, StoreError> {
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
        self.owned.0.insert(index, runner);
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

    async fn leave(&mut self) -> Result<(), StoreError> {
        let store = self.projection.store();
        sqlx::query(self.sql.leave.clone())
            .bind(self.projection.checkpoint_name())
            .bind(&self.runner)
            .execute(store.pool())
            .await
            .map_err(error("remove a runner's record"))?;
        if let Some(probe) = self.probe.take() {
            let _ = probe.close().await;
        }
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
