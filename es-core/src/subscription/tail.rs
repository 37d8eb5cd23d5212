//! The log as a tail: events one at a time from a position, waiting for
//! new ones.

use std::ops::ControlFlow;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::StoreError;
use crate::store::{ContextFields, EventStore, RecordedEvent, StoredEvent};

/// The log from a position on, one event at a time, waiting for new ones:
/// what a tool's `follow` and a service's live event stream read. It keeps
/// no checkpoint (a reader that must resume keeps its own position:
/// [`Tail::position`]); it is woken by the store's notifications, and polls
/// every `poll` where the store has none.
///
/// ```
/// # async fn demo() -> Result<(), es_core::StoreError> {
/// let store = es_core::InMemoryStore::new();
/// let mut tail = es_core::subscription::Tail::new(store, 0);
/// // Waits until an event is committed after position 0:
/// // let event = tail.next().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Tail<S> {
    store: S,
    after: u64,
    page: std::collections::VecDeque<StoredEvent>,
    notifications: Option<watch::Receiver<u64>>,
    poll: Duration,
}

impl<S: EventStore> Tail<S> {
    /// The events of `store`'s log after `position`.
    pub fn new(store: S, position: u64) -> Self {
        let notifications = store.notifications();
        Tail {
            store,
            after: position,
            page: std::collections::VecDeque::new(),
            notifications,
            poll: Duration::from_millis(200),
        }
    }

    /// Polls every `poll` for a store without notifications (200 ms by
    /// default).
    pub fn polling(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The position of the last event [`next`](Self::next) returned (the
    /// starting position before the first).
    pub fn position(&self) -> u64 {
        self.after
    }

    /// The next event of the log, waiting for it to be committed. Entries
    /// that are not events ([`FOREIGN`](crate::store::FOREIGN)) are returned too: a tool shows
    /// them, a reader skips them.
    pub async fn next(&mut self) -> Result<StoredEvent, StoreError> {
        loop {
            if let Some(event) = self.page.pop_front() {
                self.after = event.position;
                return Ok(event);
            }
            let mut page = std::collections::VecDeque::new();
            self.store
                .read_all(self.after, 256, ContextFields::ALL, |e: &RecordedEvent<'_>| {
                    page.push_back(e.to_owned());
                    ControlFlow::Continue(())
                })
                .await?;
            if !page.is_empty() {
                self.page = page;
                continue;
            }
            match self.notifications.as_mut() {
                Some(woken) => {
                    // A notification since the last look wakes at once; the
                    // timeout is a safety net, not the way in.
                    let waited = tokio::time::timeout(self.poll.max(Duration::from_secs(1)), woken.changed()).await;
                    if let Ok(Err(_)) = waited {
                        // The store stopped notifying: poll from now on.
                        self.notifications = None;
                    }
                }
                None => tokio::time::sleep(self.poll).await,
            }
        }
    }
}
