//! Each benchmark workload runs once on tiny input, and the framework and
//! the baseline agree on the result. No timing here: speed is measured by
//! `cargo bench -p benches` only.

use benches::baseline::{decode_binary, decode_json};
use benches::workloads::*;
use es_core::{Binary, Dispatcher, Json};
use examples::bank::{AccountId, BankAccount};

#[test]
fn folding_agrees() {
    let (framework, by_hand) = events(1_000);
    assert_eq!(fold_framework(&framework), fold_baseline(&by_hand));
    assert_eq!(fold_framework(&framework), fold_by_hand_same_events(&framework));
    assert_eq!(
        fold_framework(&framework),
        (1..1_000u64).map(|i| i % 100 + 1).sum::<u64>()
    );
}

#[tokio::test]
async fn deposits_agree() {
    for accounts in [1, 7] {
        let app = opened_dispatcher(accounts).await;
        deposits_framework(&app, accounts, 50).await;
        let mut bank = opened_bank(accounts);
        deposits_baseline(&mut bank, accounts, 50);
        for i in 0..accounts {
            let ours = app.load::<BankAccount>(&AccountId(account(i))).await.unwrap();
            let theirs = bank.load(&account(i));
            assert_eq!(ours.balance, theirs.balance);
            assert!(ours.balance > 0);
        }
    }
}

#[tokio::test]
async fn cold_loads_agree() {
    let store = stored_account(Json, 300).await;
    let app = Dispatcher::builder(store.clone()).cache_capacity(0).build();
    let balance = cold_load_framework(&app).await;
    assert!(balance > 0);
    assert_eq!(balance, cold_load_baseline(&store, decode_json).await);
    let store = stored_account(Binary, 300).await;
    let app = Dispatcher::builder(store.clone())
        .codec(Binary)
        .cache_capacity(0)
        .build();
    assert_eq!(cold_load_framework(&app).await, balance);
    assert_eq!(cold_load_baseline(&store, decode_binary).await, balance);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_workloads_agree() {
    use benches::baseline::Command;
    use benches::sql::*;
    let dir = std::env::temp_dir().join(format!("es-bench-smoke-{}", es_core::EventId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let app = Dispatcher::new(sqlite_store(&dir.join("f.db")).await);
    framework_deposits(&app, "a", 10).await;
    let bank = SqliteBank::open(&dir.join("b.db"));
    bank.handle(&Command::Open {
        account: "a".into(),
        owner: "o".into(),
    })
    .unwrap();
    for _ in 0..10 {
        bank.handle(&Command::Deposit {
            account: "a".into(),
            amount: 1,
        })
        .unwrap();
    }
    assert_eq!(framework_balance(&app, "a").await, bank.load("a").balance);
    let committed = dir.join(format!("committed-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&committed);
    sqlite_one_committer_writers(&committed, 4).await;
    let bank_of_four = SqliteBank::open(&committed);
    for t in 0..4 {
        assert_eq!(bank_of_four.load(&format!("t{t}")).balance, 250);
    }
    bank.fill("big", 50);
    assert_eq!(bank.load("big").balance, (1..50u64).map(|i| i % 100 + 1).sum::<u64>());

    use benches::stores::{PgWriters, pg_writers};
    let Some(pool) = pg_pool().await else {
        eprintln!("*** skipping the PostgreSQL part: no server answers");
        return;
    };
    let schema = format!("es_bench_smoke_{}", std::process::id());
    let app = Dispatcher::new(pg_store(pool.clone(), &schema).await);
    framework_deposits(&app, "a", 10).await;
    let bank = PgBank::setup(pool.clone(), &format!("{schema}_b")).await;
    bank.handle(&Command::Open {
        account: "a".into(),
        owner: "o".into(),
    })
    .await
    .unwrap();
    for _ in 0..10 {
        bank.handle(&Command::Deposit {
            account: "a".into(),
            amount: 1,
        })
        .await
        .unwrap();
    }
    assert_eq!(framework_balance(&app, "a").await, bank.load("a").await.balance);
    // The many-writer baselines: each of 4 accounts opened and given 250.
    for how in [PgWriters::Naive, PgWriters::Cached, PgWriters::OneCommitter] {
        let bank = PgBank::setup(pool.clone(), &format!("{schema}_{how:?}").to_lowercase()).await;
        pg_writers(&bank, how, 4).await;
        for t in 0..4 {
            assert_eq!(bank.load(&format!("t{t}")).await.balance, 250, "{how:?}");
        }
    }
    pg_clean(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_catch_ups_agree() {
    use benches::projections::*;
    let expected = expected_total();
    let memory = es_core::InMemoryStore::new();
    fill(&memory).await;
    assert_eq!(framework(&memory).await, expected);
    assert_eq!(by_hand_over_store(&memory).await, expected);

    let dir = std::env::temp_dir().join(format!("es-smoke-projections-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("p.db");
    let _ = std::fs::remove_file(&path);
    let sqlite = es_sqlite::SqliteStore::open(&path).await.expect("open");
    fill(&sqlite).await;
    let raw = hand_written_file(&sqlite, &dir.join("hand.db")).await;
    assert_eq!(framework(&sqlite).await, expected);
    assert_eq!(by_hand_sqlite(&raw), expected);
    assert_eq!(by_hand_sqlite_catch_up_columns(&raw), expected);
    assert_eq!(by_hand_sqlite_full_rows(&raw), expected);
}

#[tokio::test]
async fn loads_one_version_behind_agree() {
    use benches::workloads::*;
    for behind in [true, false] {
        let store = stored_withdrawals(es_core::Json, 100, behind).await;
        let app = es_core::Dispatcher::builder(store).cache_capacity(0).build();
        assert_eq!(cold_load_framework(&app).await, 2);
    }
}

/// The hand-written NATS writers store one message per command (and its
/// event-id record in a batch), each checked against its subject's head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_nats_writers_store_every_command() {
    use benches::nats::{RawMode, RawNats};
    let Some(url) = tests::nats::url() else {
        return;
    };
    let tasks = 4;
    let commands = (benches::stores::COMMANDS / tasks * tasks + tasks) as u64;
    for (mode, per_command) in [(RawMode::Publish, 1), (RawMode::Batch, 2)] {
        let raw = std::sync::Arc::new(RawNats::new(&url, 1, &benches::stores::unique("smoke")).await);
        raw.clone().writers(mode, tasks).await;
        assert_eq!(raw.stored().await, commands * per_command, "{mode:?}");
    }
}
