//! In-memory read models run as partitions shared by runners in several
//! processes, through leases in the records stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use es_core::projection::PartitionedProjection;
use es_core::subscription::{
    Member, OwnedPartitions, Partition, PartitionOptions, PartitionRunner, fair_share, free_partitions, random_start,
    runner_name,
};
use es_core::{Codec, ReadModel, StoreError, SubscriptionError};
use futures_util::StreamExt;

use crate::{NatsStore, failed, hex};

/// A [`PartitionedProjection`] whose partitions are shared by the runners of
/// every process that [`spawn`](Self::spawn)s it on the same store.
///
/// # Leases
///
/// Each partition has a lease: a record in the records stream naming the
/// runner that holds it, changed only by compare-and-set on its sequence,
/// so two runners never both hold it. A holder renews each of its leases
/// every [`heartbeat`](PartitionOptions::heartbeat); a runner that lost a
/// lease (the compare-and-set failed: another runner took it) stops that
/// partition before its next page. Runners announce themselves on a core
/// NATS subject each heartbeat, and those heard within the
/// [`lease`](PartitionOptions::lease) share the partitions: each claims
/// free ones up to its share (the partition count divided by the live
/// runners, rounded up), and one over its share gives partitions up (it
/// frees their leases) when another joins.
///
/// A lease is free when its holder freed it (stopped, or gave it up), or
/// when a runner has seen it unchanged for a whole lease, by its own
/// clock: clocks of different machines are never compared. Each runner
/// reads every lease it does not hold at each heartbeat, so a runner whose
/// process dies, or hangs, has its partitions taken over after about one
/// lease and one heartbeat.
///
/// # What is kept
///
/// Within a process each partition's events are applied in log order,
/// once; a process taking a partition over replays it from the start of
/// the log (in-memory state does not survive its process), so across
/// processes an event is applied at least once.
///
/// The number of partitions is recorded with the leases: a runner started
/// with another number stops with the reason before it claims anything,
/// and [`repartition`](Self::repartition) is how it changes.
pub struct NatsPartitioned<R, C> {
    store: NatsStore,
    projection: PartitionedProjection<R, C>,
}

/// A partition's lease, as the records stream has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Which partition.
    pub partition: Partition,
    /// The runner that holds it, if any.
    pub holder: Option<String>,
    /// The lease record's sequence (0: never written).
    pub revision: u64,
}

impl<R: ReadModel, C: Codec + Clone + 'static> NatsPartitioned<R, C> {
    /// Runs `projection`'s partitions on `store`.
    pub fn new(store: NatsStore, projection: PartitionedProjection<R, C>) -> Self {
        NatsPartitioned { store, projection }
    }

    /// The read model this process feeds.
    pub fn projection(&self) -> &PartitionedProjection<R, C> {
        &self.projection
    }

    /// Each partition's lease.
    pub async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let names = Names::new(&self.store, &self.projection);
        let mut leases = Vec::new();
        for partition in Partition::all(self.projection.count()) {
            let (revision, holder) = read_lease(&self.store, &names.lease(partition.index())).await?;
            leases.push(Lease {
                partition,
                holder,
                revision,
            });
        }
        Ok(leases)
    }

    /// Records this projection's number of partitions as the one runners
    /// must be started with: runners of another number stop at their next
    /// heartbeat, and those of this number share the partitions (each
    /// process's in-memory state is built from the log as it takes them).
    pub async fn repartition(&self) -> Result<(), StoreError> {
        let names = Names::new(&self.store, &self.projection);
        let value = self.projection.count().to_string().into_bytes();
        loop {
            let revision = self.store.record(&names.layout).await?.map_or(0, |(r, _)| r);
            if self
                .store
                .swap_record(&names.layout, value.clone(), Some(revision))
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
    }

    /// Runs this process's share of the partitions in the background.
    pub fn spawn(&self, options: PartitionOptions) -> PartitionRunner {
        let runner = runner_name();
        PartitionRunner::spawn(NatsMember {
            names: Names::new(&self.store, &self.projection),
            store: self.store.clone(),
            projection: self.projection.clone(),
            options,
            runner,
            leases: BTreeMap::new(),
            seen: HashMap::new(),
            heard: Arc::new(Mutex::new(HashMap::new())),
            listener: None,
        })
    }
}

/// The lease record on `subject`: its sequence (0: never written) and the
/// runner it names (none: free).
async fn read_lease(store: &NatsStore, subject: &str) -> Result<(u64, Option<String>), StoreError> {
    Ok(match store.record(subject).await? {
        None => (0, None),
        Some((revision, value)) => {
            let holder = std::str::from_utf8(&value).ok().filter(|h| !h.is_empty());
            (revision, holder.map(str::to_owned))
        }
    })
}

/// The subjects of one partitioned projection.
#[derive(Debug, Clone)]
struct Names {
    name: String,
    count: u32,
    /// The record of the number of partitions.
    layout: String,
    /// Where runners announce themselves (core NATS, not stored).
    runners: String,
}

impl Names {
    fn new<R, C>(store: &NatsStore, projection: &PartitionedProjection<R, C>) -> Self
    where
        R: ReadModel,
        C: Codec + Clone,
    {
        let prefix = store.prefix();
        let key = hex(projection.name().as_bytes());
        Names {
            name: projection.name().to_owned(),
            count: projection.count(),
            layout: format!("{prefix}.records.leases.l{key}"),
            runners: format!("{prefix}.runners.l{key}"),
        }
    }

    /// Partition `index`'s lease record (of this number of partitions).
    fn lease(&self, index: u32) -> String {
        format!("{}.n{}.p{index}", self.layout, self.count)
    }
}

/// What one runner holds: each owned partition's lease revision and the
/// flag its feed checks.
struct Held {
    revision: u64,
    held: Arc<AtomicBool>,
}

/// Runners heard announcing themselves: what each owns, and when.
type Heard = HashMap<String, (Vec<u32>, Instant)>;

struct NatsMember<R, C> {
    store: NatsStore,
    projection: PartitionedProjection<R, C>,
    names: Names,
    options: PartitionOptions,
    runner: String,
    leases: BTreeMap<u32, Held>,
    /// Other runners' leases as this runner last saw them, and since when.
    seen: HashMap<u32, (u64, Instant)>,
    /// The runners heard announcing themselves: what they own, and when.
    heard: Arc<Mutex<Heard>>,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl<R, C> Drop for NatsMember<R, C> {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
    }
}

impl<R: ReadModel, C: Codec + Clone + 'static> Member for NatsMember<R, C> {
    fn subscription(&self) -> &str {
        &self.names.name
    }

    fn runner(&self) -> &str {
        &self.runner
    }

    fn count(&self) -> u32 {
        self.names.count
    }

    fn heartbeat(&self) -> Duration {
        self.options.heartbeat
    }

    /// Records the number of partitions if none is; refuses another.
    async fn refuse(&mut self) -> Option<SubscriptionError> {
        match self.check_layout().await {
            Ok(None) => None,
            Ok(Some(stored)) => Some(SubscriptionError::partitions(
                &self.names.name,
                stored,
                self.names.count,
            )),
            // A store that does not answer: the heartbeat will say so.
            Err(_) => None,
        }
    }

    /// Drops partitions whose runner lost them, renews every lease held,
    /// announces this runner, gives up partitions over the share, then reads
    /// every other lease and claims free or stale ones up to the share.
    async fn beat(&mut self, owned: &mut OwnedPartitions, claim: bool) -> Result<(usize, u32), StoreError> {
        for index in owned.drop_lost().await {
            if let Some(held) = self.leases.remove(&index) {
                held.held.store(false, Ordering::SeqCst);
            }
        }
        self.listen().await?;
        // Renew every lease; one another runner took is lost.
        for index in owned.indices() {
            let Some(revision) = self.leases.get(&index).map(|h| h.revision) else {
                continue;
            };
            let renewed = self
                .store
                .swap_record(
                    &self.names.lease(index),
                    self.runner.clone().into_bytes(),
                    Some(revision),
                )
                .await?;
            match renewed {
                Some(revision) => {
                    if let Some(held) = self.leases.get_mut(&index) {
                        held.revision = revision;
                    }
                }
                None => {
                    tracing::warn!(subscription = %self.names.name, partition = index, "lost a partition's lease");
                    if let Some(held) = self.leases.remove(&index) {
                        held.held.store(false, Ordering::SeqCst);
                    }
                    owned.stop(index).await;
                }
            }
        }
        let owns: Vec<String> = owned.indices().iter().map(u32::to_string).collect();
        let client = self.store.client();
        client
            .publish(
                self.names.runners.clone(),
                format!("beat {} {}", self.runner, owns.join(",")).into(),
            )
            .await
            .map_err(failed(client, "announce a runner"))?;
        let others: Vec<(String, Vec<u32>)> = {
            let mut heard = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
            heard.retain(|_, (_, at)| at.elapsed() < self.options.lease);
            heard
                .iter()
                .filter(|(runner, _)| **runner != self.runner)
                .map(|(runner, (owns, _))| (runner.clone(), owns.clone()))
                .collect()
        };
        let live = others.len() + 1;
        let share = fair_share(self.names.count, live);
        for index in owned.give_up_to(share) {
            if let Some(held) = self.leases.remove(&index) {
                held.held.store(false, Ordering::SeqCst);
                self.store
                    .swap_record(&self.names.lease(index), Vec::new(), Some(held.revision))
                    .await?;
                tracing::info!(subscription = %self.names.name, partition = index, share, "gave a partition up to a runner that joined");
            }
        }
        // Every partition not owned here is read at each heartbeat, so a
        // lease left by a runner that died has been watched for a whole
        // lease by the time its runner is no longer heard from.
        let listed: Vec<u32> = others.iter().flat_map(|(_, owns)| owns.iter().copied()).collect();
        let count = self.names.count;
        let mut claimable = Vec::new();
        for index in free_partitions(count, &[], owned, random_start(count)) {
            if let Some(found) = self.observe(index).await? {
                claimable.push(found);
            }
        }
        // Partitions nobody lists first, then those whose holder went quiet.
        claimable.sort_by_key(|(index, _, _)| listed.contains(index));
        for (index, revision, holder) in claimable {
            if !claim || owned.len() >= share as usize {
                break;
            }
            self.take(index, revision, holder, owned).await?;
        }
        Ok((live, share))
    }

    async fn leave(&mut self) {
        for (index, held) in std::mem::take(&mut self.leases) {
            held.held.store(false, Ordering::SeqCst);
            let freed = self
                .store
                .swap_record(&self.names.lease(index), Vec::new(), Some(held.revision))
                .await;
            if let Err(e) = freed {
                tracing::warn!(subscription = %self.names.name, partition = index, error = %e, "could not free a lease");
            }
        }
        let said = self
            .store
            .client()
            .publish(self.names.runners.clone(), format!("left {}", self.runner).into())
            .await;
        if let Err(e) = said {
            tracing::debug!(subscription = %self.names.name, error = %e, "could not say a runner left");
        }
    }
}

impl<R: ReadModel, C: Codec + Clone + 'static> NatsMember<R, C> {
    /// The number of partitions recorded, if it is not this runner's
    /// (recording this runner's if none is).
    async fn check_layout(&self) -> Result<Option<u32>, StoreError> {
        loop {
            match self.store.record(&self.names.layout).await? {
                Some((_, value)) => {
                    let stored = std::str::from_utf8(&value).ok().and_then(|v| v.parse::<u32>().ok());
                    return Ok(stored.filter(|&n| n != self.names.count));
                }
                None => {
                    let value = self.names.count.to_string().into_bytes();
                    if self
                        .store
                        .swap_record(&self.names.layout, value, Some(0))
                        .await?
                        .is_some()
                    {
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn listen(&mut self) -> Result<(), StoreError> {
        if self.listener.as_ref().is_some_and(|l| !l.is_finished()) {
            return Ok(());
        }
        let client = self.store.client();
        let mut subscriber = client
            .subscribe(self.names.runners.clone())
            .await
            .map_err(failed(client, "listen to a projection's runners"))?;
        let heard = Arc::clone(&self.heard);
        self.listener = Some(tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let Ok(text) = std::str::from_utf8(&message.payload) else {
                    continue;
                };
                let mut heard = heard.lock().unwrap_or_else(PoisonError::into_inner);
                let mut words = text.split(' ');
                match (words.next(), words.next()) {
                    (Some("beat"), Some(runner)) => {
                        let owns = words
                            .next()
                            .unwrap_or("")
                            .split(',')
                            .filter_map(|i| i.parse().ok())
                            .collect();
                        heard.insert(runner.to_owned(), (owns, Instant::now()));
                    }
                    (Some("left"), Some(runner)) => {
                        heard.remove(runner);
                    }
                    _ => {}
                }
            }
        }));
        Ok(())
    }

    /// Reads partition `index`'s lease: its revision and holder if it can
    /// be taken (free, or unchanged for a whole lease as this runner saw
    /// it).
    async fn observe(&mut self, index: u32) -> Result<Option<(u32, u64, Option<String>)>, StoreError> {
        let (revision, holder) = read_lease(&self.store, &self.names.lease(index)).await?;
        let stale = match self.seen.get(&index) {
            Some(&(seen, since)) if seen == revision => since.elapsed() >= self.options.lease,
            _ => {
                self.seen.insert(index, (revision, Instant::now()));
                false
            }
        };
        let free = holder.as_ref().is_none_or(|h| *h == self.runner);
        Ok((free || stale).then_some((index, revision, holder)))
    }

    /// Takes partition `index`'s lease, if it is still at `revision`, and
    /// starts its runner.
    async fn take(
        &mut self,
        index: u32,
        revision: u64,
        holder: Option<String>,
        owned: &mut OwnedPartitions,
    ) -> Result<(), StoreError> {
        let Some(partition) = Partition::new(index, self.names.count) else {
            return Ok(());
        };
        let Some(revision) = self
            .store
            .swap_record(
                &self.names.lease(index),
                self.runner.clone().into_bytes(),
                Some(revision),
            )
            .await?
        else {
            return Ok(());
        };
        if let Some(previous) = holder.filter(|h| *h != self.runner) {
            tracing::warn!(subscription = %self.names.name, partition = index, previous, "took over a partition whose lease ran out");
        } else {
            tracing::info!(subscription = %self.names.name, partition = index, "took a partition");
        }
        let held = Arc::new(AtomicBool::new(true));
        let feed = self.projection.feed(partition, Arc::clone(&held));
        let runner = es_core::subscription::spawn(self.store.clone(), feed, self.options.run);
        owned.insert(index, runner);
        self.leases.insert(index, Held { revision, held });
        Ok(())
    }
}
