//! The read side on every store: projections (rebuild equals live
//! following, inline read-your-writes, skipping unknown events), database
//! read models (exactly once across crashes, one runner at a time on
//! PostgreSQL) and the transfer process (a crash at every step).

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::time::Duration;

use es_core::store::{AppendRequest, EventStoreExt, NewEvent, RecordedEvent};
use es_core::{Dispatcher, EventId, EventStore, ExpectedVersion, InMemoryStore, Projection, StreamId, Timestamp};
use es_postgres::PgProjection;
use es_sqlite::{SqliteProjection, SqliteStore};
use examples::bank::{AccountId, Deposit, OpenAccount, Withdraw};
use examples::views::{BalanceOf, Balances, History, HistoryOf};
use tests::ledger::{PgLedger, SQLITE_LEDGER, SqliteLedger};
use tests::read_side::*;

mod transfers_survive_a_crash_at_every_step {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory() {
        transfers_survive_a_crash_at_every_step(async || InMemoryStore::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        transfers_survive_a_crash_at_every_step(async || SqliteStore::memory().await.unwrap()).await;
    }
}

#[tokio::test]
async fn an_inline_projection_is_current_when_dispatch_returns() {
    let store = InMemoryStore::new();
    let balances = Projection::new("balances", Balances::default());
    let app = Dispatcher::builder(store.clone()).inline(balances.clone()).build();
    let a = AccountId::new("a");
    app.dispatch(OpenAccount {
        account: a.clone(),
        owner: "Ada".into(),
    })
    .await
    .unwrap();
    let committed = app
        .dispatch(Deposit {
            account: a.clone(),
            amount: 42,
        })
        .await
        .unwrap();
    assert_eq!(balances.position(), committed.position.unwrap());
    assert_eq!(balances.query(BalanceOf { account: "a".into() }), Some(42));

    // A projection fed by nobody times out, saying where it is.
    let idle = Projection::new("idle", Balances::default());
    let err = idle
        .wait_for(committed.position.unwrap(), Duration::from_millis(30))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "`idle` did not reach position 2 in time (it is at 0)");
}

#[tokio::test]
async fn projections_skip_events_they_do_not_handle_without_decoding_them() {
    let store = InMemoryStore::new();
    let app = Dispatcher::new(store.clone());
    app.dispatch(OpenAccount {
        account: AccountId::new("a"),
        owner: "Ada".into(),
    })
    .await
    .unwrap();
    // Events of another context, in a format no one here can read.
    store
        .append(AppendRequest {
            stream: &StreamId::new("inventory", "x"),
            expected: ExpectedVersion::Any,
            events: &[NewEvent {
                event_id: EventId::new(),
                name: "inventory.counted",
                schema_version: 9,
                payload: b"\xff not json",
            }],
            metadata: b"",
            command_id: None,
            recorded_at: Timestamp::now(),
        })
        .await
        .unwrap();
    app.dispatch(Deposit {
        account: AccountId::new("a"),
        amount: 5,
    })
    .await
    .unwrap();
    let history = Projection::new("history", History::default());
    assert_eq!(history.catch_up(&store).await.unwrap(), 3);
    assert_eq!(history.query(HistoryOf { account: "a".into() }).len(), 2);
}

async fn fill<S: EventStore + Clone>(store: &S, accounts: usize, per_account: usize) -> (usize, i64) {
    fill_named(store, "l", accounts, per_account).await
}

async fn fill_named<S: EventStore + Clone>(
    store: &S,
    prefix: &str,
    accounts: usize,
    per_account: usize,
) -> (usize, i64) {
    let app = Dispatcher::new(store.clone());
    let mut events = 0;
    let mut total = 0;
    for i in 0..accounts {
        let account = AccountId::new(format!("{prefix}{i}"));
        app.dispatch(OpenAccount {
            account: account.clone(),
            owner: "o".into(),
        })
        .await
        .unwrap();
        for k in 0..per_account {
            let amount = (k % 7 + 1) as u64;
            app.dispatch(Deposit {
                account: account.clone(),
                amount,
            })
            .await
            .unwrap();
            total += amount as i64;
            events += 1;
            if k % 5 == 0 {
                app.dispatch(Withdraw {
                    account: account.clone(),
                    amount: 1,
                })
                .await
                .unwrap();
                total -= 1;
                events += 1;
            }
        }
    }
    (events, total)
}

/// Every deposit and withdrawal is in the ledger exactly once, and
/// nothing else.
async fn deposits_and_withdrawals<S: EventStore>(store: &S) -> Vec<(u64, i64)> {
    let mut rows = Vec::new();
    store
        .read_all(
            0,
            1_000_000,
            es_core::store::ContextFields::ALL,
            |e: &RecordedEvent<'_>| {
                let change = match e.name {
                    "account.deposited" | "account.withdrawn" => {
                        let v: serde_json::Value = serde_json::from_slice(e.payload).unwrap();
                        let amount = v["amount"].as_i64().unwrap();
                        if e.name == "account.deposited" { amount } else { -amount }
                    }
                    _ => return ControlFlow::Continue(()),
                };
                rows.push((e.position, change));
                ControlFlow::Continue(())
            },
        )
        .await
        .unwrap();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_read_model_killed_mid_catch_up_resumes_exactly_once() {
    let path = tests::sqlite::temp_dir().join("ledger.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.with_connection(|c| c.execute_batch(SQLITE_LEDGER)).unwrap();
    let (events, total) = fill(&store, 10, 150).await;
    let path_text = path.to_str().unwrap().to_owned();
    tests::crash::run_until_and_kill(
        env!("CARGO_BIN_EXE_projector"),
        &["sqlite", &path_text],
        "projecting",
        150,
    );

    let projection =
        SqliteProjection::new(store.clone(), "ledger", SqliteLedger::default()).tables(SqliteLedger::tables());
    let checkpoint = store
        .load_checkpoint(&projection.checkpoint_name())
        .await
        .unwrap()
        .unwrap();
    let last = store.last_position().await.unwrap();
    assert!(
        checkpoint > 0 && checkpoint < last,
        "killed mid-way: at {checkpoint} of {last}"
    );
    // What the dead runner committed is exactly the events up to its checkpoint.
    let expected = deposits_and_withdrawals(&store).await;
    let ledger = |store: &SqliteStore| {
        store
            .read_with(|c| {
                let mut s = c
                    .prepare("SELECT position, change FROM ledger ORDER BY position")
                    .unwrap();
                s.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)?)))
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap()
            })
            .unwrap()
    };
    let before: Vec<_> = expected.iter().copied().filter(|(p, _)| *p <= checkpoint).collect();
    assert_eq!(ledger(&store), before);

    assert_eq!(projection.catch_up().await.unwrap(), last);
    let rows = ledger(&store);
    assert_eq!(rows.len(), events);
    assert_eq!(rows, expected);
    assert_eq!(rows.iter().map(|(_, c)| c).sum::<i64>(), total);

    // A rebuild clears the ledger in the same transaction as the checkpoint.
    projection.rebuild().await.unwrap();
    assert_eq!(ledger(&store), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_read_model_killed_mid_catch_up_resumes_exactly_once() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    let schema = store.schema().to_owned();
    sqlx::query(sqlx::AssertSqlSafe(PgLedger::create(&schema)))
        .execute(store.pool())
        .await
        .unwrap();
    let (events, total) = fill(&store, 10, 150).await;
    let url = tests::postgres::url();
    tests::crash::run_until_and_kill(
        env!("CARGO_BIN_EXE_projector"),
        &["postgres", &url, &schema],
        "projecting",
        150,
    );

    let projection =
        PgProjection::new(store.clone(), "ledger", PgLedger::new(&schema)).tables(PgLedger::tables(&schema));
    let checkpoint = store
        .load_checkpoint(&projection.checkpoint_name())
        .await
        .unwrap()
        .unwrap();
    let last = store.last_position().await.unwrap();
    assert!(
        checkpoint > 0 && checkpoint < last,
        "killed mid-way: at {checkpoint} of {last}"
    );
    let expected = deposits_and_withdrawals(&store).await;
    let select = format!(r#"SELECT position, change FROM "{schema}".ledger ORDER BY position"#);
    let ledger = || async {
        sqlx::query_as::<_, (i64, i64)>(sqlx::AssertSqlSafe(select.as_str()))
            .fetch_all(store.pool())
            .await
            .unwrap()
            .into_iter()
            .map(|(p, c)| (p as u64, c))
            .collect::<Vec<_>>()
    };
    let before: Vec<_> = expected.iter().copied().filter(|(p, _)| *p <= checkpoint).collect();
    assert_eq!(ledger().await, before);

    assert_eq!(projection.catch_up().await.unwrap(), last);
    let rows = ledger().await;
    assert_eq!(rows.len(), events);
    assert_eq!(rows, expected);
    assert_eq!(rows.iter().map(|(_, c)| c).sum::<i64>(), total);

    // A rebuild empties the ledger in the same transaction as the
    // checkpoint (the table's key would refuse a row applied twice).
    assert_eq!(projection.rebuild().await.unwrap(), last);
    assert_eq!(ledger().await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_runners_never_work_at_once_and_the_second_takes_over() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    let schema = store.schema().to_owned();
    sqlx::query(sqlx::AssertSqlSafe(PgLedger::create(&schema)))
        .execute(store.pool())
        .await
        .unwrap();
    let mut first_ledger = PgLedger::new(&schema);
    first_ledger.slow = Duration::from_millis(1);
    let mut second_ledger = PgLedger::new(&schema);
    second_ledger.slow = Duration::from_millis(1);
    // Both runners report to the same counters.
    second_ledger.running = first_ledger.running.clone();
    second_ledger.most = first_ledger.most.clone();
    let (running, most) = (first_ledger.running.clone(), first_ledger.most.clone());

    let first = PgProjection::new(store.clone(), "ledger", first_ledger).spawn(Duration::from_millis(20));
    let (events, _) = fill(&store, 4, 40).await;
    let second = PgProjection::new(store.clone(), "ledger", second_ledger).spawn(Duration::from_millis(20));
    let (more, _) = fill_named(&store, "m", 4, 40).await;
    // The first runner dies abruptly, holding the lock; the second takes over.
    first.abort();
    let checkpoint = || async { store.load_checkpoint("projection:ledger").await.unwrap().unwrap_or(0) };
    let last = store.last_position().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while checkpoint().await < last {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second runner never took over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.stop().await;
    assert_eq!(most.load(Ordering::SeqCst), 1, "two runners worked at once");
    assert_eq!(running.load(Ordering::SeqCst), 0);
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        r#"SELECT count(*) FROM "{schema}".ledger"#
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(count as usize, events + more);
    let _ = store.read_all_vec(0, 1).await.unwrap();
}

mod every_store {
    tests::on_every_store! {
        rebuild_equals_live => |store| tests::read_side::rebuild_equals_live(store),
        lag_counts_events => |store| tests::read_side::lag_counts_events(store),
    }
}
