//! Runs one workload in a loop, for `perf record` or `valgrind`:
//! `cargo run --release -p benches --bin profile -- round-robin 20`, or
//! `.. -- one-account 3 200000` (three runs of 200,000 deposits, timed).

use benches::workloads::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "round-robin".into());
    let times: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
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
            other => panic!("unknown workload {other}"),
        }
    }
}
