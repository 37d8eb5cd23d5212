//! The audit trail's costs, each beside a baseline in the same run:
//!
//! - `link_1000_events`: the links of 1,000 deposits (SHA-256 over the
//!   framed stored form, chained) beside SHA-256 of the same bytes with no
//!   framing ("baseline", the least any chain over them costs) and BLAKE3 of
//!   them ("baseline_blake3", the hash we did not choose).
//! - `cold_load_1000_verified`: loading an account of 1,000 events with
//!   `verify_chains(true)` beside the same load without it.
//! - `verify_1m_sqlite`: `audit::verify` over a SQLite store of 1,000,000
//!   events (1,000 streams, sealed every 100,000) beside reading the same
//!   log with every field and doing nothing with it: the ratio says how
//!   much of verification is reading.

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::Duration;

use benches::stores::runtime;
use benches::workloads::{cold_load_framework, stored_account};
use criterion::{Criterion, criterion_group, criterion_main};
use es_core::audit::{self, SealKey, Sealer, VerifyOptions};
use es_core::store::{AppendRequest, ContextFields, Link, NewEvent, RecordedEvent};
use es_core::{Dispatcher, EventId, EventStore, ExpectedVersion, Json, StreamId, Timestamp};

/// 1,000 deposits as stored: stream, id, time, metadata, payload.
fn deposits() -> Vec<(StreamId, EventId, Vec<u8>)> {
    (0..1_000)
        .map(|i| {
            (
                StreamId::new("bank_account", format!("acct-{}", i % 10)),
                EventId::new(),
                format!(r#"{{"amount":{}}}"#, 100 + i).into_bytes(),
            )
        })
        .collect()
}

const METADATA: &[u8] = br#"{"correlation_id":"0192f0a4-5c1e-7b3a-9d2e-4f6a8b0c1d2e"}"#;

fn link_1000_events(c: &mut Criterion) {
    let events = deposits();
    let at = Timestamp::now();
    let mut g = c.benchmark_group("link_1000_events");
    g.bench_function("framework", |b| {
        b.iter(|| {
            let mut head = Link::GENESIS;
            for (i, (stream, id, payload)) in events.iter().enumerate() {
                head = RecordedEvent {
                    event_id: *id,
                    aggregate_type: stream.aggregate_type(),
                    aggregate_id: stream.aggregate_id(),
                    version: i as u64 + 1,
                    position: i as u64 + 1,
                    name: "bank.MoneyDeposited",
                    schema_version: 1,
                    payload,
                    metadata: METADATA,
                    recorded_at: at,
                    link: Link::GENESIS,
                }
                .compute_link(&head);
            }
            black_box(head)
        })
    });
    let flat = |stream: &StreamId, id: &EventId, payload: &[u8], previous: &[u8]| {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(previous);
        bytes.extend_from_slice(stream.aggregate_type().as_bytes());
        bytes.extend_from_slice(stream.aggregate_id().as_bytes());
        bytes.extend_from_slice(b"bank.MoneyDeposited");
        bytes.extend_from_slice(id.as_uuid().as_bytes());
        bytes.extend_from_slice(METADATA);
        bytes.extend_from_slice(payload);
        bytes
    };
    g.bench_function("baseline", |b| {
        use sha2::Digest as _;
        b.iter(|| {
            let mut head = [0_u8; 32];
            for (stream, id, payload) in &events {
                head = sha2::Sha256::digest(flat(stream, id, payload, &head)).into();
            }
            black_box(head)
        })
    });
    g.bench_function("baseline_blake3", |b| {
        b.iter(|| {
            let mut head = [0_u8; 32];
            for (stream, id, payload) in &events {
                head = *blake3::hash(&flat(stream, id, payload, &head)).as_bytes();
            }
            black_box(head)
        })
    });
    g.finish();
}

fn cold_load_1000_verified(c: &mut Criterion) {
    let rt = runtime();
    let store = rt.block_on(stored_account(Json, 1_000));
    let verified = Dispatcher::builder(store.clone())
        .cache_capacity(0)
        .verify_chains(true)
        .build();
    let plain = Dispatcher::builder(store).cache_capacity(0).build();
    assert_eq!(
        rt.block_on(cold_load_framework(&verified)),
        rt.block_on(cold_load_framework(&plain))
    );
    let mut g = c.benchmark_group("cold_load_1000_verified");
    g.sample_size(20);
    g.bench_function("framework", |b| b.iter(|| rt.block_on(cold_load_framework(&verified))));
    g.bench_function("baseline", |b| b.iter(|| rt.block_on(cold_load_framework(&plain))));
    g.finish();
}

/// A SQLite store of `n` events on 1,000 streams, sealed every 100,000.
async fn million(n: usize) -> es_sqlite::SqliteStore {
    let dir = std::env::temp_dir().join(format!("es-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join("million.db");
    let _ = std::fs::remove_file(&path);
    let store = es_sqlite::SqliteStore::open(&path).await.expect("open");
    let mut sealer = Sealer::new(store.clone(), SealKey::generate());
    let payloads: Vec<Vec<u8>> = (0..1_000)
        .map(|i| format!(r#"{{"amount":{}}}"#, 100 + i).into_bytes())
        .collect();
    let per_batch = 100;
    let mut written = 0;
    let mut round = 0_u64;
    while written < n {
        for s in 0..1_000 {
            let stream = StreamId::new("bank_account", format!("acct-{s}"));
            let batch: Vec<NewEvent<'_>> = (0..per_batch)
                .map(|i| NewEvent {
                    event_id: EventId::new(),
                    name: "bank.MoneyDeposited",
                    schema_version: 1,
                    payload: &payloads[(s + i) % payloads.len()],
                })
                .collect();
            store
                .append(AppendRequest {
                    stream: &stream,
                    expected: ExpectedVersion::Exact(round * per_batch as u64),
                    events: &batch,
                    metadata: METADATA,
                    command_id: None,
                    recorded_at: Timestamp::now(),
                })
                .await
                .expect("append");
            written += per_batch;
        }
        round += 1;
        sealer.seal_now().await.expect("seal");
    }
    store
}

fn verify_1m_sqlite(c: &mut Criterion) {
    let rt = runtime();
    let n = 1_000_000;
    let store = rt.block_on(million(n));
    let report = rt
        .block_on(audit::verify(&store, &VerifyOptions::default(), |_, _| {}))
        .expect("verify");
    assert!(report.is_clean() && report.events >= n as u64, "{:?}", report.problems);
    let read_all = || async {
        let mut after = 0;
        let mut bytes = 0_usize;
        loop {
            let mut read = 0;
            store
                .read_all(after, 4_096, ContextFields::ALL, |e: &RecordedEvent<'_>| {
                    read += 1;
                    after = e.position;
                    bytes += e.payload.len() + e.metadata.len();
                    ControlFlow::Continue(())
                })
                .await
                .expect("read");
            if read == 0 {
                return bytes;
            }
        }
    };
    let mut g = c.benchmark_group("verify_1m_sqlite");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    g.bench_function("framework", |b| {
        b.iter(|| {
            rt.block_on(audit::verify(&store, &VerifyOptions::default(), |_, _| {}))
                .expect("verify")
                .events
        })
    });
    g.bench_function("baseline", |b| b.iter(|| rt.block_on(read_all())));
    g.finish();
}

criterion_group!(benches, link_1000_events, cold_load_1000_verified, verify_1m_sqlite);
criterion_main!(benches);
