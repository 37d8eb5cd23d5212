//! A runner process for the partitioned fault tests: runs its share of an
//! eight-partition ledger (1 ms per event) until it is killed. Prints
//! `running <name>` once its first heartbeat is in.
//!
//! `partitioned <url> <schema> <lease ms> <heartbeat ms>`.

use std::time::Duration;

use es_core::subscription::PartitionOptions;
use es_postgres::{PgProjection, PostgresOptions, PostgresStore};
use tests::ledger::OrderedLedger;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, schema, lease, heartbeat] = &args[..] else {
        panic!("usage: partitioned <url> <schema> <lease ms> <heartbeat ms>");
    };
    let ms = |s: &str| Duration::from_millis(s.parse().expect("milliseconds"));
    let options = PostgresOptions {
        schema: schema.clone(),
        ..Default::default()
    };
    let store = PostgresStore::connect_with(url, options).await.expect("connect");
    let mut ledger = OrderedLedger::new(schema, "ledger");
    ledger.slow = Duration::from_millis(1);
    ledger.runner = format!("pid {}", std::process::id());
    let runner = PgProjection::new(store, "ledger", ledger)
        .tables(OrderedLedger::tables(schema, "ledger"))
        .partitioned(8)
        .spawn(PartitionOptions {
            run: es_core::subscription::RunOptions::polling(Duration::from_millis(100)),
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
