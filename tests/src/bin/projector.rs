//! A projection runner for the crash tests: catches up a slowed-down ledger
//! until it is killed. Prints `projecting` once its first page committed.
//!
//! `projector sqlite <path>` or `projector postgres <url> <schema>`.

use std::time::Duration;

use es_core::EventStore;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let slow = Duration::from_millis(2);
    match args.first().map(String::as_str) {
        Some("sqlite") => {
            let store = es_sqlite::SqliteStore::open(&args[1]).await.expect("open");
            let ledger = tests::ledger::SqliteLedger {
                slow,
                ..Default::default()
            };
            let projection = es_sqlite::SqliteProjection::new(store.clone(), "ledger", ledger);
            let checkpoint = projection.checkpoint_name();
            tokio::spawn(async move { projection.catch_up().await.expect("catch up") });
            announce(&store, &checkpoint).await;
        }
        Some("postgres") => {
            let options = es_postgres::PostgresOptions {
                schema: args[2].clone(),
                ..Default::default()
            };
            let store = es_postgres::PostgresStore::connect_with(&args[1], options)
                .await
                .expect("connect");
            let mut ledger = tests::ledger::PgLedger::new(&args[2]);
            ledger.slow = slow;
            let projection = es_postgres::PgProjection::new(store.clone(), "ledger", ledger);
            let checkpoint = projection.checkpoint_name();
            tokio::spawn(async move { projection.catch_up().await.expect("catch up") });
            announce(&store, &checkpoint).await;
        }
        _ => panic!("usage: projector sqlite <path> | projector postgres <url> <schema>"),
    }
    std::future::pending::<()>().await;
}

async fn announce<S: EventStore>(store: &S, checkpoint: &str) {
    while store
        .load_checkpoint(checkpoint)
        .await
        .expect("checkpoint")
        .unwrap_or(0)
        == 0
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("projecting");
}
