//! A runner process for the partitioned fault tests: runs its share of an
//! eight-partition ledger (1 ms per event) until it is killed. Prints
//! `running <name>` once its first heartbeat is in.
//!
//! `partitioned <url> <schema> <lease ms> <heartbeat ms>`.

use std::time::Duration;

use es_postgres::{PgProjection, PostgresOptions, PostgresStore};
use tests::ledger::OrderedLedger;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, schema, lease, heartbeat] = &args[..] else {
        panic!("usage: partitioned <url> <schema> <lease ms> <heartbeat ms>");
    };
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
        .spawn(tests::partitioned::options(lease, heartbeat));
    tests::partitioned::run_until_killed(runner).await
}
