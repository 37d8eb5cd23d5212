//! The core benchmarks: the framework beside a hand-written baseline of the
//! same workload, in the same run. `cargo run -p benches --bin report`
//! turns the medians into the ratio table of BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use benches::baseline::{decode_binary, decode_json};
use benches::workloads::*;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use es_core::{Binary, Dispatcher, Json};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime")
}

fn apply_dispatch(c: &mut Criterion) {
    let (framework, by_hand) = events(1_000_000);
    let mut g = c.benchmark_group("apply_1m");
    // A tight loop of ~2 ms: many samples, so the median shrugs off bursts
    // of load from other tenants of the machine.
    g.sample_size(100).measurement_time(Duration::from_secs(8));
    g.bench_function("framework", |b| b.iter(|| fold_framework(black_box(&framework))));
    g.bench_function("baseline", |b| b.iter(|| fold_baseline(black_box(&by_hand))));
    // The same hand-written match over the framework's own events: the
    // baseline's enum is smaller (three variants against the bank's nine),
    // and a fold of a million events is bound by reading them.
    g.bench_function("baseline_same_events", |b| {
        b.iter(|| fold_by_hand_same_events(black_box(&framework)))
    });
    g.finish();
}

fn round_robin(c: &mut Criterion) {
    round_robin_on(c, "deposits_100k_on_1000_accounts", runtime());
    let multi_thread = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    round_robin_on(c, "deposits_100k_on_1000_accounts_multi_thread", multi_thread);
}

/// The round-robin deposits, the framework's driven by `rt`.
fn round_robin_on(c: &mut Criterion, group: &str, rt: tokio::runtime::Runtime) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("framework", |b| {
        b.iter_batched(
            || rt.block_on(opened_dispatcher(1_000)),
            |app| rt.block_on(deposits_framework(&app, 1_000, 100_000)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            || opened_bank(1_000),
            |mut bank| deposits_baseline(&mut bank, 1_000, 100_000),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn one_account(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("deposits_100k_on_1_account");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("framework", |b| {
        b.iter_batched(
            || rt.block_on(opened_dispatcher(1)),
            |app| rt.block_on(deposits_framework(&app, 1, 100_000)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            || opened_bank(1),
            |mut bank| deposits_baseline(&mut bank, 1, 100_000),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn cold_load(c: &mut Criterion) {
    let rt = runtime();
    for n in [1_000, 10_000, 100_000] {
        cold_load_group(c, &rt, n, "json", Json, decode_json);
        cold_load_group(c, &rt, n, "binary", Binary, decode_binary);
    }
}

/// One cold-load group: `n` events stored with `codec`, loaded by the
/// framework and by the baseline decoding with `decode`.
fn cold_load_group<C: es_core::Codec>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    n: usize,
    label: &str,
    codec: C,
    decode: fn(&str, &[u8]) -> benches::baseline::Event,
) {
    let mut g = c.benchmark_group(format!("cold_load_{n}_{label}"));
    g.sample_size(20);
    let store = rt.block_on(stored_account(codec.clone(), n));
    let app = Dispatcher::builder(store.clone())
        .codec(codec)
        .cache_capacity(0)
        .build();
    g.bench_function("framework", |b| b.iter(|| rt.block_on(cold_load_framework(&app))));
    g.bench_function("baseline", |b| {
        b.iter(|| rt.block_on(cold_load_baseline(&store, decode)))
    });
    g.finish();
}

/// A cold load of 10,000 events whose withdrawals are all one version
/// behind (stored as version 3, upcast to 4 on load) — "framework" — beside
/// the same load with every event at the current version — "baseline":
/// both sides are the framework; the ratio is the cost of one upcast per
/// event.
fn cold_load_upcast(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("cold_load_10000_one_version_behind");
    g.sample_size(20);
    let load = |behind| {
        let store = rt.block_on(stored_withdrawals(Json, 10_000, behind));
        Dispatcher::builder(store).cache_capacity(0).build()
    };
    let (behind, current) = (load(true), load(false));
    assert_eq!(rt.block_on(cold_load_framework(&behind)), 2);
    assert_eq!(rt.block_on(cold_load_framework(&current)), 2);
    g.bench_function("framework", |b| b.iter(|| rt.block_on(cold_load_framework(&behind))));
    g.bench_function("baseline", |b| b.iter(|| rt.block_on(cold_load_framework(&current))));
    g.finish();
}

/// The snapshot fingerprint: tracing the state's shape through its
/// `Deserialize` ("framework", what snapshots use, once per process and
/// type) beside the cheaper idea it was chosen over, hashing the JSON of a
/// default state ("baseline"), which cannot see the types inside empty
/// collections or `None`s.
fn shape_fingerprint(c: &mut Criterion) {
    use examples::bank::BankAccount;
    let mut g = c.benchmark_group("fingerprint_bank_account_state");
    g.bench_function("framework", |b| b.iter(es_core::shape::fingerprint::<BankAccount>));
    g.bench_function("baseline", |b| {
        b.iter(|| {
            serde_json::to_vec(&BankAccount::default())
                .expect("encodes")
                .iter()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                })
        })
    });
    g.finish();
}

/// Event ids: ours (rand's per-thread ChaCha12, seeded from the OS; a shared atomic counter for
/// monotonicity) beside the `uuid` crate's `now_v7` (a mutex-guarded
/// context and the OS's random source), 10,000 ids each, one thread.
fn event_ids(c: &mut Criterion) {
    let mut g = c.benchmark_group("event_ids_10k");
    g.bench_function("framework", |b| {
        b.iter(|| {
            for _ in 0..10_000 {
                black_box(es_core::EventId::new());
            }
        })
    });
    g.bench_function("baseline", |b| {
        b.iter(|| {
            for _ in 0..10_000 {
                black_box(uuid::Uuid::now_v7());
            }
        })
    });
    g.finish();
}

criterion_group!(
    core,
    event_ids,
    apply_dispatch,
    round_robin,
    one_account,
    cold_load,
    cold_load_upcast,
    shape_fingerprint
);
criterion_main!(core);
