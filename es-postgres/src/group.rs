//! Group commit: one committer per store takes every append waiting and
//! writes them in one statement and one commit.
//!
//! Writers do not run their own statements: they hand their appends to the
//! store's committer (a task with a connection of its own) and wait for
//! their outcome. The committer takes everything queued since its last
//! statement (one request per stream, up to [`MAX_REQUESTS`] requests and
//! [`MAX_EVENTS`] events) and appends it with one combined statement, which
//! checks each stream's expected version on its own and reports each
//! request's outcome: a conflict fails only its command. A lone writer's
//! append goes at once, as the single-request statement. While a statement
//! runs, the next batch fills; no append waits for a timer. The server then
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

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use es_core::store::{AppendOutcome, AppendRequest, Appended, ExpectedVersion, NewEvent, Positions};
use es_core::{AppendError, StoreError, StreamId, Timestamp};
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::{mpsc, oneshot};

use crate::append::{Chained, HeadCheck, stored_u64};
use crate::{Inner, PostgresStore, corrupt, error, to_i64};

/// The most requests one combined statement carries.
const MAX_REQUESTS: usize = 64;
/// The most events one combined statement carries (a larger request still
/// goes, alone).
const MAX_EVENTS: usize = 1_000;

/// How long the committer's connection may sit idle before it is checked
/// (one round trip) ahead of the next batch.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Where appends go to their committers: `None` until the first append, and
/// replaced when the committers' runtime has shut down.
pub(crate) type Queue = std::sync::Mutex<Option<mpsc::UnboundedSender<Pending>>>;

/// An append waiting for a batch: its request, owned, and where its outcome
/// goes.
pub(crate) struct Pending {
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<OwnedEvent>,
    metadata: Vec<u8>,
    command_id: Option<String>,
    recorded_at: Timestamp,
    done: oneshot::Sender<Result<AppendOutcome, AppendError>>,
}

/// An event of a waiting append, owned.
struct OwnedEvent {
    event_id: es_core::EventId,
    name: String,
    schema_version: u32,
    payload: Vec<u8>,
}

impl From<&NewEvent<'_>> for OwnedEvent {
    fn from(e: &NewEvent<'_>) -> Self {
        OwnedEvent {
            event_id: e.event_id,
            name: e.name.to_owned(),
            schema_version: e.schema_version,
            payload: e.payload.to_vec(),
        }
    }
}

impl Pending {
    /// Its events, borrowed as a request carries them.
    fn new_events(&self) -> Vec<NewEvent<'_>> {
        self.events
            .iter()
            .map(|e| NewEvent {
                event_id: e.event_id,
                name: &e.name,
                schema_version: e.schema_version,
                payload: &e.payload,
            })
            .collect()
    }

    fn request<'a>(&'a self, events: &'a [NewEvent<'a>]) -> AppendRequest<'a> {
        AppendRequest {
            stream: &self.stream,
            expected: self.expected,
            events,
            metadata: &self.metadata,
            command_id: self.command_id.as_deref(),
            recorded_at: self.recorded_at,
        }
    }
}

impl PostgresStore {
    /// Appends through the store's committer, alone or in a batch with the
    /// appends waiting beside it.
    pub(crate) async fn append_pooled(&self, request: &AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        es_core::store::validate_append(crate::STORE, request)?;
        let (done, outcome) = oneshot::channel();
        self.enqueue(Pending {
            stream: request.stream.clone(),
            expected: request.expected,
            events: request.events.iter().map(OwnedEvent::from).collect(),
            metadata: request.metadata.to_vec(),
            command_id: request.command_id.map(str::to_owned),
            recorded_at: request.recorded_at,
            done,
        })?;
        outcome.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable {
                store: crate::STORE,
                operation: "append in a batch",
                source: "the committer stopped before the append ran (its runtime shut down)".into(),
            }
            .into())
        })
    }

    /// Hands `pending` to the committers, starting them on this runtime if
    /// none runs.
    fn enqueue(&self, pending: Pending) -> Result<(), StoreError> {
        let mut queue = self.inner.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let pending = match queue.as_ref() {
            Some(sender) => match sender.send(pending) {
                Ok(()) => return Ok(()),
                // Its committers are gone with their runtime.
                Err(mpsc::error::SendError(pending)) => pending,
            },
            None => pending,
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StoreError::Unavailable {
            store: crate::STORE,
            operation: "append",
            source: "no tokio runtime to run the store's committer on".into(),
        })?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..self.inner.committers {
            runtime.spawn(commit_loop(Arc::downgrade(&self.inner), receiver.clone()));
        }
        // The committers hold the receiver: this cannot fail.
        let _ = sender.send(pending);
        *queue = Some(sender);
        Ok(())
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
                Err(e) => {
                    for pending in batch {
                        let _ = pending.done.send(Err(copy_error(&e).into()));
                    }
                    return;
                }
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
                                let _ = pending.done.send(outcome);
                            }
                            None => again.push(pending),
                        }
                    }
                    alone = again;
                }
                Err(Some(e)) => {
                    broken = matches!(e, StoreError::Unavailable { .. });
                    for pending in alone {
                        let _ = pending.done.send(Err(copy_error(&e).into()));
                    }
                    alone = Vec::new();
                }
                // Rolled back: each on its own below.
                Err(None) => {}
            }
        }
        for pending in alone {
            let events = pending.new_events();
            let outcome = self.append_alone(c, &pending.request(&events)).await;
            broken |= matches!(outcome, Err(AppendError::Store(StoreError::Unavailable { .. })));
            let _ = pending.done.send(outcome);
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
            let events = p.new_events();
            let chained = self.chain(&p.request(&events));
            assumed_versions.push(to_i64(chained.version, "version").map_err(Some)?);
            assumed_links.push(chained.link.map(|l| l.as_bytes().to_vec()));
            ev_links.extend(chained.links.iter().map(|l| l.as_bytes().to_vec()));
            chains.push(chained);
            types.push(p.stream.aggregate_type());
            ids.push(p.stream.aggregate_id());
            expected.push(match p.expected {
                ExpectedVersion::Any => None,
                ExpectedVersion::NoStream => Some(0),
                ExpectedVersion::Exact(v) => Some(to_i64(v, "version").map_err(Some)?),
            });
            command_ids.push(p.command_id.as_deref());
            metadata.push(p.metadata.as_slice());
            recorded_at.push(p.recorded_at.as_micros());
            counts.push(p.events.len() as i32);
            for (k, e) in p.events.iter().enumerate() {
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
    let stream = &p.stream;
    let actual = stored_u64(actual, || format!("stream `{stream}` has version {actual}"))?;
    match store.check_head(stream, p.expected, chained, row, actual)? {
        HeadCheck::Expected => {
            return Ok(Some(Err(es_core::Conflict {
                stream: stream.clone(),
                expected: p.expected,
                actual,
            }
            .into())));
        }
        HeadCheck::Stale => return Ok(None),
        HeadCheck::Stored => {}
    }
    let positions: Vec<i64> = row.try_get("positions").map_err(&read)?;
    let n = p.events.len();
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

/// The queued appends for the next batch: in arrival order, one per stream
/// (a second one for a stream waits for the batch after), within the limits.
fn take_batch(queue: &mut Vec<Pending>) -> Vec<Pending> {
    let mut streams = HashSet::new();
    let mut events = 0;
    let mut batch = Vec::new();
    let mut rest = Vec::new();
    for pending in queue.drain(..) {
        let fits = batch.is_empty() || (batch.len() < MAX_REQUESTS && events + pending.events.len() <= MAX_EVENTS);
        if fits && streams.insert(pending.stream.clone()) {
            events += pending.events.len();
            batch.push(pending);
        } else {
            rest.push(pending);
        }
    }
    *queue = rest;
    batch
}

/// The same failure, for each request of a batch.
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable { operation, source, .. } => StoreError::Unavailable {
            store: crate::STORE,
            operation,
            source: source.to_string().into(),
        },
        StoreError::Corrupt { detail, .. } => corrupt(detail.clone()),
        other => StoreError::Backend {
            store: crate::STORE,
            operation: "append a batch",
            source: other.to_string().into(),
        },
    }
}

/// A committer: takes what is queued, appends it, until the store is gone.
async fn commit_loop(store: Weak<Inner>, queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>) {
    let mut conn = None;
    // Taken from the queue but left for a later batch (a second append to
    // a stream in the batch, or past its limits).
    let mut held = Vec::new();
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            if held.is_empty() {
                match queue.recv().await {
                    Some(pending) => held.push(pending),
                    // Every clone of the store is gone.
                    None => return,
                }
            }
            while held.len() < MAX_REQUESTS
                && let Ok(pending) = queue.try_recv()
            {
                held.push(pending);
            }
            take_batch(&mut held)
        };
        let Some(inner) = store.upgrade() else { return };
        let store = PostgresStore { inner, keyring: None };
        store.commit(&mut conn, batch).await;
        drop(store);
        // The writers just answered run before the next batch is taken, so
        // that their next appends join it: without this the committer
        // takes the first one back alone, and batches alternate between
        // few and many (4.5 appends a batch on average with 8 writers,
        // against 7.5 with it).
        tokio::task::yield_now().await;
    }
}
