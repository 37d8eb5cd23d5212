//! The dispatcher's cache of recently used aggregates.
//!
//! Without it every command replays its aggregate's whole stream, and the
//! cost of a command grows with the stream. Each instance lives in a slot
//! that a command takes for its duration, so commands to one aggregate in one
//! process run one at a time instead of racing each other into version
//! conflicts; commands to different aggregates never wait for each other. Other processes can
//! still append: the optimistic version check catches that and the
//! dispatcher reads the missing events.
//!
//! The caches of all aggregate types sit under one lock, and a slot lives
//! in its cache's map itself: taking it and putting it back are one short
//! lock each, with no reference count or lock per instance.

use std::any::{Any, TypeId};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::aggregate::Aggregate;
use crate::util::FastMap;

/// One aggregate instance and the stream version it reflects.
pub(crate) struct Slot<A: Aggregate> {
    /// Whose instance it is.
    pub(crate) id: A::Id,
    /// Where in its cache it goes back.
    place: Place,
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

impl<A: Aggregate> Slot<A> {
    pub(crate) fn empty(id: A::Id) -> Self {
        Slot {
            id,
            place: Place::default(),
            state: A::initial(),
            version: 0,
            stream: None,
            fresh: false,
            link: crate::store::Link::GENESIS,
        }
    }

    /// Back to the initial state, before any event; the id and the stream
    /// id stay.
    pub(crate) fn reset(&mut self) {
        self.state = A::initial();
        self.version = 0;
        self.fresh = false;
        self.link = crate::store::Link::GENESIS;
    }
}

/// Where a slot lives in its cache: a position in the cache's entries and
/// the generation of the entry there, so a slot finds its way back without
/// hashing its id again, and never into an entry reused for another id.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Place {
    at: u32,
    generation: u32,
}

/// Where one cached instance lives between commands.
struct Entry<A: Aggregate> {
    /// Bumped each time the entry is given up, so a slot of an earlier
    /// generation is not put back into it.
    generation: u32,
    /// The instance; `None` while a command has it (or the entry is free).
    slot: Option<Box<Slot<A>>>,
    /// Set on each use, cleared by each sweep: the "second chance" bit.
    used: bool,
    /// What commands waiting for the slot wait on, made by the first of
    /// them; woken when the slot comes back.
    waiters: Option<Arc<Notify>>,
    /// Dropped from the cache while a command had the slot
    /// ([`Caches::clear`]): the slot is not kept when it comes back.
    dropped: bool,
}

/// Recently used instances of one aggregate type, at most about `capacity`.
pub(crate) struct Cache<A: Aggregate> {
    /// Where each cached id's entry is.
    index: FastMap<A::Id, u32>,
    entries: Vec<Entry<A>>,
    /// Entries given up, to be used again.
    free: Vec<u32>,
    capacity: usize,
}

impl<A: Aggregate> Cache<A> {
    pub(crate) fn new(capacity: usize) -> Self {
        Cache {
            index: FastMap::default(),
            entries: Vec::new(),
            free: Vec::new(),
            capacity,
        }
    }

    /// Takes `id`'s slot (an empty one if it is not cached), or, while
    /// another command has it, what to wait on.
    fn take(&mut self, id: &A::Id) -> Result<Box<Slot<A>>, Arc<Notify>> {
        if let Some(&at) = self.index.get(id) {
            let entry = &mut self.entries[at as usize];
            entry.used = true;
            return match entry.slot.take() {
                Some(slot) => Ok(slot),
                None => Err(entry.waiters.get_or_insert_with(Default::default).clone()),
            };
        }
        if self.index.len() >= self.capacity {
            self.sweep();
        }
        let at = match self.free.pop() {
            Some(at) => at,
            None => {
                self.entries.push(Entry {
                    generation: 0,
                    slot: None,
                    used: false,
                    waiters: None,
                    dropped: false,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let entry = &mut self.entries[at as usize];
        entry.used = true;
        entry.dropped = false;
        self.index.insert(id.clone(), at);
        let mut slot = Box::new(Slot::empty(id.clone()));
        slot.place = Place {
            at,
            generation: entry.generation,
        };
        Ok(slot)
    }

    /// Puts a slot taken with [`Cache::take`] back, and wakes the commands
    /// waiting for it.
    fn put_back(&mut self, slot: Box<Slot<A>>) {
        let Place { at, generation } = slot.place;
        let Some(entry) = self.entries.get_mut(at as usize).filter(|e| e.generation == generation) else {
            return;
        };
        let waiters = entry.waiters.take();
        if entry.dropped {
            self.index.remove(&slot.id);
            self.give_up(at);
        } else {
            entry.slot = Some(slot);
        }
        if let Some(waiters) = waiters {
            waiters.notify_waiters();
        }
    }

    /// Frees entry `at` (its id is out of the index already) for reuse.
    fn give_up(&mut self, at: u32) {
        let entry = &mut self.entries[at as usize];
        entry.generation = entry.generation.wrapping_add(1);
        entry.slot = None;
        entry.waiters = None;
        entry.dropped = false;
        self.free.push(at);
    }

    /// Gives up the entries `keep` says no to (only idle ones: an entry a
    /// command holds stays until its slot comes back).
    fn retain(&mut self, mut keep: impl FnMut(&mut Entry<A>) -> bool) {
        let mut given_up = Vec::new();
        let entries = &mut self.entries;
        self.index.retain(|_, &mut at| {
            let kept = keep(&mut entries[at as usize]);
            if !kept {
                given_up.push(at);
            }
            kept
        });
        for at in given_up {
            self.give_up(at);
        }
    }

    /// Evicts instances not used since the last sweep (a clock /
    /// second-chance policy); if that frees too little, evicts idle
    /// instances down to three quarters of the capacity. Instances a
    /// command is using are never evicted. Amortized O(1) per insertion: a
    /// sweep runs when the cache is full and leaves it at most three
    /// quarters full.
    fn sweep(&mut self) {
        let target = self.capacity - self.capacity / 4;
        self.retain(|e| std::mem::take(&mut e.used) || e.slot.is_none());
        if self.index.len() > target {
            let mut excess = self.index.len() - target;
            self.retain(|e| {
                if excess > 0 && e.slot.is_some() {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }

    #[cfg(test)]
    fn holds(&self, id: &A::Id) -> bool {
        self.index.contains_key(id)
    }
}

/// A cache of some aggregate type, as the dispatcher keeps them.
trait AnyCache: Any + Send {
    /// Drops every instance; one a command has goes when it comes back.
    fn clear(&mut self);
}

impl<A: Aggregate> AnyCache for Cache<A> {
    fn clear(&mut self) {
        self.retain(|e| {
            e.dropped = true;
            e.slot.is_none()
        });
    }
}

/// The caches of all aggregate types of one dispatcher, under one lock.
pub(crate) struct Caches {
    /// Each type's cache beside its type id, in the order of first use: an
    /// application has a few aggregate types, and comparing their ids one
    /// after another is cheaper than hashing one.
    by_type: Mutex<Vec<(TypeId, Box<dyn AnyCache>)>>,
    /// Instances per type; 0 keeps none.
    capacity: usize,
}

impl Caches {
    pub(crate) fn new(capacity: usize) -> Self {
        Caches {
            by_type: Mutex::new(Vec::new()),
            capacity,
        }
    }

    /// Runs `f` on the cache of `A` under the lock.
    fn with<A: Aggregate, T>(&self, f: impl FnOnce(&mut Cache<A>) -> T) -> T {
        let mut by_type = self.by_type.lock().unwrap_or_else(PoisonError::into_inner);
        f(cache_of::<A>(&mut by_type, self.capacity))
    }

    /// How many instances of each type it keeps.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Exclusive use of `id`'s slot, waiting while another command has it;
    /// without a cache (capacity 0), an empty slot of its own.
    pub(crate) async fn take<A: Aggregate>(&self, id: &A::Id) -> Held<'_, A> {
        loop {
            match self.take_now(id) {
                Ok(held) => return held,
                Err(returned) => returned.await,
            }
        }
    }

    /// [`Caches::take`] when the slot is free, without a future; else what
    /// to wait on before trying again.
    pub(crate) fn take_now<A: Aggregate>(&self, id: &A::Id) -> Result<Held<'_, A>, SlotReturned> {
        if self.capacity == 0 {
            return Ok(Held {
                home: None,
                slot: Some(Box::new(Slot::empty(id.clone()))),
            });
        }
        // What to wait on is registered under the lock, so the slot cannot
        // come back unseen before the wait begins (boxed: only a command
        // that waits pays for it).
        let taken = self.with::<A, _>(|cache| cache.take(id).map_err(|waiters| Box::pin(waiters.notified_owned())));
        taken.map(|slot| Held {
            home: Some(self),
            slot: Some(slot),
        })
    }

    /// Drops every cached instance of every type; one a command has goes
    /// when it comes back, and the commands waiting for it load afresh.
    pub(crate) fn clear(&self) {
        let mut by_type = self.by_type.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, cache) in by_type.iter_mut() {
            cache.clear();
        }
    }
}

/// The cache of `A` in `by_type`, made at the type's first use.
fn cache_of<A: Aggregate>(by_type: &mut Vec<(TypeId, Box<dyn AnyCache>)>, capacity: usize) -> &mut Cache<A> {
    let key = TypeId::of::<A>();
    let at = match by_type.iter().position(|(t, _)| *t == key) {
        Some(at) => at,
        None => {
            by_type.push((key, Box::new(Cache::<A>::new(capacity))));
            by_type.len() - 1
        }
    };
    // Upcast, not a method: one call through the vtable (the type check).
    let cache: &mut dyn Any = &mut *by_type[at].1;
    cache
        .downcast_mut::<Cache<A>>()
        .expect("a type's cache is kept under its own type id")
}

/// Resolves when a slot another command has comes back.
pub(crate) type SlotReturned = std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>;

/// A slot taken out of its cache; it goes back when this is dropped, also
/// when the command's future is dropped half-way (the optimistic version
/// check and the check of rejections keep a slot that missed its last
/// events safe to use).
pub(crate) struct Held<'a, A: Aggregate> {
    /// The caches it goes back to; `None` for a slot of its own.
    home: Option<&'a Caches>,
    slot: Option<Box<Slot<A>>>,
}

impl<A: Aggregate> std::ops::Deref for Held<'_, A> {
    type Target = Slot<A>;

    fn deref(&self) -> &Slot<A> {
        self.slot.as_deref().expect("held until dropped")
    }
}

impl<A: Aggregate> std::ops::DerefMut for Held<'_, A> {
    fn deref_mut(&mut self) -> &mut Slot<A> {
        self.slot.as_deref_mut().expect("held until dropped")
    }
}

impl<A: Aggregate> Drop for Held<'_, A> {
    fn drop(&mut self) {
        if let (Some(home), Some(slot)) = (self.home, self.slot.take()) {
            home.with::<A, _>(|cache| cache.put_back(slot));
        }
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
        let busy = cache.take(&0).ok().unwrap();
        let use_once = |cache: &mut Cache<Agg>, id: u32| {
            let slot = cache.take(&id).ok().unwrap();
            cache.put_back(slot);
        };
        for id in 1..1_000 {
            use_once(&mut cache, id);
            // id 1 is used again and again: it must survive every sweep.
            use_once(&mut cache, 1);
            assert!(cache.len() <= 100, "{} entries at id {id}", cache.len());
        }
        assert!(cache.holds(&0), "an instance in use was evicted");
        assert!(cache.holds(&1), "a hot instance was evicted");
        assert!(cache.holds(&999));
        cache.put_back(busy);
        let at = cache.index[&0];
        assert!(
            cache.entries[at as usize].slot.is_some(),
            "the busy instance did not come back"
        );
        // Entries are reused, not added: about the capacity in all.
        assert!(cache.entries.len() <= 101, "{} entries", cache.entries.len());
    }

    #[tokio::test]
    async fn a_second_taker_waits_for_the_slot_to_come_back() {
        let caches = Arc::new(Caches::new(10));
        let mut first = caches.take::<Agg>(&1).await;
        first.version = 7;
        let waiter = {
            let caches = caches.clone();
            tokio::spawn(async move { caches.take::<Agg>(&1).await.version })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // Another instance is not held up.
        assert_eq!(caches.take::<Agg>(&2).await.version, 0);
        drop(first);
        assert_eq!(waiter.await.unwrap(), 7);
        // Back again after the waiter's `Held` dropped.
        assert_eq!(caches.take::<Agg>(&1).await.version, 7);
    }

    /// Clearing the caches (forgetting a subject) while a command has a
    /// slot: the slot is not kept when it comes back, and a command that
    /// waited for it starts from an empty one instead of waiting forever.
    #[tokio::test]
    async fn a_slot_held_while_the_caches_are_cleared_is_not_kept() {
        let caches = Arc::new(Caches::new(10));
        let mut held = caches.take::<Agg>(&1).await;
        held.version = 7;
        let mut idle = caches.take::<Agg>(&2).await;
        idle.version = 3;
        drop(idle);
        let waiter = {
            let caches = caches.clone();
            tokio::spawn(async move { caches.take::<Agg>(&1).await.version })
        };
        tokio::task::yield_now().await;
        caches.clear();
        assert_eq!(caches.take::<Agg>(&2).await.version, 0, "an idle instance was kept");
        assert!(!waiter.is_finished());
        drop(held);
        let seen = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was never woken")
            .unwrap();
        assert_eq!(seen, 0, "the waiter got the slot held across the clear");
        assert_eq!(caches.take::<Agg>(&1).await.version, 0);
    }

    /// Without a cache every take gets an empty slot of its own, and two
    /// takes of one id do not wait for each other.
    #[tokio::test]
    async fn capacity_zero_keeps_nothing() {
        let caches = Caches::new(0);
        let mut first = caches.take::<Agg>(&1).await;
        first.version = 7;
        assert_eq!(caches.take::<Agg>(&1).await.version, 0);
        drop(first);
        assert_eq!(caches.take::<Agg>(&1).await.version, 0);
    }
}
