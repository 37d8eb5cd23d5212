//! A read model whose handler costs about 1 ms per event, 1,000 events on
//! PostgreSQL, each runner in a process of its own with one thread (here a
//! thread with its own runtime and connections).
//!
//! - `partitioned_1000_events_1ms_cpu_postgres`: the handler computes for
//!   1 ms. Two runners sharing eight partitions ("framework") against one
//!   runner holding all eight ("baseline"), and against one unpartitioned
//!   runner ("baseline_unpartitioned").
//! - `partitioned_1000_events_1ms_wait_postgres`: the handler waits 1 ms (a
//!   call to another service). One runner holding eight partitions
//!   ("framework", which applies them concurrently) against one
//!   unpartitioned runner ("baseline").
//!
//! Each iteration is a fresh projection over the same log.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use benches::partitions::{Busy, EVENTS, Waiting, fill, handled, one_runner, shared};
use benches::sql::{pg_clean, pg_pool, pg_store};
use criterion::{Criterion, criterion_group, criterion_main};

/// `iters` runs of `f`, timed by `f` itself (each run starts its runners
/// and stops them; only the catch-up counts).
fn timed(f: impl Fn() -> Duration) -> impl FnMut(u64) -> Duration {
    move |iters| (0..iters).map(|_| f()).sum()
}

fn partitions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let Some(pool) = rt.block_on(pg_pool()) else {
        eprintln!("*** skipping the partitioned read model benchmark: nothing answers at ES_POSTGRES_URL");
        return;
    };
    rt.block_on(pg_clean(&pool));
    let schema = format!("es_bench_part{}", std::process::id());
    let store = rt.block_on(pg_store(pool, &schema));
    rt.block_on(fill(&store));
    assert_eq!(rt.block_on(handled(&store)), EVENTS);
    let next = AtomicUsize::new(0);
    let fresh = || format!("slow{}", next.fetch_add(1, Ordering::Relaxed));

    let mut g = c.benchmark_group("partitioned_1000_events_1ms_cpu_postgres");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.bench_function("framework", |b| {
        b.iter_custom(timed(|| shared::<Busy>(&schema, &fresh(), 2, 8)))
    });
    g.bench_function("baseline", |b| {
        b.iter_custom(timed(|| shared::<Busy>(&schema, &fresh(), 1, 8)))
    });
    g.bench_function("baseline_unpartitioned", |b| {
        b.iter_custom(timed(|| one_runner::<Busy>(&schema, &fresh())))
    });
    g.finish();

    let mut g = c.benchmark_group("partitioned_1000_events_1ms_wait_postgres");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.bench_function("framework", |b| {
        b.iter_custom(timed(|| shared::<Waiting>(&schema, &fresh(), 1, 8)))
    });
    g.bench_function("baseline", |b| {
        b.iter_custom(timed(|| one_runner::<Waiting>(&schema, &fresh())))
    });
    g.finish();
}

criterion_group!(benches, partitions);
criterion_main!(benches);
