//! A writer process for the crash tests: four tasks append batches to four
//! streams forever until it is killed (the store's committer then writes
//! several of them in one transaction). Each event's payload says which batch it belongs to and how
//! big the batch is, so the test can check that no batch was stored in part.
//!
//! `writer sqlite <path>` or `writer postgres <url> <schema>`.

use es_core::store::{AppendRequest, NewEvent};
use es_core::{EventId, EventStore, ExpectedVersion, StreamId, Timestamp};

const BATCH: usize = 50;

/// Four writers at once, one per stream, so that the store's committer
/// writes several of their batches in one transaction when it is killed.
async fn run<S: EventStore + Clone + 'static>(store: S) -> ! {
    for s in 1..4 {
        let store = store.clone();
        tokio::spawn(async move { write(&store, s).await });
    }
    write(&store, 0).await
}

async fn write<S: EventStore>(store: &S, s: u64) -> ! {
    let stream = StreamId::new("crash", format!("s{s}"));
    let mut batch_no = 0u64;
    loop {
        let payloads: Vec<String> = (0..BATCH)
            .map(|i| format!("{batch_no}/{i}/{BATCH}/{}", "x".repeat(2_000)))
            .collect();
        let events: Vec<NewEvent<'_>> = payloads
            .iter()
            .map(|payload| NewEvent {
                event_id: EventId::new(),
                name: "crash.written",
                schema_version: 1,
                payload: payload.as_bytes(),
            })
            .collect();
        store
            .append(AppendRequest {
                stream: &stream,
                expected: ExpectedVersion::Any,
                events: &events,
                metadata: b"",
                command_id: None,
                recorded_at: Timestamp::now(),
            })
            .await
            .expect("append");
        batch_no += 1;
        if s == 0 && batch_no == 3 {
            // The parent waits for this line before it starts the clock.
            println!("writing");
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sqlite") => run(es_sqlite::SqliteStore::open(&args[1]).await.expect("open")).await,
        Some("postgres") => {
            let options = es_postgres::PostgresOptions {
                schema: args[2].clone(),
                ..Default::default()
            };
            run(es_postgres::PostgresStore::connect_with(&args[1], options)
                .await
                .expect("connect"))
            .await
        }
        _ => panic!("usage: writer sqlite <path> | writer postgres <url> <schema>"),
    }
}
