//! SQLite beyond the conformance suite: crashes, reopening, schema versions,
//! undecodable rows.

use es_core::store::{AppendRequest, NewEvent};
use es_core::{Dispatcher, EventId, EventStore, ExpectedVersion, StoreError, StreamId, Timestamp};
use es_sqlite::SqliteStore;
use examples::bank::{AccountId, BankAccount, Deposit, OpenAccount};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_mid_batch_leaves_only_whole_batches() {
    let path = tests::sqlite::temp_dir().join("crash.db");
    let path_text = path.to_str().unwrap().to_owned();
    for round in 0..3 {
        tests::crash::run_and_kill(env!("CARGO_BIN_EXE_writer"), &["sqlite", &path_text], 300 + round * 100);
        // The next open recovers the file, and what is there is whole.
        let store = SqliteStore::open(&path).await.expect("reopen after a crash");
        let batches = tests::crash::check_whole_batches(&store).await;
        assert!(batches >= 3, "round {round}: only {batches} batches");
        // And the store takes new writes.
        let s = StreamId::new("crash", "after");
        store
            .append(AppendRequest {
                stream: &s,
                expected: ExpectedVersion::Any,
                events: &[NewEvent {
                    event_id: EventId::new(),
                    name: "after",
                    schema_version: 1,
                    payload: b"{}",
                }],
                metadata: b"",
                command_id: None,
                recorded_at: Timestamp::now(),
            })
            .await
            .expect("append after a crash");
    }
}

#[tokio::test]
async fn a_second_open_continues_where_the_first_stopped() {
    let path = tests::sqlite::temp_dir().join("bank.db");
    let account = AccountId::new("a");
    {
        let app = Dispatcher::new(SqliteStore::open(&path).await.unwrap());
        app.dispatch(OpenAccount {
            account: account.clone(),
            owner: "Ada".into(),
        })
        .await
        .unwrap();
        app.dispatch(Deposit {
            account: account.clone(),
            amount: 5,
        })
        .await
        .unwrap();
    }
    let app = Dispatcher::new(SqliteStore::open(&path).await.unwrap());
    let committed = app
        .dispatch(Deposit {
            account: account.clone(),
            amount: 7,
        })
        .await
        .unwrap();
    assert_eq!(committed.version, 3);
    assert_eq!(app.load::<BankAccount>(&account).await.unwrap().balance, 12);
}

#[tokio::test]
async fn a_file_from_a_newer_release_is_refused() {
    let path = tests::sqlite::temp_dir().join("newer.db");
    drop(SqliteStore::open(&path).await.unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", es_sqlite::SCHEMA_VERSION + 1)
            .unwrap();
    }
    match SqliteStore::open(&path).await {
        Err(StoreError::Corrupt { detail, .. }) => assert_eq!(
            detail,
            format!(
                "the file has schema version {}, written by a newer es-sqlite; this one reads up to version {}",
                es_sqlite::SCHEMA_VERSION + 1,
                es_sqlite::SCHEMA_VERSION
            )
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_undecodable_row_names_its_place_and_spares_other_streams() {
    let store = SqliteStore::memory().await.unwrap();
    tests::decoding::check_undecodable_row(store).await;
}

/// A file written by release 1 (command ids global) opens with its command
/// records kept, now scoped to their streams.
#[tokio::test]
async fn a_version_1_file_migrates_its_command_records() {
    let path = tests::sqlite::temp_dir().join("v1.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            r#"
            CREATE TABLE es_events (
                position INTEGER PRIMARY KEY AUTOINCREMENT, event_id BLOB NOT NULL UNIQUE,
                aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, version INTEGER NOT NULL,
                name TEXT NOT NULL, schema_version INTEGER NOT NULL, payload BLOB NOT NULL,
                metadata BLOB NOT NULL, recorded_at INTEGER NOT NULL,
                UNIQUE (aggregate_type, aggregate_id, version));
            CREATE TABLE es_commands (command_id TEXT PRIMARY KEY, aggregate_type TEXT NOT NULL,
                aggregate_id TEXT NOT NULL, first_version INTEGER NOT NULL, last_version INTEGER NOT NULL);
            CREATE TABLE es_snapshots (aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL,
                version INTEGER NOT NULL, schema_version INTEGER NOT NULL, payload BLOB NOT NULL,
                PRIMARY KEY (aggregate_type, aggregate_id));
            CREATE TABLE es_checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
            INSERT INTO es_events VALUES (1, x'00112233445566778899aabbccddeeff', 'bank_account', 'a', 1,
                'account.opened', 1, CAST('{"owner":"Ada"}' AS BLOB), x'', 0);
            INSERT INTO es_commands VALUES ('req-1', 'bank_account', 'a', 1, 1);
            PRAGMA user_version = 1;
            "#,
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let a = StreamId::new("bank_account", "a");
    let record = store.find_command(&a, "req-1").await.unwrap().unwrap();
    assert_eq!((record.first_version, record.last_version), (1, 1));
    assert!(
        store
            .find_command(&StreamId::new("bank_account", "b"), "req-1")
            .await
            .unwrap()
            .is_none()
    );
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, es_sqlite::SCHEMA_VERSION);
}

/// Rows that cannot be right (a packed cell cut short, a negative
/// version, a short event id, a packed cell of text, one of an unknown
/// format) are reported as corrupt, naming the event's position and
/// stream; nothing panics or wraps.
#[tokio::test]
async fn corrupt_rows_name_their_place() {
    use es_core::store::EventStoreExt;
    let path = tests::sqlite::temp_dir().join("corrupt.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let app = Dispatcher::new(store.clone());
    for id in ["a", "b", "c", "d", "e"] {
        app.dispatch(OpenAccount {
            account: AccountId::new(id),
            owner: "o".into(),
        })
        .await
        .unwrap();
    }
    let damage = [
        (
            "UPDATE es_events SET packed = substr(packed, 1, 26) WHERE aggregate_id = 'a'",
            "the event at position 1 (stream `bank_account/a`) has an unreadable `packed`: it ends after 26 bytes, \
             inside its name",
        ),
        (
            "UPDATE es_events SET version = -3 WHERE aggregate_id = 'b'",
            "the event at position 2 (stream `bank_account/b`) has version -3",
        ),
        (
            "UPDATE es_events SET event_id = x'01' WHERE aggregate_id = 'c'",
            "the event at position 3 (stream `bank_account/c`) has an id of 1 bytes, not 16",
        ),
        (
            "UPDATE es_events SET packed = 'text' WHERE aggregate_id = 'd'",
            "the event at position 4 (stream `bank_account/d`) has an unreadable `packed`: Invalid type",
        ),
        (
            "UPDATE es_events SET packed = CAST(x'07' || substr(packed, 2) AS BLOB) WHERE aggregate_id = 'e'",
            "the event at position 5 (stream `bank_account/e`) has an unreadable `packed`: it has format 7, and \
             this release reads format 1",
        ),
    ];
    let raw = rusqlite::Connection::open(&path).unwrap();
    for (i, (sql, expected)) in damage.iter().enumerate() {
        raw.execute_batch(sql).unwrap();
        match store.read_all_vec(i as u64, 1).await {
            Err(StoreError::Corrupt { store, detail }) => {
                assert_eq!(store, "sqlite");
                assert_eq!(&detail, expected);
            }
            other => panic!("{sql}: expected a corruption error, got {other:?}"),
        }
    }
    // Loading the aggregate names the stream and the version too.
    let fresh = Dispatcher::new(store.clone());
    match fresh.load::<BankAccount>(&AccountId::new("a")).await {
        Err(es_core::LoadError::Store(StoreError::Corrupt { detail, .. })) => {
            assert_eq!(
                detail,
                "version 1 of stream `bank_account/a` has an unreadable `packed`: it ends after 26 bytes, inside \
                 its name"
            )
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

/// A file of schema version 4 (each field in a cell of its own) reads the
/// same opened read-only, without a migration, and after its migration to
/// packed cells, which appends then write; a row the migration cannot read
/// keeps its cells, and reads of it still name what is wrong with it while
/// the rows around it read.
#[tokio::test]
async fn a_version_4_file_reads_the_same_before_and_after_packing() {
    use es_core::store::EventStoreExt;
    let path = tests::sqlite::temp_dir().join("v4.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let app = Dispatcher::new(store.clone());
    for id in ["a", "b", "c"] {
        app.dispatch(OpenAccount {
            account: AccountId::new(id),
            owner: "Ada".into(),
        })
        .await
        .unwrap();
        app.dispatch(Deposit {
            account: AccountId::new(id),
            amount: 5,
        })
        .await
        .unwrap();
    }
    let log = store.read_all_vec(0, 100).await.unwrap();
    let stream = store
        .read_stream_vec(&StreamId::new("bank_account", "b"), 1)
        .await
        .unwrap();
    drop((app, store));
    tests::sqlite::unpack(&path);
    let user_version = |path: &std::path::Path| -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    };
    assert_eq!(user_version(&path), 4);

    let read_only = SqliteStore::open_with(
        &path,
        es_sqlite::SqliteOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(read_only.read_all_vec(0, 100).await.unwrap(), log);
    assert_eq!(
        read_only
            .read_stream_vec(&StreamId::new("bank_account", "b"), 1)
            .await
            .unwrap(),
        stream
    );
    drop(read_only);
    assert_eq!(user_version(&path), 4, "a read-only open migrates nothing");

    // One row the migration cannot read: a payload of text.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("UPDATE es_events SET payload = 'text' WHERE aggregate_id = 'c' AND version = 2")
        .unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(user_version(&path), es_sqlite::SCHEMA_VERSION);
    let (packed, unpacked): (i64, i64) = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(packed), count(*) - count(packed) FROM es_events WHERE payload = x''",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (packed, unpacked),
        (5, 0),
        "every readable row is packed, its payload cell emptied"
    );
    assert_eq!(store.read_all_vec(0, 5).await.unwrap(), log[..5]);
    assert_eq!(
        store
            .read_stream_vec(&StreamId::new("bank_account", "b"), 1)
            .await
            .unwrap(),
        stream
    );
    match store.read_all_vec(5, 1).await {
        Err(StoreError::Corrupt { detail, .. }) => assert_eq!(
            detail,
            "the event at position 6 (stream `bank_account/c`) has an unreadable `payload`: Invalid type"
        ),
        other => panic!("expected a corruption error, got {other:?}"),
    }
    // Appends after the migration write packed cells, and read back.
    let app = Dispatcher::new(store.clone());
    app.dispatch(Deposit {
        account: AccountId::new("a"),
        amount: 7,
    })
    .await
    .unwrap();
    assert_eq!(app.load::<BankAccount>(&AccountId::new("a")).await.unwrap().balance, 12);
    let last = store.read_all_vec(6, 1).await.unwrap();
    assert_eq!(
        (last[0].position, last[0].version, last[0].payload.as_slice()),
        (7, 3, &br#"{"amount":7}"#[..])
    );
}

/// A row edited to a negative version fails the load, naming it.
#[tokio::test]
async fn a_row_at_a_negative_version_fails_the_load() {
    let store = tests::sqlite::temp_store().await;
    tests::decoding::check_negative_version(store, async |store: &SqliteStore| {
        store
            .with_connection(|conn| {
                conn.execute(
                    "UPDATE es_events SET version = -7 WHERE aggregate_id = 'edited' AND version = 3",
                    [],
                )
            })
            .unwrap();
    })
    .await;
}

/// Appends that queue while another process holds the write lock go to the
/// committer together, and each still gets its own exact outcome: commits,
/// a conflict, a second append to a stream of the same batch, an append at
/// any version with a command id, an empty batch, a reused event id, a
/// repeated command id; the refused ones write nothing and take nothing
/// from the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_committed_together_keep_their_own_outcomes() {
    use es_core::store::{AppendOutcome, EventStoreExt};
    use es_core::{AppendError, StoreError};
    let path = tests::sqlite::temp_dir().join("group.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let one = |s: &StreamId, payload: &'static [u8], command_id| {
        let stream = s.clone();
        let store = store.clone();
        async move {
            store
                .append(AppendRequest {
                    stream: &stream,
                    expected: ExpectedVersion::Any,
                    events: &[NewEvent {
                        event_id: EventId::new(),
                        name: "e",
                        schema_version: 1,
                        payload,
                    }],
                    metadata: b"",
                    command_id,
                    recorded_at: Timestamp::now(),
                })
                .await
                .unwrap()
        }
    };
    let stream = |id: &str| StreamId::new("g", id);
    one(&stream("conflict"), b"before", None).await;
    one(&stream("dup-cmd"), b"first", Some("c-1")).await;
    let taken = store.read_all_vec(0, 10).await.unwrap()[0].event_id;
    let before = store.last_position().await.unwrap();

    // Another process holds the write lock: every append below waits, and
    // all but the first (which waits alone, holding the store's writer)
    // queue for the committer, which then commits them in one transaction.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut tasks = Vec::new();
    for (id, expected, events, command, reuse) in [
        ("first", ExpectedVersion::NoStream, 1, None, None),
        ("new", ExpectedVersion::NoStream, 3, None, None),
        ("conflict", ExpectedVersion::Exact(7), 1, None, None),
        ("any", ExpectedVersion::Any, 2, Some("c-any"), None),
        ("empty", ExpectedVersion::Any, 0, None, None),
        ("reused", ExpectedVersion::Any, 1, None, Some(taken)),
        ("dup-cmd", ExpectedVersion::Any, 1, Some("c-1"), None),
        ("new", ExpectedVersion::NoStream, 1, None, None),
    ] {
        tasks.push(tests::spawn_append(&store, id, expected, events, command, reuse));
        // In this order: the second append to `new` comes after the first.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    blocker.execute_batch("COMMIT").unwrap();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let committed = |o: &Result<AppendOutcome, AppendError>| match o {
        Ok(AppendOutcome::Appended(a)) => (a.first_version, a.last_version, a.positions.len()),
        other => panic!("expected a commit, got {other:?}"),
    };
    assert_eq!(committed(&outcomes[0]), (1, 1, 1));
    assert_eq!(committed(&outcomes[1]), (1, 3, 3));
    match &outcomes[2] {
        Err(AppendError::Conflict(c)) => assert_eq!((c.actual, c.expected), (1, ExpectedVersion::Exact(7))),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(committed(&outcomes[3]), (1, 2, 2));
    assert_eq!(committed(&outcomes[4]), (1, 0, 0));
    match &outcomes[5] {
        Err(AppendError::Store(StoreError::DuplicateEventId { event_id, .. })) => assert_eq!(*event_id, taken),
        other => panic!("expected a reused event id, got {other:?}"),
    }
    match &outcomes[6] {
        Ok(AppendOutcome::Duplicate(record)) => assert_eq!((record.first_version, record.last_version), (1, 1)),
        other => panic!("expected the first command's record, got {other:?}"),
    }
    match &outcomes[7] {
        Err(AppendError::Conflict(c)) => assert_eq!((c.actual, c.expected), (3, ExpectedVersion::NoStream)),
        other => panic!("expected a conflict with the first append to `new`, got {other:?}"),
    }
    // Stored: 1 + 3 + 2 new events and nothing of the refused ones, in
    // order, and the command id of `any`.
    let read = store.read_all_vec(before, 100).await.unwrap();
    let mut stored: Vec<String> = read
        .iter()
        .map(|e| String::from_utf8(e.payload.clone()).unwrap())
        .collect();
    stored.sort();
    assert_eq!(stored, ["any-0", "any-1", "first-0", "new-0", "new-1", "new-2"]);
    assert!(read.windows(2).all(|w| w[0].position < w[1].position));
    let any = store.find_command(&stream("any"), "c-any").await.unwrap().unwrap();
    assert_eq!((any.first_version, any.last_version), (1, 2));
    assert_eq!(store.stream_version(&stream("dup-cmd")).await.unwrap(), 1);
}
