//! The subscription engine under faults: panicking handlers in memory, in
//! SQLite and in PostgreSQL, runners that must survive them, refused process
//! commands, and PostgreSQL runners whose lock connection dies.

use std::time::Duration;

use es_core::subscription::RunState;
use es_core::{Dispatcher, EventStore, InMemoryStore, OnRefusal, ProcessManager, Projection, SubscriptionError};
use es_sqlite::{SqliteProjection, SqliteStore};
use examples::bank::{AccountId, CloseAccount, Deposit, OpenAccount};
use examples::views::{BalanceOf, Balances};
use tests::CountingStore;
use tests::faulty::{Poison, Tally, Welcome};
use tests::ledger::SqliteLedger;

async fn open<S: EventStore>(app: &Dispatcher<S>, id: &str) {
    app.dispatch(OpenAccount {
        account: AccountId::new(id),
        owner: "o".into(),
    })
    .await
    .unwrap();
}

/// Deposits `amounts` into account `id`; returns the last position.
async fn deposit<S: EventStore>(app: &Dispatcher<S>, id: &str, amounts: &[u64]) -> u64 {
    let mut last = 0;
    for &amount in amounts {
        last = app
            .dispatch(Deposit {
                account: AccountId::new(id),
                amount,
            })
            .await
            .unwrap()
            .position
            .unwrap();
    }
    last
}

/// Waits until `done` holds, for at most `seconds`.
async fn eventually(seconds: u64, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_in_memory_handler_never_applies_an_event_twice() {
    let store = InMemoryStore::new();
    let app = Dispatcher::new(store.clone());
    open(&app, "a").await;
    let third = deposit(&app, "a", &[1, 2, 3]).await;
    deposit(&app, "a", &[13, 4]).await;
    let tally = Projection::new(
        "tally",
        Tally {
            poison: Poison::on(13, 2),
            ..Tally::default()
        },
    );
    for attempt in 0..2 {
        match tally.catch_up(&store).await {
            Err(SubscriptionError::Panicked {
                subscription,
                event_name,
                position,
                message,
            }) => {
                assert_eq!(subscription, "tally");
                assert_eq!((event_name.as_str(), position), ("account.deposited", third + 1));
                assert_eq!(message, "poisoned deposit of 13");
            }
            other => panic!("attempt {attempt}: expected the panic, got {other:?}"),
        }
        // The deposits before the poisoned one were applied once, however
        // often the page is tried again.
        assert_eq!(tally.read(|t| (t.deposits, t.sum)), (3, 6), "attempt {attempt}");
        assert_eq!(tally.position(), third);
    }
    assert_eq!(tally.catch_up(&store).await.unwrap(), third + 2);
    assert_eq!(tally.read(|t| (t.deposits, t.sum)), (5, 23));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_projection_survives_panics_and_reports_them() {
    let store = InMemoryStore::new();
    let app = Dispatcher::new(store.clone());
    let poison = Poison::on(13, 3);
    let tally = Projection::new(
        "tally",
        Tally {
            poison: poison.clone(),
            ..Tally::default()
        },
    );
    let runner = tally.spawn(store.clone(), Duration::from_millis(20));
    open(&app, "a").await;
    deposit(&app, "a", &[1, 2, 13, 3]).await;
    let last = store.last_position().await.unwrap();
    // Three panics, each retried after a backoff; then it goes on.
    tally.wait_for(last, Duration::from_secs(10)).await.unwrap();
    runner.wait_for(last, Duration::from_secs(10)).await.unwrap();
    assert_eq!(poison.left(), 0);
    assert_eq!(tally.read(|t| (t.deposits, t.sum)), (4, 19));
    eventually(10, "the runner follows", async || {
        runner.status().state == RunState::Following
    })
    .await;
    let status = runner.status();
    assert_eq!((status.position, status.failures), (last, 0));
    let error = status.last_error.expect("the last failure is kept");
    assert!(error.contains("poisoned deposit of 13"), "{error}");
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_stuck_on_a_poisoned_event_says_so_and_stops_on_request() {
    let store = InMemoryStore::new();
    let app = Dispatcher::new(store.clone());
    open(&app, "a").await;
    let before = deposit(&app, "a", &[5]).await;
    deposit(&app, "a", &[13, 6]).await;
    let tally = Projection::new(
        "stuck",
        Tally {
            poison: Poison::on(13, u32::MAX),
            ..Tally::default()
        },
    );
    let runner = tally.spawn(store.clone(), Duration::from_millis(20));
    eventually(10, "the runner has failed twice", async || {
        runner.status().failures >= 2
    })
    .await;
    let status = runner.status();
    assert_eq!((status.state, status.position), (RunState::Retrying, before));
    assert_eq!(status.lag, 2);
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("`stuck` panicked on event `account.deposited` at position 3")),
        "{status:?}"
    );
    assert_eq!(tally.read(|t| t.deposits), 1);
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_process_commands_are_recorded_retried_or_stop_the_process() {
    let store = InMemoryStore::new();
    let app = Dispatcher::new(store.clone());
    open(&app, "r1").await;
    open(&app, "r2").await;

    // Record (the default): the refusals are kept, and the process goes on.
    let recording = ProcessManager::new("welcome-record", Welcome { amount: 0 });
    assert_eq!(recording.catch_up(&app).await.unwrap(), 2);
    let refusals = recording.refusals();
    assert_eq!(recording.refused_count(), 2);
    assert_eq!(refusals.len(), 2);
    assert_eq!(
        refusals[0].to_string(),
        "command `Deposit` reacting to the event at position 1 was refused by `bank_account/r1`: the amount must be more than zero"
    );
    assert_eq!((refusals[1].position, refusals[1].command), (2, "Deposit"));

    // Retry: the refusal fails the run, the checkpoint stays before it.
    let retrying = ProcessManager::new("welcome-retry", Welcome { amount: 0 }).on_refusal(OnRefusal::Retry);
    match retrying.catch_up(&app).await {
        Err(SubscriptionError::Refused { refusal, .. }) => assert_eq!(refusal.position, 1),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(store.load_checkpoint(&retrying.checkpoint_name()).await.unwrap(), None);

    // Stop: a spawned runner fails for good, says why, and keeps its place.
    let stopping = ProcessManager::new("welcome-stop", Welcome { amount: 0 }).on_refusal(OnRefusal::Stop);
    let watcher = stopping.clone();
    let runner = stopping.spawn(app.clone(), Duration::from_millis(20));
    eventually(10, "the process has stopped", async || {
        runner.status().state == RunState::Failed
    })
    .await;
    let status = runner.status();
    assert_eq!(
        status.last_error.as_deref(),
        Some(
            "`welcome-stop` stopped at position 1: command `Deposit` reacting to the event at position 1 was refused by `bank_account/r1`: the amount must be more than zero"
        )
    );
    assert_eq!(watcher.refused_count(), 1);
    assert_eq!(store.load_checkpoint(&watcher.checkpoint_name()).await.unwrap(), None);
    runner.stop().await;

    // A process whose commands are accepted reacts once per event.
    let welcome = ProcessManager::new("welcome", Welcome { amount: 10 });
    welcome.settle(&app).await.unwrap();
    welcome.settle(&app).await.unwrap();
    assert_eq!(welcome.refused_count(), 0);
    for id in ["r1", "r2"] {
        let account: examples::bank::BankAccount = app.load(&AccountId::new(id)).await.unwrap();
        assert_eq!(account.balance, 10, "{id}");
    }
}

/// A process whose reaction to an event changed since it ran (its command
/// id was used by a command of another type) does not have the new command
/// answered with the old one's outcome: it is not run, and the refusal
/// policy sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_command_whose_id_was_used_by_another_command_is_a_refusal() {
    use es_core::store::EventStoreExt;
    let store = InMemoryStore::new();
    let app = Dispatcher::new(store.clone());
    open(&app, "changed").await;
    let welcome = ProcessManager::new("welcome-changed", Welcome { amount: 10 });
    // What an earlier version of the process sent for the open event.
    let opened = store
        .read_stream_vec(&es_core::StreamId::new("bank_account", "changed"), 1)
        .await
        .unwrap();
    app.dispatch_with(
        CloseAccount {
            account: AccountId::new("changed"),
        },
        es_core::Metadata::new().command_id(welcome.command_id(opened[0].event_id, 0)),
    )
    .await
    .unwrap();
    // Two events: the open and the close.
    assert_eq!(welcome.catch_up(&app).await.unwrap(), 2);
    let refusals = welcome.refusals();
    assert_eq!(refusals.len(), 1);
    assert_eq!(
        refusals[0].to_string(),
        format!(
            "command `Deposit` reacting to the event at position 1 was refused by `bank_account/changed`: its command id `{}` was already used there by command `CloseAccount`",
            welcome.command_id(opened[0].event_id, 0)
        )
    );
    let account: examples::bank::BankAccount = app.load(&AccountId::new("changed")).await.unwrap();
    assert_eq!((account.balance, account.open), (0, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_sqlite_handler_rolls_back_and_leaves_the_database_usable() {
    let path = tests::sqlite::temp_dir().join("poison.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store
        .with_connection(|c| c.execute_batch(tests::ledger::SQLITE_LEDGER))
        .unwrap();
    let app = Dispatcher::new(store.clone());
    open(&app, "a").await;
    deposit(&app, "a", &[1, 2, 13, 3]).await;
    let poison = Poison::on(13, 1);
    let projection = SqliteProjection::new(
        store.clone(),
        "ledger",
        SqliteLedger {
            poison: poison.clone(),
            ..SqliteLedger::default()
        },
    );
    match projection.catch_up().await {
        Err(SubscriptionError::Panicked { position, message, .. }) => {
            assert_eq!((position, message.as_str()), (4, "poisoned deposit of 13"));
        }
        other => panic!("expected the panic, got {other:?}"),
    }
    // The page was rolled back: no rows, no checkpoint.
    let rows = || {
        store
            .read_with(|c| c.query_row("SELECT count(*) FROM ledger", [], |r| r.get::<_, i64>(0)))
            .unwrap()
            .unwrap()
    };
    assert_eq!(rows(), 0);
    assert_eq!(
        store.load_checkpoint(&projection.checkpoint_name()).await.unwrap(),
        None
    );
    // The write lock was given back: appends work in this process, and
    // from another connection to the file (as another process would).
    deposit(&app, "a", &[4]).await;
    let other = SqliteStore::open(&path).await.unwrap();
    deposit(&Dispatcher::new(other), "a", &[5]).await;
    // Once the handler stops panicking, every event is applied once.
    assert_eq!(projection.catch_up().await.unwrap(), 7);
    assert_eq!(rows(), 6);
    assert_eq!(poison.left(), 0);
}

mod postgres {
    use std::str::FromStr;

    use es_postgres::{PgProjection, PostgresStore};
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use tests::ledger::PgLedger;

    use super::*;

    /// Opens `accounts` accounts and deposits into each; returns how many
    /// deposits were made.
    async fn fill(store: &PostgresStore, prefix: &str, accounts: usize, deposits: usize) -> usize {
        let app = Dispatcher::new(store.clone());
        for a in 0..accounts {
            let id = format!("{prefix}{a}");
            open(&app, &id).await;
            let amounts: Vec<u64> = (0..deposits).map(|d| (d % 7 + 1) as u64).collect();
            deposit(&app, &id, &amounts).await;
        }
        accounts * deposits
    }

    async fn unkeyed_ledger(store: &PostgresStore) {
        sqlx::query(sqlx::AssertSqlSafe(PgLedger::create_unkeyed(store.schema())))
            .execute(store.pool())
            .await
            .unwrap();
    }

    /// Every deposit is in the ledger exactly once.
    async fn assert_exactly_once(store: &PostgresStore, deposits: usize) {
        let s = store.schema();
        let twice: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            r#"SELECT position, count(*) FROM "{s}".ledger GROUP BY position HAVING count(*) > 1 ORDER BY position"#
        )))
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert!(
            twice.is_empty(),
            "events applied more than once (position, times): {twice:?}"
        );
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(r#"SELECT count(*) FROM "{s}".ledger"#)))
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(rows as usize, deposits);
    }

    /// The backend holding `projection`'s lock.
    async fn lock_holder(store: &PostgresStore, projection: &str) -> Option<i32> {
        let key = format!("es-projection:{}:{projection}", store.schema());
        sqlx::query_scalar(
            "SELECT l.pid FROM pg_locks l
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.objid::TEXT::BIGINT = (hashtext($1)::BIGINT & 4294967295)
               AND l.classid::TEXT::BIGINT = ((hashtext($1)::BIGINT >> 32) & 4294967295)",
        )
        .bind(key)
        .fetch_optional(store.pool())
        .await
        .unwrap()
    }

    async fn checkpoint(store: &PostgresStore) -> u64 {
        store.load_checkpoint("projection:ledger").await.unwrap().unwrap_or(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_runner_whose_lock_connection_is_killed_cannot_commit_after_a_takeover() {
        let Some(store) = tests::postgres::store().await else {
            return;
        };
        unkeyed_ledger(&store).await;
        let deposits = fill(&store, "k", 4, 100).await;
        let last = store.last_position().await.unwrap();
        let runner = |name| {
            let mut ledger = PgLedger::new(store.schema());
            ledger.slow = Duration::from_millis(2);
            ledger.runner = name;
            PgProjection::new(store.clone(), "ledger", ledger).spawn(Duration::from_millis(20))
        };
        // The first runner owns the projection and works through its first
        // page (all 404 events, about a second with its slow handlers).
        let first = runner("first");
        eventually(10, "the first runner owns the projection", async || {
            first.status().state == RunState::CatchingUp
        })
        .await;
        let second = runner("second");
        eventually(10, "the second runner stands by", async || {
            second.status().state == RunState::Standby
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(checkpoint(&store).await, 0, "the first page is still being applied");

        // Its lock connection dies mid-page; the standby takes over.
        let first_pid = lock_holder(&store, "ledger")
            .await
            .expect("the first runner holds the lock");
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(first_pid)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(killed);
        eventually(30, "a runner has applied everything", async || {
            checkpoint(&store).await == last
        })
        .await;
        eventually(10, "the first runner knows it lost the projection", async || {
            first.status().state == RunState::Standby
        })
        .await;
        let noticed = first.status().last_error.unwrap_or_default();
        assert!(
            noticed.starts_with("lost ownership: another runner took it over"),
            "{noticed}"
        );
        first.stop().await;
        second.stop().await;
        assert_exactly_once(&store, deposits).await;
        // The page the first runner was applying when it lost the lock was
        // never committed: every row is the second runner's.
        let s = store.schema();
        let by: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            r#"SELECT runner, count(*) FROM "{s}".ledger GROUP BY runner ORDER BY runner"#
        )))
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(by, [("second".to_owned(), deposits as i64)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn runners_whose_idle_sessions_time_out_apply_every_event_once() {
        if !tests::postgres::available().await {
            return;
        }
        // Every connection of this pool (and the runners' own lock
        // connections, made with its settings) is closed by the server after
        // 300 ms of idleness.
        let options = PgConnectOptions::from_str(&tests::postgres::url())
            .unwrap()
            .options([("idle_session_timeout", "300")]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .unwrap();
        let store = tests::postgres::store_on(pool).await;
        unkeyed_ledger(&store).await;
        // Polls slower than the timeout: lock connections idle out between
        // wake-ups, and runners must notice before they commit again.
        let poll = Duration::from_millis(700);
        let first = PgProjection::new(store.clone(), "ledger", PgLedger::new(store.schema())).spawn(poll);
        let second = PgProjection::new(store.clone(), "ledger", PgLedger::new(store.schema())).spawn(poll);
        let mut deposits = 0;
        for burst in 0..4 {
            deposits += fill(&store, &format!("i{burst}-"), 2, 20).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let last = store.last_position().await.unwrap();
        eventually(30, "a runner has applied everything", async || {
            checkpoint(&store).await == last
        })
        .await;
        first.stop().await;
        second.stop().await;
        assert_exactly_once(&store, deposits).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runner_works_with_a_pool_of_one_connection() {
        if !tests::postgres::available().await {
            return;
        }
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&tests::postgres::url())
            .await
            .unwrap();
        let store = tests::postgres::store_on(pool).await;
        sqlx::query(sqlx::AssertSqlSafe(PgLedger::create(store.schema())))
            .execute(store.pool())
            .await
            .unwrap();
        let deposits = fill(&store, "one", 2, 30).await;
        let projection = PgProjection::new(store.clone(), "ledger", PgLedger::new(store.schema()));
        let last = store.last_position().await.unwrap();
        assert_eq!(projection.catch_up().await.unwrap(), last);
        // And spawned, following new events woken by notifications.
        let runner = projection.spawn(Duration::from_secs(5));
        let more = fill(&store, "two", 1, 10).await;
        let last = store.last_position().await.unwrap();
        runner.wait_for(last, Duration::from_secs(10)).await.unwrap();
        runner.stop().await;
        assert_exactly_once(&store, deposits + more).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_postgres_handler_rolls_back_its_page_and_is_retried() {
        let Some(store) = tests::postgres::store().await else {
            return;
        };
        unkeyed_ledger(&store).await;
        let app = Dispatcher::new(store.clone());
        open(&app, "a").await;
        deposit(&app, "a", &[1, 2, 13, 3]).await;
        let mut ledger = PgLedger::new(store.schema());
        ledger.poison = Poison::on(13, 2);
        let poison = ledger.poison.clone();
        let runner = PgProjection::new(store.clone(), "ledger", ledger).spawn(Duration::from_millis(20));
        let last = store.last_position().await.unwrap();
        runner.wait_for(last, Duration::from_secs(10)).await.unwrap();
        let status = runner.status();
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("`ledger` panicked on event `account.deposited` at position 4")),
            "{status:?}"
        );
        assert_eq!(poison.left(), 0);
        runner.stop().await;
        assert_exactly_once(&store, 4).await;
    }
}

/// A runner woken while commits keep landing reads them as a few pages, not
/// one read per commit (`RunOptions::coalesce`): a read model must not
/// compete with the writers it follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_runner_reads_a_burst_of_commits_as_few_pages() {
    let store = CountingStore::new(InMemoryStore::new());
    let app = Dispatcher::new(store.clone());
    open(&app, "burst").await;
    let balances = Projection::new("balances", Balances::default());
    let runner = balances.spawn(store.clone(), Duration::from_secs(60));
    runner.wait_for(1, Duration::from_secs(5)).await.unwrap();
    let before = store.log_reads();
    let last = deposit(&app, "burst", &[1; 300]).await;
    runner.wait_for(last, Duration::from_secs(5)).await.unwrap();
    let reads = store.log_reads() - before;
    assert!(reads <= 30, "{reads} reads of the log for 300 commits");
    assert_eq!(
        balances.query(BalanceOf {
            account: "burst".into()
        }),
        Some(300)
    );
    runner.stop().await;
}
