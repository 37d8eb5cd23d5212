//! The stores' benchmarks: the bank workload (one `Deposit` per command, one
//! event each) through the framework on PostgreSQL and SQLite, beside a
//! hand-written baseline on the same driver in the same run: load the
//! stream, fold, decide, insert at version + 1 with the primary key as the
//! conflict check. PostgreSQL cases are skipped (with a message) when no
//! server answers at `ES_POSTGRES_URL`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use benches::baseline::Command;
use benches::sql::*;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use es_core::store::{AppendRequest, NewEvent};
use es_core::{Dispatcher, EventId, EventStore, ExpectedVersion, StreamId, Timestamp};

static NEXT: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

const COMMANDS: usize = 1_000;
const TASKS: usize = 8;

fn deposit(account: &str) -> Command {
    Command::Deposit {
        account: account.to_owned(),
        amount: 1,
    }
}

fn open(account: &str) -> Command {
    Command::Open {
        account: account.to_owned(),
        owner: "ada".into(),
    }
}

/// `n` stored events for one account, appended through the store in batches.
async fn fill<S: EventStore>(store: &S, account: &str, n: usize) {
    let stream = StreamId::new("bank_account", account);
    let (events, _) = benches::workloads::events(n);
    for (i, chunk) in events.chunks(1_000).enumerate() {
        let batch = chunk
            .iter()
            .map(|e| {
                use es_core::Event;
                NewEvent {
                    event_id: EventId::new(),
                    name: e.name().into(),
                    schema_version: e.version(),
                    payload: e.encode(&es_core::Json).expect("encodes"),
                }
            })
            .collect();
        store
            .append(AppendRequest {
                stream: &stream,
                expected: ExpectedVersion::Exact((i * 1_000) as u64),
                events: batch,
                metadata: b"",
                command_id: None,
                recorded_at: Timestamp::now(),
            })
            .await
            .expect("append");
    }
}

/// `TASKS` tasks, each making its share of the deposits on its own account.
async fn framework_on_own_accounts<S: EventStore + Clone>(app: Dispatcher<S>) {
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let app = app.clone();
            tokio::spawn(async move { framework_deposits(&app, &format!("t{t}"), COMMANDS / TASKS).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}

fn postgres(c: &mut Criterion) {
    let rt = runtime();
    let Some(pool) = rt.block_on(pg_pool()) else {
        eprintln!("*** skipping the PostgreSQL benchmarks: nothing answers at ES_POSTGRES_URL");
        return;
    };
    rt.block_on(pg_clean(&pool));

    let mut g = c.benchmark_group("pg_1000_commands_1_task");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("framework", |b| {
        b.iter_batched(
            || rt.block_on(async { Dispatcher::new(pg_store(pool.clone(), &unique("es_bench_")).await) }),
            |app| rt.block_on(framework_deposits(&app, "a", COMMANDS)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            || rt.block_on(PgBank::setup(pool.clone(), &unique("es_bench_"))),
            |bank| {
                rt.block_on(async {
                    bank.handle(&open("a")).await.expect("open");
                    for _ in 0..COMMANDS {
                        bank.handle(&deposit("a")).await.expect("deposit");
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("pg_1000_commands_8_tasks");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("framework", |b| {
        b.iter_batched(
            || rt.block_on(async { Dispatcher::new(pg_store(pool.clone(), &unique("es_bench_")).await) }),
            |app| rt.block_on(framework_on_own_accounts(app)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            || rt.block_on(PgBank::setup(pool.clone(), &unique("es_bench_"))),
            |bank| {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|t| {
                            let bank = bank.clone();
                            tokio::spawn(async move {
                                let account = format!("t{t}");
                                bank.handle(&open(&account)).await.expect("open");
                                for _ in 0..COMMANDS / TASKS {
                                    bank.handle(&deposit(&account)).await.expect("deposit");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("pg_load_10000_events");
    g.sample_size(20);
    let store = rt.block_on(pg_store(pool.clone(), &unique("es_bench_")));
    rt.block_on(fill(&store, "big", 10_000));
    let app = Dispatcher::builder(store).cache_capacity(0).build();
    let bank = rt.block_on(PgBank::setup(pool.clone(), &unique("es_bench_")));
    rt.block_on(bank.fill("big", 10_000));
    assert_eq!(
        rt.block_on(framework_balance(&app, "big")),
        rt.block_on(bank.load("big")).balance,
        "both load the same balance"
    );
    g.bench_function("framework", |b| b.iter(|| rt.block_on(framework_balance(&app, "big"))));
    g.bench_function("baseline", |b| b.iter(|| rt.block_on(bank.load("big")).balance));
    g.finish();
}

fn sqlite(c: &mut Criterion) {
    let rt = runtime();
    let dir = std::env::temp_dir().join(unique("es-bench-"));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let file = || dir.join(format!("{}.db", NEXT.fetch_add(1, Ordering::Relaxed)));

    let mut g = c.benchmark_group("sqlite_1000_commands_1_task");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("framework", |b| {
        b.iter_batched(
            || rt.block_on(async { Dispatcher::new(sqlite_store(&file()).await) }),
            |app| rt.block_on(framework_deposits(&app, "a", COMMANDS)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            || SqliteBank::open(&file()),
            |bank| {
                bank.handle(&open("a")).expect("open");
                for _ in 0..COMMANDS {
                    bank.handle(&deposit("a")).expect("deposit");
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("sqlite_1000_commands_8_tasks");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("framework", |b| {
        b.iter_batched(
            || rt.block_on(async { Dispatcher::new(sqlite_store(&file()).await) }),
            |app| rt.block_on(framework_on_own_accounts(app)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            file,
            |path| {
                SqliteBank::open(&path);
                let threads: Vec<_> = (0..TASKS)
                    .map(|t| {
                        let path = path.clone();
                        std::thread::spawn(move || {
                            let bank = SqliteBank::open(&path);
                            let account = format!("t{t}");
                            bank.handle(&open(&account)).expect("open");
                            for _ in 0..COMMANDS / TASKS {
                                bank.handle(&deposit(&account)).expect("deposit");
                            }
                        })
                    })
                    .collect();
                for t in threads {
                    t.join().expect("thread");
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("sqlite_load_10000_events");
    g.sample_size(20);
    let path = file();
    let store = rt.block_on(sqlite_store(&path));
    rt.block_on(fill(&store, "big", 10_000));
    let app = Dispatcher::builder(store).cache_capacity(0).build();
    let bank = SqliteBank::open(&file());
    bank.fill("big", 10_000);
    assert_eq!(rt.block_on(framework_balance(&app, "big")), bank.load("big").balance);
    g.bench_function("framework", |b| b.iter(|| rt.block_on(framework_balance(&app, "big"))));
    g.bench_function("baseline", |b| b.iter(|| bank.load("big").balance));
    g.finish();
}

criterion_group!(stores, postgres, sqlite);
criterion_main!(stores);
