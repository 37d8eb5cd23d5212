//! A runner process for the partitioned NATS fault test: feeds its share of
//! an eight-partition in-memory read model until it is killed, printing
//! each event it applies. Prints `running <name>` once its first heartbeat
//! is in.
//!
//! `nats_partitioned <url> <prefix> <lease ms> <heartbeat ms>`.

use es_core::projection::PartitionedProjection;
use es_nats::{NatsOptions, NatsPartitioned, NatsStore, Storage};
use tests::ledger::AppliedOrder;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, prefix, lease, heartbeat] = &args[..] else {
        panic!("usage: nats_partitioned <url> <prefix> <lease ms> <heartbeat ms>");
    };
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
    let runner = partitioned.spawn(tests::partitioned::options(lease, heartbeat));
    tests::partitioned::run_until_killed(runner).await
}
