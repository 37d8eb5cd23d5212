//! What partitioned runners of every store share: their options, status
//! and handle, the runners of the partitions a process owns, and how many
//! partitions each live runner may own.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use super::{Partition, RunOptions, RunState, Runner, Status, SubscriptionError};
use crate::error::StoreError;

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

/// A partitioned subscription's runner in this process, sharing the
/// partitions with runners elsewhere: made by a store's partitioned
/// projection (`PgPartitioned::spawn`, `NatsPartitioned::spawn`).
#[derive(Debug)]
pub struct PartitionRunner {
    stop: watch::Sender<bool>,
    status: watch::Receiver<PartitionsStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl PartitionRunner {
    /// Runs `member`'s heartbeats in a background task until stopped.
    pub fn spawn<M: Member>(member: M) -> Self {
        let (stop, stopped) = watch::channel(false);
        let (report, status) = watch::channel(PartitionsStatus {
            runner: member.runner().to_owned(),
            live: 0,
            share: 0,
            owned: Vec::new(),
            last_error: None,
            stopped: false,
        });
        let task = tokio::spawn(run_member(member, report, stopped));
        PartitionRunner { stop, status, task }
    }

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

    /// Stops its partitions' runners after their pages, gives their leases
    /// back and says it left, so the others take its partitions at their
    /// next heartbeat.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops at once, wherever it is, as a crash would (the others take its
    /// partitions over as they would a crashed runner's).
    pub fn abort(self) {
        self.task.abort();
    }
}

/// The runners of the partitions a process owns, by partition number;
/// dropping it (its runner's task aborted) aborts them.
#[derive(Debug, Default)]
pub struct OwnedPartitions(BTreeMap<u32, Runner>);

impl OwnedPartitions {
    /// How many it owns.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it owns none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether it owns partition `index`.
    pub fn contains(&self, index: u32) -> bool {
        self.0.contains_key(&index)
    }

    /// The partitions it owns, by number.
    pub fn indices(&self) -> Vec<u32> {
        self.0.keys().copied().collect()
    }

    /// Adds partition `index`'s runner.
    pub fn insert(&mut self, index: u32, runner: Runner) {
        self.0.insert(index, runner);
    }

    /// Stops and forgets partition `index`'s runner (after its page).
    pub async fn stop(&mut self, index: u32) {
        if let Some(runner) = self.0.remove(&index) {
            runner.stop().await;
        }
    }

    /// Stops and forgets the runners that lost their partition (standing
    /// by: another runner took it) or ended; returns their numbers.
    pub async fn drop_lost(&mut self) -> Vec<u32> {
        let lost: Vec<u32> = self
            .0
            .iter()
            .filter(|(_, r)| matches!(r.status().state, RunState::Standby | RunState::Stopped))
            .map(|(&i, _)| i)
            .collect();
        for &index in &lost {
            self.stop(index).await;
        }
        lost
    }

    /// Gives up the highest partitions until it owns at most `share`;
    /// returns their numbers. Their runners stop in the background, after
    /// the page each is applying (which may be long: a heartbeat must not
    /// wait for it), and give their partition back then.
    pub fn give_up_to(&mut self, share: u32) -> Vec<u32> {
        let mut given = Vec::new();
        while self.0.len() > share as usize {
            if let Some((index, runner)) = self.0.pop_last() {
                tokio::spawn(runner.stop());
                given.push(index);
            }
        }
        given
    }

    /// Each owned partition of `count` and its runner's status.
    pub fn status(&self, count: u32) -> Vec<PartitionStatus> {
        self.0
            .iter()
            .filter_map(|(&index, runner)| {
                Some(PartitionStatus {
                    partition: Partition::new(index, count)?,
                    status: runner.status(),
                })
            })
            .collect()
    }

    /// Stops every runner, after its page.
    pub async fn stop_all(&mut self) {
        for (_, runner) in std::mem::take(&mut self.0) {
            runner.stop().await;
        }
    }
}

impl Drop for OwnedPartitions {
    fn drop(&mut self) {
        for (_, runner) in std::mem::take(&mut self.0) {
            runner.abort();
        }
    }
}

/// One runner of a partitioned subscription, as a store keeps it: its
/// heartbeat renews its place and its leases, and claims or gives up
/// partitions. [`PartitionRunner::spawn`] runs the heartbeats and reports.
pub trait Member: Send + 'static {
    /// The subscription's name, for logs.
    fn subscription(&self) -> &str;

    /// This runner's name, unique among the subscription's runners.
    fn runner(&self) -> &str;

    /// How many partitions the subscription has.
    fn count(&self) -> u32;

    /// How often [`beat`](Member::beat) runs.
    fn heartbeat(&self) -> Duration;

    /// Why this runner must not run at all, if it must not (the store holds
    /// another number of partitions: [`SubscriptionError::partitions`]): it
    /// stops, saying so.
    fn refuse(&mut self) -> impl Future<Output = Option<SubscriptionError>> + Send {
        std::future::ready(None)
    }

    /// One heartbeat: renews this runner's place and leases, then stops the
    /// runners of partitions it gives up and, if `claim`, starts runners
    /// for partitions it claims, in `owned`. Returns the live runners
    /// (itself included) and its share. The first heartbeat claims nothing:
    /// runners started together hear of each other before they claim, and
    /// split the partitions from the start.
    fn beat(
        &mut self,
        owned: &mut OwnedPartitions,
        claim: bool,
    ) -> impl Future<Output = Result<(usize, u32), StoreError>> + Send;

    /// Says this runner left (its partitions' runners are stopped), so the
    /// others need not wait for its lease to run out.
    fn leave(&mut self) -> impl Future<Output = ()> + Send;
}

/// The heartbeat loop: beats, reports, stops on request, on a refusal, or
/// when a partition failed for good (every other would fail the same way).
async fn run_member<M: Member>(
    mut member: M,
    report: watch::Sender<PartitionsStatus>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut owned = OwnedPartitions::default();
    let count = member.count();
    let mut claim = false;
    loop {
        if *stopped.borrow() {
            break;
        }
        let refused = member.refuse().await.map(|e| e.to_string());
        let beat = match &refused {
            None => member
                .beat(&mut owned, std::mem::replace(&mut claim, true))
                .await
                .map_err(|e| e.to_string()),
            Some(reason) => Err(reason.clone()),
        };
        let statuses = owned.status(count);
        let failed = statuses
            .iter()
            .find(|p| p.status.state == RunState::Failed)
            .and_then(|p| p.status.last_error.clone());
        let fatal = refused.or(failed);
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
            s.owned = statuses;
        });
        if let Some(error) = fatal {
            tracing::error!(subscription = member.subscription(), %error, "a partitioned runner stops");
            break;
        }
        if let Err(error) = &beat {
            tracing::warn!(subscription = member.subscription(), %error, "a partitioned runner's heartbeat failed");
        }
        tokio::select! {
            _ = stopped.changed() => break,
            _ = tokio::time::sleep(member.heartbeat()) => {}
        }
    }
    owned.stop_all().await;
    member.leave().await;
    report.send_modify(|s| {
        s.stopped = true;
        s.owned.retain(|p| p.status.state == RunState::Failed);
    });
}

/// A new runner's name: the process id and 64 random bits, unique among a
/// subscription's runners.
pub fn runner_name() -> String {
    format!("{}-{:016x}", std::process::id(), crate::util::random_u64())
}

/// Where a runner starts looking among `count` partitions: a random one,
/// so runners that look at once ask for different partitions.
pub fn random_start(count: u32) -> u32 {
    (crate::util::random_u128() % u128::from(count.max(1))) as u32
}

/// How many of `count` partitions each of `live` runners may own: the count
/// divided among them, rounded up (so they cover every partition).
pub fn fair_share(count: u32, live: usize) -> u32 {
    count.div_ceil(u32::try_from(live.max(1)).unwrap_or(u32::MAX))
}

/// The partitions a runner that owns `owned` should ask for: those no other
/// live runner lists in `others`, starting at `start` (a runner's own
/// random place, so runners that start together ask for different ones).
pub fn free_partitions(count: u32, others: &[u32], owned: &OwnedPartitions, start: u32) -> Vec<u32> {
    let count = count.max(1);
    (0..count)
        .map(|i| (start % count + i) % count)
        .filter(|i| !others.contains(i) && !owned.contains(*i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_partition() {
        assert_eq!(fair_share(8, 0), 8);
        assert_eq!(fair_share(8, 1), 8);
        assert_eq!(fair_share(8, 3), 3);
        assert_eq!(fair_share(8, 4), 2);
        assert_eq!(fair_share(8, 9), 1);
        for count in 1..40 {
            for live in 1..50 {
                assert!(fair_share(count, live) as usize * live >= count as usize);
            }
        }
        let owned = OwnedPartitions::default();
        assert_eq!(free_partitions(8, &[0, 1, 5], &owned, 6), vec![6, 7, 2, 3, 4]);
    }
}
