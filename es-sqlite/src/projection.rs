//! Read models kept in the SQLite file, updated in the same transaction as
//! their checkpoint.

use std::ops::ControlFlow;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use es_core::store::{RecordedEvent, StoredEvent};
use es_core::{Codec, EventStore, Json, ProjectionError, ReadModelIn, Runner};
use rusqlite::Connection;

use crate::{SqliteStore, blocking, error, lock};

/// How many events one transaction applies.
const PAGE: usize = 500;

/// A read model in the store's SQLite file: its handlers get the connection
/// inside the transaction that also moves its checkpoint, so each event is
/// applied exactly once, whatever crashes.
///
/// Handlers are plain rusqlite calls: they may be `async fn`s for symmetry
/// with PostgreSQL, but they run inside SQLite's write transaction and must
/// not wait for anything (a handler that does is reported as an error).
pub struct SqliteProjection<R, C = Json> {
    store: SqliteStore,
    name: String,
    model: R,
    codec: C,
    /// One catch-up at a time in this process.
    feeding: tokio::sync::Mutex<()>,
}

impl<R: ReadModelIn<Connection>> SqliteProjection<R, Json> {
    /// A projection named `name` (its checkpoint) feeding `model`.
    pub fn new(store: SqliteStore, name: impl Into<String>, model: R) -> Self {
        SqliteProjection {
            store,
            name: name.into(),
            model,
            codec: Json,
            feeding: tokio::sync::Mutex::new(()),
        }
    }
}

impl<R: ReadModelIn<Connection>, C: Codec> SqliteProjection<R, C> {
    /// Decodes events with `codec` instead of JSON.
    pub fn with_codec<C2: Codec>(self, codec: C2) -> SqliteProjection<R, C2> {
        SqliteProjection {
            store: self.store,
            name: self.name,
            model: self.model,
            codec,
            feeding: self.feeding,
        }
    }

    /// The read model.
    pub fn model(&self) -> &R {
        &self.model
    }

    /// The checkpoint's name in the store.
    pub fn checkpoint(&self) -> String {
        format!("projection:{}", self.name)
    }

    /// Applies every event after the checkpoint, a page per transaction.
    /// Returns the new checkpoint.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        let _one_at_a_time = self.feeding.lock().await;
        let checkpoint = self.checkpoint();
        loop {
            let position = self.store.load_checkpoint(&checkpoint).await?.unwrap_or(0);
            let mut seen = 0;
            let mut last = position;
            let mut handled: Vec<StoredEvent> = Vec::new();
            self.store
                .read_all(position, PAGE, |e: &RecordedEvent<'_>| {
                    seen += 1;
                    last = e.position;
                    if R::handles(e.name) {
                        handled.push(e.to_owned());
                    }
                    ControlFlow::Continue(())
                })
                .await?;
            if last > position {
                blocking(|| self.apply_page(&checkpoint, position, last, &handled))?;
            }
            if seen < PAGE {
                return Ok(last);
            }
        }
    }

    /// One page in one write transaction: the handlers, then the
    /// checkpoint, or nothing.
    fn apply_page(&self, checkpoint: &str, from: u64, to: u64, events: &[StoredEvent]) -> Result<(), ProjectionError> {
        let mut conn = lock(&self.store.inner.writer);
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(error("begin a projection transaction"))?;
        let result = (|| {
            // Another runner in this file may have moved the checkpoint.
            let current: Option<i64> = conn
                .query_row(
                    "SELECT position FROM es_checkpoints WHERE name = ?1",
                    [checkpoint],
                    |r| r.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(error("read a projection checkpoint"))?;
            if current.unwrap_or(0) as u64 != from {
                return Ok(());
            }
            for event in events {
                let recorded = event.as_recorded();
                let future = pin!(self.model.apply_recorded_in(&self.codec, &recorded, &mut conn));
                match future.poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(result) => {
                        result?;
                    }
                    Poll::Pending => {
                        return Err(ProjectionError::Handler {
                            projection: self.name.clone(),
                            event_name: event.name.clone(),
                            position: event.position,
                            source: "a SQLite read model handler awaited something; it runs inside the write transaction and must not wait".into(),
                        });
                    }
                }
            }
            conn.execute(
                "INSERT INTO es_checkpoints (name, position) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                rusqlite::params![checkpoint, to as i64],
            )
            .map_err(error("save a projection checkpoint"))?;
            Ok(())
        })();
        match result {
            Ok(()) => conn
                .execute_batch("COMMIT")
                .map_err(|e| ProjectionError::Store(error("commit a projection page")(e))),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Clears the read model with `reset` and replays the whole log into
    /// it; the reset and the zeroed checkpoint commit together.
    pub async fn rebuild(
        &self,
        reset: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> Result<u64, ProjectionError> {
        {
            let _one_at_a_time = self.feeding.lock().await;
            let checkpoint = self.checkpoint();
            blocking(|| {
                let mut conn = lock(&self.store.inner.writer);
                let tx = conn.transaction().map_err(error("begin a rebuild"))?;
                reset(&tx).map_err(error("reset a read model"))?;
                tx.execute("DELETE FROM es_checkpoints WHERE name = ?1", [checkpoint.as_str()])
                    .map_err(error("reset a projection checkpoint"))?;
                tx.commit().map_err(error("commit a rebuild"))
            })
            .map_err(ProjectionError::Store)?;
        }
        self.catch_up().await
    }

    /// Catches up now, then follows new events (woken by this process's
    /// appends, or every `poll`) in a background task.
    pub fn spawn(self, poll: Duration) -> Runner
    where
        R: 'static,
        C: 'static,
    {
        Runner::from_task(move |mut stopped| {
            tokio::spawn(async move {
                let mut woken = self.store.watch_head();
                loop {
                    if let Err(e) = self.catch_up().await {
                        tracing::error!(projection = %self.name, error = %e, "projection failed; retrying");
                    }
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = tokio::time::timeout(poll, woken.changed()) => {}
                    }
                }
            })
        })
    }
}
