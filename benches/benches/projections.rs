//! Projection catch-up: a `Projection` of the bank's `Balances` read model
//! replaying 20,000 account events from each store ("framework"), beside a
//! hand-written loop over the same rows that decodes them with serde and
//! keeps the same balances ("baseline"). Events per second = 20,000 / time.

use benches::projections::{
    by_hand_over_store, by_hand_postgres, by_hand_postgres_catch_up_columns, by_hand_postgres_full_rows,
    by_hand_sqlite, by_hand_sqlite_catch_up_columns, by_hand_sqlite_full_rows, expected_total, fill, framework,
    hand_written_file,
};
use benches::sql::{pg_clean, pg_pool, pg_store};
use criterion::{Criterion, criterion_group, criterion_main};
use es_core::InMemoryStore;
use es_sqlite::SqliteStore;

fn projections(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let expected = expected_total();

    let memory = InMemoryStore::new();
    rt.block_on(fill(&memory));
    let mut g = c.benchmark_group("projection_20000_events_memory");
    g.sample_size(20);
    assert_eq!(rt.block_on(framework(&memory)), expected);
    assert_eq!(rt.block_on(by_hand_over_store(&memory)), expected);
    g.bench_function("framework", |b| b.iter(|| rt.block_on(framework(&memory))));
    g.bench_function("baseline", |b| b.iter(|| rt.block_on(by_hand_over_store(&memory))));
    g.finish();

    let dir = std::env::temp_dir().join(format!("es-projection-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("p.db");
    let sqlite = rt.block_on(SqliteStore::open(&path)).expect("open");
    rt.block_on(fill(&sqlite));
    let raw = rt.block_on(hand_written_file(&sqlite, &dir.join("hand.db")));
    let by_hand_sqlite = || by_hand_sqlite(&raw);
    assert_eq!(rt.block_on(framework(&sqlite)), expected);
    assert_eq!(by_hand_sqlite(), expected);
    let mut g = c.benchmark_group("projection_20000_events_sqlite");
    g.sample_size(20);
    g.bench_function("framework", |b| b.iter(|| rt.block_on(framework(&sqlite))));
    g.bench_function("baseline", |b| b.iter(by_hand_sqlite));
    assert_eq!(by_hand_sqlite_catch_up_columns(&raw), expected);
    g.bench_function("baseline_catch_up_columns", |b| {
        b.iter(|| by_hand_sqlite_catch_up_columns(&raw))
    });
    assert_eq!(by_hand_sqlite_full_rows(&raw), expected);
    g.bench_function("baseline_full_rows", |b| b.iter(|| by_hand_sqlite_full_rows(&raw)));
    g.finish();

    let Some(pool) = rt.block_on(pg_pool()) else {
        eprintln!("*** skipping the PostgreSQL projection benchmark: nothing answers at ES_POSTGRES_URL");
        return;
    };
    rt.block_on(pg_clean(&pool));
    let schema = format!("es_bench_p{}", std::process::id());
    let pg = rt.block_on(pg_store(pool.clone(), &schema));
    rt.block_on(fill(&pg));
    let by_hand_pg = || by_hand_postgres(&pool, &schema);
    assert_eq!(rt.block_on(framework(&pg)), expected);
    assert_eq!(rt.block_on(by_hand_pg()), expected);
    let mut g = c.benchmark_group("projection_20000_events_postgres");
    g.sample_size(10);
    g.bench_function("framework", |b| b.iter(|| rt.block_on(framework(&pg))));
    g.bench_function("baseline", |b| b.iter(|| rt.block_on(by_hand_pg())));
    assert_eq!(rt.block_on(by_hand_postgres_catch_up_columns(&pool, &schema)), expected);
    g.bench_function("baseline_catch_up_columns", |b| {
        b.iter(|| rt.block_on(by_hand_postgres_catch_up_columns(&pool, &schema)))
    });
    assert_eq!(rt.block_on(by_hand_postgres_full_rows(&pool, &schema)), expected);
    g.bench_function("baseline_full_rows", |b| {
        b.iter(|| rt.block_on(by_hand_postgres_full_rows(&pool, &schema)))
    });
    g.finish();
}

criterion_group!(read_side, projections);
criterion_main!(read_side);
