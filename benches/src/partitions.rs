//! A read model whose handler waits about a millisecond per event (a call
//! to another service), caught up by one runner and by runners sharing its
//! partitions.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use es_core::store::{AppendRequest, ContextFields, NewEvent, RecordedEvent};
use es_core::subscription::{PartitionOptions, RunOptions};
use es_core::{EventContext, EventId, EventStore, ExpectedVersion, StreamId, Timestamp};
use es_postgres::{PgProjection, PostgresOptions, PostgresStore};
use examples::bank::MoneyDeposited;
use sqlx::AssertSqlSafe;

/// Events in the log.
pub const EVENTS: usize = 1_000;
/// Streams they are spread over.
pub const STREAMS: usize = 100;
/// What a handler waits per event.
pub const PER_EVENT: Duration = Duration::from_millis(1);

/// A read model whose handler waits [`PER_EVENT`] (a call to another
/// service), and writes nothing.
#[derive(Debug, Default)]
pub struct Waiting;

#[es_core::handlers(read_model)]
impl Waiting {
    #[apply]
    async fn deposited(
        &self,
        _e: &MoneyDeposited,
        _ctx: &EventContext<'_>,
        _tx: &mut sqlx::PgConnection,
    ) -> sqlx::Result<()> {
        tokio::time::sleep(PER_EVENT).await;
        Ok(())
    }
}

/// A read model whose handler computes for [`PER_EVENT`] (a busy loop on
/// one core), and writes nothing.
#[derive(Debug, Default)]
pub struct Busy;

#[es_core::handlers(read_model)]
impl Busy {
    #[apply]
    async fn deposited(
        &self,
        _e: &MoneyDeposited,
        _ctx: &EventContext<'_>,
        _tx: &mut sqlx::PgConnection,
    ) -> sqlx::Result<()> {
        let start = Instant::now();
        while start.elapsed() < PER_EVENT {
            std::hint::spin_loop();
        }
        Ok(())
    }
}

/// Appends [`EVENTS`] deposits over [`STREAMS`] accounts.
pub async fn fill<S: EventStore>(store: &S) {
    let per_stream = EVENTS / STREAMS;
    for s in 0..STREAMS {
        let stream = StreamId::new("bank_account", format!("s{s:03}"));
        let events: Vec<NewEvent<'_>> = (0..per_stream)
            .map(|_| NewEvent {
                event_id: EventId::new(),
                name: "account.deposited",
                schema_version: 1,
                payload: br#"{"amount":1}"#,
            })
            .collect();
        store
            .append(AppendRequest {
                stream: &stream,
                expected: ExpectedVersion::Exact(0),
                events: &events,
                metadata: b"",
                command_id: None,
                recorded_at: Timestamp::now(),
            })
            .await
            .expect("append");
    }
}

/// A read model of the benchmark.
pub trait Model: es_core::ReadModelIn<sqlx::PgConnection> + Default {}
impl Model for Waiting {}
impl Model for Busy {}

/// A store of its own, on the runtime that calls it, over `schema`.
async fn connect(schema: &str) -> PostgresStore {
    let url = std::env::var("ES_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let options = PostgresOptions {
        schema: schema.to_owned(),
        ..Default::default()
    };
    PostgresStore::connect_with(&url, options).await.expect("connect")
}

/// One unpartitioned runner, in a process of its own with one thread,
/// catches up a fresh projection named `name`. Returns how long it took.
pub fn one_runner<M: Model>(schema: &str, name: &str) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = connect(schema).await;
        let started = Instant::now();
        PgProjection::new(store, name, M::default())
            .catch_up()
            .await
            .expect("catch up");
        started.elapsed()
    })
}

/// `runners` runners, each in a process of its own with one thread (a
/// thread with its own runtime and connections here), share `partitions`
/// partitions of a fresh projection named `name` until every partition
/// reached the end of the log. Returns how long that took.
pub fn shared<M: Model>(schema: &str, name: &str, runners: usize, partitions: u32) -> Duration {
    let done = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..runners)
        .map(|_| {
            let (schema, name, done) = (schema.to_owned(), name.to_owned(), Arc::clone(&done));
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    let store = connect(&schema).await;
                    let runner = PgProjection::new(store, name, M::default())
                        .partitioned(partitions)
                        .spawn(PartitionOptions {
                            run: RunOptions::polling(Duration::from_millis(20)),
                            lease: Duration::from_secs(2),
                            heartbeat: Duration::from_millis(20),
                        });
                    while !done.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    runner.stop().await;
                })
            })
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let took = runtime.block_on(async {
        let started = Instant::now();
        let store = connect(schema).await;
        let last = store.last_position().await.expect("last position");
        let checkpoint = format!("projection:{name}#%");
        let reached = format!(
            r#"SELECT count(*) FROM "{}".checkpoints WHERE name LIKE $1 AND position >= $2"#,
            store.schema()
        );
        loop {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(reached.as_str()))
                .bind(&checkpoint)
                .bind(last as i64)
                .fetch_one(store.pool())
                .await
                .expect("read the checkpoints");
            if n == i64::from(partitions) {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    done.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().expect("a runner thread");
    }
    took
}

/// How many events the log holds.
pub async fn handled(store: &PostgresStore) -> usize {
    let mut n = 0;
    store
        .read_all(0, usize::MAX, ContextFields::NONE, |_: &RecordedEvent<'_>| {
            n += 1;
            ControlFlow::Continue(())
        })
        .await
        .expect("read");
    n
}
