//! The dispatcher's cache of recently used aggregates.
//!
//! Without it every command replays its aggregate's whole stream, and the
//! cost of a command grows with the stream. Each instance lives in a slot
//! behind an async mutex, so commands to one aggregate in one process run one
//! at a time instead of racing each other into version conflicts; commands
//! to different aggregates never wait for each other. Other processes can
//! still append: the optimistic version check catches that and the
//! dispatcher reads the missing events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::aggregate::Aggregate;

/// One aggregate instance and the stream version it reflects.
pub(crate) struct Slot<A> {
    pub(crate) state: A,
    pub(crate) version: u64,
    /// Whether `state` is exactly the fold of events `1..=version`. False
    /// before the first load, and after a failure that may have left it
    /// half-applied.
    pub(crate) fresh: bool,
}

impl<A: Default> Slot<A> {
    pub(crate) fn empty() -> Self {
        Slot {
            state: A::default(),
            version: 0,
            fresh: false,
        }
    }
}

type SlotCell<A> = Arc<tokio::sync::Mutex<Slot<A>>>;

struct Entry<A> {
    cell: SlotCell<A>,
    /// Set on each use, cleared by each sweep: the "second chance" bit.
    used: AtomicBool,
}

/// Recently used instances of one aggregate type, at most about `capacity`.
pub(crate) struct Cache<A: Aggregate> {
    entries: Mutex<HashMap<A::Id, Entry<A>>>,
    capacity: usize,
}

impl<A: Aggregate> Cache<A> {
    pub(crate) fn new(capacity: usize) -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The slot for `id`, created empty if it is not cached.
    pub(crate) fn slot(&self, id: &A::Id) -> SlotCell<A> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(id) {
            entry.used.store(true, Ordering::Relaxed);
            return entry.cell.clone();
        }
        if entries.len() >= self.capacity {
            sweep(&mut entries, self.capacity);
        }
        let cell = Arc::new(tokio::sync::Mutex::new(Slot::empty()));
        entries.insert(
            id.clone(),
            Entry {
                cell: cell.clone(),
                used: AtomicBool::new(true),
            },
        );
        cell
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

/// Evicts instances not used since the last sweep (a clock / second-chance
/// policy); if that frees too little, evicts idle instances down to three
/// quarters of the capacity. Instances a command is using are never evicted.
/// Amortized O(1) per insertion: a sweep runs when the cache is full and
/// leaves it at most three quarters full.
fn sweep<K, A>(entries: &mut HashMap<K, Entry<A>>, capacity: usize) {
    let target = capacity - capacity / 4;
    entries.retain(|_, e| e.used.swap(false, Ordering::Relaxed) || Arc::strong_count(&e.cell) > 1);
    if entries.len() > target {
        let mut excess = entries.len() - target;
        entries.retain(|_, e| {
            if excess > 0 && Arc::strong_count(&e.cell) == 1 {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Agg;

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Ev;

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
        fn apply(&mut self, _: &Ev) {}
    }

    #[test]
    fn the_cache_stays_bounded_and_keeps_recent_and_busy_instances() {
        let cache = Cache::<Agg>::new(100);
        let busy = cache.slot(&0);
        for id in 1..1_000 {
            let _ = cache.slot(&id);
            // id 1 is used again and again: it must survive every sweep.
            let _ = cache.slot(&1);
            assert!(cache.len() <= 100, "{} entries at id {id}", cache.len());
        }
        let entries = cache.entries.lock().unwrap();
        assert!(entries.contains_key(&0), "an instance in use was evicted");
        assert!(entries.contains_key(&1), "a hot instance was evicted");
        assert!(entries.contains_key(&999));
        drop(busy);
    }
}
