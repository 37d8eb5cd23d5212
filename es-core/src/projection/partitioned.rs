//! An in-memory read model fed by the partitions a process owns.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::{Answer, Query, ReadModel};
use crate::codec::{Codec, Json};
use crate::store::{ContextFields, RecordedEvent};
use crate::subscription::{Partition, Sink, SubscriptionError};

/// An in-memory read model run as `count` partitions shared by runners in
/// several processes (a store's partitioned runner, such as
/// `NatsPartitioned`, hands out the partitions): in each process it holds
/// the state of the streams of the partitions that process owns or owned,
/// fed in order per stream.
///
/// In-memory state does not survive its process: a process that takes a
/// partition over replays that partition from the start of the log (or
/// from where this process left it, if it owned it before), so an event is
/// applied at least once across the processes, and exactly once, in its
/// stream's order, within one. Queries about a stream are answered fresh by
/// the process that owns its partition
/// ([`stream_partition`](crate::subscription::stream_partition) tells which).
pub struct PartitionedProjection<R, C = Json> {
    inner: Arc<Inner<R>>,
    codec: C,
}

struct Inner<R> {
    name: String,
    count: u32,
    state: RwLock<State<R>>,
}

struct State<R> {
    model: R,
    /// Where each partition this process fed is: its last event applied or
    /// skipped.
    positions: BTreeMap<u32, u64>,
}

impl<R, C: Clone> Clone for PartitionedProjection<R, C> {
    fn clone(&self) -> Self {
        PartitionedProjection {
            inner: Arc::clone(&self.inner),
            codec: self.codec.clone(),
        }
    }
}

impl<R: ReadModel> PartitionedProjection<R> {
    /// A read model named `name` run as `count` partitions (0 is taken as
    /// 1), starting from `model`, reading events stored as JSON.
    pub fn new(name: impl Into<String>, count: u32, model: R) -> Self {
        PartitionedProjection {
            inner: Arc::new(Inner {
                name: name.into(),
                count: count.max(1),
                state: RwLock::new(State {
                    model,
                    positions: BTreeMap::new(),
                }),
            }),
            codec: Json,
        }
    }

    /// The same read model reading events stored with `codec`.
    pub fn codec<C: Codec>(self, codec: C) -> PartitionedProjection<R, C> {
        PartitionedProjection {
            inner: self.inner,
            codec,
        }
    }
}

impl<R: ReadModel, C: Codec + Clone> PartitionedProjection<R, C> {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How many partitions it runs as.
    pub fn count(&self) -> u32 {
        self.inner.count
    }

    /// Reads the read model.
    pub fn read<T>(&self, f: impl FnOnce(&R) -> T) -> T {
        f(&self.inner.state.read().unwrap_or_else(PoisonError::into_inner).model)
    }

    /// Answers a query from the read model's current state.
    pub fn query<Q: Query>(&self, query: Q) -> Q::Output
    where
        R: Answer<Q>,
    {
        self.read(|m| m.answer(query))
    }

    /// Where each partition this process fed is.
    pub fn positions(&self) -> BTreeMap<Partition, u64> {
        let state = self.inner.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .positions
            .iter()
            .filter_map(|(&i, &p)| Some((Partition::new(i, self.inner.count)?, p)))
            .collect()
    }

    /// A sink feeding `partition` into this read model while `held` is true
    /// (the partition's lease, as its runner knows it): once false, the sink
    /// stands by and commits nothing more.
    pub fn feed(&self, partition: Partition, held: Arc<AtomicBool>) -> impl Sink + 'static
    where
        C: 'static,
    {
        PartitionFeed {
            projection: self.clone(),
            label: format!("{}{}", self.inner.name, partition.suffix()),
            partition,
            held,
        }
    }
}

struct PartitionFeed<R, C> {
    projection: PartitionedProjection<R, C>,
    label: String,
    partition: Partition,
    held: Arc<AtomicBool>,
}

impl<R, C> PartitionFeed<R, C> {
    fn fenced(&self) -> SubscriptionError {
        SubscriptionError::Fenced {
            subscription: self.label.clone(),
            detail: "its lease was lost".to_owned(),
        }
    }

    fn state(&self) -> std::sync::RwLockWriteGuard<'_, State<R>> {
        // A handler that panicked left the lock poisoned; the model and the
        // positions still move together.
        self.projection
            .inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<R: ReadModel, C: Codec> Sink for PartitionFeed<R, C> {
    fn name(&self) -> &str {
        &self.label
    }

    fn page_size(&self) -> usize {
        10 * crate::subscription::PAGE
    }

    fn partition(&self) -> Partition {
        self.partition
    }

    fn acquire(&mut self) -> impl Future<Output = Result<bool, SubscriptionError>> + Send {
        std::future::ready(Ok(self.held.load(Ordering::SeqCst)))
    }

    fn checkpoint(&mut self) -> impl Future<Output = Result<u64, SubscriptionError>> + Send {
        let index = self.partition.index();
        let position = self.state().positions.get(&index).copied().unwrap_or(0);
        std::future::ready(Ok(position))
    }

    fn handles(&self, name: &str) -> bool {
        R::handles(name)
    }

    fn fields(&self) -> ContextFields {
        R::CONTEXT_FIELDS
    }

    fn visit(&mut self, event: &RecordedEvent<'_>) -> Result<(), SubscriptionError> {
        if !self.held.load(Ordering::SeqCst) {
            return Err(self.fenced());
        }
        let index = self.partition.index();
        let codec = self.projection.codec.clone();
        let mut state = self.state();
        let at = state.positions.get(&index).copied().unwrap_or(0);
        // A page read again after a failure: what was applied stays.
        if event.position > at {
            state
                .model
                .apply_recorded(&codec, event)
                .map_err(|source| SubscriptionError::from(crate::error::decode_error(event, source)))?;
            state.positions.insert(index, event.position);
        }
        Ok(())
    }

    fn commit(&mut self, _from: u64, to: u64) -> impl Future<Output = Result<(), SubscriptionError>> + Send {
        if !self.held.load(Ordering::SeqCst) {
            return std::future::ready(Err(self.fenced()));
        }
        let index = self.partition.index();
        let mut state = self.state();
        let position = state.positions.entry(index).or_insert(0);
        *position = (*position).max(to);
        std::future::ready(Ok(()))
    }

    fn abandon(&mut self) {}
}
