//! The audit trail: attacks on SQLite and PostgreSQL through SQL, each
//! caught at its place; forgetting personal data keeps every chain and
//! seal; proofs check offline and refuse a changed event.

use es_core::audit::{self, SealKey, Sealer, VerifyOptions};
use es_core::{Dispatcher, InMemoryStore};
use tests::audit::Raw;

mod sqlite {
    tests::audit_attacks!(|| async {
        let path = tests::sqlite::temp_dir().join("events.db");
        let store = es_sqlite::SqliteStore::open(&path).await.unwrap();
        Some((store, super::Raw::Sqlite(path)))
    });
}

mod postgres {
    tests::audit_attacks!(|| async {
        let store = tests::postgres::store().await?;
        let raw = super::Raw::Postgres(store.pool().clone(), store.schema().to_owned());
        Some((store, raw))
    });
}

/// Forgetting a subject erases a key; the sealed bytes stay as they were,
/// so every chain and seal still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_personal_data_keeps_every_chain_and_seal() {
    let path = tests::sqlite::temp_dir().join("events.db");
    let store = es_sqlite::SqliteStore::open(&path)
        .await
        .unwrap()
        .with_keys(tests::personal::keys());
    let app = Dispatcher::new(store.clone());
    let guest = tests::personal::guest();
    tests::personal::register(&app, &guest).await;
    let key = SealKey::generate();
    let public = key.public_key();
    let mut sealer = Sealer::new(store.clone(), key);
    let before = sealer.seal_now().await.unwrap().unwrap();
    app.forget(&guest).await.unwrap();
    sealer.seal_now().await.unwrap().unwrap();
    let options = VerifyOptions {
        trusted: vec![public],
        head: Some(before),
        ..VerifyOptions::default()
    };
    let report = audit::verify(&store, &options, |_, _| {}).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.seals, 2);
    assert_eq!(report.unsealed, 1, "the last seal itself");
}

/// A proof checks with the public key alone; a changed event, index, path
/// or key does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_checks_offline_and_a_changed_one_does_not() {
    let store = InMemoryStore::new();
    let filled = tests::audit::fill(&store).await;
    let target = filled.event("b", 3);
    let proof = audit::prove(&store, target.position, None).await.unwrap();
    let key = filled.key.public_key();
    assert_eq!(audit::check_proof(&proof, &key).unwrap(), target.link);
    let json = serde_json::to_string(&proof).unwrap();
    let again: audit::InclusionProof = serde_json::from_str(&json).unwrap();
    assert_eq!(audit::check_proof(&again, &key).unwrap(), target.link);

    let mut changed = proof.clone();
    changed.event.payload = changed.event.payload.replacen("3", "4", 1);
    assert!(audit::check_proof(&changed, &key).is_err());
    let mut moved = proof.clone();
    moved.index += 1;
    assert!(audit::check_proof(&moved, &key).is_err());
    let mut cut = proof.clone();
    cut.path.pop();
    assert!(audit::check_proof(&cut, &key).is_err());
    let mut other_time = proof.clone();
    other_time.event.recorded_at += 1;
    assert!(audit::check_proof(&other_time, &key).is_err());
    assert!(audit::check_proof(&proof, &SealKey::generate().public_key()).is_err());
    // An event after the last seal has no proof yet.
    let late = filled.log.last().unwrap();
    let err = audit::prove(&store, late.position, None).await.unwrap_err().to_string();
    assert!(err.contains("newer seal"), "{err}");
}

/// Two sealers racing on one store make one chain of seals.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_sealers_make_one_chain_of_seals() {
    let store = InMemoryStore::new();
    let filled = tests::audit::fill(&store).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (store, key) = (store.clone(), SealKey::from_base64(&filled.key.to_base64()).unwrap());
        tasks.push(tokio::spawn(async move {
            let mut sealer = Sealer::new(store.clone(), key).every_events(1);
            for i in 0..5_u64 {
                Dispatcher::new(store.clone())
                    .dispatch(examples::bank::Deposit {
                        account: examples::bank::AccountId("a".to_owned()),
                        amount: i + 1,
                    })
                    .await
                    .unwrap();
                sealer.seal_now().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let options = VerifyOptions {
        trusted: vec![filled.key.public_key()],
        head: Some(filled.head.clone()),
        ..VerifyOptions::default()
    };
    let report = audit::verify(&store, &options, |_, _| {}).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.seals > 2, "{}", report.seals);
}

/// A running sealer seals every N events, and within T when fewer come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_sealer_seals_by_count_and_by_time() {
    let store = InMemoryStore::new();
    let key = SealKey::generate();
    let sealer = Sealer::new(store.clone(), key)
        .every_events(5)
        .every(std::time::Duration::from_millis(300));
    let task = tokio::spawn(sealer.run());
    let app = Dispatcher::new(store.clone());
    app.dispatch(examples::bank::OpenAccount {
        account: examples::bank::AccountId("x".to_owned()),
        owner: "x".to_owned(),
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, seal) = audit::latest_seal(&store).await.unwrap();
        if let Some(seal) = seal {
            assert_eq!(seal.size, 1, "the one event, sealed by time");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no seal within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    task.abort();
    let report = audit::verify(&store, &VerifyOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// A store from before chaining (schema 3: no `link` column) is chained
/// by its migration, in log order, to the very links appends make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_chains_events_stored_before() {
    use es_core::store::EventStoreExt;
    let path = tests::sqlite::temp_dir().join("events.db");
    let store = es_sqlite::SqliteStore::open(&path).await.unwrap();
    let filled = tests::audit::fill(&store).await;
    drop(store);
    tests::sqlite::unpack(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("ALTER TABLE es_events DROP COLUMN link; PRAGMA user_version = 3;")
        .unwrap();
    drop(conn);
    let store = es_sqlite::SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.read_all_vec(0, 1_000).await.unwrap(), filled.log);
    let report = tests::audit::check(&store, &filled, true).await;
    assert!(report.is_clean(), "{:?}", report.problems);

    let Some(pg) = tests::postgres::store().await else {
        return;
    };
    let filled = tests::audit::fill(&pg).await;
    let s = pg.schema().to_owned();
    for sql in [
        format!(r#"ALTER TABLE "{s}".events DROP COLUMN link"#),
        format!(r#"UPDATE "{s}".schema_version SET version = 3"#),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pg.pool()).await.unwrap();
    }
    let again = es_postgres::PostgresStore::from_pool_with(
        pg.pool().clone(),
        es_postgres::PostgresOptions {
            schema: s,
            ..es_postgres::PostgresOptions::default()
        },
    )
    .unwrap();
    again.migrate().await.unwrap();
    assert_eq!(again.read_all_vec(0, 1_000).await.unwrap(), filled.log);
    let report = tests::audit::check(&again, &filled, true).await;
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// Two PostgreSQL stores on one schema (two processes) writing one stream
/// in turns and at once: each one's remembered head goes stale, the append
/// statement refuses links computed from it and reports the head, and the
/// chain comes out whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_writers_keep_one_chain() {
    use es_core::store::{AppendRequest, EventStoreExt, ExpectedVersion, Heads, NewEvent};
    use es_core::{EventId, EventStore, StreamId, Timestamp};
    let Some(first) = tests::postgres::store().await else {
        return;
    };
    let options = es_postgres::PostgresOptions {
        schema: first.schema().to_owned(),
        committers: 1,
        ..es_postgres::PostgresOptions::default()
    };
    let second = es_postgres::PostgresStore::from_pool_with(first.pool().clone(), options).unwrap();
    let stream = StreamId::new("race", "one");
    let append = |store: es_postgres::PostgresStore, expected, i: u32| {
        let stream = stream.clone();
        async move {
            let payload = format!("{{\"i\":{i}}}");
            store
                .append(AppendRequest {
                    stream: &stream,
                    expected,
                    events: &[NewEvent {
                        event_id: EventId::new(),
                        name: "e",
                        schema_version: 1,
                        payload: payload.as_bytes(),
                    }],
                    metadata: b"",
                    command_id: None,
                    recorded_at: Timestamp::now(),
                })
                .await
                .unwrap()
        }
    };
    // In turns, at exact versions: each store's head is stale every time.
    for i in 0..10_u32 {
        let store = if i % 2 == 0 { first.clone() } else { second.clone() };
        append(store, ExpectedVersion::Exact(u64::from(i)), i).await;
    }
    // At once, at any version, through group commit.
    let mut tasks = Vec::new();
    for i in 10..50_u32 {
        let store = if i % 2 == 0 { first.clone() } else { second.clone() };
        tasks.push(tokio::spawn(append(store, ExpectedVersion::Any, i)));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let log = first.read_all_vec(0, 1_000).await.unwrap();
    assert_eq!(log.len(), 50);
    let mut heads = Heads::default();
    for e in &log {
        assert_eq!(e.link, heads.advance(&e.as_recorded()), "version {}", e.version);
    }
    let report = audit::verify(&second, &VerifyOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}
