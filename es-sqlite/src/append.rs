//! Appending: each append checks the version, records the command id and
//! inserts the events; the store's committer writes every append waiting
//! for it in one write transaction, each in a savepoint of its own.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use es_core::store::{
    AppendOutcome, AppendRequest, Appended, BatchLimits, Batches, CommandRecord, Link, Pending, Positions, fail_all,
    link_batch,
};
use es_core::{AppendError, Conflict, StoreError, StreamId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::read::stored_u64;
use crate::{Inner, STORE, SqliteStore, blocking, corrupt, error, lock, to_i64};

/// The most one batch carries: 64 appends, 1,000 events (a larger append
/// still goes, alone).
const LIMITS: BatchLimits = BatchLimits {
    requests: 64,
    events: 1_000,
};

impl SqliteStore {
    /// Appends alone when no other append is in flight, else through the
    /// store's committer, which writes every append waiting for it in one
    /// transaction (group commit: one disk flush for them all).
    pub(crate) async fn append_grouped(&self, request: AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        es_core::store::validate_append(STORE, &request)?;
        // No other append in flight: this one runs here, at once (the
        // others that come meanwhile queue for the committer, which waits
        // for the writer connection). Without a tokio runtime to run the
        // committer on, it runs here too, after any in flight. `alone`
        // counts it as in flight until it is done.
        let alone = self.inner.group.alone();
        if alone.is_some() || tokio::runtime::Handle::try_current().is_err() {
            return blocking(|| self.append_alone(&request));
        }
        self.inner
            .group
            .append(STORE, &request, 1, LIMITS, |batches| {
                commit_loop(Arc::downgrade(&self.inner), batches)
            })
            .await
    }

    /// Appends `request` in a write transaction of its own.
    fn append_alone(&self, request: &AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(error("begin an append"))?;
        let outcome = self.append_in(&tx, request)?;
        tx.commit().map_err(error("commit an append"))?;
        self.published(last_position(&outcome));
        Ok(outcome)
    }

    /// Appends `batch` in one write transaction, each append in a savepoint
    /// of its own: one that fails (a conflict, a reused event id) leaves
    /// nothing and fails alone; the others commit together.
    fn append_batch(&self, batch: Vec<Pending>) {
        let mut conn = lock(&self.inner.writer);
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return fail_all(batch, &error("begin a batch of appends")(e)),
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut last = 0;
        for pending in &batch {
            let events = pending.append.new_events();
            let request = pending.append.request(&events);
            let outcome = tx
                .execute_batch("SAVEPOINT es_append")
                .map_err(|e| error("begin an append")(e).into())
                .and_then(|()| self.append_in(&tx, &request));
            let end = match outcome {
                Ok(_) => "RELEASE es_append",
                Err(_) => "ROLLBACK TO es_append; RELEASE es_append",
            };
            if let Err(e) = tx.execute_batch(end) {
                return fail_all(batch, &error("end an append in a batch")(e));
            }
            if let Ok(outcome) = &outcome {
                last = last.max(last_position(outcome));
            }
            outcomes.push(outcome);
        }
        if let Err(e) = tx.commit() {
            return fail_all(batch, &error("commit a batch of appends")(e));
        }
        drop(conn);
        self.published(last);
        for (pending, outcome) in batch.into_iter().zip(outcomes) {
            pending.answer(outcome);
        }
    }

    /// Readers learn of the events committed up to `last_position` (0: none).
    fn published(&self, last_position: u64) {
        if last_position > 0 {
            self.inner.last_position.fetch_max(last_position, Ordering::Relaxed);
            if self.inner.head.receiver_count() > 0 {
                self.inner.head.send_replace(last_position);
            }
        }
    }

    /// Appends `request` inside `tx` (not committed).
    fn append_in(&self, tx: &Connection, request: &AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        let stream = request.stream;
        if let Some(id) = request.command_id
            && let Some(record) = find_command(tx, stream, id)?
        {
            return Ok(AppendOutcome::Duplicate(record));
        }
        let head: Option<(i64, Option<Link>)> = tx
            .prepare_cached(
                "SELECT version, link FROM es_events WHERE aggregate_type = ?1 AND aggregate_id = ?2 \
                 ORDER BY version DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![stream.aggregate_type(), stream.aggregate_id()], |r| {
                    // Read in place: no allocation per append.
                    Ok((r.get(0)?, r.get_ref(1)?.as_blob_or_null()?.and_then(Link::from_slice)))
                })
                .optional()
            })
            .map_err(error("read a stream's version"))?;
        let (actual, previous) = match head {
            None => (0, Link::GENESIS),
            Some((v, link)) => {
                let v = stored_u64(v, || format!("stream `{stream}` has version {v}"))?;
                let link =
                    link.ok_or_else(|| corrupt(format!("version {v} of stream `{stream}` has no readable link")))?;
                (v, link)
            }
        };
        if !request.expected.matches(actual) {
            return Err(Conflict {
                stream: stream.clone(),
                expected: request.expected,
                actual,
            }
            .into());
        }
        let count = request.events.len() as u64;
        let links = link_batch(
            previous,
            stream,
            actual + 1,
            request.events,
            request.metadata,
            request.recorded_at,
        );
        let mut first_position = 0;
        let mut last_position = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO es_events (event_id, aggregate_type, aggregate_id, version, name, schema_version, \
                     payload, metadata, recorded_at, link, packed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, x'', ?7, ?8, ?9, ?10)",
                )
                .map_err(error("prepare an append"))?;
            let mut packed = Vec::new();
            for (i, event) in request.events.iter().enumerate() {
                let version = to_i64(actual + 1 + i as u64, "version")?;
                crate::packed::pack_into(
                    &mut packed,
                    stream.aggregate_type(),
                    stream.aggregate_id(),
                    event.name,
                    event.schema_version,
                    event.payload,
                );
                insert
                    .execute(params![
                        event.event_id.as_uuid().as_bytes().as_slice(),
                        stream.aggregate_type(),
                        stream.aggregate_id(),
                        version,
                        event.name,
                        event.schema_version,
                        request.metadata,
                        request.recorded_at.as_micros(),
                        links[i].as_bytes().as_slice(),
                        packed,
                    ])
                    .map_err(|e| match e.sqlite_error_code() {
                        Some(rusqlite::ErrorCode::ConstraintViolation) if e.to_string().contains("event_id") => {
                            StoreError::DuplicateEventId {
                                store: STORE,
                                event_id: event.event_id,
                            }
                        }
                        _ => error("append an event")(e),
                    })?;
                last_position = tx.last_insert_rowid() as u64;
                if i == 0 {
                    first_position = last_position;
                }
            }
        }
        if let (Some(id), true) = (request.command_id, count > 0) {
            tx.prepare_cached(
                "INSERT INTO es_commands (command_id, aggregate_type, aggregate_id, first_version, last_version) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    stream.aggregate_type(),
                    stream.aggregate_id(),
                    actual as i64 + 1,
                    (actual + count) as i64
                ])
            })
            .map_err(error("record a command id"))?;
        }
        // One writer at a time: the rowids of one batch are consecutive.
        let positions = if count == 0 || last_position - first_position + 1 == count {
            Positions::Consecutive {
                first: if count == 0 { last_position + 1 } else { first_position },
                count,
            }
        } else {
            Positions::Listed((first_position..=last_position).collect())
        };
        Ok(AppendOutcome::Appended(Appended {
            first_version: actual + 1,
            last_version: actual + count,
            positions,
        }))
    }
}

/// The position of the last event `outcome` stored (0: none).
fn last_position(outcome: &AppendOutcome) -> u64 {
    match outcome {
        AppendOutcome::Appended(appended) => appended.positions.last().unwrap_or(0),
        AppendOutcome::Duplicate(_) => 0,
    }
}

/// The committer: a thread of its own (SQLite blocks) that appends each
/// batch, until the store is gone.
async fn commit_loop(store: Weak<Inner>, mut batches: Batches) {
    let runtime = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("es-sqlite-committer".to_owned())
        .spawn(move || {
            while let Some(batch) = runtime.block_on(batches.next()) {
                let Some(inner) = store.upgrade() else { return };
                let store = SqliteStore { inner, keyring: None };
                store.append_batch(batch);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the SQLite store's committer thread");
    }
}

pub(crate) fn find_command(
    conn: &Connection,
    stream: &StreamId,
    id: &str,
) -> Result<Option<CommandRecord>, StoreError> {
    conn.prepare_cached(
        "SELECT first_version, last_version FROM es_commands \
         WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND command_id = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![stream.aggregate_type(), stream.aggregate_id(), id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })
        .optional()
    })
    .map_err(error("look up a command id"))?
    .map(|(first, last)| {
        Ok(CommandRecord {
            command_id: id.to_owned(),
            stream: stream.clone(),
            first_version: stored_u64(first, || {
                format!("a command record of stream `{stream}` has version {first}")
            })?,
            last_version: stored_u64(last, || {
                format!("a command record of stream `{stream}` has version {last}")
            })?,
        })
    })
    .transpose()
}
