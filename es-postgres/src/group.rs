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
//! Most batches need less: when every request writes after a stream head
//! the store saw commit on this connection (see
//! [`HeadCache`](crate::append::HeadCache)) and carries no command id, the
//! statement only inserts the events, each at its own version, and the
//! stream's unique versions refuse the whole statement if another writer
//! moved a head on (it then goes one by one, as below). It costs the server
//! about half the full statement (pg_stat_statements, 8 requests: 76 µs
//! against 164 µs).
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
    async fn commit(&self, conn: &mut Option<Committer>, batch: Vec<Pending>) {
        // A connection idle for a while may have been closed by the server
        // meanwhile: asked first, so that a batch is not sent into it.
        if let Some(c) = conn.as_mut()
            && c.last_used.elapsed() > IDLE_CHECK
            && c.conn.ping().await.is_err()
        {
            *conn = None;
        }
        let Committer {
            conn: c,
            last_used,
            epoch,
        } = match conn {
            Some(c) => c,
            None => match self.committer_connection().await {
                Ok(c) => conn.insert(Committer {
                    conn: c,
                    last_used: Instant::now(),
                    epoch: self.new_connection_epoch(),
                }),
                Err(e) => return fail_all(batch, &e),
            },
        };
        *last_used = Instant::now();
        let epoch = *epoch;
        let mut broken = false;
        let mut alone = batch;
        if alone.len() > 1 {
            match self.try_batch(c, epoch, &alone).await {
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
            let outcome = self.append_alone(c, epoch, &pending.append.request(&events)).await;
            broken |= matches!(outcome, Err(AppendError::Store(StoreError::Unavailable { .. })));
            pending.answer(outcome);
        }
        if broken {
            *conn = None;
        }
    }

    /// One combined statement for `batch` on a committer's connection
    /// opened in connection epoch `epoch`: each request's outcome, or
    /// `Err(None)` if the server refused it as a whole (nothing of it was
    /// written), or the failure that leaves its outcome unknown.
    async fn try_batch(
        &self,
        conn: &mut PgConnection,
        epoch: u64,
        batch: &[Pending],
    ) -> Result<Vec<Option<Result<AppendOutcome, AppendError>>>, Option<StoreError>> {
        let chains: Vec<Chained> = batch
            .iter()
            .map(|p| self.chain(&p.append.request(&p.append.new_events())))
            .collect();
        let lean = batch
            .iter()
            .zip(&chains)
            .all(|(p, c)| c.known && p.append.command_id.is_none() && !p.append.events.is_empty());
        if lean {
            return self.try_known(conn, epoch, batch, &chains).await;
        }
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
        let mut known = Vec::with_capacity(n);
        for (r, (p, chained)) in batch.iter().zip(&chains).enumerate() {
            assumed_versions.push(to_i64(chained.version, "version").map_err(Some)?);
            assumed_links.push(chained.link.map(|l| l.as_bytes().to_vec()));
            known.push(chained.known);
            ev_links.extend(chained.links.iter().map(|l| l.as_bytes().to_vec()));
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
        let with_commands = command_ids.iter().any(Option::is_some);
        let rows = sqlx::query(self.inner.sql.append_batch.get(with_commands))
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
            .bind(&known)
            .fetch_all(&mut *conn)
            .await;
        let rows = refused_whole(rows, n)?;
        if rows.len() != n {
            return Err(Some(corrupt(format!(
                "a combined append of {n} requests returned {} rows",
                rows.len()
            ))));
        }
        let mut outcomes = Vec::with_capacity(n);
        let mut last = None;
        for ((p, row), chained) in batch.iter().zip(&rows).zip(&chains) {
            let outcome = batch_outcome(self, p, row, chained, epoch).map_err(Some)?;
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

impl PostgresStore {
    /// The combined statement for a batch whose every request writes
    /// events after a head known committed (see
    /// [`crate::append::HeadCache`]) and carries no command id: only the
    /// inserts, every event with its own version, the stream's unique
    /// versions refusing the whole statement if a head moved on. Outcomes
    /// as [`try_batch`](Self::try_batch)'s.
    async fn try_known(
        &self,
        conn: &mut PgConnection,
        epoch: u64,
        batch: &[Pending],
        chains: &[Chained],
    ) -> Result<Vec<Option<Result<AppendOutcome, AppendError>>>, Option<StoreError>> {
        let events: usize = batch.iter().map(|p| p.append.events.len()).sum();
        let (mut types, mut ids, mut versions, mut event_ids, mut names) = (
            Vec::with_capacity(events),
            Vec::with_capacity(events),
            Vec::with_capacity(events),
            Vec::with_capacity(events),
            Vec::with_capacity(events),
        );
        let (mut schema_versions, mut payloads, mut metadata, mut recorded_at, mut links) = (
            Vec::with_capacity(events),
            Vec::with_capacity(events),
            Vec::with_capacity(events),
            Vec::with_capacity(events),
            Vec::with_capacity(events),
        );
        for (p, chained) in batch.iter().zip(chains) {
            let a = &p.append;
            for (k, (e, link)) in a.events.iter().zip(&chained.links).enumerate() {
                types.push(a.stream.aggregate_type());
                ids.push(a.stream.aggregate_id());
                versions.push(to_i64(chained.version + 1 + k as u64, "version").map_err(Some)?);
                event_ids.push(*e.event_id.as_uuid());
                names.push(e.name.as_str());
                schema_versions.push(e.schema_version as i32);
                payloads.push(e.payload.as_slice());
                metadata.push(a.metadata.as_slice());
                recorded_at.push(a.recorded_at.as_micros());
                links.push(link.as_bytes().as_slice());
            }
        }
        let rows = sqlx::query(self.inner.sql.append_known.clone())
            .bind(&types)
            .bind(&ids)
            .bind(&versions)
            .bind(&event_ids)
            .bind(&names)
            .bind(&schema_versions)
            .bind(&payloads)
            .bind(&metadata)
            .bind(&recorded_at)
            .bind(&links)
            .fetch_all(&mut *conn)
            .await;
        let rows = refused_whole(rows, batch.len())?;
        let read = error("read a combined append's result");
        let positions: Vec<i64> = match rows.first() {
            Some(row) => row.try_get("positions").map_err(|e| Some(read(e)))?,
            None => Vec::new(),
        };
        if positions.len() != events {
            return Err(Some(corrupt(format!(
                "a combined append of {events} events returned {} positions",
                positions.len()
            ))));
        }
        let mut positions = positions.into_iter();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut last = None;
        for (p, chained) in batch.iter().zip(chains) {
            let stream = &p.append.stream;
            let n = p.append.events.len();
            let mine = positions
                .by_ref()
                .take(n)
                .map(|v| stored_u64(v, || format!("an append to `{stream}` got position {v}")))
                .collect::<Result<Vec<u64>, StoreError>>()
                .map_err(Some)?;
            self.remember_head(
                stream,
                chained.version + n as u64,
                chained.links.last().copied(),
                Some(epoch),
            );
            let appended = Appended {
                first_version: chained.version + 1,
                last_version: chained.version + n as u64,
                positions: Positions::from_vec(mine),
            };
            last = last.max(appended.positions.last());
            outcomes.push(Some(Ok(AppendOutcome::Appended(appended))));
        }
        if let Some(last) = last {
            self.appended(last);
        }
        Ok(outcomes)
    }
}

/// The rows of a combined statement, or `Err(None)` if the server refused
/// it (it was rolled back whole: its `n` requests go again one by one), or
/// the failure that leaves its outcome unknown.
fn refused_whole(
    rows: Result<Vec<sqlx::postgres::PgRow>, sqlx::Error>,
    n: usize,
) -> Result<Vec<sqlx::postgres::PgRow>, Option<StoreError>> {
    match rows {
        Ok(rows) => Ok(rows),
        Err(sqlx::Error::Database(db)) => {
            tracing::debug!(error = %db, requests = n, "a combined append was refused; appending one by one");
            Err(None)
        }
        Err(e) => Err(Some(error("append a batch")(e))),
    }
}

/// One request's outcome from its row of the combined statement (run on a
/// connection of epoch `epoch`), or `None` when its links were computed
/// from a head that is no longer the stream's (nothing of it was written:
/// it goes again, alone).
fn batch_outcome(
    store: &PostgresStore,
    p: &Pending,
    row: &sqlx::postgres::PgRow,
    chained: &Chained,
    epoch: u64,
) -> Result<Option<Result<AppendOutcome, AppendError>>, StoreError> {
    let read = error("read a combined append's result");
    let actual: i64 = row.try_get("actual").map_err(&read)?;
    let stream = &p.append.stream;
    let actual = stored_u64(actual, || format!("stream `{stream}` has version {actual}"))?;
    match store.check_head(stream, p.append.expected, chained, row, actual, Some(epoch))? {
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

/// A committer's connection: when it was last used, and the connection
/// epoch it opened in (see [`crate::append::HeadCache`]).
struct Committer {
    conn: PgConnection,
    last_used: Instant,
    epoch: u64,
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
