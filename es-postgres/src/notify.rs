//! Waking readers: at once in this process, by `NOTIFY` in others.
//!
//! An append does not `NOTIFY` inside its own transaction: PostgreSQL holds
//! a cluster-wide lock from a notifying transaction's commit until its
//! notification is queued, which serialises every writer. Instead, a
//! committed append wakes this process's readers directly and asks a
//! background task to send one `NOTIFY` for everything appended meanwhile:
//! while one is in flight, further appends fold into the next. Readers in
//! other processes `LISTEN`, and poll as well, so a lost notification only
//! delays them until their next poll.

use std::sync::atomic::Ordering;
use std::sync::{PoisonError, Weak};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::{Inner, PostgresStore};

impl PostgresStore {
    /// Records that events up to `position` committed through this store.
    pub(crate) fn appended(&self, position: u64) {
        tracing::trace!(position, "appended");
        self.wake_readers();
    }

    /// Wakes readers of the log, here and in other processes: call it after
    /// committing a transaction in which you appended with
    /// [`append_with`](Self::append_with).
    pub fn wake_readers(&self) {
        self.inner.head.send_modify(|n| *n = n.wrapping_add(1));
        if self.inner.notify && !self.inner.notify_pending.swap(true, Ordering::AcqRel) {
            self.start_notifier();
            self.inner.notify_wanted.notify_one();
        }
    }

    fn start_notifier(&self) {
        let mut task = self.inner.notifier.lock().unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_none_or(|t| t.is_finished())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            *task = Some(runtime.spawn(notifier(std::sync::Arc::downgrade(&self.inner))));
        }
    }

    /// LISTENs on the schema's channel (once per store, in the background).
    pub(crate) fn start_listening(&self) {
        if self.inner.notify && !self.inner.listening.swap(true, Ordering::SeqCst) {
            tokio::spawn(listen(std::sync::Arc::downgrade(&self.inner)));
        }
    }
}

/// The least time between two `NOTIFY`s of one store: under a steady stream
/// of appends, other processes hear of them this often at most (their
/// readers then read everything committed meanwhile), and the notification
/// queue's lock is taken at most this often.
const NOTIFY_EVERY: Duration = Duration::from_millis(5);

/// Sends one `NOTIFY` per burst of appends, until the store is dropped.
async fn notifier(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let wanted = strong.notify_wanted.clone();
        drop(strong);
        // Wake up now and then to see whether the store is gone.
        let _ = tokio::time::timeout(Duration::from_secs(5), wanted.notified()).await;
        let Some(strong) = inner.upgrade() else { return };
        if !strong.notify_pending.swap(false, Ordering::AcqRel) {
            continue;
        }
        let sent = sqlx::query("SELECT pg_notify($1, '')")
            .bind(&strong.schema)
            .execute(&strong.pool)
            .await;
        if let Err(error) = sent {
            tracing::debug!(%error, "could not NOTIFY other processes; their readers poll");
        }
        drop(strong);
        tokio::time::sleep(NOTIFY_EVERY).await;
    }
}

/// Forwards notifications on the schema's channel to `inner.head` until the
/// store is dropped, reconnecting after failures.
async fn listen(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let listener = async {
            // A connection of its own, outside the application's pool: a
            // listener holds it for good, and a pool of one must stay free.
            let own = PgPoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(strong.pool.connect_options().as_ref().clone())
                .await?;
            let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
            listener.ignore_pool_close_event(true);
            listener.listen(&strong.schema).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listener {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, "cannot LISTEN for new events; readers poll meanwhile");
                drop(strong);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        drop(strong);
        loop {
            let next = tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await;
            let Some(strong) = inner.upgrade() else { return };
            match next {
                Ok(Ok(Some(_))) => {
                    strong.head.send_modify(|n| *n = n.wrapping_add(1));
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    // The connection was lost: wake readers (events may have
                    // come meanwhile) and listen again.
                    strong.head.send_modify(|n| *n = n.wrapping_add(1));
                    break;
                }
                Err(_) => {
                    if strong.head.receiver_count() == 0 {
                        strong.listening.store(false, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
    }
}
