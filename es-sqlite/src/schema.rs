//! The store's tables, and the migrations between schema versions.
//!
//! The schema version lives in SQLite's `user_version` header field. A new
//! file gets every migration in order; an older file gets the ones it lacks;
//! a file from a newer release is refused rather than misread.

/// The newest schema this release reads and writes.
pub(crate) const SCHEMA_VERSION: i64 = 5;

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the event log, command records, snapshots, checkpoints.
    r#"
    CREATE TABLE es_events (
        -- The global position: SQLite has one writer at a time, so positions
        -- follow commit order. AUTOINCREMENT never reuses one.
        position        INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id        BLOB    NOT NULL UNIQUE,
        aggregate_type  TEXT    NOT NULL,
        aggregate_id    TEXT    NOT NULL,
        version         INTEGER NOT NULL,
        name            TEXT    NOT NULL,
        schema_version  INTEGER NOT NULL,
        payload         BLOB    NOT NULL,
        metadata        BLOB    NOT NULL,
        recorded_at     INTEGER NOT NULL, -- microseconds since the Unix epoch
        UNIQUE (aggregate_type, aggregate_id, version)
    );
    CREATE TABLE es_commands (
        command_id      TEXT    PRIMARY KEY,
        aggregate_type  TEXT    NOT NULL,
        aggregate_id    TEXT    NOT NULL,
        first_version   INTEGER NOT NULL,
        last_version    INTEGER NOT NULL
    );
    CREATE TABLE es_snapshots (
        aggregate_type  TEXT    NOT NULL,
        aggregate_id    TEXT    NOT NULL,
        version         INTEGER NOT NULL,
        schema_version  INTEGER NOT NULL,
        payload         BLOB    NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id)
    );
    CREATE TABLE es_checkpoints (
        name            TEXT    PRIMARY KEY,
        position        INTEGER NOT NULL
    );
    "#,
    // 1 -> 2: command ids are scoped to their stream (the same id on two
    // streams is two commands); snapshots record their state's shape.
    r#"
    CREATE TABLE es_commands_v2 (
        aggregate_type  TEXT    NOT NULL,
        aggregate_id    TEXT    NOT NULL,
        command_id      TEXT    NOT NULL,
        first_version   INTEGER NOT NULL,
        last_version    INTEGER NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id, command_id)
    ) WITHOUT ROWID;
    INSERT INTO es_commands_v2 (aggregate_type, aggregate_id, command_id, first_version, last_version)
        SELECT aggregate_type, aggregate_id, command_id, first_version, last_version FROM es_commands;
    DROP TABLE es_commands;
    ALTER TABLE es_commands_v2 RENAME TO es_commands;
    -- The fingerprint of the state's shape (0: unknown), stored as the
    -- bits of a u64.
    ALTER TABLE es_snapshots ADD COLUMN fingerprint INTEGER NOT NULL DEFAULT 0;
    "#,
    // 2 -> 3: the data keys of personal data, one per subject, wrapped by
    // a master key; a forgotten subject keeps its row without a key.
    r#"
    CREATE TABLE IF NOT EXISTS es_personal_keys (
        subject         TEXT    PRIMARY KEY,
        master_key      TEXT,
        wrapped         BLOB,
        forgotten_at    INTEGER -- microseconds since the Unix epoch
    );
    "#,
    // 3 -> 4: each event's link in its stream's hash chain (32 bytes); the
    // events stored before get theirs from `chain_stored_events`.
    r#"
    ALTER TABLE es_events ADD COLUMN link BLOB;
    "#,
    // 4 -> 5: what a read of the log needs of an event, in one cell (see
    // `packed.rs`); `payload` is empty where it is set. The events stored
    // before get theirs from `pack_stored_events`.
    r#"
    ALTER TABLE es_events ADD COLUMN packed BLOB;
    "#,
];

/// The migration that added the `link` column: a file migrated from below
/// it has its stored events chained once, in log order.
pub(crate) const CHAINED_FROM: i64 = 4;

/// The migration that added the `packed` column: a file migrated from
/// below it has its stored events packed once.
pub(crate) const PACKED_FROM: i64 = 5;
