//! The queries behind the commands that look at a store's tables directly
//! (what `EventStore` has no method for: listing streams, checkpoints and
//! the kinds of stored events). They follow the table layouts of es-sqlite
//! and es-postgres, released with this crate.

use std::path::Path;

use es_core::{EventStore, Timestamp};
#[cfg(feature = "sqlite")]
use rusqlite::{OpenFlags, OptionalExtension};
use serde::Serialize;
#[cfg(feature = "postgres")]
use sqlx::{AssertSqlSafe, Row, SqlSafeStr};

use crate::{CliError, Db, fail, last_position};

/// One stream; on NATS also a subject holding only foreign messages.
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    /// Its aggregate type (empty for a foreign subject).
    pub aggregate_type: String,
    /// Its aggregate id (the subject, for a foreign subject).
    pub aggregate_id: String,
    /// Its version: the number of its events (the number of messages, for
    /// a foreign subject).
    pub version: u64,
    /// When its last event was committed (empty for a foreign subject).
    pub last_recorded_at: String,
    /// Whether this is no stream but a NATS subject under the store's event
    /// subjects where another client published messages that are not
    /// events; readers skip them (`es foreign` shows them).
    pub foreign: bool,
}

/// A message on a NATS store's event subjects that is not one of its
/// events.
#[derive(Debug, Clone, Serialize)]
pub struct ForeignInfo {
    /// Its sequence: its position in the log.
    pub position: u64,
    /// The subject it was published on.
    pub subject: String,
    /// Its size in bytes.
    pub bytes: usize,
    /// What it holds: the text where it is UTF-8, else hex.
    pub payload: String,
}

/// One checkpoint and how far behind the log's head it is.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointInfo {
    /// The checkpoint's name (`projection:<name>` for read models).
    pub name: String,
    /// The last position it has applied.
    pub position: u64,
    /// The log's last position.
    pub head: u64,
    /// Events it has yet to apply.
    pub lag: u64,
    /// For a partition of a partitioned PostgreSQL read model
    /// (`projection:<name>#<index>/<count>`): the runner whose last
    /// heartbeat listed it, and how long ago that heartbeat was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// One kind of stored event: a name at a schema version.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogueEntry {
    /// The stored name.
    pub name: String,
    /// The schema version it was written at.
    pub schema_version: u32,
    /// How many are stored.
    pub count: u64,
    /// When the first was committed.
    pub first_recorded_at: String,
    /// When the last was committed.
    pub last_recorded_at: String,
}

#[cfg(feature = "sqlite")]
fn sqlite_error(what: &'static str) -> impl Fn(rusqlite::Error) -> CliError {
    move |e| fail(format!("{what}: {e}"))
}

#[cfg(feature = "postgres")]
fn pg_error(what: &'static str) -> impl Fn(sqlx::Error) -> CliError {
    move |e| fail(format!("{what}: {e}"))
}

fn time(micros: i64) -> String {
    Timestamp::from_micros(micros).to_string()
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(feature = "postgres")]
fn sql(text: String) -> sqlx::SqlStr {
    AssertSqlSafe(text).into_sql_str()
}

#[cfg(feature = "sqlite")]
/// Refuses a file that is not an es store, before opening it as one (which
/// would create the tables).
pub(crate) fn require_sqlite_store(path: &Path) -> Result<(), CliError> {
    let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite_error("open the file"))?;
    let found: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'es_events'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| fail(format!("`{}` is not a SQLite database: {e}", path.display())))?;
    match found {
        Some(_) => Ok(()),
        None => Err(fail(format!(
            "`{}` is a SQLite database without an es store (no es_events table)",
            path.display()
        ))),
    }
}

#[cfg(feature = "sqlite")]
/// The schema version stored in the file's header, read without migrating.
pub(crate) fn sqlite_schema_version(path: &Path) -> Result<i64, CliError> {
    require_sqlite_store(path)?;
    let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite_error("open the file"))?;
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite_error("read the schema version"))
}

#[cfg(feature = "postgres")]
/// Refuses a schema without an es store in it.
pub(crate) async fn require_postgres_schema(store: &es_postgres::PostgresStore) -> Result<(), CliError> {
    let s = store.schema();
    let found: Option<String> = sqlx::query_scalar(sql(format!(r#"SELECT to_regclass('"{s}".events')::TEXT"#)))
        .fetch_one(store.pool())
        .await
        .map_err(pg_error("look for the store's tables"))?;
    if found.is_none() {
        return Err(fail(format!(
            "schema `{s}` holds no es store; pass --schema, or migrate the store first"
        )));
    }
    let version = postgres_schema_version(store).await?;
    if version < 4 {
        return Err(fail(format!(
            "schema `{s}` is at version {version}, from before events were hash-chained; `es` reads version 4: \
             start the application (or `PostgresStore::migrate`) with this release once, which migrates it \
             and chains the stored events"
        )));
    }
    Ok(())
}

#[cfg(feature = "postgres")]
/// The schema's version.
pub(crate) async fn postgres_schema_version(store: &es_postgres::PostgresStore) -> Result<i64, CliError> {
    let s = store.schema();
    let v: Option<i32> = sqlx::query_scalar(sql(format!(r#"SELECT MAX(version) FROM "{s}".schema_version"#)))
        .fetch_one(store.pool())
        .await
        .map_err(pg_error("read the schema version"))?;
    Ok(i64::from(v.unwrap_or(0)))
}

/// One row of a stream listing, or an error naming the stream whose row
/// does not read (a version below 1, a cell of the wrong type): a corrupt
/// row fails the listing, and says where.
fn stream_row(
    kind: &str,
    id: &str,
    version: Result<i64, String>,
    recorded_at: Result<i64, String>,
    lowest: Result<i64, String>,
) -> Result<StreamInfo, CliError> {
    let version = version.map_err(|e| fail(format!("stream `{kind}/{id}`: its version does not read: {e}")))?;
    let lowest = lowest.map_err(|e| fail(format!("stream `{kind}/{id}`: a version does not read: {e}")))?;
    if lowest < 1 {
        return Err(fail(format!(
            "stream `{kind}/{id}`: a stored version of {lowest}, below 1: the store is corrupt there"
        )));
    }
    let recorded_at = recorded_at.map_err(|e| {
        fail(format!(
            "stream `{kind}/{id}`: its last write's time does not read: {e}"
        ))
    })?;
    Ok(StreamInfo {
        aggregate_type: kind.to_owned(),
        aggregate_id: id.to_owned(),
        version: unsigned(version),
        last_recorded_at: time(recorded_at),
        foreign: false,
    })
}

/// Streams, the most recently written first.
pub(crate) async fn streams(db: &Db, aggregate_type: Option<&str>, limit: usize) -> Result<Vec<StreamInfo>, CliError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match db {
        #[cfg(feature = "sqlite")]
        Db::Sqlite(store) => store.read_with(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT aggregate_type, aggregate_id, MAX(version), MAX(recorded_at), MIN(version) FROM es_events
                     WHERE ?1 IS NULL OR aggregate_type = ?1
                     GROUP BY aggregate_type, aggregate_id ORDER BY MAX(position) DESC LIMIT ?2",
                )
                .map_err(sqlite_error("list streams"))?;
            let mut rows = stmt
                .query(rusqlite::params![aggregate_type, limit])
                .map_err(sqlite_error("list streams"))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(sqlite_error("list streams"))? {
                let text = |i| match r.get_ref(i) {
                    Ok(rusqlite::types::ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                    Ok(other) => format!("{other:?}"),
                    Err(e) => format!("({e})"),
                };
                let (kind, id) = (text(0), text(1));
                out.push(stream_row(
                    &kind,
                    &id,
                    r.get::<_, i64>(2).map_err(|e| e.to_string()),
                    r.get::<_, i64>(3).map_err(|e| e.to_string()),
                    r.get::<_, i64>(4).map_err(|e| e.to_string()),
                )?);
            }
            Ok(out)
        })?,
        #[cfg(feature = "postgres")]
        Db::Postgres(store) => {
            let s = store.schema();
            let rows = sqlx::query(sql(format!(
                r#"SELECT aggregate_type, aggregate_id, MAX(version),
                          (EXTRACT(EPOCH FROM MAX(recorded_at)) * 1000000)::BIGINT, MIN(version)
                   FROM "{s}".events WHERE $1::TEXT IS NULL OR aggregate_type = $1
                   GROUP BY aggregate_type, aggregate_id ORDER BY MAX(position) DESC LIMIT $2"#
            )))
            .bind(aggregate_type)
            .bind(limit)
            .fetch_all(store.pool())
            .await
            .map_err(pg_error("list streams"))?;
            rows.iter()
                .map(|r| {
                    let kind: String = r.try_get(0).unwrap_or_else(|e| format!("({e})"));
                    let id: String = r.try_get(1).unwrap_or_else(|e| format!("({e})"));
                    stream_row(
                        &kind,
                        &id,
                        r.try_get::<i64, _>(2).map_err(|e| e.to_string()),
                        r.try_get::<i64, _>(3).map_err(|e| e.to_string()),
                        r.try_get::<i64, _>(4).map_err(|e| e.to_string()),
                    )
                })
                .collect()
        }
        #[cfg(feature = "nats")]
        Db::Nats(store) => {
            let heads = store.stream_heads().await?;
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let mut out: Vec<StreamInfo> = heads
                .streams
                .into_iter()
                .filter(|h| aggregate_type.is_none_or(|t| h.stream.aggregate_type() == t))
                .take(limit)
                .map(|h| StreamInfo {
                    aggregate_type: h.stream.aggregate_type().to_owned(),
                    aggregate_id: h.stream.aggregate_id().to_owned(),
                    version: h.version,
                    last_recorded_at: h.last_recorded_at.to_string(),
                    foreign: false,
                })
                .collect();
            if aggregate_type.is_none() {
                out.extend(
                    heads
                        .foreign_subjects
                        .into_iter()
                        .map(|(subject, messages)| StreamInfo {
                            aggregate_type: String::new(),
                            aggregate_id: subject,
                            version: messages,
                            last_recorded_at: String::new(),
                            foreign: true,
                        }),
                );
            }
            Ok(out)
        }
    }
}

/// Every checkpoint with the log's head and its lag.
pub(crate) async fn checkpoints(db: &Db) -> Result<Vec<CheckpointInfo>, CliError> {
    let named: Vec<(String, i64)> = match db {
        #[cfg(feature = "sqlite")]
        Db::Sqlite(store) => store.read_with(|conn| {
            let mut stmt = conn
                .prepare("SELECT name, position FROM es_checkpoints ORDER BY name")
                .map_err(sqlite_error("list checkpoints"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sqlite_error("list checkpoints"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(sqlite_error("list checkpoints"))
        })??,
        #[cfg(feature = "postgres")]
        Db::Postgres(store) => {
            let s = store.schema();
            sqlx::query_as(sql(format!(
                r#"SELECT name, position FROM "{s}".checkpoints ORDER BY name"#
            )))
            .fetch_all(store.pool())
            .await
            .map_err(pg_error("list checkpoints"))?
        }
        #[cfg(feature = "nats")]
        Db::Nats(store) => store
            .checkpoints()
            .await?
            .into_iter()
            .map(|(name, position)| (name, i64::try_from(position).unwrap_or(i64::MAX)))
            .collect(),
    };
    let owners = partition_owners(db).await?;
    let head = last_position(db).await?;
    let mut out = Vec::with_capacity(named.len());
    for (name, position) in named {
        let owner = name.split_once('#').and_then(|(base, suffix)| {
            let partition = es_core::subscription::Partition::from_suffix(&format!("#{suffix}"))?;
            owners
                .iter()
                .filter(|(subscription, owns, _, _)| subscription == base && owns.contains(&(partition.index() as i32)))
                .min_by(|a, b| a.3.total_cmp(&b.3))
                .map(|(_, _, runner, age)| format!("{runner} (seen {age:.1} s ago)"))
        });
        let position = unsigned(position);
        // Events, not positions: positions may leave gaps.
        let lag = crate::on_store!(db, store => store.events_after(position).await?);
        out.push(CheckpointInfo {
            name,
            position,
            head,
            lag,
            owner,
        });
    }
    Ok(out)
}

/// The partitioned PostgreSQL runners' records: subscription, partitions
/// listed, runner, seconds since its heartbeat (none on other stores, or
/// before any partitioned runner ran).
async fn partition_owners(db: &Db) -> Result<Vec<(String, Vec<i32>, String, f64)>, CliError> {
    match db {
        #[cfg(feature = "postgres")]
        Db::Postgres(store) => {
            let s = store.schema();
            let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
                .bind(format!(r#""{s}".runners"#))
                .fetch_one(store.pool())
                .await
                .map_err(pg_error("look for the runners table"))?;
            if exists.is_none() {
                return Ok(Vec::new());
            }
            sqlx::query_as(sql(format!(
                r#"SELECT subscription, owns, runner,
                          extract(epoch FROM clock_timestamp() - seen_at)::float8
                   FROM "{s}".runners"#
            )))
            .fetch_all(store.pool())
            .await
            .map_err(pg_error("list the partitioned runners"))
        }
        #[allow(unreachable_patterns)]
        _ => Ok(Vec::new()),
    }
}

/// Moves a checkpoint.
pub(crate) async fn set_checkpoint(db: &Db, name: &str, position: u64) -> Result<(), CliError> {
    crate::on_store!(db, store => store.save_checkpoint(name, position).await?);
    Ok(())
}

/// The kinds of stored events: each name and schema version, how many,
/// first and last written.
pub(crate) async fn catalogue(db: &Db) -> Result<Vec<CatalogueEntry>, CliError> {
    match db {
        #[cfg(feature = "sqlite")]
        Db::Sqlite(store) => store.read_with(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT name, schema_version, COUNT(*), MIN(recorded_at), MAX(recorded_at) FROM es_events
                     GROUP BY name, schema_version ORDER BY name, schema_version",
                )
                .map_err(sqlite_error("list the stored events"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(CatalogueEntry {
                        name: r.get(0)?,
                        schema_version: r.get(1)?,
                        count: unsigned(r.get(2)?),
                        first_recorded_at: time(r.get(3)?),
                        last_recorded_at: time(r.get(4)?),
                    })
                })
                .map_err(sqlite_error("list the stored events"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(sqlite_error("list the stored events"))
        })?,
        #[cfg(feature = "postgres")]
        Db::Postgres(store) => {
            let s = store.schema();
            let rows = sqlx::query(sql(format!(
                r#"SELECT name, schema_version, COUNT(*),
                          (EXTRACT(EPOCH FROM MIN(recorded_at)) * 1000000)::BIGINT,
                          (EXTRACT(EPOCH FROM MAX(recorded_at)) * 1000000)::BIGINT
                   FROM "{s}".events GROUP BY name, schema_version ORDER BY name, schema_version"#
            )))
            .fetch_all(store.pool())
            .await
            .map_err(pg_error("list the stored events"))?;
            rows.iter()
                .map(|r| {
                    Ok(CatalogueEntry {
                        name: r.try_get(0)?,
                        schema_version: u32::try_from(r.try_get::<i32, _>(1)?).unwrap_or(0),
                        count: unsigned(r.try_get(2)?),
                        first_recorded_at: time(r.try_get(3)?),
                        last_recorded_at: time(r.try_get(4)?),
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(pg_error("list the stored events"))
        }
        // No index to ask: the whole log, read a page at a time.
        #[cfg(feature = "nats")]
        Db::Nats(store) => {
            use es_core::EventStoreExt;
            let mut kinds: std::collections::BTreeMap<(String, u32), CatalogueEntry> = Default::default();
            let mut after = 0;
            loop {
                let page = store.read_all_vec(after, 5_000).await?;
                let Some(last) = page.last() else { break };
                after = last.position;
                for e in page.iter().filter(|e| e.name != es_core::store::FOREIGN) {
                    let at = e.recorded_at.to_string();
                    let entry = kinds
                        .entry((e.name.clone(), e.schema_version))
                        .or_insert_with(|| CatalogueEntry {
                            name: e.name.clone(),
                            schema_version: e.schema_version,
                            count: 0,
                            first_recorded_at: at.clone(),
                            last_recorded_at: at.clone(),
                        });
                    entry.count += 1;
                    entry.last_recorded_at = at;
                }
            }
            Ok(kinds.into_values().collect())
        }
    }
}

/// Up to `limit` foreign messages after `after`: only a NATS store's log
/// can hold them.
pub(crate) async fn foreign(db: &Db, after: u64, limit: usize) -> Result<Vec<ForeignInfo>, CliError> {
    match db {
        #[cfg(feature = "nats")]
        Db::Nats(store) => Ok(store
            .foreign_messages(after, limit)
            .await?
            .into_iter()
            .map(|m| ForeignInfo {
                position: m.sequence,
                bytes: m.payload.len(),
                payload: match std::str::from_utf8(&m.payload) {
                    Ok(text) => text.to_owned(),
                    Err(_) => m.payload.iter().map(|b| format!("{b:02x}")).collect(),
                },
                subject: m.subject,
            })
            .collect()),
        #[allow(unreachable_patterns, reason = "no other store when NATS is the only one built in")]
        _ => Ok(Vec::new()),
    }
}
