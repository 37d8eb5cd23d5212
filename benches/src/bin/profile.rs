//! Runs one workload in a loop, for `perf record` or `valgrind`:
//! `cargo run --release -p benches --bin profile -- round-robin 20`, or
//! `.. -- one-account 3 200000` (three runs of 200,000 deposits, timed).

use benches::workloads::*;
use es_core::EventStore;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "round-robin".into());
    let times: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for _ in 0..times {
        match what.as_str() {
            "round-robin" => rt.block_on(async {
                let app = opened_dispatcher(1_000).await;
                deposits_framework(&app, 1_000, 100_000).await;
            }),
            "one-account" => rt.block_on(async {
                let app = opened_dispatcher(1).await;
                let start = std::time::Instant::now();
                deposits_framework(&app, 1, n).await;
                println!("{n} deposits on one account: {:?}", start.elapsed());
            }),
            "round-robin-baseline" => {
                let mut bank = opened_bank(1_000);
                deposits_baseline(&mut bank, 1_000, 100_000);
            }
            "cold-load" => rt.block_on(async {
                let store = stored_account(es_core::Json, 10_000).await;
                let app = es_core::Dispatcher::builder(store).cache_capacity(0).build();
                for _ in 0..20 {
                    cold_load_framework(&app).await;
                }
            }),
            "cold-load-baseline" => rt.block_on(async {
                let store = stored_account(es_core::Json, 10_000).await;
                for _ in 0..20 {
                    cold_load_baseline(&store, benches::baseline::decode_json).await;
                }
            }),
            "projection-sqlite" | "projection-sqlite-baseline" => rt.block_on(async {
                let dir = std::env::temp_dir().join(format!("es-profile-{}", std::process::id()));
                std::fs::create_dir_all(&dir).expect("dir");
                let path = dir.join("p.db");
                let store = es_sqlite::SqliteStore::open(&path).await.expect("open");
                if store.last_position().await.expect("position") == 0 {
                    benches::projections::fill(&store).await;
                }
                let raw = benches::projections::hand_written_file(&store, &dir.join("hand.db")).await;
                for _ in 0..20 {
                    let total = if what == "projection-sqlite" {
                        benches::projections::framework(&store).await
                    } else {
                        benches::projections::by_hand_sqlite(&raw)
                    };
                    assert_eq!(total, benches::projections::expected_total());
                }
            }),
            "projection-postgres" | "projection-postgres-baseline" => rt.block_on(async {
                let pool = benches::sql::pg_pool().await.expect("PostgreSQL");
                let schema = "es_profile_projection";
                let options = es_postgres::PostgresOptions {
                    schema: schema.to_owned(),
                    ..Default::default()
                };
                let store = es_postgres::PostgresStore::from_pool_with(pool.clone(), options).expect("store");
                store.migrate().await.expect("migrate");
                if store.last_position().await.expect("position") == 0 {
                    benches::projections::fill(&store).await;
                }
                for _ in 0..20 {
                    let total = if what == "projection-postgres" {
                        benches::projections::framework(&store).await
                    } else {
                        benches::projections::by_hand_postgres(&pool, schema).await
                    };
                    assert_eq!(total, benches::projections::expected_total());
                }
            }),
            "pg-writers" => {
                // 8 tasks, 1,000 commands, framework then baseline, on a
                // multi-threaded runtime like the benchmark's.
                let mt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                mt.block_on(async {
                    let pool = benches::sql::pg_pool().await.expect("PostgreSQL");
                    benches::sql::pg_clean(&pool).await;
                    let run = std::process::id();
                    let notify = std::env::var("ES_NOTIFY").map_or(true, |v| v != "0");
                    let store = es_postgres::PostgresStore::from_pool_with(
                        pool.clone(),
                        es_postgres::PostgresOptions {
                            schema: format!("es_bench_w{run}_{n}"),
                            notify,
                            committers: std::env::var("ES_COMMITTERS")
                                .ok()
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(1),
                            ..Default::default()
                        },
                    )
                    .expect("store");
                    store.migrate().await.expect("migrate");
                    let app = benches::sql::warmed(es_core::Dispatcher::new(store)).await;
                    let only = std::env::var("ES_ONLY").unwrap_or_default();
                    let start = std::time::Instant::now();
                    let tasks: Vec<_> = (0..8)
                        .filter(|_| only != "baseline")
                        .map(|t| {
                            let app = app.clone();
                            tokio::spawn(
                                async move { benches::sql::framework_deposits(&app, &format!("t{t}"), 125).await },
                            )
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                    let framework = start.elapsed();
                    if only == "framework" {
                        println!("framework {framework:?}");
                        return;
                    }
                    let bank = benches::sql::PgBank::setup(pool.clone(), &format!("es_bench_b{run}_{n}")).await;
                    // ES_BASELINE picks the hand-written writers: naive
                    // (default), cached or one-committer.
                    let how = match std::env::var("ES_BASELINE").as_deref() {
                        Ok("cached") => benches::stores::PgWriters::Cached,
                        Ok("one-committer") => benches::stores::PgWriters::OneCommitter,
                        _ => benches::stores::PgWriters::Naive,
                    };
                    let start = std::time::Instant::now();
                    benches::stores::pg_writers(&bank, how, 8).await;
                    let baseline = start.elapsed();
                    println!(
                        "framework {framework:?} baseline {baseline:?} ratio {:.2}",
                        baseline.as_secs_f64() / framework.as_secs_f64()
                    );
                });
            }
            other => panic!("unknown workload {other}"),
        }
    }
}
