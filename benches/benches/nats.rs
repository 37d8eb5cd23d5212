//! The bank workload on NATS JetStream, one server and a three-node
//! cluster (three replicas), beside the same framework on PostgreSQL in the
//! same run: 1,000 commands from 1 task and from 8, and loading a stream of
//! 10,000 events; and, on one server, 1,000 commands while a hundred read
//! models follow the store, beside the same commands with none. The
//! servers are started from `$ES_NATS_SERVER` or the `nats-server` on the
//! `PATH` (`tests::nats`, 2.12 or newer). One server syncs each atomic
//! batch (each append) to disk before it answers; a cluster answers once
//! a quorum stored it (and syncs every two minutes); PostgreSQL commits
//! durably. Skipped, with a message, without PostgreSQL or a current
//! `nats-server`.

use std::time::Duration;

use benches::nats::{RawMode, RawNats};
use benches::sql::*;
use benches::stores::*;
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use es_core::Dispatcher;
use es_nats::NatsStore;

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let Some(pool) = rt.block_on(pg_pool()) else {
        eprintln!("*** skipping the NATS benchmarks: nothing answers at ES_POSTGRES_URL for the PostgreSQL side");
        return;
    };
    rt.block_on(pg_clean(&pool));
    let Some(single) = tests::nats::url() else {
        eprintln!("*** skipping the NATS benchmarks: `nats-server` could not be started");
        return;
    };
    let Some(cluster) = tests::nats::cluster() else {
        return;
    };
    let pg = || {
        let pool = pool.clone();
        async move { pg_dispatcher(pool, &unique("es_bench_")).await }
    };
    let one = || {
        let url = single.clone();
        async move {
            let options = es_nats::NatsOptions {
                prefix: unique("b"),
                ..Default::default()
            };
            Dispatcher::new(NatsStore::connect_with(&url, options).await.expect("NATS"))
        }
    };
    let three = || async { Dispatcher::new(cluster.store().await) };

    // The hand-written baselines: a stream of their own on the same
    // server(s), made before each iteration.
    let raw = |url: String, replicas: usize| {
        move || {
            let url = url.clone();
            async move { std::sync::Arc::new(RawNats::new(&url, replicas, &unique("r")).await) }
        }
    };
    let raw_one = raw(single.clone(), 1);
    let raw_three = raw(cluster.url.clone(), 3);

    macro_rules! groups {
        ($label:literal, $nats:expr, $raw:expr) => {{
            let mut g = c.benchmark_group(concat!($label, "_1000_commands_1_task"));
            g.sample_size(10).measurement_time(Duration::from_secs(15));
            g.bench_function("framework", |b| {
                b.iter_batched(
                    || rt.block_on($nats()),
                    |app| rt.block_on(framework_deposits(&app, "a", COMMANDS)),
                    BatchSize::PerIteration,
                )
            });
            g.bench_function("baseline_postgres", |b| {
                b.iter_batched(
                    || rt.block_on(pg()),
                    |app| rt.block_on(framework_deposits(&app, "a", COMMANDS)),
                    BatchSize::PerIteration,
                )
            });
            raw_baselines(&mut g, &rt, &$raw, 1);
            g.finish();

            let mut g = c.benchmark_group(concat!($label, "_1000_commands_8_tasks"));
            g.sample_size(10).measurement_time(Duration::from_secs(15));
            g.bench_function("framework", |b| {
                b.iter_batched(
                    || rt.block_on($nats()),
                    |app| rt.block_on(framework_on_own_accounts(app)),
                    BatchSize::PerIteration,
                )
            });
            g.bench_function("baseline_postgres", |b| {
                b.iter_batched(
                    || rt.block_on(pg()),
                    |app| rt.block_on(framework_on_own_accounts(app)),
                    BatchSize::PerIteration,
                )
            });
            raw_baselines(&mut g, &rt, &$raw, TASKS);
            g.finish();

            let mut g = c.benchmark_group(concat!($label, "_load_10000_events"));
            g.sample_size(20);
            let nats = rt.block_on($nats());
            rt.block_on(fill(nats.store(), "big", 10_000));
            let nats = Dispatcher::builder(nats.store().clone()).cache_capacity(0).build();
            let postgres = rt.block_on(pg());
            rt.block_on(fill(postgres.store(), "big", 10_000));
            let postgres = Dispatcher::builder(postgres.store().clone()).cache_capacity(0).build();
            assert_eq!(
                rt.block_on(framework_balance(&nats, "big")),
                rt.block_on(framework_balance(&postgres, "big")),
                "both load the same balance"
            );
            g.bench_function("framework", |b| b.iter(|| rt.block_on(framework_balance(&nats, "big"))));
            g.bench_function("baseline_postgres", |b| {
                b.iter(|| rt.block_on(framework_balance(&postgres, "big")))
            });
            g.finish();
        }};
    }
    groups!("nats1", one, raw_one);
    groups!("nats3", three, raw_three);

    // Read models following the store while commands run: the cost of a
    // hundred idle followers (each woken by every commit) to the writer,
    // beside the same commands with none.
    let mut g = c.benchmark_group("nats1_1000_commands_100_followers");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    g.bench_function("framework", |b| {
        b.iter_batched(
            || {
                let app = rt.block_on(one());
                let followers: Vec<_> = (0..100)
                    .map(|_| {
                        let _guard = rt.enter();
                        es_core::Projection::new("balances", examples::views::Balances::default())
                            .spawn(app.store().clone(), Duration::from_millis(500))
                    })
                    .collect();
                (app, followers)
            },
            |(app, followers)| {
                rt.block_on(framework_deposits(&app, "a", COMMANDS));
                rt.block_on(async {
                    for runner in followers {
                        runner.stop().await;
                    }
                });
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("baseline_no_followers", |b| {
        b.iter_batched(
            || rt.block_on(one()),
            |app| rt.block_on(framework_deposits(&app, "a", COMMANDS)),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// The hand-written writers of a group, a conditional publish and an
/// atomic batch per command: `tasks` writers on their own accounts, on a
/// stream `raw` makes before each iteration.
fn raw_baselines<F: std::future::Future<Output = std::sync::Arc<RawNats>>>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    raw: impl Fn() -> F,
    tasks: usize,
) {
    for (name, mode) in [
        ("baseline_raw_publish", RawMode::Publish),
        ("baseline_raw_batch", RawMode::Batch),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || rt.block_on(raw()),
                |raw| rt.block_on(raw.writers(mode, tasks)),
                BatchSize::PerIteration,
            )
        });
    }
}

criterion_group!(nats, bench);
criterion_main!(nats);
