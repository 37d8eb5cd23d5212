//! Projection catch-up: a `Projection` of the bank's `Balances` read model
//! replaying the log ("framework"), beside a hand-written loop over the same
//! rows that decodes them with serde and keeps the same balances
//! ("baseline").

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use es_core::store::{AppendRequest, ContextFields, NewEvent, RecordedEvent};
use es_core::{Dispatcher, EventId, EventStore, ExpectedVersion, Projection, StreamId, Timestamp};
use examples::bank::{AccountId, OpenAccount};
use examples::views::{Balances, TotalHeld};
use serde::Deserialize;

/// Accounts in the log.
pub const ACCOUNTS: usize = 200;
/// Deposits per account.
pub const DEPOSITS: usize = 99;

/// What every fold of the filled log must find.
pub fn expected_total() -> u64 {
    (ACCOUNTS * (0..DEPOSITS).map(|i| i % 10 + 1).sum::<usize>()) as u64
}

/// Opens `ACCOUNTS` accounts and appends `DEPOSITS` deposits to each:
/// 20,000 events.
pub async fn fill<S: EventStore + Clone>(store: &S) {
    let app = Dispatcher::builder(store.clone()).cache_capacity(0).build();
    for a in 0..ACCOUNTS {
        let account = AccountId::new(format!("p{a:04}"));
        app.dispatch(OpenAccount {
            account: account.clone(),
            owner: "o".into(),
        })
        .await
        .expect("open");
    }
    // Many deposits per round trip: append batches straight to the store.
    for a in 0..ACCOUNTS {
        let stream = StreamId::new("bank_account", format!("p{a:04}"));
        let payloads: Vec<String> = (0..DEPOSITS)
            .map(|i| format!(r#"{{"amount":{}}}"#, i % 10 + 1))
            .collect();
        let events: Vec<NewEvent<'_>> = payloads
            .iter()
            .map(|payload| NewEvent {
                event_id: EventId::new(),
                name: "account.deposited",
                schema_version: 1,
                payload: payload.as_bytes(),
            })
            .collect();
        store
            .append(AppendRequest {
                stream: &stream,
                expected: ExpectedVersion::Exact(1),
                events: &events,
                metadata: b"",
                command_id: None,
                recorded_at: Timestamp::now(),
            })
            .await
            .expect("append");
    }
}

#[derive(Deserialize)]
struct Amount {
    amount: u64,
}

/// The hand-written fold: balances by account from `(account, name, payload)` rows.
pub fn fold_row(balances: &mut BTreeMap<String, u64>, account: &str, name: &str, payload: &[u8]) {
    match name {
        "account.opened" => {
            balances.insert(account.to_owned(), 0);
        }
        "account.deposited" => {
            let d: Amount = serde_json::from_slice(payload).expect("decodes");
            *balances.entry(account.to_owned()).or_default() += d.amount;
        }
        _ => {}
    }
}

/// The baseline on any store: its own loop over the log, without the
/// projection machinery.
pub async fn by_hand_over_store<S: EventStore>(store: &S) -> u64 {
    let mut balances = BTreeMap::new();
    let mut after = 0;
    loop {
        let mut seen = 0;
        store
            .read_all(after, 1_000, ContextFields::ALL, |e: &RecordedEvent<'_>| {
                seen += 1;
                after = e.position;
                fold_row(&mut balances, e.aggregate_id, e.name, e.payload);
                ControlFlow::Continue(())
            })
            .await
            .expect("read");
        if seen < 1_000 {
            return balances.values().sum();
        }
    }
}

/// The hand-written loops' own SQLite file, at `path`, holding the events
/// of `store`: a table with each field in a cell of its own (as es-sqlite
/// stored them before its packed cells), as wide as the framework's.
pub async fn hand_written_file<S: EventStore>(store: &S, path: &std::path::Path) -> rusqlite::Connection {
    let _ = std::fs::remove_file(path);
    let raw = rusqlite::Connection::open(path).expect("open");
    raw.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE es_events (
            position INTEGER PRIMARY KEY, event_id BLOB NOT NULL UNIQUE, aggregate_type TEXT NOT NULL,
            aggregate_id TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,
            schema_version INTEGER NOT NULL, payload BLOB NOT NULL, metadata BLOB NOT NULL,
            recorded_at INTEGER NOT NULL, link BLOB,
            UNIQUE (aggregate_type, aggregate_id, version));",
    )
    .expect("create the table");
    let mut after = 0;
    loop {
        let events = es_core::store::EventStoreExt::read_all_vec(store, after, 1_000)
            .await
            .expect("read");
        let Some(last) = events.last() else {
            return raw;
        };
        after = last.position;
        let tx = raw.unchecked_transaction().expect("begin");
        for e in &events {
            tx.execute(
                "INSERT INTO es_events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                rusqlite::params![
                    e.position as i64,
                    e.event_id.as_uuid().as_bytes().as_slice(),
                    e.stream.aggregate_type(),
                    e.stream.aggregate_id(),
                    e.version as i64,
                    e.name,
                    e.schema_version,
                    e.payload,
                    e.metadata,
                    e.recorded_at.as_micros(),
                    e.link.as_bytes().as_slice(),
                ],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }
}

/// The baseline on a SQLite file: one query of the three columns it needs.
pub fn by_hand_sqlite(raw: &rusqlite::Connection) -> u64 {
    fold_sqlite(raw, "aggregate_id, name, payload", [0, 1, 2])
}

/// Folds the rows of `SELECT {columns}`, taking the account, the name and
/// the payload from columns `at`, after reading every column of each row.
fn fold_sqlite(raw: &rusqlite::Connection, columns: &str, at: [usize; 3]) -> u64 {
    let mut stmt = raw
        .prepare_cached(&format!("SELECT {columns} FROM es_events ORDER BY position"))
        .expect("prepare");
    let count = stmt.column_count();
    let mut rows = stmt.query([]).expect("query");
    let mut balances = BTreeMap::new();
    let mut touched = 0usize;
    while let Some(row) = rows.next().expect("row") {
        for i in (0..count).filter(|i| !at.contains(i)) {
            touched += match row.get_ref(i).expect("column") {
                rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).expect("text").len(),
                rusqlite::types::ValueRef::Blob(b) => b.len(),
                _ => 1,
            };
        }
        let text = |i| row.get_ref(i).and_then(|v| Ok(v.as_str()?)).expect("text");
        let payload = row.get_ref(at[2]).and_then(|v| Ok(v.as_blob()?)).expect("blob");
        fold_row(&mut balances, text(at[0]), text(at[1]), payload);
    }
    std::hint::black_box(touched);
    balances.values().sum::<u64>()
}

/// The framework: a fresh projection caught up from zero.
pub async fn framework<S: EventStore>(store: &S) -> u64 {
    let projection = Projection::new("balances", Balances::default());
    projection.catch_up(store).await.expect("catch up");
    u64::try_from(projection.query(TotalHeld)).expect("fits")
}

/// The columns every stored event has, as the stores' log reads select them.
const ALL_COLUMNS: &str =
    "event_id, aggregate_type, aggregate_id, version, position, name, schema_version, payload, metadata, recorded_at";

/// A second baseline on a SQLite file: the same hand-written fold, reading
/// every column of each row (what a reader handing each event with its
/// context, as the framework does, must read).
pub fn by_hand_sqlite_full_rows(raw: &rusqlite::Connection) -> u64 {
    fold_sqlite(raw, ALL_COLUMNS, [2, 5, 7])
}

/// The columns a catch-up needs of each row beside the fold's three: the
/// position, to know where it stopped, and the schema version, to decode an
/// older event.
const CATCH_UP_COLUMNS: &str = "position, aggregate_id, name, schema_version, payload";

/// A third baseline on a SQLite file: the same fold, also reading the
/// position and schema version of each row.
pub fn by_hand_sqlite_catch_up_columns(raw: &rusqlite::Connection) -> u64 {
    fold_sqlite(raw, CATCH_UP_COLUMNS, [1, 2, 4])
}

/// A third baseline on PostgreSQL: the same fold, also fetching the
/// position and schema version of each row.
pub async fn by_hand_postgres_catch_up_columns(pool: &sqlx::PgPool, schema: &str) -> u64 {
    fold_postgres(pool, schema, CATCH_UP_COLUMNS, [1, 2, 4]).await
}

/// The baseline on PostgreSQL: one query of the three columns it needs.
pub async fn by_hand_postgres(pool: &sqlx::PgPool, schema: &str) -> u64 {
    fold_postgres(pool, schema, "aggregate_id, name, payload", [0, 1, 2]).await
}

/// A second baseline on PostgreSQL: the same fold, fetching every column.
pub async fn by_hand_postgres_full_rows(pool: &sqlx::PgPool, schema: &str) -> u64 {
    fold_postgres(pool, schema, ALL_COLUMNS, [2, 5, 7]).await
}

/// Folds the rows of `SELECT {columns}`, taking the account, the name and
/// the payload from columns `at`.
async fn fold_postgres(pool: &sqlx::PgPool, schema: &str, columns: &str, at: [usize; 3]) -> u64 {
    use sqlx::Row;
    let select = format!(r#"SELECT {columns} FROM "{schema}".events ORDER BY position"#);
    let rows = sqlx::query(sqlx::AssertSqlSafe(select))
        .fetch_all(pool)
        .await
        .expect("rows");
    let mut balances = BTreeMap::new();
    for row in &rows {
        fold_row(
            &mut balances,
            row.get::<&str, _>(at[0]),
            row.get::<&str, _>(at[1]),
            row.get::<&[u8], _>(at[2]),
        );
    }
    balances.values().sum::<u64>()
}
