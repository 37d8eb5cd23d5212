//! Projection catch-up: a `Projection` of the bank's `Balances` read model
//! replaying 20,000 account events from each store ("framework"), beside a
//! hand-written loop over the same rows that decodes them with serde and
//! keeps the same balances ("baseline"). Events per second = 20,000 / time.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use benches::sql::{pg_clean, pg_pool, pg_store};
use criterion::{Criterion, criterion_group, criterion_main};
use es_core::store::RecordedEvent;
use es_core::{Dispatcher, EventStore, InMemoryStore, Json, Projection};
use es_sqlite::SqliteStore;
use examples::bank::{AccountId, OpenAccount};
use examples::views::{Balances, TotalHeld};
use serde::Deserialize;
use sqlx::Row;

const ACCOUNTS: usize = 200;
const DEPOSITS: usize = 99;

async fn fill<S: EventStore + Clone>(store: &S) {
    let app = Dispatcher::builder(store.clone()).cache_capacity(0).build();
    for a in 0..ACCOUNTS {
        let account = AccountId::new(format!("p{a:04}"));
        app.dispatch(OpenAccount {
            account: account.clone(),
            owner: "o".into(),
        })
        .await
        .expect("open");
    }
    // Many deposits per round trip: append batches straight to the store.
    for a in 0..ACCOUNTS {
        let stream = es_core::StreamId::new("bank_account", format!("p{a:04}"));
        let events = (0..DEPOSITS)
            .map(|i| es_core::store::NewEvent {
                event_id: es_core::EventId::new(),
                name: "account.deposited".into(),
                schema_version: 1,
                payload: format!(r#"{{"amount":{}}}"#, i % 10 + 1).into_bytes(),
            })
            .collect();
        store
            .append(es_core::store::AppendRequest {
                stream: &stream,
                expected: es_core::ExpectedVersion::Exact(1),
                events,
                metadata: b"",
                command_id: None,
                recorded_at: es_core::Timestamp::now(),
            })
            .await
            .expect("append");
    }
}

#[derive(Deserialize)]
struct Amount {
    amount: u64,
}

/// The hand-written fold: balances by account from `(account, name, payload)` rows.
fn fold_row(balances: &mut BTreeMap<String, u64>, account: &str, name: &str, payload: &[u8]) {
    match name {
        "account.opened" => {
            balances.insert(account.to_owned(), 0);
        }
        "account.deposited" => {
            let d: Amount = serde_json::from_slice(payload).expect("decodes");
            *balances.entry(account.to_owned()).or_default() += d.amount;
        }
        _ => {}
    }
}

/// The baseline on any store: its own loop over the log, without the
/// projection machinery.
async fn by_hand_over_store<S: EventStore>(store: &S) -> u64 {
    let mut balances = BTreeMap::new();
    let mut after = 0;
    loop {
        let mut seen = 0;
        store
            .read_all(after, 1_000, |e: &RecordedEvent<'_>| {
                seen += 1;
                after = e.position;
                fold_row(&mut balances, e.aggregate_id, e.name, e.payload);
                ControlFlow::Continue(())
            })
            .await
            .expect("read");
        if seen < 1_000 {
            return balances.values().sum();
        }
    }
}

async fn framework<S: EventStore>(store: &S) -> u64 {
    let projection = Projection::new("balances", Balances::default());
    projection.catch_up(store, &Json).await.expect("catch up");
    u64::try_from(projection.query(TotalHeld)).expect("fits")
}

fn projections(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let expected = (ACCOUNTS * (0..DEPOSITS).map(|i| i % 10 + 1).sum::<usize>()) as u64;

    let memory = InMemoryStore::new();
    rt.block_on(fill(&memory));
    let mut g = c.benchmark_group("projection_20000_events_memory");
    g.sample_size(20);
    assert_eq!(rt.block_on(framework(&memory)), expected);
    assert_eq!(rt.block_on(by_hand_over_store(&memory)), expected);
    g.bench_function("framework", |b| b.iter(|| rt.block_on(framework(&memory))));
    g.bench_function("baseline", |b| b.iter(|| rt.block_on(by_hand_over_store(&memory))));
    g.finish();

    let dir = std::env::temp_dir().join(format!("es-projection-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("p.db");
    let sqlite = rt.block_on(SqliteStore::open(&path)).expect("open");
    rt.block_on(fill(&sqlite));
    let raw = rusqlite::Connection::open(&path).expect("open");
    let by_hand_sqlite = || {
        let mut stmt = raw
            .prepare_cached("SELECT aggregate_id, name, payload FROM es_events ORDER BY position")
            .expect("prepare");
        let mut rows = stmt.query([]).expect("query");
        let mut balances = BTreeMap::new();
        while let Some(row) = rows.next().expect("row") {
            let text = |i| row.get_ref(i).and_then(|v| Ok(v.as_str()?)).expect("text");
            let payload = row.get_ref(2).and_then(|v| Ok(v.as_blob()?)).expect("blob");
            fold_row(&mut balances, text(0), text(1), payload);
        }
        balances.values().sum::<u64>()
    };
    assert_eq!(rt.block_on(framework(&sqlite)), expected);
    assert_eq!(by_hand_sqlite(), expected);
    let mut g = c.benchmark_group("projection_20000_events_sqlite");
    g.sample_size(20);
    g.bench_function("framework", |b| b.iter(|| rt.block_on(framework(&sqlite))));
    g.bench_function("baseline", |b| b.iter(by_hand_sqlite));
    g.finish();

    let Some(pool) = rt.block_on(pg_pool()) else {
        eprintln!("*** skipping the PostgreSQL projection benchmark: nothing answers at ES_POSTGRES_URL");
        return;
    };
    rt.block_on(pg_clean(&pool));
    let schema = format!("es_bench_p{}", std::process::id());
    let pg = rt.block_on(pg_store(pool.clone(), &schema));
    rt.block_on(fill(&pg));
    let select = format!(r#"SELECT aggregate_id, name, payload FROM "{schema}".events ORDER BY position"#);
    let by_hand_pg = || async {
        let rows = sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
            .fetch_all(&pool)
            .await
            .expect("rows");
        let mut balances = BTreeMap::new();
        for row in &rows {
            fold_row(
                &mut balances,
                row.get::<&str, _>(0),
                row.get::<&str, _>(1),
                row.get::<&[u8], _>(2),
            );
        }
        balances.values().sum::<u64>()
    };
    assert_eq!(rt.block_on(framework(&pg)), expected);
    assert_eq!(rt.block_on(by_hand_pg()), expected);
    let mut g = c.benchmark_group("projection_20000_events_postgres");
    g.sample_size(10);
    g.bench_function("framework", |b| b.iter(|| rt.block_on(framework(&pg))));
    g.bench_function("baseline", |b| b.iter(|| rt.block_on(by_hand_pg())));
    g.finish();
}

criterion_group!(read_side, projections);
criterion_main!(read_side);
