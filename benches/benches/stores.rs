//! The stores' benchmarks: the bank workload (one `Deposit` per command, one
//! event each) through the framework on PostgreSQL and SQLite, beside a
//! hand-written baseline on the same driver in the same run: load the
//! stream, fold, decide, insert at version + 1 with the primary key as the
//! conflict check. PostgreSQL cases are skipped (with a message) when no
//! server answers at `ES_POSTGRES_URL`.

use std::time::Duration;

use benches::sql::*;
use benches::stores::*;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use es_core::Dispatcher;

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
            || rt.block_on(pg_dispatcher(pool.clone(), &unique("es_bench_"))),
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

    for tasks in [8, 32, 64] {
        let mut g = c.benchmark_group(format!("pg_1000_commands_{tasks}_tasks"));
        g.sample_size(10).measurement_time(Duration::from_secs(20));
        g.bench_function("framework", |b| {
            b.iter_batched(
                || rt.block_on(pg_dispatcher(pool.clone(), &unique("es_bench_"))),
                |app| rt.block_on(framework_writers(app, tasks)),
                BatchSize::PerIteration,
            )
        });
        for (name, how) in [
            ("baseline", PgWriters::Naive),
            ("baseline_cached", PgWriters::Cached),
            ("baseline_one_committer", PgWriters::OneCommitter),
        ] {
            g.bench_function(name, |b| {
                b.iter_batched(
                    || rt.block_on(PgBank::setup(pool.clone(), &unique("es_bench_"))),
                    |bank| rt.block_on(pg_writers(&bank, how, tasks)),
                    BatchSize::PerIteration,
                )
            });
        }
        g.finish();
    }

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
    let file = || dir.join(format!("{}.db", unique("")));

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
    g.bench_function("baseline_one_committer", |b| {
        b.iter_batched(
            file,
            |path| rt.block_on(sqlite_one_committer_writers(&path, TASKS)),
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
