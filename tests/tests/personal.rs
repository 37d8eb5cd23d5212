//! Personal data: sealed on every store, forgotten for good, and what is
//! left of it in the storage itself after a forget.

use std::ops::ControlFlow;

use es_core::personal::{MasterKey, StaticKeys, StoredKey};
use es_core::store::{ContextFields, RecordedEvent};
use es_core::{Dispatcher, EventStore, EventStoreExt, InMemoryStore, LoadError, StoreError, StreamId};
use examples::hotel::{Guest, GuestRegistered};
use tests::personal::{EMAIL, NAME, contains, guest, keys, lifecycle, register};

tests::on_every_store! {
    registered_booked_forgotten_loaded_replayed => |store| lifecycle(store.with_keys(keys())),
}

/// The wrapped key the store holds for `subject`.
async fn wrapped_key<S: EventStore>(store: &S, subject: &str) -> Vec<u8> {
    match store.keyring().unwrap().backend().read_key(subject).await.unwrap() {
        Some(StoredKey::Wrapped { wrapped, .. }) => wrapped,
        other => panic!("no key for {subject}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_names_the_subjects_key() {
    let store = InMemoryStore::new().with_keys(keys());
    let id = guest();
    register(&Dispatcher::new(store.clone()), &id).await;
    let other = StaticKeys::new(MasterKey::new("test-master-1", [0x11; 32]), []);
    let wrong = store.clone().with_keys(other);
    let Err(LoadError::Store(StoreError::Keys { detail, .. })) = Dispatcher::new(wrong).load::<Guest>(&id).await else {
        panic!("a wrong master key loaded");
    };
    assert!(detail.contains(&format!("subject {id:?}")), "{detail}");
    assert!(
        detail.contains("does not unwrap with master key \"test-master-1\""),
        "{detail}"
    );

    // A master key the provider does not have at all is named too.
    let unknown = store
        .clone()
        .with_keys(StaticKeys::new(MasterKey::new("test-master-2", [0x5a; 32]), []));
    let Err(LoadError::Store(StoreError::Keys { detail, .. })) = Dispatcher::new(unknown).load::<Guest>(&id).await
    else {
        panic!("an unknown master key loaded");
    };
    assert!(detail.contains("which the key provider does not have"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_of_a_subject_never_forgotten_is_corruption() {
    let sealing = InMemoryStore::new().with_keys(keys());
    let id = guest();
    register(&Dispatcher::new(sealing.clone()), &id).await;
    // The same events in a store whose key table lost the row.
    let copy = InMemoryStore::new().with_keys(keys());
    for e in sealing.read_all_vec(0, 100).await.unwrap() {
        let event = es_core::store::NewEvent {
            event_id: e.event_id,
            name: &e.name,
            schema_version: e.schema_version,
            payload: &e.payload,
        };
        copy.append(es_core::store::AppendRequest {
            stream: &e.stream,
            expected: es_core::ExpectedVersion::Any,
            events: std::slice::from_ref(&event),
            metadata: &e.metadata,
            command_id: None,
            recorded_at: e.recorded_at,
        })
        .await
        .unwrap();
    }
    let Err(LoadError::Store(StoreError::Corrupt { detail, .. })) = Dispatcher::new(copy).load::<Guest>(&id).await
    else {
        panic!("a load without the key succeeded");
    };
    assert!(
        detail.contains(&format!("no data key for subject {id:?}, which was never forgotten")),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_moved_value_fails_to_decrypt_and_names_the_event() {
    let path = tests::sqlite::temp_dir().join("tampered.db");
    let store = es_sqlite::SqliteStore::open(&path).await.unwrap().with_keys(keys());
    let app = Dispatcher::new(store.clone());
    let (a, b) = (guest(), guest());
    register(&app, &a).await;
    register(&app, &b).await;
    let payload_of = |id: &str| {
        let store = store.clone();
        let id = id.to_owned();
        async move { tests::personal::payloads(&store, &id).await.remove(0) }
    };
    let json = |bytes: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
    let original_a = json(payload_of(&a).await);
    let original_b = json(payload_of(&b).await);

    let cases: Vec<(&str, serde_json::Value)> = vec![
        // One character of the sealed name's tag changed (not the last
        // one: that may carry unused bits, and another value there can be
        // base64 that does not decode at all).
        ("altered", {
            let mut v = original_a.clone();
            let mut name = v["name"].as_str().unwrap().to_owned();
            let at = name.len() - 10;
            let flipped = if &name[at..=at] == "A" { "B" } else { "A" };
            name.replace_range(at..=at, flipped);
            v["name"] = name.into();
            v
        }),
        // The name and the address swapped.
        ("swapped", {
            let mut v = original_a.clone();
            let name = v["name"].clone();
            v["name"] = v["email"].clone();
            v["email"] = name;
            v
        }),
        // Guest b's sealed name moved into guest a's event.
        ("moved", {
            let mut v = original_a.clone();
            v["name"] = original_b["name"].clone();
            v
        }),
    ];
    for (what, tampered) in cases {
        let position: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT position FROM es_events WHERE aggregate_id = ?1 AND version = 1",
                [&a],
                |r| r.get(0),
            )
            .unwrap();
        tests::sqlite::set_payload(&path, position as u64, &serde_json::to_vec(&tampered).unwrap());
        let Err(LoadError::Decode(error)) = Dispatcher::new(store.clone()).load::<Guest>(&a).await else {
            panic!("{what}: a tampered event loaded");
        };
        assert_eq!(error.stream, StreamId::new("guest", &a), "{what}");
        assert_eq!(error.stream_version, 1, "{what}");
        assert_eq!(error.event_name, "guest.registered", "{what}");
        let message = error.to_string();
        assert!(
            message.contains("does not decrypt") || message.contains("was sealed as field"),
            "{what}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_keys_refuses_personal_data_and_says_how() {
    let store = InMemoryStore::new();
    let app = Dispatcher::new(store);
    let Err(error) = app
        .dispatch(examples::hotel::RegisterGuest {
            guest_id: "g".into(),
            name: NAME.into(),
            email: EMAIL.into(),
        })
        .await
    else {
        panic!("stored personal data without keys");
    };
    let message = error.to_string();
    assert!(message.contains("`guest` hold personal data"), "{message}");
    assert!(message.contains(".with_keys(provider)"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_store_a_personal_value_is_plain_json() {
    let event = GuestRegistered {
        guest_id: "g".into(),
        name: NAME.to_owned().into(),
        email: es_core::personal::Personal::forgotten(),
    };
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json, serde_json::json!({"guest_id": "g", "name": NAME, "email": null}));
    let back: GuestRegistered = serde_json::from_value(json).unwrap();
    assert_eq!(back, event);
    assert_eq!(format!("{:?}", back.name), "Personal(..)");
    assert_eq!(format!("{:?}", back.email), "Personal(<forgotten>)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_rewraps_every_key_and_leaves_events_alone() {
    let store = InMemoryStore::new().with_keys(keys());
    let app = Dispatcher::new(store.clone());
    let ids: Vec<String> = (0..3).map(|_| guest()).collect();
    for id in &ids {
        register(&app, id).await;
    }
    let events_before = store.read_all_vec(0, 1000).await.unwrap();
    let new = MasterKey::new("test-master-2", [0x77; 32]);
    let rotated = store
        .clone()
        .with_keys(StaticKeys::new(new.clone(), [tests::personal::master()]));
    assert_eq!(rotated.keyring().unwrap().rotate().await.unwrap(), 3);
    assert_eq!(
        rotated.keyring().unwrap().rotate().await.unwrap(),
        0,
        "all on the new key"
    );
    assert_eq!(store.read_all_vec(0, 1000).await.unwrap(), events_before);
    // Only the new master key is needed now.
    let only_new = store.clone().with_keys(StaticKeys::new(new, []));
    let guest = Dispatcher::new(only_new).load::<Guest>(&ids[0]).await.unwrap();
    assert_eq!(guest.name.unwrap().get().map(String::as_str), Some(NAME));
}

/// The bytes of every file whose name starts with `prefix` in `dir`.
fn files_starting(dir: &std::path::Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_forget_the_sqlite_file_and_its_log_hold_neither_value_nor_key() {
    let dir = tests::sqlite::temp_dir();
    let path = dir.join("personal.db");
    let store = es_sqlite::SqliteStore::open(&path).await.unwrap().with_keys(keys());
    let app = Dispatcher::new(store.clone());
    let id = guest();
    register(&app, &id).await;
    let key = wrapped_key(&store, &id).await;
    // Before: the key is in the files (the log or the database), the
    // values are not, anywhere.
    let before = files_starting(&dir, "personal.db");
    assert!(
        before.iter().any(|(_, bytes)| contains(bytes, &key)),
        "the key was never written"
    );
    for (file, bytes) in &before {
        assert!(!contains(bytes, NAME.as_bytes()), "{file} holds the name in clear");
        assert!(!contains(bytes, EMAIL.as_bytes()), "{file} holds the address in clear");
    }
    app.forget(id.clone()).await.unwrap();
    let after = files_starting(&dir, "personal.db");
    for (file, bytes) in &after {
        assert!(!contains(bytes, &key), "{file} still holds the forgotten key");
        assert!(!contains(bytes, NAME.as_bytes()), "{file} holds the name in clear");
    }
    let guest = Dispatcher::new(store).load::<Guest>(&id).await.unwrap();
    assert!(guest.name.unwrap().is_forgotten());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_forget_a_dump_of_postgres_holds_neither_value_nor_key() {
    // A server of the test's own: a transaction another client keeps open
    // (CI keeps one open on the shared server for the whole run) would
    // rightly keep the dead row version that held the key until it ends.
    let Some(server) = tests::postgres::PrivateServer::start() else {
        return;
    };
    let store = es_postgres::PostgresStore::connect(&server.url).await.unwrap();
    store.migrate().await.unwrap();
    let store = store.with_keys(keys());
    let app = Dispatcher::new(store.clone());
    // The forgotten guest's key row sits among others on its page.
    let id = guest();
    for i in 0..41 {
        if i == 20 {
            register(&app, &id).await;
        } else {
            register(&app, &guest()).await;
        }
    }
    let key = wrapped_key(&store, &id).await;
    let dump = |store: es_postgres::PostgresStore| async move {
        // Every row of every table of the store's schema, as text, the way
        // pg_dump writes them (bytea as hex).
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1")
                .bind(store.schema())
                .fetch_all(store.pool())
                .await
                .unwrap();
        let mut out = String::new();
        for table in tables {
            let sql = format!(r#"SELECT t::text FROM "{}"."{table}" t"#, store.schema());
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(store.pool())
                .await
                .unwrap();
            out.push_str(&rows.join("\n"));
        }
        out
    };
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    // The key table's own file, as the server wrote it to disk.
    let table_file = |store: es_postgres::PostgresStore| async move {
        sqlx::query("CHECKPOINT").execute(store.pool()).await.unwrap();
        let file: Vec<u8> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            r#"SELECT pg_read_binary_file(pg_relation_filepath('"{}".personal_keys'))"#,
            store.schema()
        )))
        .fetch_one(store.pool())
        .await
        .unwrap();
        file
    };
    assert!(
        contains(&table_file(store.clone()).await, &key),
        "the key is not in the table's file"
    );
    let before = dump(store.clone()).await;
    assert!(before.contains(&hex), "the key is not in the dump");
    assert!(
        !before.contains(NAME) && !before.contains(EMAIL),
        "a value is stored in clear"
    );
    app.forget(id.clone()).await.unwrap();
    let after = dump(store.clone()).await;
    assert!(!after.contains(&hex), "the dump still holds the forgotten key");
    assert!(!after.contains(NAME) && !after.contains(EMAIL));
    // The table's own pages: the dead row version that held the key was
    // vacuumed away.
    assert!(
        !contains(&table_file(store.clone()).await, &key),
        "the key table's file still holds the forgotten key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_the_raw_events_finds_only_sealed_values() {
    let store = InMemoryStore::new().with_keys(keys());
    let id = guest();
    register(&Dispatcher::new(store.clone()), &id).await;
    let mut seen = 0;
    store
        .read_all(0, 100, ContextFields::ALL, |e: &RecordedEvent<'_>| {
            seen += 1;
            assert!(!contains(e.payload, NAME.as_bytes()));
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(seen, 2);
}

/// Every file below `dir`, with its bytes.
fn files_below(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            files_below(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_forget_the_jetstream_files_hold_neither_value_nor_key() {
    let Some(store) = tests::nats::store_with(es_nats::NatsOptions {
        storage: es_nats::Storage::File,
        ..es_nats::NatsOptions::default()
    })
    .await
    else {
        return;
    };
    let dir = tests::nats::store_dir().expect("the test server's files");
    let store = store.with_keys(keys());
    let app = Dispatcher::new(store.clone());
    let id = guest();
    register(&app, &id).await;
    // The key record holds the wrapped key in hex.
    let key: String = wrapped_key(&store, &id)
        .await
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let holding = |needle: &[u8]| {
        let mut files = Vec::new();
        files_below(&dir, &mut files);
        files
            .into_iter()
            .filter(|(_, bytes)| contains(bytes, needle))
            .map(|(path, _)| path)
            .collect::<Vec<_>>()
    };
    // The server writes its blocks a moment after it acknowledges.
    let mut waited = 0;
    while holding(key.as_bytes()).is_empty() && waited < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    assert!(
        !holding(key.as_bytes()).is_empty(),
        "the key never reached the store's files"
    );
    assert!(holding(NAME.as_bytes()).is_empty(), "the name is in the files in clear");
    assert!(
        holding(EMAIL.as_bytes()).is_empty(),
        "the address is in the files in clear"
    );
    app.forget(id.clone()).await.unwrap();
    let mut waited = 0;
    while !holding(key.as_bytes()).is_empty() && waited < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(
        holding(key.as_bytes()),
        Vec::<std::path::PathBuf>::new(),
        "files still holding the forgotten key"
    );
    let guest = Dispatcher::new(store).load::<Guest>(&id).await.unwrap();
    assert!(guest.name.unwrap().is_forgotten());
}
