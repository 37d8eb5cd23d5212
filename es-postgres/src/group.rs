//! Group commit: one committer per store takes every append waiting and
//! writes them in one statement and one commit.
//!
//! Writers do not run their own statements: they hand their appends to the
//! store's committer (a task with a connection of its own, fed by
//! [`es_core::store::GroupCommit`]) and wait for their outcome. The
//! committer takes everything queued since its last statement (one request
//! per stream, up to [`LIMITS`]) and appends it with one combined statement,
//! which checks each stream's expected version on its own and reports each
//! request's outcome: a conflict fails only its command. A lone writer's
//! append goes at once, as the single-request statement. The server then
//! parses, plans, starts and commits once per batch, which is what bounds
//! throughput when many writers share a database server.
//!
//! The committer's connection plans its statements once
//! (`plan_cache_mode = force_generic_plan`): both statements have one plan
//! whatever their arrays hold, and re-planning them cost more than running
//! them. The setting stays on that connection; the pool's are untouched.
//!
//! A combined statement that the server refuses as a whole (a concurrent
//! writer in another process took one of the versions, a command id or an
//! event id is taken) is rolled back, and its requests are appended one by
//! one, each with its exact outcome. One that fails for any other reason
//! reports that failure to every request in it, as a lone append would: its
//! outcome is unknown, and only a retry with the same command id is safe.
//!
//! [`PostgresOptions::committers`] sets how many committers a store runs
//! (default 1; each has its own connection and runs one statement at a
//! time). The committers end when the last clone of the store is dropped;
//! an append made after the runtime that ran them shut down starts new ones
//! on its own runtime.
//!
//! [`PostgresOptions::committers`]: crate::PostgresOptions::committers

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use es_core::store::{
    AppendOutcome, AppendRequest, Appended, BatchLimits, Batches, ExpectedVersion, Pending, Positions, fail_all,
};
use es_core::{AppendError, StoreError};
use sqlx::{Connection, PgConnection, Row};

use crate::append::{Chained, HeadCheck, stored_u64};
use crate::{Inner, PostgresStore, corrupt, error, to_i64};

/// The most one combined statement carries: 64 requests, 1,000 events (a
/// larger request still goes, alone).
const LIMITS: BatchLimits = BatchLimits {
    requests: 64,
    events: 1_000,
};

/// How long the committer's connection may sit idle before it is checked
/// (one round trip) ahead of the next batch, so that a batch is not sent
/// into a session the server closed meanwhile (`idle_session_timeout`, a
/// restart): under load it is never idle that long, and after a pause one
/// round trip is not noticed. A server that closes sessions idle for less
/// than this fails the next append as unavailable (its outcome unknown, as
/// for any lost connection); retrying with the same command id is safe.
const IDLE_CHECK: Duration = Duration::from_millis(100);

impl PostgresStore {
    /// Appends through the store's committer, alone or in a batch with the
    /// appends waiting beside it.
    pub(crate) async fn append_grouped(&self, request: &AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        es_core::store::validate_append(crate::STORE, request)?;
        self.inner
            .group
            .append(crate::STORE, request, self.inner.committers, LIMITS, |batches| {
                commit_loop(Arc::downgrade(&self.inner), batches)
            })
            .await
    }

    /// The committer's connection: the pool's settings, generic plans.
    async fn committer_connection(&self) -> Result<PgConnection, StoreError> {
        let mut conn = self.own_connection().await?;
        sqlx::query("SET plan_cache_mode = force_generic_plan")
            .execute(&mut conn)
            .await
            .map_err(error("set up the committer's connection"))?;
        Ok(conn)
    }

    /// Appends `batch` on the committer's connection (opened if `conn` has
    /// none), in one statement, or one by one if the server refused the
    /// statement as a whole. A connection that failed is dropped; the next
    /// batch opens another.
    async fn commit(&self, conn: &mut Option<(PgConnection, Instant)>, batch: Vec<Pending>) {
        // A connection idle for a while may have been closed by the server
        // meanwhile: asked first, so that a batch is not sent into it.
        if let Some((c, last_used)) = conn.as_mut()
            && last_used.elapsed() > IDLE_CHECK
            && c.ping().await.is_err()
        {
            *conn = None;
        }
        let c = match conn {
            Some((c, last_used)) => {
                *last_used = Instant::now();
                c
            }
            None => match self.committer_connection().await {
                Ok(c) => &mut conn.insert((c, Instant::now())).0,
                Err(e) => return fail_all(batch, &e),
            },
        };
        let mut broken = false;
        let mut alone = batch;
        if alone.len() > 1 {
            match self.try_batch(c, &alone).await {
                Ok(outcomes) => {
                    let mut again = Vec::new();
                    for (pending, outcome) in alone.into_iter().zip(outcomes) {
                        match outcome {
                            Some(outcome) => {
                                pending.answer(outcome);
                            }
                            None => again.push(pending),
                        }
                    }
                    alone = again;
                }
                Err(Some(e)) => {
                    broken = matches!(e, StoreError::Unavailable { .. });
                    fail_all(std::mem::take(&mut alone), &e);
                }
                // Rolled back: each on its own below.
                Err(None) => {}
            }
        }
        for pending in alone {
            let events = pending.append.new_events();
            let outcome = self.append_alone(c, &pending.append.request(&events)).await;
            broken |= matches!(outcome, Err(AppendError::Store(StoreError::Unavailable { .. })));
            pending.answer(outcome);
        }
        if broken {
            *conn = None;
        }
    }

    /// One combined statement for `batch`: each request's outcome, or
    /// `Err(None)` if the server refused it as a whole (nothing of it was
    /// written), or the failure that leaves its outcome unknown.
    async fn try_batch(
        &self,
        conn: &mut PgConnection,
        batch: &[Pending],
    ) -> Result<Vec<Option<Result<AppendOutcome, AppendError>>>, Option<StoreError>> {
        let n = batch.len();
        let mut types = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut expected = Vec::with_capacity(n);
        let mut command_ids = Vec::with_capacity(n);
        let mut metadata = Vec::with_capacity(n);
        let mut recorded_at = Vec::with_capacity(n);
        let mut counts = Vec::with_capacity(n);
        let (mut ev_request, mut ev_index, mut ev_ids, mut ev_names, mut ev_versions, mut ev_payloads) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut assumed_versions, mut assumed_links, mut ev_links) = (Vec::new(), Vec::new(), Vec::new());
        let mut chains = Vec::with_capacity(n);
        for (r, p) in batch.iter().enumerate() {
            let events = p.append.new_events();
            let chained = self.chain(&p.append.request(&events));
            assumed_versions.push(to_i64(chained.version, "version").map_err(Some)?);
            assumed_links.push(chained.link.map(|l| l.as_bytes().to_vec()));
            ev_links.extend(chained.links.iter().map(|l| l.as_bytes().to_vec()));
            chains.push(chained);
            types.push(p.append.stream.aggregate_type());
            ids.push(p.append.stream.aggregate_id());
            expected.push(match p.append.expected {
                ExpectedVersion::Any => None,
                ExpectedVersion::NoStream => Some(0),
                ExpectedVersion::Exact(v) => Some(to_i64(v, "version").map_err(Some)?),
            });
            command_ids.push(p.append.command_id.as_deref());
            metadata.push(p.append.metadata.as_slice());
            recorded_at.push(p.append.recorded_at.as_micros());
            counts.push(p.append.events.len() as i32);
            for (k, e) in p.append.events.iter().enumerate() {
                ev_request.push(r as i32 + 1);
                ev_index.push(k as i32 + 1);
                ev_ids.push(*e.event_id.as_uuid());
                ev_names.push(e.name.as_str());
                ev_versions.push(e.schema_version as i32);
                ev_payloads.push(e.payload.as_slice());
            }
        }
        let rows = sqlx::query(self.inner.sql.append_batch.clone())
            .bind(&types)
            .bind(&ids)
            .bind(&expected)
            .bind(&command_ids)
            .bind(&metadata)
            .bind(&recorded_at)
            .bind(&counts)
            .bind(&ev_request)
            .bind(&ev_index)
            .bind(&ev_ids)
            .bind(&ev_names)
            .bind(&ev_versions)
            .bind(&ev_payloads)
            .bind(&assumed_versions)
            .bind(&assumed_links)
            .bind(&ev_links)
            .fetch_all(&mut *conn)
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            // The server refused the statement: it was rolled back whole.
            Err(sqlx::Error::Database(db)) => {
                tracing::debug!(error = %db, requests = n, "a combined append was refused; appending one by one");
                return Err(None);
            }
            Err(e) => return Err(Some(error("append a batch")(e))),
        };
        if rows.len() != n {
            return Err(Some(corrupt(format!(
                "a combined append of {n} requests returned {} rows",
                rows.len()
            ))));
        }
        let mut outcomes = Vec::with_capacity(n);
        let mut last = None;
        for ((p, row), chained) in batch.iter().zip(&rows).zip(&chains) {
            let outcome = batch_outcome(self, p, row, chained).map_err(Some)?;
            if let Some(Ok(AppendOutcome::Appended(appended))) = &outcome {
                last = last.max(appended.positions.last());
            }
            outcomes.push(outcome);
        }
        if let Some(last) = last {
            self.appended(last);
        }
        Ok(outcomes)
    }
}

/// One request's outcome from its row of the combined statement, or `None`
/// when its links were computed from a head that is no longer the stream's
/// (nothing of it was written: it goes again, alone).
fn batch_outcome(
    store: &PostgresStore,
    p: &Pending,
    row: &sqlx::postgres::PgRow,
    chained: &Chained,
) -> Result<Option<Result<AppendOutcome, AppendError>>, StoreError> {
    let read = error("read a combined append's result");
    let actual: i64 = row.try_get("actual").map_err(&read)?;
    let stream = &p.append.stream;
    let actual = stored_u64(actual, || format!("stream `{stream}` has version {actual}"))?;
    match store.check_head(stream, p.append.expected, chained, row, actual)? {
        HeadCheck::Expected => {
            return Ok(Some(Err(es_core::Conflict {
                stream: stream.clone(),
                expected: p.append.expected,
                actual,
            }
            .into())));
        }
        HeadCheck::Stale => return Ok(None),
        HeadCheck::Stored => {}
    }
    let positions: Vec<i64> = row.try_get("positions").map_err(&read)?;
    let n = p.append.events.len();
    if positions.len() != n {
        return Err(corrupt(format!(
            "a combined append of {n} events to `{stream}` returned {} positions",
            positions.len()
        )));
    }
    let positions = positions
        .into_iter()
        .map(|v| stored_u64(v, || format!("an append to `{stream}` got position {v}")))
        .collect::<Result<Vec<u64>, StoreError>>()?;
    Ok(Some(Ok(AppendOutcome::Appended(Appended {
        first_version: actual + 1,
        last_version: actual + n as u64,
        positions: Positions::from_vec(positions),
    }))))
}

/// A committer: appends each batch, until the store is gone.
async fn commit_loop(store: Weak<Inner>, mut batches: Batches) {
    let mut conn = None;
    while let Some(batch) = batches.next().await {
        let Some(inner) = store.upgrade() else { return };
        let store = PostgresStore { inner, keyring: None };
        store.commit(&mut conn, batch).await;
    }
}
