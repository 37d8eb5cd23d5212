//! Read models kept in PostgreSQL, updated in the same transaction as their
//! checkpoint, with one runner per projection across all processes.
use std::ops::ControlFlow;
use std::time::Duration;

use es_core::store::{RecordedEvent, StoredEvent};
use es_core::{Codec, EventStore, Json, ProjectionError, ReadModelIn, Runner};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqlSafeStr};

use crate::{PostgresStore, error};

/// How many events one transaction applies.
const PAGE: usize = 500;

/// A read model in PostgreSQL: its handlers get the transaction that also
/// moves its checkpoint, so each event is applied exactly once, whatever
/// crashes.
///
/// Only one runner per projection name works at a time across all
/// processes: it holds a session advisory lock on a connection of its own.
/// When that process dies, its connection closes, the lock is released and
/// a waiting runner elsewhere takes over.
pub struct PgProjection<R, C = Json> {
    store: PostgresStore,
    name: String,
    model: R,
    codec: C,
}

impl<R: ReadModelIn<PgConnection>> PgProjection<R, Json> {
    /// A projection named `name` (its checkpoint and lock key) feeding `model`.
    pub fn new(store: PostgresStore, name: impl Into<String>, model: R) -> Self {
        PgProjection {
            store,
            name: name.into(),
            model,
            codec: Json,
        }
    }
}

impl<R: ReadModelIn<PgConnection>, C: Codec> PgProjection<R, C> {
    /// Decodes events with `codec` instead of JSON.
    pub fn with_codec<C2: Codec>(self, codec: C2) -> PgProjection<R, C2> {
        PgProjection {
            store: self.store,
            name: self.name,
            model: self.model,
            codec,
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

    fn lock_key(&self) -> String {
        format!("es-projection:{}:{}", self.store.schema(), self.name)
    }

    /// A connection of its own (not returned to the pool: closing it
    /// releases the lock).
    async fn lock_connection(&self) -> Result<PgConnection, ProjectionError> {
        let conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(error("acquire a connection for the projection lock"))?;
        Ok(conn.detach())
    }

    /// A lock connection holding the projection's lock, once it is free.
    async fn wait_for_lock(&self) -> Result<PgConnection, ProjectionError> {
        let mut conn = self.lock_connection().await?;
        sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
            .bind(self.lock_key())
            .execute(&mut conn)
            .await
            .map_err(error("take the projection lock"))?;
        Ok(conn)
    }

    async fn try_lock(&self, conn: &mut PgConnection) -> Result<bool, ProjectionError> {
        sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(self.lock_key())
            .fetch_one(conn)
            .await
            .map_err(|e| error("take the projection lock")(e).into())
    }

    /// Waits for the projection's lock, applies every event after its
    /// checkpoint, releases the lock. Returns the new checkpoint.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        let lock = self.wait_for_lock().await?;
        let result = self.catch_up_locked().await;
        let _ = lock.close().await;
        result
    }

    /// Applies pages of events, each in one transaction with the
    /// checkpoint. The caller holds the lock.
    async fn catch_up_locked(&self) -> Result<u64, ProjectionError> {
        let checkpoint = self.checkpoint();
        loop {
            let mut tx = self
                .store
                .pool()
                .begin()
                .await
                .map_err(error("begin a projection transaction"))?;
            let s = self.store.schema();
            let position: Option<i64> = sqlx::query_scalar(
                AssertSqlSafe(format!(r#"SELECT position FROM "{s}".checkpoints WHERE name = $1"#)).into_sql_str(),
            )
            .bind(&checkpoint)
            .fetch_optional(&mut *tx)
            .await
            .map_err(error("read a projection checkpoint"))?;
            let position = position.unwrap_or(0) as u64;
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
            for event in &handled {
                let recorded = event.as_recorded();
                self.model.apply_recorded_in(&self.codec, &recorded, &mut *tx).await?;
            }
            if last > position {
                sqlx::query(
                    AssertSqlSafe(format!(
                        r#"INSERT INTO "{s}".checkpoints (name, position) VALUES ($1, $2)
                           ON CONFLICT (name) DO UPDATE SET position = excluded.position"#
                    ))
                    .into_sql_str(),
                )
                .bind(&checkpoint)
                .bind(last as i64)
                .execute(&mut *tx)
                .await
                .map_err(error("save a projection checkpoint"))?;
            }
            tx.commit().await.map_err(error("commit a projection page"))?;
            if seen < PAGE {
                return Ok(last);
            }
        }
    }

    /// Resets the read model and replays the whole log into it: `reset`
    /// clears the read model's tables, in the transaction that also zeroes
    /// the checkpoint.
    pub async fn rebuild<F>(&self, reset: F) -> Result<u64, ProjectionError>
    where
        F: for<'c> FnOnce(
            &'c mut PgConnection,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'c>>,
    {
        let lock = self.wait_for_lock().await?;
        let result = async {
            let mut tx = self.store.pool().begin().await.map_err(error("begin a rebuild"))?;
            reset(&mut tx).await.map_err(error("reset a read model"))?;
            let s = self.store.schema();
            sqlx::query(AssertSqlSafe(format!(r#"DELETE FROM "{s}".checkpoints WHERE name = $1"#)).into_sql_str())
                .bind(self.checkpoint())
                .execute(&mut *tx)
                .await
                .map_err(error("reset a projection checkpoint"))?;
            tx.commit().await.map_err(error("commit a rebuild"))?;
            self.catch_up_locked().await
        }
        .await;
        let _ = lock.close().await;
        result
    }

    /// Runs the projection in the background: waits until it holds the
    /// projection's lock (another process may), then catches up and follows
    /// the log (woken by LISTEN/NOTIFY, or every `poll`). It holds the lock
    /// until stopped or until its process dies.
    pub fn spawn(self, poll: Duration) -> Runner
    where
        R: 'static,
        C: 'static,
    {
        Runner::from_task(move |mut stopped| {
            tokio::spawn(async move {
                let mut woken = self.store.notifications();
                // The lock connection is kept while waiting for the lock, so
                // a standby runner asks again on it instead of connecting anew.
                let mut conn: Option<PgConnection> = None;
                let mut locked = false;
                loop {
                    if !locked {
                        if conn.is_none() {
                            match self.lock_connection().await {
                                Ok(c) => conn = Some(c),
                                Err(e) => {
                                    tracing::warn!(projection = %self.name, error = %e, "no connection for the lock")
                                }
                            }
                        }
                        if let Some(c) = conn.as_mut() {
                            match self.try_lock(c).await {
                                Ok(got) => locked = got,
                                Err(e) => {
                                    tracing::warn!(projection = %self.name, error = %e, "could not ask for the lock");
                                    conn = None;
                                }
                            }
                        }
                    }
                    if locked && let Err(e) = self.catch_up_locked().await {
                        tracing::error!(projection = %self.name, error = %e, "projection failed; retrying");
                        // A broken lock connection is dropped; the lock is then
                        // released and asked for again.
                        if let Some(c) = conn.as_mut()
                            && c.ping().await.is_err()
                        {
                            conn = None;
                            locked = false;
                        }
                    }
                    let wait = async {
                        match &mut woken {
                            Some(rx) if locked => {
                                let _ = tokio::time::timeout(poll, rx.changed()).await;
                            }
                            _ => tokio::time::sleep(poll).await,
                        }
                    };
                    tokio::select! {
                        _ = stopped.changed() => {
                            if let Some(c) = conn.take() {
                                let _ = c.close().await;
                            }
                            return;
                        }
                        _ = wait => {}
                    }
                }
            })
        })
    }
}
