//! PostgreSQL beyond the conformance suite: the log in commit order, crashes,
//! a database that goes away and comes back, undecodable rows. Each test
//! works in its own schema.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use es_core::store::{AppendRequest, EventStoreExt, NewEvent};
use es_core::{
    AppendError, DispatchError, Dispatcher, EventId, EventStore, ExpectedVersion, StoreError, StreamId, Timestamp,
};
use es_postgres::{PostgresOptions, PostgresStore};
use examples::bank::{AccountId, BankAccount, Deposit, OpenAccount};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A request appending one event tagged `tag` (whose payload it borrows
/// until the end of the statement it is written in).
macro_rules! request {
    ($stream:expr, $tag:expr) => {
        AppendRequest {
            stream: $stream,
            expected: ExpectedVersion::Any,
            events: &[NewEvent {
                event_id: EventId::new(),
                name: "e",
                schema_version: 1,
                payload: AsRef::<[u8]>::as_ref($tag),
            }],
            metadata: b"",
            command_id: None,
            recorded_at: Timestamp::now(),
        }
    };
}

fn tags(events: &[es_core::store::StoredEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8(e.payload.clone()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_skips_an_append_that_commits_late() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    let s = StreamId::new("t", "1");
    store.append(request!(&s, "first")).await.unwrap();

    // An append draws its position, then its transaction stays open...
    let mut open = store.pool().begin().await.unwrap();
    store
        .append_with(&mut open, request!(&StreamId::new("t", "late"), "late"))
        .await
        .unwrap();
    // ...while others commit after it.
    store.append(request!(&s, "after-1")).await.unwrap();
    store.append(request!(&s, "after-2")).await.unwrap();

    // A reader sees the events before the open one, and nothing past it:
    // reading past it would skip it for good once it commits.
    let seen = store.read_all_vec(0, 100).await.unwrap();
    assert_eq!(tags(&seen), ["first"]);
    let checkpoint = seen[0].position;
    let again = store.read_all_vec(checkpoint, 100).await.unwrap();
    assert!(again.is_empty(), "read past an open append: {:?}", tags(&again));

    open.commit().await.unwrap();
    let rest = store.read_all_vec(checkpoint, 100).await.unwrap();
    assert_eq!(tags(&rest), ["late", "after-1", "after-2"]);
    assert!(rest.windows(2).all(|w| w[0].position < w[1].position));
    let checkpoint = rest[2].position;

    // A rolled-back append leaves a hole that readers pass, once it is gone.
    let mut doomed = store.pool().begin().await.unwrap();
    // (Another stream: an append to the same stream would wait on its lock.)
    store
        .append_with(&mut doomed, request!(&StreamId::new("t", "doomed"), "never"))
        .await
        .unwrap();
    store.append(request!(&s, "after-3")).await.unwrap();
    assert!(store.read_all_vec(checkpoint, 100).await.unwrap().is_empty());
    doomed.rollback().await.unwrap();
    assert_eq!(tags(&store.read_all_vec(checkpoint, 100).await.unwrap()), ["after-3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_following_busy_writers_sees_every_event_once_in_order() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    let writers = 8;
    let each = 40;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let page = store.read_all_vec(after, 7).await.unwrap();
                if let Some(last) = page.last() {
                    after = last.position;
                }
                let empty = page.is_empty();
                seen.extend(page);
                if finished && empty {
                    return seen;
                }
            }
        })
    };
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                let s = StreamId::new("busy", format!("{}", (w + i) % 3));
                loop {
                    match store.append(request!(&s, &format!("{w}-{i}"))).await {
                        Ok(_) => break,
                        Err(AppendError::Conflict(_)) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert_eq!(seen.len(), writers * each, "the reader missed or repeated events");
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position));
    let all = store.read_all_vec(0, 10_000).await.unwrap();
    let ids: Vec<_> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(seen.iter().map(|e| e.event_id).collect::<Vec<_>>(), ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_mid_batch_leaves_only_whole_batches() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    let url = tests::postgres::url();
    for round in 0..3 {
        tests::crash::run_and_kill(
            env!("CARGO_BIN_EXE_writer"),
            &["postgres", &url, store.schema()],
            300 + round * 100,
        );
        let batches = tests::crash::check_whole_batches(&store).await;
        assert!(batches >= 3, "round {round}: only {batches} batches");
        store
            .append(request!(&StreamId::new("crash", "after"), "x"))
            .await
            .unwrap();
        // No append of the dead writer is left running: the log reads through.
        let all = store.read_all_vec(0, 100_000).await.unwrap();
        assert_eq!(
            all.len() as u64,
            store.last_position().await.unwrap().min(all.len() as u64)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_row_names_its_place_and_spares_other_streams() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    tests::decoding::check_undecodable_row(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_name_is_checked_and_a_newer_schema_refused() {
    let Some(pool) = tests::postgres::pool().await else {
        return;
    };
    let bad = PostgresOptions {
        schema: "es; DROP TABLE x".into(),
        ..Default::default()
    };
    let err = PostgresStore::from_pool_with(pool.clone(), bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a usable schema name"), "{err}");

    let schema = tests::postgres::schema_name();
    let store = PostgresStore::from_pool_with(
        pool.clone(),
        PostgresOptions {
            schema: schema.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap(); // idempotent

    // A schema at version 1 (command ids global) keeps its command records,
    // now scoped to their streams.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r#"ALTER TABLE "{schema}".commands DROP CONSTRAINT commands_pkey;
           ALTER TABLE "{schema}".commands ADD CONSTRAINT commands_pkey PRIMARY KEY (command_id);
           ALTER TABLE "{schema}".checkpoints DROP COLUMN epoch;
           ALTER TABLE "{schema}".snapshots DROP COLUMN fingerprint;
           INSERT INTO "{schema}".commands VALUES ('req-1', 'bank_account', 'a', 1, 1);
           UPDATE "{schema}".schema_version SET version = 1"#
    )))
    .execute(&pool)
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let record = store
        .find_command(&StreamId::new("bank_account", "a"), "req-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((record.first_version, record.last_version), (1, 1));
    let key: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        r#"SELECT a.attname::TEXT FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
           WHERE i.indrelid = '"{schema}".commands'::regclass AND i.indisprimary ORDER BY a.attname"#
    )))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(key, ["aggregate_id", "aggregate_type", "command_id"]);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"UPDATE "{schema}".schema_version SET version = version + 1"#
    )))
    .execute(&pool)
    .await
    .unwrap();
    match store.migrate().await {
        Err(StoreError::Corrupt { detail, .. }) => {
            assert!(detail.contains("written by a newer es-postgres"), "{detail}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A TCP proxy to PostgreSQL that the test can cut and restore.
struct Proxy {
    port: u16,
    upstream: String,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let mut proxy = Proxy {
            port: 0,
            upstream,
            tasks: Arc::default(),
        };
        proxy.listen().await;
        proxy
    }

    /// Accepts connections (again) on the same port.
    async fn listen(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the proxy");
        self.port = listener.local_addr().unwrap().port();
        let (upstream, tasks) = (self.upstream.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Cuts every connection and stops accepting.
    fn cut(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_gives_store_errors_and_the_dispatcher_recovers() {
    if !tests::postgres::available().await {
        return;
    }
    let target: PgConnectOptions = tests::postgres::url().parse().unwrap();
    let upstream = format!("{}:{}", target.get_host(), target.get_port());
    let mut proxy = Proxy::start(upstream).await;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(target.clone().host("127.0.0.1").port(proxy.port))
        .await
        .unwrap();
    let store = tests::postgres::store_on(pool).await;
    let app = Dispatcher::new(store.clone());
    let account = AccountId::new("away");
    app.dispatch(OpenAccount {
        account: account.clone(),
        owner: "Ada".into(),
    })
    .await
    .unwrap();
    app.dispatch(Deposit {
        account: account.clone(),
        amount: 10,
    })
    .await
    .unwrap();

    proxy.cut();
    for _ in 0..3 {
        let err = app
            .dispatch(Deposit {
                account: account.clone(),
                amount: 1,
            })
            .await
            .unwrap_err();
        match &err {
            DispatchError::Store(StoreError::Unavailable { store, .. } | StoreError::Backend { store, .. }) => {
                assert_eq!(*store, "postgres")
            }
            other => panic!("expected a store error, got {other:?}"),
        }
        assert!(err.to_string().starts_with("postgres store"), "{err}");
    }

    proxy.listen().await;
    let mut recovered = None;
    for _ in 0..50 {
        match app
            .dispatch(Deposit {
                account: account.clone(),
                amount: 5,
            })
            .await
        {
            Ok(c) => {
                recovered = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let committed = recovered.expect("the dispatcher works again once the database is back");
    assert_eq!(committed.version, 3);
    assert_eq!(app.load::<BankAccount>(&account).await.unwrap().balance, 15);
    proxy.cut();
}

/// A connection to another database of the same server.
async fn other_database(name: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let options: PgConnectOptions = tests::postgres::url().parse().unwrap();
    sqlx::PgConnection::connect_with(&options.database(name)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_do_not_wait_for_transactions_that_never_touch_the_store() {
    use sqlx::Connection;
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    // Open write transactions elsewhere in the cluster: in another database,
    // and in this one without touching the store. They stay open throughout.
    let mut elsewhere = other_database("test").await;
    let mut elsewhere_tx = elsewhere.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *elsewhere_tx)
        .await
        .unwrap();
    let mut here = store.pool().acquire().await.unwrap().detach();
    let mut here_tx = here.begin().await.unwrap();
    sqlx::query("CREATE TEMPORARY TABLE unrelated (x INT)")
        .execute(&mut *here_tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO unrelated VALUES (1)")
        .execute(&mut *here_tx)
        .await
        .unwrap();

    let s = StreamId::new("t", "1");
    store.append(request!(&s, "e1")).await.unwrap();
    // A rolled-back append leaves a hole in the positions.
    let mut doomed = store.pool().begin().await.unwrap();
    store
        .append_with(&mut doomed, request!(&StreamId::new("t", "doomed"), "never"))
        .await
        .unwrap();
    doomed.rollback().await.unwrap();
    for tag in ["e2", "e3", "e4", "e5", "e6"] {
        store.append(request!(&s, tag)).await.unwrap();
    }
    // One read passes the hole: no append of this store is running (a
    // reader that waited for the unrelated transactions would return only
    // `e1`, every time, until they end).
    let seen = store.read_all_vec(0, 100).await.unwrap();
    assert_eq!(tags(&seen), ["e1", "e2", "e3", "e4", "e5", "e6"]);
    // And a projection following the store sees all of them.
    let balances = es_core::Projection::new("unrelated", examples::views::Balances::default());
    let last = store.last_position().await.unwrap();
    assert_eq!(balances.catch_up(&store).await.unwrap(), last);

    elsewhere_tx.rollback().await.unwrap();
    here_tx.rollback().await.unwrap();
}

/// A `recorded_at` of `infinity` and a negative version are reported as
/// corrupt, naming the event; nothing panics or wraps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_name_their_place() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    let app = Dispatcher::new(store.clone());
    for id in ["a", "b"] {
        app.dispatch(OpenAccount {
            account: AccountId::new(id),
            owner: "o".into(),
        })
        .await
        .unwrap();
    }
    let s = store.schema();
    let damage = [
        (
            format!(r#"UPDATE "{s}".events SET recorded_at = 'infinity' WHERE aggregate_id = 'a'"#),
            "the event at position 1 (stream `bank_account/a`) was recorded at infinity, which is no point in time",
        ),
        (
            format!(r#"UPDATE "{s}".events SET version = -3 WHERE aggregate_id = 'b'"#),
            "the event at position 2 (stream `bank_account/b`) has version -3",
        ),
    ];
    let first = store.read_all_vec(0, 10).await.unwrap()[0].position;
    for (i, (sql, expected)) in damage.iter().enumerate() {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .execute(store.pool())
            .await
            .unwrap();
        match store.read_all_vec(first - 1 + i as u64, 1).await {
            Err(StoreError::Corrupt { store, detail }) => {
                assert_eq!(store, "postgres");
                assert_eq!(
                    detail,
                    expected
                        .replace("position 1", &format!("position {first}"))
                        .replace("position 2", &format!("position {}", first + 1))
                );
            }
            other => panic!("{sql}: expected a corruption error, got {other:?}"),
        }
    }
    let fresh = Dispatcher::new(store.clone());
    match fresh.load::<BankAccount>(&AccountId::new("a")).await {
        Err(es_core::LoadError::Store(StoreError::Corrupt { detail, .. })) => assert_eq!(
            detail,
            "version 1 of stream `bank_account/a` was recorded at infinity, which is no point in time"
        ),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

/// A runner in another process (another store on the same schema, with its
/// own pool and listener) is woken by the notification sent after commit,
/// not by its poll, which is a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_appends_wake_readers_in_other_processes() {
    let Some(writer) = tests::postgres::store().await else {
        return;
    };
    let reader = PostgresStore::connect_with(
        &tests::postgres::url(),
        PostgresOptions {
            schema: writer.schema().to_owned(),
            max_connections: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let balances = es_core::Projection::new("balances", examples::views::Balances::default());
    let runner = balances.spawn(reader.clone(), Duration::from_secs(60));
    let app = Dispatcher::new(writer.clone());
    let open = |id: &str| OpenAccount {
        account: AccountId::new(id),
        owner: "o".into(),
    };
    // The listener starts in the background: an append before it listens
    // is only seen at the next poll, so try a few.
    let mut woken = false;
    for i in 0..20 {
        let position = app
            .dispatch(open(&format!("warm-{i}")))
            .await
            .unwrap()
            .position
            .unwrap();
        if runner.wait_for(position, Duration::from_millis(500)).await.is_ok() {
            woken = true;
            break;
        }
    }
    assert!(woken, "the reader never heard of an append");
    for i in 0..5 {
        let position = app.dispatch(open(&format!("a-{i}"))).await.unwrap().position.unwrap();
        runner.wait_for(position, Duration::from_secs(10)).await.unwrap();
    }
    runner.stop().await;
}

/// Appends that wait for a running one share one statement (group commit),
/// and each still gets its own exact outcome: commits, a conflict, an append
/// at any version, an empty batch, a duplicate command id; a batch the
/// server refuses as a whole (a reused event id) falls back to one by one.
/// Starts `lead` and then `rest` while a lock holds back every insert:
/// the lead's append takes the committer and waits on the lock, the
/// others queue; when the lock goes, the queued ones run as one combined
/// statement. The outcomes, the lead's first.
async fn held_back<T>(
    store: &PostgresStore,
    lead: impl FnOnce() -> tokio::task::JoinHandle<T>,
    rest: impl FnOnce() -> Vec<tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut blocker = store.pool().begin().await.unwrap();
    let s = store.schema();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"LOCK TABLE "{s}".events IN EXCLUSIVE MODE"#
    )))
    .execute(&mut *blocker)
    .await
    .unwrap();
    let mut tasks = vec![lead()];
    tokio::time::sleep(Duration::from_millis(100)).await;
    tasks.extend(rest());
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.commit().await.unwrap();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_appends_share_a_statement_and_keep_their_own_outcomes() {
    use es_core::store::AppendOutcome;
    let Some(pool) = tests::postgres::pool().await else {
        return;
    };
    let store = PostgresStore::from_pool_with(
        pool,
        PostgresOptions {
            schema: tests::postgres::schema_name(),
            committers: 1,
            ..Default::default()
        },
    )
    .unwrap();
    store.migrate().await.unwrap();
    let stream = |id: &str| StreamId::new("g", id);
    for id in ["conflict", "dup-cmd"] {
        store.append(request!(&stream(id), "before")).await.unwrap();
    }
    let dup = stream("dup-cmd");
    let mut cmd = request!(&dup, "first");
    cmd.command_id = Some("c-1");
    assert!(matches!(store.append(cmd).await.unwrap(), AppendOutcome::Appended(_)));

    let before = store.last_position().await.unwrap();
    let spawn = |id, expected, events, command| tests::spawn_append(&store, id, expected, events, command, None);
    let outcomes = held_back(
        &store,
        || spawn("first", ExpectedVersion::NoStream, 1, None),
        || {
            vec![
                spawn("new", ExpectedVersion::NoStream, 3, None),
                spawn("conflict", ExpectedVersion::Exact(7), 1, None),
                spawn("any", ExpectedVersion::Any, 2, Some("c-any")),
                spawn("empty", ExpectedVersion::Any, 0, None),
            ]
        },
    )
    .await;
    // Each request's outcome, as if it had run alone.
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
    // What is stored: 1 + 3 + 2 new events, positions unique and in order.
    let read = store.read_all_vec(before, 100).await.unwrap();
    assert_eq!(read.len(), 6);
    assert!(read.windows(2).all(|w| w[0].position < w[1].position));
    let any = store.find_command(&stream("any"), "c-any").await.unwrap().unwrap();
    assert_eq!((any.first_version, any.last_version), (1, 2));

    // A reused event id or command id makes the server refuse the combined
    // statement: the requests run one by one, each with its own outcome.
    let taken = read[0].event_id;
    let before = store.last_position().await.unwrap();
    let spawn = |id: &'static str, event_id: EventId, command: Option<&'static str>| {
        let store = store.clone();
        tokio::spawn(async move {
            let s = StreamId::new("g", id);
            store
                .append(AppendRequest {
                    stream: &s,
                    expected: ExpectedVersion::Any,
                    events: &[NewEvent {
                        event_id,
                        name: "e",
                        schema_version: 1,
                        payload: id.as_bytes(),
                    }],
                    metadata: b"",
                    command_id: command,
                    recorded_at: Timestamp::now(),
                })
                .await
        })
    };
    let outcomes = held_back(
        &store,
        || spawn("lead", EventId::new(), None),
        || {
            vec![
                spawn("ok-1", EventId::new(), None),
                spawn("reused", taken, None),
                spawn("dup-cmd", EventId::new(), Some("c-1")),
                spawn("ok-2", EventId::new(), None),
            ]
        },
    )
    .await;
    assert!(
        outcomes[0].is_ok() && outcomes[1].is_ok() && outcomes[4].is_ok(),
        "{outcomes:?}"
    );
    match &outcomes[2] {
        Err(AppendError::Store(StoreError::DuplicateEventId { event_id, .. })) => assert_eq!(*event_id, taken),
        other => panic!("expected the reused id to be refused, got {other:?}"),
    }
    match &outcomes[3] {
        Ok(AppendOutcome::Duplicate(record)) => assert_eq!((record.first_version, record.last_version), (2, 2)),
        other => panic!("expected the earlier command, got {other:?}"),
    }
    assert_eq!(tags(&store.read_all_vec(before, 100).await.unwrap()).len(), 3);
}

/// The committer writes after a stream head it saw commit without reading
/// it again; every head it cannot know is read again, so no stream gets a
/// gap: one another writer moved on (the stream's unique versions refuse
/// the write), one seen inside a caller's transaction that rolled back, and
/// heads seen before its connection was lost, on a server that may since
/// have lost commits it acknowledged (a failover to a replica that had not
/// received them, played here by deleting the last event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_the_committer_cannot_know_are_read_again_and_no_stream_gets_a_gap() {
    use es_core::store::AppendOutcome;
    let Some(pool) = tests::postgres::pool().await else {
        return;
    };
    let options = || PostgresOptions {
        schema: String::new(),
        committers: 1,
        ..Default::default()
    };
    let schema = tests::postgres::schema_name();
    let store = PostgresStore::from_pool_with(
        pool.clone(),
        PostgresOptions {
            schema: schema.clone(),
            ..options()
        },
    )
    .unwrap();
    store.migrate().await.unwrap();
    let other = PostgresStore::from_pool_with(pool.clone(), PostgresOptions { schema, ..options() }).unwrap();
    let stream = |id: &str| StreamId::new("g", id);
    let spawn = |id, expected| tests::spawn_append(&store, id, expected, 1, None, None);
    let version = |o: &Result<AppendOutcome, AppendError>| match o {
        Ok(AppendOutcome::Appended(a)) => a.last_version,
        other => panic!("expected a commit, got {other:?}"),
    };
    let conflict = |o: &Result<AppendOutcome, AppendError>| match o {
        Err(AppendError::Conflict(c)) => c.actual,
        other => panic!("expected a conflict, got {other:?}"),
    };
    // Every stream at version 2, written in combined statements: heads the
    // committer saw commit.
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Exact(1)] {
        let outcomes = held_back(
            &store,
            || spawn("lead", expected),
            || {
                ["moved", "rolled-back", "lost", "steady"]
                    .into_iter()
                    .map(|id| spawn(id, expected))
                    .collect()
            },
        )
        .await;
        assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    }

    // Another writer moves `moved` on; a caller's transaction appends to
    // `rolled-back` and rolls back.
    other.append(request!(&stream("moved"), "other")).await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    let s = stream("rolled-back");
    let mut inside = request!(&s, "rolled back");
    inside.expected = ExpectedVersion::Exact(2);
    assert_eq!(version(&store.append_with(&mut tx, inside).await), 3);
    tx.rollback().await.unwrap();

    let outcomes = held_back(
        &store,
        || spawn("lead", ExpectedVersion::Exact(2)),
        || {
            vec![
                spawn("moved", ExpectedVersion::Exact(2)),
                spawn("rolled-back", ExpectedVersion::Exact(3)),
                spawn("steady", ExpectedVersion::Exact(2)),
            ]
        },
    )
    .await;
    assert_eq!(version(&outcomes[0]), 3);
    assert_eq!(conflict(&outcomes[1]), 3, "the other writer's event is there");
    assert_eq!(conflict(&outcomes[2]), 2, "the rolled-back event is not");
    assert_eq!(version(&outcomes[3]), 3);

    // Every head known and no command id: the lean statement, which the
    // server refuses whole when one head moved on; each then goes alone.
    other.append(request!(&stream("moved"), "other again")).await.unwrap();
    let outcomes = held_back(
        &store,
        || spawn("lead", ExpectedVersion::Exact(3)),
        || {
            vec![
                spawn("moved", ExpectedVersion::Exact(3)),
                spawn("steady", ExpectedVersion::Exact(3)),
            ]
        },
    )
    .await;
    assert_eq!(version(&outcomes[0]), 4);
    assert_eq!(conflict(&outcomes[1]), 4);
    assert_eq!(version(&outcomes[2]), 4);

    // `lost` loses its last event, and every connection of the store ends,
    // as in a failover.
    let s = store.schema();
    let ddl = |text: String| sqlx::AssertSqlSafe(text);
    sqlx::query(ddl(format!(
        r#"DELETE FROM "{s}".events WHERE aggregate_type = 'g' AND aggregate_id = 'lost' AND version = 2"#
    )))
    .execute(&pool)
    .await
    .unwrap();
    let mut admin = other_database("postgres").await;
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE $1",
    )
    .bind(format!(r#"%"{s}".events%"#))
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!ended.is_empty(), "the committer's connection was found");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcomes = held_back(
        &store,
        || spawn("lead", ExpectedVersion::Exact(4)),
        || {
            vec![
                spawn("lost", ExpectedVersion::Exact(2)),
                spawn("steady", ExpectedVersion::Exact(4)),
            ]
        },
    )
    .await;
    assert_eq!(version(&outcomes[0]), 5);
    assert_eq!(
        conflict(&outcomes[1]),
        1,
        "the head is read again on the new connection"
    );
    assert_eq!(version(&outcomes[2]), 5);

    for id in ["lead", "moved", "rolled-back", "lost", "steady"] {
        let versions: Vec<u64> = store
            .read_stream_vec(&stream(id), 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.version)
            .collect();
        let contiguous: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(versions, contiguous, "stream {id}");
    }
}

/// A row edited to a negative version fails the load, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_at_a_negative_version_fails_the_load() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    tests::decoding::check_negative_version(store, async |store: &es_postgres::PostgresStore| {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"UPDATE "{}".events SET version = -7 WHERE aggregate_id = 'edited' AND version = 3"#,
            store.schema()
        )))
        .execute(store.pool())
        .await
        .unwrap();
    })
    .await;
}
