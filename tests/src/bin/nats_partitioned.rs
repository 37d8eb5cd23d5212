//! A runner process for the partitioned NATS fault test: feeds its share of
//! an eight-partition in-memory read model until it is killed, printing
//! each event it applies. Prints `running <name>` once its first heartbeat
//! is in.
//!
//! `nats_partitioned <url> <prefix> <lease ms> <heartbeat ms>`.

use std::time::Duration;

use es_core::projection::PartitionedProjection;
use es_core::subscription::{PartitionOptions, RunOptions};
use es_nats::{NatsOptions, NatsPartitioned, NatsStore, Storage};
use tests::ledger::AppliedOrder;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, prefix, lease, heartbeat] = &args[..] else {
        panic!("usage: nats_partitioned <url> <prefix> <lease ms> <heartbeat ms>");
    };
    let ms = |s: &str| Duration::from_millis(s.parse().expect("milliseconds"));
    let options = NatsOptions {
        prefix: prefix.clone(),
        storage: Storage::Memory,
        ..Default::default()
    };
    let store = NatsStore::connect_with(url, options).await.expect("connect");
    let model = AppliedOrder {
        print: true,
        ..Default::default()
    };
    let partitioned = NatsPartitioned::new(store, PartitionedProjection::new("order", 8, model));
    let runner = partitioned.spawn(PartitionOptions {
        run: RunOptions::polling(Duration::from_millis(100)),
        lease: ms(lease),
        heartbeat: ms(heartbeat),
    });
    assert!(
        runner.wait_until(Duration::from_secs(30), |s| s.live > 0).await,
        "no heartbeat: {:?}",
        runner.status()
    );
    println!("running {}", runner.status().runner);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = runner.status();
        if status.stopped {
            panic!("the runner stopped: {status:?}");
        }
    }
}
