//! `EventStore` for `SqliteStore`: each operation on a pooled reader or
//! the writer, off the async threads.

use std::future::Future;

use es_core::store::{AppendOutcome, AppendRequest, CommandRecord, ContextFields, EventStore, RecordedEvent, Snapshot};
use es_core::{AppendError, StoreError, StreamId};
use rusqlite::{OptionalExtension, params};
use std::ops::ControlFlow;
use tokio::sync::watch;

use crate::append::find_command;
use crate::read::{Columns, stored_u64, stream_fields, visit_row};
use crate::{STORE, SqliteStore, blocking, corrupt, error, lock, to_i64};

impl EventStore for SqliteStore {
    const NAME: &'static str = STORE;

    fn keyring(&self) -> Option<&std::sync::Arc<es_core::personal::Keyring>> {
        self.keyring.as_ref()
    }

    fn append(&self, request: AppendRequest<'_>) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send {
        self.append_grouped(request)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        fields: ContextFields,
        mut visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        let from = to_i64(from_version, "version")?;
        let fields = self.readable(stream_fields(fields));
        let (list, columns) = Columns::select(fields, self.inner.packed);
        blocking(|| {
            self.read(|conn| {
                // Rows below version 1 come too, so that a read fails naming
                // them rather than returning a shorter history.
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {list} FROM es_events \
                         WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND (version >= ?3 OR version < 1) ORDER BY version"
                    ))
                    .map_err(error("prepare a stream read"))?;
                let mut rows = stmt
                    .query(params![stream.aggregate_type(), stream.aggregate_id(), from])
                    .map_err(error("read a stream"))?;
                while let Some(row) = rows.next().map_err(error("read a stream"))? {
                    if visit_row(conn, row, &columns, Some(stream), &mut visit)?.is_break() {
                        break;
                    }
                }
                Ok(())
            })
        })
    }

    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        fields: ContextFields,
        mut visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        let after = to_i64(after, "position")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let fields = self.readable(fields);
        let (list, columns) = Columns::select(fields, self.inner.packed);
        blocking(|| {
            self.read(|conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {list} FROM es_events WHERE position > ?1 ORDER BY position LIMIT ?2"
                    ))
                    .map_err(error("prepare a log read"))?;
                let mut rows = stmt.query(params![after, limit]).map_err(error("read the log"))?;
                while let Some(row) = rows.next().map_err(error("read the log"))? {
                    if visit_row(conn, row, &columns, None, &mut visit)?.is_break() {
                        break;
                    }
                }
                Ok(())
            })
        })
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        blocking(|| {
            self.read(|conn| {
                conn.prepare_cached(
                    "SELECT COALESCE(MAX(version), 0) FROM es_events WHERE aggregate_type = ?1 AND aggregate_id = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![stream.aggregate_type(), stream.aggregate_id()], |r| {
                        r.get::<_, i64>(0)
                    })
                })
                .map_err(error("read a stream's version"))
                .and_then(|v| stored_u64(v, || format!("stream `{stream}` has version {v}")))
            })
        })
    }

    async fn last_position(&self) -> Result<u64, StoreError> {
        blocking(|| {
            self.read(|conn| {
                conn.query_row("SELECT COALESCE(MAX(position), 0) FROM es_events", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(error("read the last position"))
                .and_then(|v| stored_u64(v, || format!("the log ends at position {v}")))
            })
        })
    }

    async fn events_after(&self, position: u64) -> Result<u64, StoreError> {
        let after = i64::try_from(position).unwrap_or(i64::MAX);
        blocking(|| {
            self.read(|conn| {
                conn.query_row("SELECT count(*) FROM es_events WHERE position > ?1", [after], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(error("count the events after a position"))
                .and_then(|v| stored_u64(v, || format!("{v} events after position {position}")))
            })
        })
    }

    async fn find_command(&self, stream: &StreamId, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        es_core::store::validate_command_id(STORE, command_id)?;
        blocking(|| self.read(|conn| find_command(conn, stream, command_id)))
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        blocking(|| {
            self.read(|conn| {
                conn.prepare_cached(
                    "SELECT version, schema_version, payload, fingerprint FROM es_snapshots \
                     WHERE aggregate_type = ?1 AND aggregate_id = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![stream.aggregate_type(), stream.aggregate_id()], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    })
                    .optional()
                })
                .map_err(error("load a snapshot"))?
                .map(|(version, schema_version, payload, fingerprint)| {
                    let bad = |what| corrupt(format!("the snapshot of stream `{stream}` has {what}"));
                    Ok(Snapshot {
                        version: u64::try_from(version).map_err(|_| bad(format!("version {version}")))?,
                        schema_version: u32::try_from(schema_version)
                            .map_err(|_| bad(format!("schema version {schema_version}")))?,
                        payload,
                        // The bits of the u64, as stored.
                        fingerprint: fingerprint as u64,
                    })
                })
                .transpose()
            })
        })
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        let version = to_i64(snapshot.version, "version")?;
        blocking(|| {
            lock(&self.inner.writer)
                .prepare_cached(
                    "INSERT INTO es_snapshots (aggregate_type, aggregate_id, version, schema_version, payload, fingerprint) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET \
                     version = excluded.version, schema_version = excluded.schema_version, payload = excluded.payload, \
                     fingerprint = excluded.fingerprint \
                     WHERE excluded.version > es_snapshots.version OR excluded.schema_version <> es_snapshots.schema_version \
                     OR excluded.fingerprint <> es_snapshots.fingerprint",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        stream.aggregate_type(),
                        stream.aggregate_id(),
                        version,
                        snapshot.schema_version,
                        snapshot.payload,
                        snapshot.fingerprint as i64
                    ])
                })
                .map(drop)
                .map_err(error("save a snapshot"))
        })
    }

    fn notifications(&self) -> Option<watch::Receiver<u64>> {
        Some(self.watch_head())
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>, StoreError> {
        blocking(|| {
            self.read(|conn| {
                conn.prepare_cached("SELECT position FROM es_checkpoints WHERE name = ?1")
                    .and_then(|mut s| s.query_row([name], |r| r.get::<_, i64>(0)).optional())
                    .map_err(error("load a checkpoint"))?
                    .map(|p| stored_u64(p, || format!("checkpoint `{name}` is at position {p}")))
                    .transpose()
            })
        })
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError> {
        let position = to_i64(position, "position")?;
        blocking(|| {
            lock(&self.inner.writer)
                .prepare_cached(
                    "INSERT INTO es_checkpoints (name, position) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                )
                .and_then(|mut s| s.execute(params![name, position]))
                .map(drop)
                .map_err(error("save a checkpoint"))
        })
    }
}
