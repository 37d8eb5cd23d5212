//! A database read model declares its tables: its runner creates and
//! upgrades them (each migration once, versioned, refused when the
//! database is newer than the build), and `rebuild` empties what it owns,
//! in one shape on SQLite and PostgreSQL.

use std::time::Duration;

use es_core::{Dispatcher, EventStore, Tables};
use es_postgres::PgProjection;
use es_sqlite::{SqliteProjection, SqliteStore};
use examples::bank::{AccountId, Deposit, OpenAccount, Withdraw};
use tests::ledger::{PgLedger, SqliteLedger};

/// Opens three accounts with two deposits and a withdrawal each; returns
/// how many rows the ledger gets.
async fn bank<S: EventStore + Clone>(store: &S) -> usize {
    let app = Dispatcher::new(store.clone());
    for i in 0..3 {
        let account = AccountId::new(format!("t{i}"));
        app.dispatch(OpenAccount {
            account: account.clone(),
            owner: "o".into(),
        })
        .await
        .unwrap();
        for amount in [5, 7] {
            app.dispatch(Deposit {
                account: account.clone(),
                amount,
            })
            .await
            .unwrap();
        }
        app.dispatch(Withdraw { account, amount: 2 }).await.unwrap();
    }
    9
}

/// The ledger's first migration, deliberately not idempotent: running it
/// twice fails, so a test passing shows it ran once.
const SQLITE_V1: &str =
    "CREATE TABLE ledger (position INTEGER PRIMARY KEY, account TEXT NOT NULL, change INTEGER NOT NULL)";
const SQLITE_V2: &str = "ALTER TABLE ledger ADD COLUMN note TEXT";

fn sqlite_rows(store: &SqliteStore) -> Vec<(i64, i64)> {
    store
        .read_with(|c| {
            let mut s = c
                .prepare("SELECT position, change FROM ledger ORDER BY position")
                .unwrap();
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        })
        .unwrap()
}

fn sqlite_version(store: &SqliteStore) -> i64 {
    store
        .read_with(|c| {
            c.query_row("SELECT version FROM es_read_models WHERE name = 'ledger'", [], |r| {
                r.get(0)
            })
        })
        .unwrap()
        .unwrap()
}

fn sqlite_has(store: &SqliteStore, sql: &str) -> bool {
    store
        .read_with(|c| c.query_row(sql, [], |r| r.get::<_, i64>(0)))
        .unwrap()
        .unwrap()
        > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_runner_creates_upgrades_and_refuses_newer_tables_and_rebuild_empties_them() {
    let path = tests::sqlite::temp_dir().join("tables.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let events = bank(&store).await;
    let last = store.last_position().await.unwrap();

    // A spawned runner creates the table before its first page.
    let v1 = Tables::new().migration(SQLITE_V1).owns("ledger");
    let runner = SqliteProjection::new(store.clone(), "ledger", SqliteLedger::default())
        .tables(v1.clone())
        .spawn(Duration::from_millis(20));
    runner.wait_for(last, Duration::from_secs(10)).await.unwrap();
    runner.stop().await;
    assert_eq!(sqlite_version(&store), 1);
    let rows = sqlite_rows(&store);
    assert_eq!(rows.len(), events);

    // The next build adds a migration: only it runs (the first would fail
    // a second time), recorded with the version it reached.
    let v2 = v1.clone().migration(SQLITE_V2);
    let upgraded = SqliteProjection::new(store.clone(), "ledger", SqliteLedger::default()).tables(v2.clone());
    assert_eq!(upgraded.catch_up().await.unwrap(), last);
    assert_eq!(sqlite_version(&store), 2);
    assert!(sqlite_has(
        &store,
        "SELECT count(*) FROM pragma_table_info('ledger') WHERE name = 'note'"
    ));

    // An older build meets tables a newer one wrote: refused, untouched.
    let older = SqliteProjection::new(store.clone(), "ledger", SqliteLedger::default()).tables(v1);
    let refused = older.catch_up().await.unwrap_err().to_string();
    assert!(
        refused.contains("read model `ledger`'s tables are at version 2") && refused.contains("declares 1 migration"),
        "{refused}"
    );
    assert!(
        older.rebuild().await.is_err(),
        "a refused build must not rebuild either"
    );
    assert_eq!(sqlite_rows(&store), rows);
    assert_eq!(sqlite_version(&store), 2);

    // A migration that fails half-way leaves nothing of itself, and the
    // version where it was; the error names the read model and the step.
    let broken = v2
        .clone()
        .migration("CREATE TABLE extra (x INTEGER); INSERT INTO missing VALUES (1)");
    let failed = SqliteProjection::new(store.clone(), "ledger", SqliteLedger::default())
        .tables(broken)
        .catch_up()
        .await
        .unwrap_err()
        .to_string();
    assert!(failed.contains("read model `ledger`, migration 3"), "{failed}");
    assert!(!sqlite_has(
        &store,
        "SELECT count(*) FROM sqlite_master WHERE name = 'extra'"
    ));
    assert_eq!(sqlite_version(&store), 2);

    // A rebuild needs to know what to empty; without it, nothing moves.
    let undeclared = SqliteProjection::new(store.clone(), "ledger", SqliteLedger::default())
        .tables(Tables::new().migration(SQLITE_V1).migration(SQLITE_V2));
    let refused = undeclared.rebuild().await.unwrap_err().to_string();
    assert!(refused.contains("declares no tables of its own"), "{refused}");
    assert_eq!(sqlite_rows(&store), rows);

    // With the table declared, it is emptied with the checkpoint and
    // refilled: the primary key would refuse any row applied twice.
    store
        .with_connection(|c| {
            c.execute(
                "INSERT INTO ledger (position, account, change) VALUES (999, 'ghost', 1)",
                [],
            )
        })
        .unwrap();
    assert_eq!(upgraded.rebuild().await.unwrap(), last);
    assert_eq!(sqlite_rows(&store), rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_runners_racing_migrate_once_and_rebuild_empties_the_declared_tables() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    let schema = store.schema().to_owned();
    let events = bank(&store).await;
    let last = store.last_position().await.unwrap();
    // Not idempotent, as on SQLite: a second run would fail.
    let create = format!(
        r#"CREATE TABLE "{schema}".ledger (position BIGINT PRIMARY KEY, account TEXT NOT NULL, change BIGINT NOT NULL, runner TEXT NOT NULL)"#
    );
    let v1 = Tables::new().migration(create).owns(format!(r#""{schema}".ledger"#));
    let select = format!(r#"SELECT position, change FROM "{schema}".ledger ORDER BY position"#);
    let rows = || async {
        sqlx::query_as::<_, (i64, i64)>(sqlx::AssertSqlSafe(select.as_str()))
            .fetch_all(store.pool())
            .await
            .unwrap()
    };
    let version = || async {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            r#"SELECT version FROM "{schema}".read_models WHERE name = 'ledger'"#
        )))
        .fetch_one(store.pool())
        .await
        .unwrap()
    };

    // Three runners start at once on a database without the table: the
    // one that owns the projection migrates, the others find it done.
    let runners: Vec<_> = (0..3)
        .map(|_| {
            PgProjection::new(store.clone(), "ledger", PgLedger::new(&schema))
                .tables(v1.clone())
                .spawn(Duration::from_millis(20))
        })
        .collect();
    let mut caught_up = false;
    for _ in 0..200 {
        if runners.iter().any(|r| r.status().position == last) {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for runner in &runners {
        let status = runner.status();
        assert!(status.last_error.is_none(), "{:?}", status.last_error);
    }
    for runner in runners {
        runner.stop().await;
    }
    assert!(caught_up, "no runner caught up");
    assert_eq!(version().await, 1);
    let applied = rows().await;
    assert_eq!(applied.len(), events);

    // An upgrade runs only the new migration; an older build is refused.
    let v2 = v1
        .clone()
        .migration(format!(r#"ALTER TABLE "{schema}".ledger ADD COLUMN note TEXT"#));
    let upgraded = PgProjection::new(store.clone(), "ledger", PgLedger::new(&schema)).tables(v2);
    assert_eq!(upgraded.catch_up().await.unwrap(), last);
    assert_eq!(version().await, 2);
    let older = PgProjection::new(store.clone(), "ledger", PgLedger::new(&schema)).tables(v1);
    let refused = older.catch_up().await.unwrap_err().to_string();
    assert!(refused.contains("tables are at version 2"), "{refused}");

    // The rebuild empties the declared table with the checkpoint.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"INSERT INTO "{schema}".ledger (position, account, change, runner) VALUES (999999, 'ghost', 1, '')"#
    )))
    .execute(store.pool())
    .await
    .unwrap();
    assert_eq!(upgraded.rebuild().await.unwrap(), last);
    assert_eq!(rows().await, applied);
}
