//! Appends: one statement per batch, conflicts, command ids, and appends
//! inside a caller's transaction.

use std::sync::PoisonError;

use es_core::store::{
    AppendOutcome, AppendRequest, Appended, CommandRecord, ExpectedVersion, Link, Positions, link_batch,
};
use es_core::{AppendError, Conflict, EventId, StoreError, StreamId};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row, SqlSafeStr};

use crate::{PostgresStore, STORE, corrupt, error, to_i64};

/// How often an append with [`ExpectedVersion::Any`] is tried again when
/// concurrent appends to its stream keep taking the next version first.
const ANY_ATTEMPTS: u32 = 100;

/// The most stream heads a store remembers (about 100 bytes each); past
/// it, it forgets them all and learns again, one statement per stream.
const MAX_HEADS: usize = 100_000;

/// The links of an append's events, and the head they were computed from
/// (its version and link, `None` for an empty stream): the statement stores
/// the events only if that is still the stream's head.
pub(crate) struct Chained {
    pub(crate) version: u64,
    pub(crate) link: Option<Link>,
    pub(crate) links: Vec<Link>,
    /// Whether that head is known to be committed (see [`HeadCache`]) and
    /// is the one the request expects: a combined statement then writes
    /// the events after it without reading it again, and the stream's
    /// unique versions refuse them if it moved on.
    pub(crate) known: bool,
}

/// A stream head the store remembers: its version, its link, and the
/// committer connection whose committed statement showed it, if one did.
#[derive(Clone, Copy)]
struct Head {
    version: u64,
    link: Link,
    /// The connection epoch (see [`HeadCache::epoch`]) the head was seen
    /// committed in; `None` when it was seen inside a caller's transaction,
    /// which may still roll back.
    seen_in: Option<u64>,
}

/// The heads (version and link) of streams this store appended to or read
/// the head of: what the next append's links are computed from.
///
/// A head is a hint for the statement, which checks it, except where it is
/// *known*: seen by a committer's own statement (committed when it returns)
/// on a connection opened since the last time any committer connected. A
/// stream's events are never deleted, so a known head can only be behind
/// the stream, and writing after it is refused by the stream's unique
/// versions. A connection opened anew may reach a server that lost commits
/// the old one acknowledged (a failover to a replica that had not received
/// them, a crash with `synchronous_commit` off): each new committer
/// connection starts a new epoch, and heads of earlier epochs are checked
/// again.
#[derive(Default)]
pub(crate) struct HeadCache {
    heads: std::collections::HashMap<StreamId, Head>,
    epoch: u64,
}

/// What the append statement found at the stream's head.
pub(crate) enum HeadCheck {
    /// Not the expected version: nothing stored.
    Expected,
    /// Not the head the links were computed from: nothing stored.
    Stale,
    /// The head assumed: the events are stored.
    Stored,
}

/// The link of a stream's head as the append statement read it (`link`,
/// NULL for an empty stream).
fn head_link(row: &PgRow, stream: &StreamId, version: u64) -> Result<Option<Link>, StoreError> {
    let bytes: Option<&[u8]> = row.try_get("link").map_err(error("read the append's result"))?;
    match (version, bytes) {
        (0, _) => Ok(None),
        (_, Some(b)) => match Link::from_slice(b) {
            Some(link) => Ok(Some(link)),
            None => Err(corrupt(format!(
                "version {version} of stream `{stream}` has a link of {} bytes, not 32",
                b.len()
            ))),
        },
        (_, None) => Err(corrupt(format!("version {version} of stream `{stream}` has no link"))),
    }
}

/// Why one try of the append statement did not commit.
enum Lost {
    /// Another append took the stream's next version first.
    Version,
    /// Another batch with the same command id on the stream committed first.
    CommandId,
    /// An event id is taken.
    EventId,
    /// The stream was not at the expected version when the statement read it.
    Expected(u64),
    /// The stream's head was not the one the links were computed from (it
    /// was at the version given).
    Stale(u64),
    /// Anything else.
    Failed(AppendError),
}

impl From<StoreError> for Lost {
    fn from(e: StoreError) -> Self {
        Lost::Failed(e.into())
    }
}

impl PostgresStore {
    /// Appends on `conn` (a committer's, with no transaction open, opened
    /// in connection epoch `epoch`), one statement in its own transaction.
    pub(crate) async fn append_alone(
        &self,
        conn: &mut PgConnection,
        epoch: u64,
        request: &AppendRequest<'_>,
    ) -> Result<AppendOutcome, AppendError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let lost = match self.try_append(conn, request, Some(epoch)).await {
                Ok(outcome) => {
                    if let AppendOutcome::Appended(appended) = &outcome
                        && let Some(last) = appended.positions.last()
                    {
                        self.appended(last);
                    }
                    return Ok(outcome);
                }
                Err(lost) => lost,
            };
            // The statement was its own transaction: the connection is
            // usable again for the follow-up questions.
            match self.settle(conn, request, lost, attempts).await? {
                Some(outcome) => return Ok(outcome),
                None => continue,
            }
        }
    }

    /// Appends on `conn`, which may be inside the caller's transaction: the
    /// events then commit (or roll back) with the caller's own writes.
    ///
    /// The append runs in a savepoint (a transaction of its own when `conn`
    /// has none), so a conflict leaves the caller's transaction usable.
    /// Readers in other processes learn of these events at their next poll,
    /// or at once if the caller calls [`wake_readers`](Self::wake_readers)
    /// after committing.
    pub async fn append_with(
        &self,
        conn: &mut PgConnection,
        request: AppendRequest<'_>,
    ) -> Result<AppendOutcome, AppendError> {
        es_core::store::validate_append(STORE, &request)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut savepoint = conn.begin().await.map_err(error("begin an append"))?;
            let lost = match self.try_append(&mut savepoint, &request, None).await {
                Ok(outcome) => {
                    savepoint.commit().await.map_err(error("commit an append"))?;
                    return Ok(outcome);
                }
                Err(lost) => lost,
            };
            savepoint.rollback().await.map_err(error("roll back an append"))?;
            match self.settle(conn, &request, lost, attempts).await? {
                Some(outcome) => return Ok(outcome),
                None => continue,
            }
        }
    }

    /// Turns a lost try into its outcome, or `None` to try again (an append
    /// with [`ExpectedVersion::Any`] that another append beat to a version).
    /// `conn` must be usable (the failed try rolled back).
    async fn settle(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest<'_>,
        lost: Lost,
        attempts: u32,
    ) -> Result<Option<AppendOutcome>, AppendError> {
        let stream = request.stream;
        let conflict = |actual| {
            AppendError::from(Conflict {
                stream: stream.clone(),
                expected: request.expected,
                actual,
            })
        };
        match lost {
            Lost::Version if request.expected == ExpectedVersion::Any && attempts < ANY_ATTEMPTS => {
                tokio::task::yield_now().await;
                Ok(None)
            }
            Lost::Version => Err(conflict(self.version_on(conn, stream).await?)),
            Lost::Expected(actual) => Err(conflict(actual)),
            Lost::Stale(actual) if request.expected.matches(actual) && attempts < ANY_ATTEMPTS => Ok(None),
            Lost::Stale(actual) => Err(conflict(actual)),
            Lost::CommandId => match request.command_id {
                Some(id) => match self.find_command_on(conn, stream, id).await? {
                    Some(record) => Ok(Some(AppendOutcome::Duplicate(record))),
                    // The other batch rolled back after all: try again.
                    None => Ok(None),
                },
                None => Err(corrupt("a command id clashed on an append without one".to_owned()).into()),
            },
            Lost::EventId => {
                let taken = self.taken_event_id(conn, request).await?;
                Err(StoreError::DuplicateEventId {
                    store: STORE,
                    event_id: taken,
                }
                .into())
            }
            Lost::Failed(e) => Err(e),
        }
    }

    /// One try of the append statement on `conn`: a committer's opened in
    /// connection epoch `committed` (its statement commits when it returns),
    /// or `None` inside a caller's transaction.
    async fn try_append(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest<'_>,
        committed: Option<u64>,
    ) -> Result<AppendOutcome, Lost> {
        let expected = match request.expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(v) => Some(to_i64(v, "version")?),
        };
        let n = request.events.len();
        let mut ids = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        for e in request.events {
            ids.push(*e.event_id.as_uuid());
            names.push(e.name);
            versions.push(e.schema_version as i32);
            payloads.push(e.payload);
        }
        let stream = request.stream;
        let chained = self.chain(request);
        let link_bytes: Vec<&[u8]> = chained.links.iter().map(|l| l.as_bytes().as_slice()).collect();
        let result = sqlx::query(self.inner.sql.append.get(request.command_id.is_some()))
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(expected)
            .bind(&ids)
            .bind(&names)
            .bind(&versions)
            .bind(&payloads)
            .bind(request.metadata)
            .bind(request.recorded_at.as_micros())
            .bind(request.command_id)
            .bind(&link_bytes)
            .bind(to_i64(chained.version, "version")?)
            .bind(chained.link.as_ref().map(|l| l.as_bytes().as_slice()))
            .fetch_one(&mut *conn)
            .await;
        let row = match result {
            Ok(row) => row,
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(match db.constraint() {
                    Some("events_stream_version") => Lost::Version,
                    Some("commands_pkey") => Lost::CommandId,
                    Some("events_event_id") => Lost::EventId,
                    _ => Lost::Failed(error("append")(sqlx::Error::Database(db)).into()),
                });
            }
            Err(e) => return Err(Lost::Failed(error("append")(e).into())),
        };
        let read = error("read the append's result");
        let actual: i64 = row.try_get("actual").map_err(&read)?;
        let actual = stored_u64(actual, || format!("stream `{stream}` has version {actual}"))?;
        match self.check_head(stream, request.expected, &chained, &row, actual, committed)? {
            HeadCheck::Expected => return Err(Lost::Expected(actual)),
            HeadCheck::Stale => return Err(Lost::Stale(actual)),
            HeadCheck::Stored => {}
        }
        let positions: Vec<i64> = row.try_get("positions").map_err(&read)?;
        let positions = positions
            .into_iter()
            .map(|p| stored_u64(p, || format!("an append to `{stream}` got position {p}")))
            .collect::<Result<Vec<u64>, StoreError>>()?;
        if positions.len() != n {
            return Err(corrupt(format!(
                "an append of {n} events returned {} positions",
                positions.len()
            ))
            .into());
        }
        Ok(AppendOutcome::Appended(Appended {
            first_version: actual + 1,
            last_version: actual + n as u64,
            positions: Positions::from_vec(positions),
        }))
    }

    /// The links of `request`'s events, computed from the head it assumes.
    pub(crate) fn chain(&self, request: &AppendRequest<'_>) -> Chained {
        let (version, link, known) = self.assumed_head(request.stream, request.expected);
        let r = request;
        let links = link_batch(
            link.unwrap_or(Link::GENESIS),
            r.stream,
            version + 1,
            r.events,
            r.metadata,
            r.recorded_at,
        );
        Chained {
            version,
            link,
            links,
            known,
        }
    }

    /// What the statement's `row` found at the head of `stream` (at version
    /// `actual`) against what `chained` assumed; remembers the head the
    /// append leaves: the one found, or the last new event. `committed` is
    /// the connection epoch of a committer's statement, `None` inside a
    /// caller's transaction.
    pub(crate) fn check_head(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        chained: &Chained,
        row: &PgRow,
        actual: u64,
        committed: Option<u64>,
    ) -> Result<HeadCheck, StoreError> {
        let found = head_link(row, stream, actual)?;
        if !expected.matches(actual) {
            self.remember_head(stream, actual, found, committed);
            return Ok(HeadCheck::Expected);
        }
        if !chained.links.is_empty() && (actual != chained.version || found != chained.link) {
            self.remember_head(stream, actual, found, committed);
            return Ok(HeadCheck::Stale);
        }
        if let Some(last) = chained.links.last() {
            self.remember_head(stream, actual + chained.links.len() as u64, Some(*last), committed);
        }
        Ok(HeadCheck::Stored)
    }

    /// The head an append computes its links from, and whether it is known
    /// committed and expected: none for a new stream, else the one
    /// remembered (the statement checks it unless it is known), else the
    /// expected version with no link, which the statement refuses for a
    /// stream with events, reporting its head.
    fn assumed_head(&self, stream: &StreamId, expected: ExpectedVersion) -> (u64, Option<Link>, bool) {
        if expected == ExpectedVersion::NoStream {
            return (0, None, false);
        }
        let cache = self.inner.heads.lock().unwrap_or_else(PoisonError::into_inner);
        match cache.heads.get(stream) {
            Some(head) => {
                let known = head.seen_in == Some(cache.epoch) && expected.matches(head.version);
                (head.version, Some(head.link), known)
            }
            None => match expected {
                ExpectedVersion::Exact(v) => (v, None, false),
                _ => (0, None, false),
            },
        }
    }

    /// Remembers a stream's head for the next append's links, as seen in
    /// connection epoch `committed` (or in a caller's transaction).
    pub(crate) fn remember_head(&self, stream: &StreamId, version: u64, link: Option<Link>, committed: Option<u64>) {
        let mut cache = self.inner.heads.lock().unwrap_or_else(PoisonError::into_inner);
        match link {
            Some(link) if version > 0 => {
                if cache.heads.len() >= MAX_HEADS && !cache.heads.contains_key(stream) {
                    cache.heads.clear();
                }
                let head = Head {
                    version,
                    link,
                    seen_in: committed,
                };
                cache.heads.insert(stream.clone(), head);
            }
            _ => {
                cache.heads.remove(stream);
            }
        }
    }

    /// Starts a new connection epoch, for a committer connection just
    /// opened: heads seen before are checked again by the statement.
    pub(crate) fn new_connection_epoch(&self) -> u64 {
        let mut cache = self.inner.heads.lock().unwrap_or_else(PoisonError::into_inner);
        cache.epoch += 1;
        cache.epoch
    }

    pub(crate) async fn version_on(&self, conn: &mut PgConnection, stream: &StreamId) -> Result<u64, StoreError> {
        let version = sqlx::query_scalar::<_, i64>(self.inner.sql.stream_version.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .fetch_one(conn)
            .await
            .map_err(error("read a stream's version"))?;
        stored_u64(version, || format!("stream `{stream}` has version {version}"))
    }

    pub(crate) async fn find_command_on(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        id: &str,
    ) -> Result<Option<CommandRecord>, StoreError> {
        es_core::store::validate_command_id(STORE, id)?;
        let row = sqlx::query(self.inner.sql.find_command.clone())
            .bind(stream.aggregate_type())
            .bind(stream.aggregate_id())
            .bind(id)
            .fetch_optional(conn)
            .await
            .map_err(error("look up a command id"))?;
        row.map(|r| command_record(stream, id, &r)).transpose()
    }

    /// The event id of `request` that is taken: within the batch itself
    /// first, then against the table.
    async fn taken_event_id(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest<'_>,
    ) -> Result<EventId, StoreError> {
        let ids: Vec<uuid::Uuid> = request.events.iter().map(|e| *e.event_id.as_uuid()).collect();
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Ok(EventId::from(*id));
            }
        }
        let s = &self.inner.schema;
        let taken: Option<uuid::Uuid> = sqlx::query_scalar(
            AssertSqlSafe(format!(
                r#"SELECT event_id FROM "{s}".events WHERE event_id = ANY($1) LIMIT 1"#
            ))
            .into_sql_str(),
        )
        .bind(&ids)
        .fetch_optional(conn)
        .await
        .map_err(error("find a reused event id"))?;
        Ok(EventId::from(taken.unwrap_or(ids[0])))
    }
}

/// A stored count or version, which must not be negative.
pub(crate) fn stored_u64(v: i64, what: impl FnOnce() -> String) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(what()))
}

fn command_record(stream: &StreamId, id: &str, r: &PgRow) -> Result<CommandRecord, StoreError> {
    let get = error("read a command record");
    let version = |i| -> Result<u64, StoreError> {
        let v = r.try_get::<i64, _>(i).map_err(&get)?;
        stored_u64(v, || format!("a command record of stream `{stream}` has version {v}"))
    };
    Ok(CommandRecord {
        command_id: id.to_owned(),
        stream: stream.clone(),
        first_version: version(0)?,
        last_version: version(1)?,
    })
}
