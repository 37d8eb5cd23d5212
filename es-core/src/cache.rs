//! The dispatcher's cache of recently used aggregates.
//!
//! Without it every command replays its aggregate's whole stream, and the
//! cost of a command grows with the stream. Each instance lives in a slot
//! that a command takes for its duration, so commands to one aggregate in one
//! process run one at a time instead of racing each other into version
//! conflicts; commands to different aggregates never wait for each other. Other processes can
//! still append: the optimistic version check catches that and the
//! dispatcher reads the missing events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::aggregate::Aggregate;
use crate::util::FastMap;

/// One aggregate instance and the stream version it reflects.
pub(crate) struct Slot<A> {
    pub(crate) state: A,
    pub(crate) version: u64,
    /// The instance's stream id, made once and shared by its envelopes.
    pub(crate) stream: Option<crate::StreamId>,
    /// Whether `state` is exactly the fold of events `1..=version`. False
    /// before the first load, and after a failure that may have left it
    /// half-applied.
    pub(crate) fresh: bool,
    /// The link of the event at `version` in the stream's hash chain, kept
    /// when the dispatcher verifies chains on load.
    pub(crate) link: crate::store::Link,
}

impl<A: crate::Aggregate> Slot<A> {
    pub(crate) fn empty() -> Self {
        Slot {
            state: A::initial(),
            version: 0,
            stream: None,
            fresh: false,
            link: crate::store::Link::GENESIS,
        }
    }
}

/// Where one cached instance lives between commands. A command takes the
/// slot out (so no lock is held across its awaits) and puts it back when it
/// is done; a second command for the same instance waits for that.
pub(crate) struct Cell<A> {
    slot: Mutex<Option<Box<Slot<A>>>>,
    returned: tokio::sync::Notify,
    waiting: AtomicUsize,
    /// Set on each use, cleared by each sweep: the "second chance" bit.
    used: AtomicBool,
}

impl<A: crate::Aggregate> Cell<A> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Cell {
            slot: Mutex::new(Some(Box::new(Slot::empty()))),
            returned: tokio::sync::Notify::new(),
            waiting: AtomicUsize::new(0),
            used: AtomicBool::new(true),
        })
    }

    fn try_take(&self) -> Option<Box<Slot<A>>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Exclusive use of the slot, waiting while another command has it.
    /// Takes the caller's reference to the cell, which the slot keeps until
    /// it goes back.
    pub(crate) async fn take(self: Arc<Self>) -> Held<A> {
        if let Some(slot) = self.try_take() {
            return Held {
                cell: self,
                slot: Some(slot),
            };
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let slot = loop {
            let notified = self.returned.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(slot) = self.try_take() {
                break slot;
            }
            notified.await;
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        Held {
            cell: self,
            slot: Some(slot),
        }
    }
}

/// A slot taken out of its cell; it goes back when this is dropped, also
/// when the command's future is dropped half-way (the optimistic version
/// check and the check of rejections keep a slot that missed its last
/// events safe to use).
pub(crate) struct Held<A> {
    cell: Arc<Cell<A>>,
    slot: Option<Box<Slot<A>>>,
}

impl<A> std::ops::Deref for Held<A> {
    type Target = Slot<A>;

    fn deref(&self) -> &Slot<A> {
        self.slot.as_deref().expect("held until dropped")
    }
}

impl<A> std::ops::DerefMut for Held<A> {
    fn deref_mut(&mut self) -> &mut Slot<A> {
        self.slot.as_deref_mut().expect("held until dropped")
    }
}

impl<A> Drop for Held<A> {
    fn drop(&mut self) {
        *self.cell.slot.lock().unwrap_or_else(PoisonError::into_inner) = self.slot.take();
        if self.cell.waiting.load(Ordering::SeqCst) > 0 {
            self.cell.returned.notify_waiters();
        }
    }
}

/// Recently used instances of one aggregate type, at most about `capacity`.
/// The dispatcher keeps the caches of all types under one lock, so finding
/// a command's instance takes one lock.
pub(crate) struct Cache<A: Aggregate> {
    entries: FastMap<A::Id, Arc<Cell<A>>>,
    capacity: usize,
}

impl<A: Aggregate> Cache<A> {
    pub(crate) fn new(capacity: usize) -> Self {
        Cache {
            entries: FastMap::default(),
            capacity,
        }
    }

    /// The cell for `id`, created empty if it is not cached.
    pub(crate) fn cell(&mut self, id: &A::Id) -> Arc<Cell<A>> {
        if let Some(cell) = self.entries.get(id) {
            cell.used.store(true, Ordering::Relaxed);
            return cell.clone();
        }
        if self.entries.len() >= self.capacity {
            sweep(&mut self.entries, self.capacity);
        }
        let cell = Cell::new();
        self.entries.insert(id.clone(), cell.clone());
        cell
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Evicts instances not used since the last sweep (a clock / second-chance
/// policy); if that frees too little, evicts idle instances down to three
/// quarters of the capacity. Instances a command is using are never evicted.
/// Amortized O(1) per insertion: a sweep runs when the cache is full and
/// leaves it at most three quarters full.
fn sweep<K, A, H>(entries: &mut HashMap<K, Arc<Cell<A>>, H>, capacity: usize) {
    let target = capacity - capacity / 4;
    entries.retain(|_, e| e.used.swap(false, Ordering::Relaxed) || Arc::strong_count(e) > 1);
    if entries.len() > target {
        let mut excess = entries.len() - target;
        entries.retain(|_, e| {
            if excess > 0 && Arc::strong_count(e) == 1 {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[derive(Default)]
    pub(crate) struct Agg;

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    pub(crate) struct Never;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub(crate) struct Ev;

    impl crate::Event for Ev {
        const NAMES: &'static [&'static str] = &["Ev"];
        fn name(&self) -> &'static str {
            "Ev"
        }
        fn version(&self) -> u32 {
            1
        }
        fn encode<C: crate::Codec>(&self, codec: &C) -> Result<Vec<u8>, crate::CodecError> {
            codec.encode(self)
        }
        fn decode<C: crate::Codec>(
            codec: &C,
            _: &str,
            _: u32,
            payload: &[u8],
        ) -> Result<Self, crate::EventDecodeError> {
            Ok(codec.decode(payload)?)
        }
    }

    impl Aggregate for Agg {
        const NAME: &'static str = "agg";
        type Id = u32;
        type Event = Ev;
        type Error = Never;
        type Services = ();
        fn initial() -> Self {
            Agg
        }
        fn apply(&mut self, _: &Ev) {}
    }

    #[test]
    fn the_cache_stays_bounded_and_keeps_recent_and_busy_instances() {
        let mut cache = Cache::<Agg>::new(100);
        let busy = cache.cell(&0);
        for id in 1..1_000 {
            let _ = cache.cell(&id);
            // id 1 is used again and again: it must survive every sweep.
            let _ = cache.cell(&1);
            assert!(cache.len() <= 100, "{} entries at id {id}", cache.len());
        }
        let entries = &cache.entries;
        assert!(entries.contains_key(&0), "an instance in use was evicted");
        assert!(entries.contains_key(&1), "a hot instance was evicted");
        assert!(entries.contains_key(&999));
        drop(busy);
    }

    #[tokio::test]
    async fn a_second_taker_waits_for_the_slot_to_come_back() {
        let cell = Cell::<Agg>::new();
        let mut first = cell.clone().take().await;
        first.version = 7;
        let waiter = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.take().await.version })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        assert_eq!(waiter.await.unwrap(), 7);
        // Back again after the waiter's `Held` dropped.
        assert_eq!(cell.clone().take().await.version, 7);
    }
}
