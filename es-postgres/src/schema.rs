//! The tables, their SQL, and the migrations between schema versions.
//!
//! Everything lives in one PostgreSQL schema (default `es`), so several
//! applications, or test runs, can share a database without meeting.

use es_core::store::ContextFields;
use sqlx::{AssertSqlSafe, SqlStr};

/// The newest schema version this release reads and writes.
pub(crate) const SCHEMA_VERSION: i32 = 4;

/// The migration that added the `link` column: a schema migrated from
/// below it has its stored events chained once, in log order.
pub(crate) const CHAINED_FROM: i32 = 4;

/// Checks that `name` can be used as a schema name as is: lowercase ASCII
/// letters, digits and `_`, not starting with a digit, at most 63 bytes.
/// Anything else is refused rather than quoted, so no input can reach the
/// SQL text.
pub(crate) fn valid_schema_name(name: &str) -> Result<(), String> {
    let ok_start = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok_start && ok_rest && name.len() <= 63 && !name.starts_with("pg_") {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a usable schema name: use 1 to 63 lowercase letters, digits and `_`, starting with a letter or `_`, and not `pg_`"
        ))
    }
}

/// Migration `i` takes the schema from version `i` to `i + 1`. `{s}` is the
/// schema name.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    r#"
    CREATE TABLE "{s}".events (
        -- The global position. Readers follow it in commit order: see
        -- `read_all` for how a late commit with a smaller position is
        -- never skipped.
        position        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        -- The appending transaction, pinned before its positions are drawn.
        transaction_id  XID8        NOT NULL,
        event_id        UUID        NOT NULL,
        aggregate_type  TEXT        NOT NULL,
        aggregate_id    TEXT        NOT NULL,
        version         BIGINT      NOT NULL,
        name            TEXT        NOT NULL,
        schema_version  INTEGER     NOT NULL,
        payload         BYTEA       NOT NULL,
        metadata        BYTEA       NOT NULL,
        recorded_at     TIMESTAMPTZ NOT NULL,
        CONSTRAINT events_event_id UNIQUE (event_id),
        CONSTRAINT events_stream_version UNIQUE (aggregate_type, aggregate_id, version)
    );
    CREATE TABLE "{s}".commands (
        command_id      TEXT   PRIMARY KEY,
        aggregate_type  TEXT   NOT NULL,
        aggregate_id    TEXT   NOT NULL,
        first_version   BIGINT NOT NULL,
        last_version    BIGINT NOT NULL
    );
    CREATE TABLE "{s}".snapshots (
        aggregate_type  TEXT    NOT NULL,
        aggregate_id    TEXT    NOT NULL,
        version         BIGINT  NOT NULL,
        schema_version  INTEGER NOT NULL,
        payload         BYTEA   NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id)
    );
    CREATE TABLE "{s}".checkpoints (
        name            TEXT   PRIMARY KEY,
        position        BIGINT NOT NULL
    );
    -- JSON payloads as text, for people reading the store.
    CREATE VIEW "{s}".events_text AS
        SELECT position, event_id, aggregate_type, aggregate_id, version, name, schema_version,
               convert_from(payload, 'UTF8') AS payload, convert_from(metadata, 'UTF8') AS metadata, recorded_at
        FROM "{s}".events;
    "#,
    // 1 -> 2: command ids are scoped to their stream (the same id on two
    // streams is two commands); projections are fenced by an epoch;
    // snapshots record their state's shape.
    r#"
    ALTER TABLE "{s}".commands DROP CONSTRAINT commands_pkey;
    ALTER TABLE "{s}".commands ADD CONSTRAINT commands_pkey PRIMARY KEY (aggregate_type, aggregate_id, command_id);
    -- A projection's fencing token: bumped by each runner that takes it over;
    -- a page commits only under the epoch its runner took.
    ALTER TABLE "{s}".checkpoints ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
    -- The fingerprint of the state's shape (0: unknown), the bits of a u64.
    ALTER TABLE "{s}".snapshots ADD COLUMN fingerprint BIGINT NOT NULL DEFAULT 0;
    "#,
    // 2 -> 3: the data keys of personal data, one per subject, wrapped by
    // a master key; a forgotten subject keeps its row without a key.
    r#"
    CREATE TABLE IF NOT EXISTS "{s}".personal_keys (
        subject         TEXT        PRIMARY KEY,
        master_key      TEXT,
        wrapped         BYTEA,
        forgotten_at    TIMESTAMPTZ
    );
    "#,
    // 3 -> 4: each event's link in its stream's hash chain (32 bytes); the
    // events stored before get theirs in the same migration.
    r#"
    ALTER TABLE "{s}".events ADD COLUMN IF NOT EXISTS link BYTEA;
    "#,
];

/// The statements the store runs, with its schema name filled in.
pub(crate) struct Sql {
    pub(crate) append: ByCommandId,
    pub(crate) append_batch: ByCommandId,
    pub(crate) append_known: SqlStr,
    pub(crate) appenders: SqlStr,
    pub(crate) appenders_running: SqlStr,
    pub(crate) stream_version: SqlStr,
    /// The stream read for each set of context fields, by its bits.
    pub(crate) read_stream: Vec<SqlStr>,
    /// The log read for each set of context fields, by its bits.
    pub(crate) read_all: Vec<SqlStr>,
    pub(crate) last_position: SqlStr,
    pub(crate) events_after: SqlStr,
    pub(crate) find_command: SqlStr,
    pub(crate) load_snapshot: SqlStr,
    pub(crate) save_snapshot: SqlStr,
    pub(crate) load_checkpoint: SqlStr,
    pub(crate) save_checkpoint: SqlStr,
}

/// An append statement in two forms: one that records command ids, and
/// one for appends that carry none (most), without the insert into the
/// commands table, whose start-up costs the server even when it inserts
/// nothing.
pub(crate) struct ByCommandId {
    with: SqlStr,
    without: SqlStr,
}

impl ByCommandId {
    /// Both forms of the statement `make` writes around the text that
    /// records command ids (`cmd`).
    fn new(make: impl Fn(&str) -> SqlStr, cmd: String) -> Self {
        ByCommandId {
            with: make(&cmd),
            without: make(""),
        }
    }

    /// The form for appends that carry a command id (`true`) or none.
    pub(crate) fn get(&self, command_ids: bool) -> SqlStr {
        if command_ids {
            self.with.clone()
        } else {
            self.without.clone()
        }
    }
}

/// The first key of the appender lock, the same for every schema: "es" and 1.
const APPENDERS: i32 = 0x6573_0001;

/// The second key of a schema's appender lock: a hash of its name (FNV-1a),
/// kept positive so it reads the same as an `OID` in `pg_locks`.
fn appender_key(schema: &str) -> i32 {
    let hash = schema
        .bytes()
        .fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    (hash & 0x7fff_ffff) as i32
}

impl Sql {
    pub(crate) fn new(s: &str) -> Self {
        let sql = |text: String| AssertSqlSafe(text).into_sql_str();
        let key = appender_key(s);
        Sql {
            // One statement, one round trip: read the stream's head (version
            // and link: the events' links ($11) were computed from the head
            // in $12/$13, and are stored only if that is still it) while
            // taking the schema's appender lock (see `read_log`) and pinning
            // the transaction id, both before any position is drawn; insert
            // the batch only if the version matches ($3, NULL for any); record
            // the command id; report the version read and the positions. The
            // caller tells a mismatch by the version. Few plan nodes: this runs
            // for every command, and its planning and start-up cost the
            // server more than its inserts.
            append: ByCommandId::new(
                |cmd| {
                    sql(format!(
                        r#"WITH head AS MATERIALIZED (
                    SELECT version, link FROM "{s}".events WHERE aggregate_type = $1 AND aggregate_id = $2
                    ORDER BY version DESC LIMIT 1),
                cur AS MATERIALIZED (
                    SELECT COALESCE((SELECT version FROM head), 0) AS v, (SELECT link FROM head) AS link,
                           pg_current_xact_id() AS tx, pg_advisory_xact_lock_shared({APPENDERS}, {key}) AS locked),
                ins AS (
                    INSERT INTO "{s}".events (transaction_id, event_id, aggregate_type, aggregate_id, version, name,
                                              schema_version, payload, metadata, recorded_at, link)
                    SELECT cur.tx, e.event_id, $1, $2, cur.v + e.ord, e.name, e.schema_version, e.payload, $8,
                           TIMESTAMPTZ 'epoch' + $9::BIGINT * INTERVAL '1 microsecond', e.link
                    FROM cur, UNNEST($4::UUID[], $5::TEXT[], $6::INTEGER[], $7::BYTEA[], $11::BYTEA[])
                         WITH ORDINALITY AS e(event_id, name, schema_version, payload, link, ord)
                    WHERE ($3::BIGINT IS NULL OR cur.v = $3) AND cur.v = $12 AND cur.link IS NOT DISTINCT FROM $13
                    ORDER BY e.ord
                    RETURNING position, version
                ){cmd}
                SELECT cur.v AS actual, cur.link AS link, ARRAY(SELECT position FROM ins ORDER BY version) AS positions
                FROM cur"#
                    ))
                },
                format!(
                    r#",
                cmd AS (
                    INSERT INTO "{s}".commands (command_id, aggregate_type, aggregate_id, first_version, last_version)
                    SELECT $10, $1, $2, cur.v + 1, cur.v + cardinality($4::UUID[])
                    FROM cur WHERE $10::TEXT IS NOT NULL AND ($3::BIGINT IS NULL OR cur.v = $3)
                      AND cur.v = $12 AND cur.link IS NOT DISTINCT FROM $13 AND cardinality($4::UUID[]) > 0
                )"#
                ),
            ),
            // Many requests in one statement (see `group.rs`): the requests
            // ($1..$7, $14, $15, $17, one element each) and their events
            // ($8..$13, $16, each with its request's number and its place in
            // it). Each request's head is read and checked on its own (its
            // version against the expected one, and both against the head
            // its links were computed from), unless it is known committed and
            // expected ($17, see `append::HeadCache`): the stream's unique
            // versions then refuse events written after a head that moved on.
            // The lock and the transaction id are taken once, before any
            // position is drawn; one row per request.
            append_batch: ByCommandId::new(
                |cmd| {
                    sql(format!(
                        r#"WITH lock AS MATERIALIZED (
                    SELECT pg_current_xact_id() AS tx, pg_advisory_xact_lock_shared({APPENDERS}, {key}) AS locked),
                cur AS MATERIALIZED (
                    SELECT r.*, lock.tx,
                           CASE WHEN r.known THEN r.assumed_v ELSE COALESCE(h.version, 0) END AS v,
                           CASE WHEN r.known THEN r.assumed_link ELSE h.link END AS link
                    FROM lock, UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::BYTEA[], $6::BIGINT[],
                                      $7::INTEGER[], $14::BIGINT[], $15::BYTEA[], $17::BOOLEAN[])
                         WITH ORDINALITY AS r(aggregate_type, aggregate_id, expected, command_id, metadata,
                                              recorded_at, n, assumed_v, assumed_link, known, req)
                    LEFT JOIN LATERAL (
                        SELECT e.version, e.link FROM "{s}".events e
                        WHERE NOT r.known AND e.aggregate_type = r.aggregate_type AND e.aggregate_id = r.aggregate_id
                        ORDER BY e.version DESC LIMIT 1) h ON TRUE),
                ok AS (SELECT * FROM cur WHERE (expected IS NULL OR v = expected)
                       AND v = assumed_v AND link IS NOT DISTINCT FROM assumed_link),
                ins AS (
                    INSERT INTO "{s}".events (transaction_id, event_id, aggregate_type, aggregate_id, version, name,
                                              schema_version, payload, metadata, recorded_at, link)
                    SELECT ok.tx, e.event_id, ok.aggregate_type, ok.aggregate_id, ok.v + e.k, e.name,
                           e.schema_version, e.payload, ok.metadata,
                           TIMESTAMPTZ 'epoch' + ok.recorded_at * INTERVAL '1 microsecond', e.link
                    FROM UNNEST($8::INTEGER[], $9::INTEGER[], $10::UUID[], $11::TEXT[], $12::INTEGER[], $13::BYTEA[],
                                $16::BYTEA[])
                         WITH ORDINALITY AS e(req, k, event_id, name, schema_version, payload, link, ord)
                    JOIN ok ON ok.req = e.req
                    ORDER BY e.ord
                    RETURNING position, aggregate_type, aggregate_id, version
                ){cmd}
                SELECT cur.v AS actual, cur.link AS link,
                       ARRAY(SELECT i.position FROM ins i
                             WHERE i.aggregate_type = cur.aggregate_type AND i.aggregate_id = cur.aggregate_id
                             ORDER BY i.version) AS positions
                FROM cur ORDER BY cur.req"#
                    ))
                },
                format!(
                    r#",
                cmd AS (
                    INSERT INTO "{s}".commands (command_id, aggregate_type, aggregate_id, first_version, last_version)
                    SELECT command_id, aggregate_type, aggregate_id, v + 1, v + n FROM ok
                    WHERE command_id IS NOT NULL AND n > 0
                )"#
                ),
            ),
            // A batch whose every request writes after a head known
            // committed and carries no command id (see `group.rs`): one
            // element per event ($1..$10), each at its own version; the
            // stream's unique versions refuse the whole statement if a head
            // moved on. The lock and the transaction id are taken before any
            // position is drawn; the positions come back in the events'
            // order (drawn in insertion order, which is theirs).
            append_known: sql(format!(
                r#"WITH lock AS MATERIALIZED (
                    SELECT pg_current_xact_id() AS tx, pg_advisory_xact_lock_shared({APPENDERS}, {key}) AS locked),
                ins AS (
                    INSERT INTO "{s}".events (transaction_id, event_id, aggregate_type, aggregate_id, version, name,
                                              schema_version, payload, metadata, recorded_at, link)
                    SELECT lock.tx, e.event_id, e.aggregate_type, e.aggregate_id, e.version, e.name,
                           e.schema_version, e.payload, e.metadata,
                           TIMESTAMPTZ 'epoch' + e.recorded_at * INTERVAL '1 microsecond', e.link
                    FROM lock, UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::UUID[], $5::TEXT[], $6::INTEGER[],
                                      $7::BYTEA[], $8::BYTEA[], $9::BIGINT[], $10::BYTEA[])
                         WITH ORDINALITY AS e(aggregate_type, aggregate_id, version, event_id, name, schema_version,
                                              payload, metadata, recorded_at, link, ord)
                    ORDER BY e.ord
                    RETURNING position
                )
                SELECT COALESCE(array_agg(position ORDER BY position), '{{}}') AS positions FROM ins"#
            )),
            // The transactions holding the appender lock now, by virtual
            // transaction id (they exist from a transaction's start to end).
            appenders: sql(format!(
                r#"SELECT COALESCE(array_agg(virtualtransaction), '{{}}') FROM pg_locks
                   WHERE locktype = 'advisory' AND granted AND objsubid = 2
                     AND classid = {APPENDERS}::OID AND objid = {key}::OID
                     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"#
            )),
            appenders_running: sql(format!(
                r#"SELECT EXISTS (SELECT 1 FROM pg_locks
                   WHERE locktype = 'advisory' AND objsubid = 2
                     AND classid = {APPENDERS}::OID AND objid = {key}::OID
                     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                     AND virtualtransaction = ANY($1))"#
            )),
            stream_version: sql(format!(
                r#"SELECT COALESCE(MAX(version), 0) FROM "{s}".events WHERE aggregate_type = $1 AND aggregate_id = $2"#
            )),
            // Rows below version 1 come too, so that a read fails naming
            // them rather than returning a shorter history.
            read_stream: (0..=ContextFields::ALL.bits())
                .map(|bits| {
                    let columns = ContextFields::from_bits(bits).sql_columns();
                    sql(format!(
                        r#"SELECT {columns} FROM "{s}".events
                           WHERE aggregate_type = $1 AND aggregate_id = $2 AND (version >= $3 OR version < 1)
                           ORDER BY version"#
                    ))
                })
                .collect(),
            read_all: (0..=ContextFields::ALL.bits())
                .map(|bits| {
                    let columns = ContextFields::from_bits(bits).sql_columns();
                    sql(format!(
                        r#"SELECT {columns} FROM "{s}".events WHERE position > $1 ORDER BY position LIMIT $2"#
                    ))
                })
                .collect(),
            last_position: sql(format!(r#"SELECT COALESCE(MAX(position), 0) FROM "{s}".events"#)),
            events_after: sql(format!(r#"SELECT count(*) FROM "{s}".events WHERE position > $1"#)),
            find_command: sql(format!(
                r#"SELECT first_version, last_version FROM "{s}".commands
                   WHERE aggregate_type = $1 AND aggregate_id = $2 AND command_id = $3"#
            )),
            load_snapshot: sql(format!(
                r#"SELECT version, schema_version, payload, fingerprint FROM "{s}".snapshots
                   WHERE aggregate_type = $1 AND aggregate_id = $2"#
            )),
            save_snapshot: sql(format!(
                r#"INSERT INTO "{s}".snapshots (aggregate_type, aggregate_id, version, schema_version, payload, fingerprint)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET
                       version = excluded.version, schema_version = excluded.schema_version, payload = excluded.payload,
                       fingerprint = excluded.fingerprint
                   WHERE excluded.version > snapshots.version OR excluded.schema_version <> snapshots.schema_version
                      OR excluded.fingerprint <> snapshots.fingerprint"#
            )),
            load_checkpoint: sql(format!(r#"SELECT position FROM "{s}".checkpoints WHERE name = $1"#)),
            save_checkpoint: sql(format!(
                r#"INSERT INTO "{s}".checkpoints (name, position) VALUES ($1, $2)
                   ON CONFLICT (name) DO UPDATE SET position = excluded.position"#
            )),
        }
    }
}

use sqlx::SqlSafeStr as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers_only() {
        for ok in ["es", "es_test_1", "_x", "a9"] {
            assert!(valid_schema_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Es",
            "1es",
            "es-test",
            "es\"; DROP TABLE x; --",
            "pg_catalog",
            &"a".repeat(64),
        ] {
            assert!(valid_schema_name(bad).is_err(), "{bad}");
        }
    }
}
