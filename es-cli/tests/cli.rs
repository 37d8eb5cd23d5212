//! The `es` binary, run as an operator would, on a SQLite file and on a
//! PostgreSQL schema; `rebuild` through the library with a registered read
//! model.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use es_cli::{Db, Rebuilds};
use es_core::{Dispatcher, EventStore, Metadata};
use es_sqlite::{SqliteProjection, SqliteStore};
use examples::bank::{AccountId, BankCommand, Deposit, OpenAccount, Withdraw};
use serde_json::{Value, json};
use tests::ledger::{SQLITE_LEDGER, SqliteLedger};

mod common;
use common::{es, ok};

fn failing(args: &[&str]) -> String {
    let out = es(args);
    assert!(!out.status.success(), "es {args:?} should fail");
    String::from_utf8(out.stderr).expect("UTF-8 errors")
}

fn json_of(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).expect("JSON output")
}

/// A temporary file path, removed (with SQLite's side files) on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        TempDb(std::env::temp_dir().join(format!(
            "es-cli-test-{}-{}.db",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 path")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

fn open(account: &str) -> BankCommand {
    BankCommand::Open(OpenAccount {
        account: AccountId::new(account),
        owner: account.to_uppercase(),
    })
}

fn deposit(account: &str, amount: u64) -> BankCommand {
    BankCommand::Deposit(Deposit {
        account: AccountId::new(account),
        amount,
    })
}

/// Two accounts, five events; the balances projection checkpointed at 2.
async fn bank<S: EventStore + Clone>(store: S) {
    let app = Dispatcher::new(store.clone());
    app.dispatch(open("ada")).await.expect("open");
    let mut metadata = Metadata::new();
    metadata.command_id = Some("dep-1".into());
    app.dispatch_with(deposit("ada", 500), metadata).await.expect("deposit");
    app.dispatch(BankCommand::Withdraw(Withdraw {
        account: AccountId::new("ada"),
        amount: 200,
    }))
    .await
    .expect("withdraw");
    app.dispatch(open("bob")).await.expect("open");
    app.dispatch(deposit("bob", 70)).await.expect("deposit");
    store
        .save_checkpoint("projection:balances", 2)
        .await
        .expect("checkpoint");
}

/// Every read command on one store, given as `--db` (and `--schema`),
/// which is at `schema_version`.
fn inspects(db: &[&str], schema_version: i64) {
    fn joined<'a>(db: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
        [db, rest].concat()
    }
    let with = |rest: &[&'static str]| joined(db, rest);

    let table = ok(&with(&["streams"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["STREAM", "VERSION", "LAST", "WRITE"]
    );
    assert!(
        lines[1].starts_with("bank_account/bob ") && lines[2].starts_with("bank_account/ada "),
        "{table}"
    );
    let streams = json_of(&with(&["--json", "streams", "--limit", "1"]));
    assert_eq!(streams.as_array().map(Vec::len), Some(1));
    assert_eq!(
        (&streams[0]["aggregate_id"], &streams[0]["version"]),
        (&json!("bob"), &json!(2))
    );
    assert_eq!(json_of(&with(&["--json", "streams", "--type", "transfer"])), json!([]));

    let events = json_of(&with(&["--json", "events", "bank_account/ada"]));
    let names: Vec<&str> = events
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| e["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["account.opened", "account.deposited", "account.withdrawn"]);
    assert_eq!(events[1]["payload"], json!({"amount": 500}));
    assert_eq!(events[1]["metadata"]["command_id"], json!("dep-1"));
    assert_eq!((&events[2]["version"], &events[2]["position"]), (&json!(3), &json!(3)));
    let table = ok(&with(&["events", "bank_account/ada", "--after", "2"]));
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains("account.withdrawn v4"), "{table}");
    assert!(failing(&with(&["events", "ada"])).contains("write aggregate_type/aggregate_id"));
    assert!(failing(&with(&["events", "bank_account/nobody"])).contains("has no events"));

    let checkpoints = json_of(&with(&["--json", "projections"]));
    assert_eq!(
        checkpoints,
        json!([{"name": "projection:balances", "position": 2, "head": 5, "lag": 3}])
    );

    let schema = json_of(&with(&["--json", "schema"]));
    assert_eq!(schema["schema_version"], json!(schema_version));
    let kinds: Vec<(String, u64, u64)> = schema["events"]
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_owned(),
                e["schema_version"].as_u64().expect("version"),
                e["count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("account.deposited".to_owned(), 1, 2),
            ("account.opened".to_owned(), 1, 2),
            ("account.withdrawn".to_owned(), 4, 1)
        ]
    );

    let follow: Vec<Value> = ok(&with(&["--json", "follow", "--from", "1", "--count", "3"]))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let positions: Vec<&Value> = follow.iter().map(|e| &e["position"]).collect();
    assert_eq!(positions, [&json!(2), &json!(3), &json!(4)]);

    let refused = failing(&with(&["reset", "balances"]));
    assert!(refused.contains("is at 2") && refused.contains("--yes"), "{refused}");
    assert_eq!(
        ok(&with(&["reset", "balances", "--yes"])).trim(),
        "projection:balances: 2 -> 0"
    );
    assert_eq!(json_of(&with(&["--json", "projections"]))[0]["lag"], json!(5));
    assert!(failing(&with(&["reset", "nothing", "--yes"])).contains("no checkpoint `projection:nothing`"));
    // Past the end of the log: refused (the read model would skip events
    // yet to come), and the checkpoint stays.
    let past = failing(&with(&["reset", "balances", "--to", "1000", "--yes"]));
    assert!(past.contains("past the end of the log"), "{past}");
    assert!(failing(&with(&["rebuild", "balances"])).contains("needs the application's admin binary"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_a_sqlite_file() {
    let db = TempDb::new();
    bank(SqliteStore::open(db.path()).await.expect("open")).await;
    inspects(&["--db", db.path()], es_sqlite::SCHEMA_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_a_postgres_schema() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    bank(store.clone()).await;
    let url = tests::postgres::url();
    inspects(
        &["--db", &url, "--schema", store.schema()],
        es_postgres::SCHEMA_VERSION.into(),
    );
    let wrong = failing(&["--db", &url, "--schema", "no_such_schema", "streams"]);
    assert!(wrong.contains("schema `no_such_schema` holds no es store"), "{wrong}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_events_as_they_are_committed() {
    let db = TempDb::new();
    let store = SqliteStore::open(db.path()).await.expect("open");
    let app = Dispatcher::new(store.clone());
    app.dispatch(open("ada")).await.expect("open");
    // From the head: only what is committed after it starts.
    let mut child = Command::new(env!("CARGO_BIN_EXE_es"))
        .args(["--db", db.path(), "--json", "follow", "--count", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start es follow");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Give it time to read the head before the new events land.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    app.dispatch(deposit("ada", 1)).await.expect("deposit");
    app.dispatch(deposit("ada", 2)).await.expect("deposit");
    let got: Vec<Value> = tokio::task::spawn_blocking(move || {
        (0..2)
            .map(|_| serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("JSON"))
            .collect()
    })
    .await
    .expect("reader");
    assert_eq!(got[0]["payload"], json!({"amount": 1}));
    assert_eq!(got[1]["payload"], json!({"amount": 2}));
    assert_eq!(got[1]["position"], json!(3));
    assert!(child.wait().expect("es exits").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_clears_and_replays_a_registered_read_model() {
    let db = TempDb::new();
    let store = SqliteStore::open(db.path()).await.expect("open");
    bank(store.clone()).await;
    store
        .with_connection(|c| c.execute_batch(SQLITE_LEDGER))
        .expect("table");
    let ledger = SqliteProjection::new(store.clone(), "ledger", SqliteLedger::default());
    ledger.catch_up().await.expect("catch up");
    // Damage the read model: a rebuild must clear it.
    store
        .with_connection(|c| c.execute("INSERT INTO ledger VALUES (999, 'ghost', 1)", []))
        .expect("insert");

    let rebuilds = Rebuilds::new().register("ledger", "projection:ledger", |db| async move {
        let Db::Sqlite(store) = db else {
            return Err("the ledger lives in SQLite".into());
        };
        let projection = SqliteProjection::new(store, "ledger", SqliteLedger::default()).tables(SqliteLedger::tables());
        Ok(projection.rebuild().await?)
    });
    let mut out = Vec::new();
    // Without --yes it says what it would do, and does nothing.
    let mut said = Vec::new();
    let refused = es_cli::run_args(["es", "--db", db.path(), "rebuild", "ledger"], &rebuilds, &mut said).await;
    let refused = refused.expect_err("a rebuild needs --yes").to_string();
    assert!(
        refused.contains("clears it and replays") && refused.contains("--yes"),
        "{refused}"
    );
    es_cli::run_args(
        ["es", "--db", db.path(), "rebuild", "ledger", "--yes"],
        &rebuilds,
        &mut out,
    )
    .await
    .expect("rebuild");
    assert_eq!(
        String::from_utf8(out).expect("UTF-8"),
        "rebuilt ledger: 5 events replayed, checkpoint at 5\n"
    );
    let rows: Vec<(String, i64)> = store
        .read_with(|c| {
            let mut s = c.prepare("SELECT account, change FROM ledger ORDER BY position")?;
            let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .expect("read")
        .expect("rows");
    assert_eq!(
        rows,
        [
            ("ada".to_owned(), 500),
            ("ada".to_owned(), -200),
            ("bob".to_owned(), 70)
        ]
    );

    let unknown = es_cli::run_args(
        ["es", "--db", db.path(), "rebuild", "other", "--yes"],
        &rebuilds,
        &mut Vec::new(),
    )
    .await
    .expect_err("unknown read model");
    assert_eq!(unknown.to_string(), "no read model named `other`; registered: ledger");
}

#[test]
fn files_that_are_not_stores_are_refused_untouched() {
    assert!(failing(&["streams"]).contains("pass --db"));
    let missing = failing(&["--db", "/nonexistent/bank.db", "streams"]);
    assert!(missing.contains("is not a file"), "{missing}");
    let db = TempDb::new();
    std::fs::write(&db.0, b"not a database at all, just text").expect("write");
    let text = failing(&["--db", db.path(), "streams"]);
    assert!(text.contains("is not a SQLite database"), "{text}");
    let other = TempDb::new();
    rusqlite::Connection::open(&other.0)
        .and_then(|c| c.execute_batch("CREATE TABLE t (x INTEGER)"))
        .expect("another database");
    let foreign = failing(&["--db", other.path(), "schema"]);
    assert!(foreign.contains("without an es store"), "{foreign}");
    // Still only the user's table: nothing was created in it.
    let tables: i64 = rusqlite::Connection::open(&other.0)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0)))
        .expect("count");
    assert_eq!(tables, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_commands_on_a_nats_store() {
    let (Some(url), Some(store)) = (tests::nats::url(), tests::nats::store().await) else {
        return;
    };
    bank(store.clone()).await;
    let db = ["--db", url.as_str(), "--schema", store.prefix()];
    let with = |rest: &[&'static str]| [&db[..], rest].concat();

    let streams = json_of(&with(&["--json", "streams"]));
    let listed: Vec<(&Value, &Value)> = streams
        .as_array()
        .expect("an array")
        .iter()
        .map(|s| (&s["aggregate_id"], &s["version"]))
        .collect();
    assert_eq!(listed, [(&json!("bob"), &json!(2)), (&json!("ada"), &json!(3))]);

    let events = json_of(&with(&["--json", "events", "bank_account/ada"]));
    assert_eq!(events[1]["payload"], json!({"amount": 500}));
    assert_eq!(events[1]["metadata"]["command_id"], json!("dep-1"));
    assert_eq!(events[2]["name"], json!("account.withdrawn"));

    let checkpoints = json_of(&with(&["--json", "projections"]));
    assert_eq!(checkpoints[0]["name"], json!("projection:balances"));
    assert_eq!(checkpoints[0]["position"], json!(2));

    let schema = json_of(&with(&["--json", "schema"]));
    let kinds: Vec<(&Value, &Value, &Value)> = schema["events"]
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| (&e["name"], &e["schema_version"], &e["count"]))
        .collect();
    assert_eq!(
        kinds,
        [
            (&json!("account.deposited"), &json!(1), &json!(2)),
            (&json!("account.opened"), &json!(1), &json!(2)),
            (&json!("account.withdrawn"), &json!(4), &json!(1)),
        ]
    );

    let follow: Vec<Value> = ok(&with(&["--json", "follow", "--from", "0", "--count", "5"]))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let names: Vec<&Value> = follow.iter().map(|e| &e["name"]).collect();
    assert_eq!(names.len(), 5);
    assert_eq!(names[0], &json!("account.opened"));

    assert_eq!(
        ok(&with(&["reset", "balances", "--yes"])).trim(),
        "projection:balances: 2 -> 0"
    );
    assert_eq!(json_of(&with(&["--json", "projections"]))[0]["position"], json!(0));
}

/// A message a stray client published on a NATS store's event subjects is
/// listed as foreign, printed escaped (it may hold terminal escapes), and
/// skipped by `follow` and `schema`; a mistyped prefix creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_messages_on_a_nats_store() {
    let (Some(url), Some(store)) = (tests::nats::url(), tests::nats::store().await) else {
        return;
    };
    bank(store.clone()).await;
    let client = async_nats::connect(url.as_str()).await.expect("a plain client");
    let js = async_nats::jetstream::new(client);
    let subject = format!("{}.events.script", store.prefix());
    // An OSC 52 sequence (it would write the operator's clipboard) and a
    // forged line.
    js.publish(subject.clone(), "\x1b]52;c;cm0gLXJmIH4=\x07\nada  999 forged".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let db = ["--db", url.as_str(), "--schema", store.prefix()];
    let with = |rest: &[&'static str]| [&db[..], rest].concat();

    let streams = json_of(&with(&["--json", "streams"]));
    let foreign: Vec<&Value> = streams
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["foreign"] == json!(true))
        .collect();
    assert_eq!(foreign.len(), 1);
    assert_eq!(
        (&foreign[0]["aggregate_id"], &foreign[0]["version"]),
        (&json!(subject), &json!(1))
    );
    let table = ok(&with(&["streams"]));
    assert!(table.contains(&format!("(foreign) {subject}")), "{table}");

    let listed = json_of(&with(&["--json", "foreign"]));
    assert_eq!(listed[0]["subject"], json!(subject));
    assert_eq!(
        listed[0]["payload"],
        json!("\x1b]52;c;cm0gLXJmIH4=\x07\nada  999 forged")
    );
    let table = ok(&with(&["foreign"]));
    assert!(
        !table.contains('\x1b') && !table.contains('\x07'),
        "raw escapes reached the terminal: {table:?}"
    );
    assert!(
        table.contains("\\u{1b}]52;c;") && table.contains("\\u{a}ada"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 2, "one header and one row: {table}");

    let follow = ok(&with(&["follow", "--from", "0", "--count", "6"]));
    assert!(follow.contains("(a foreign message on"), "{follow}");
    let schema = json_of(&with(&["--json", "schema"]));
    assert!(
        schema["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != json!("$foreign"))
    );

    // A mistyped prefix: an error, and no streams made under it.
    let error = failing(&["--db", url.as_str(), "--schema", "no_such_store", "streams"]);
    assert!(
        error.contains("holds no store") && error.contains("no_such_store_events"),
        "{error}"
    );
    let names: Vec<String> = {
        use futures_util::StreamExt;
        js.stream_names().map(|n| n.unwrap()).collect().await
    };
    assert!(!names.iter().any(|n| n.starts_with("no_such_store")), "{names:?}");
}

/// A SQLite store and its side files: each one's length and a hash of its
/// bytes (`None` when it does not exist).
fn file_bytes(path: &str) -> Vec<(String, Option<(usize, u64)>)> {
    use std::hash::{Hash, Hasher};
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let name = format!("{path}{suffix}");
            let summary = std::fs::read(&name).ok().map(|bytes| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut hasher);
                (bytes.len(), hasher.finish())
            });
            (name, summary)
        })
        .collect()
}

/// Inspecting never writes: every read-only command leaves the file's bytes
/// as they were, on a current file and on one at schema 1 (which the
/// application would migrate: `es` must not, or an inspection during a
/// rolling upgrade takes the older running application down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspecting_a_sqlite_file_never_writes_it() {
    let current = TempDb::new();
    {
        let store = SqliteStore::open(current.path()).await.unwrap();
        bank(store.clone()).await;
        store
            .with_connection(|conn| conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"))
            .unwrap();
    }
    let old = TempDb::new();
    {
        let conn = rusqlite::Connection::open(old.path()).unwrap();
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
            INSERT INTO es_checkpoints VALUES ('projection:balances', 1);
            PRAGMA user_version = 1;
            "#,
        )
        .unwrap();
    }
    let commands: [&[&str]; 8] = [
        &["streams"],
        &["--json", "streams"],
        &["events", "bank_account/a"],
        &["projections"],
        &["schema"],
        &["--json", "schema"],
        &["follow", "--from", "0", "--count", "1"],
        &["foreign"],
    ];
    for db in [&current, &old] {
        let before = file_bytes(db.path());
        for command in commands {
            let args = [&["--db", db.path()][..], command].concat();
            let out = es(&args);
            // The schema-1 file has no stream `a`'s... it has; both answer.
            assert!(
                out.status.success() || command == ["events", "bank_account/a"],
                "es {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // The database file's bytes are what they were. A reader of a
            // WAL file may leave SQLite's (empty) side files behind: they
            // hold no data, and the next writer takes them over.
            let after = file_bytes(db.path());
            assert_eq!(after[0], before[0], "es {args:?} changed the file");
            assert!(
                after[1].1.is_none_or(|(len, _)| len == 0) || after[1] == before[1],
                "es {args:?} wrote to the write-ahead log"
            );
        }
    }
    let schema = ok(&["--db", old.path(), "schema"]);
    assert!(
        schema.starts_with("schema version 1 (the application migrates it"),
        "{schema}"
    );
}

/// Ids and names from the store reach the terminal escaped: an OSC 52
/// sequence (it writes the operator's clipboard), a screen clear and a
/// forged row stay text, in every table, in `follow` and in errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_store_holds_is_escaped_on_the_terminal() {
    let db = TempDb::new();
    let evil = "ada\x1b]52;c;cm0gLXJmIH4=\x07\r\nbank_account/forged  999";
    {
        let store = SqliteStore::open(db.path()).await.unwrap();
        let app = Dispatcher::new(store.clone());
        app.dispatch(open(evil)).await.unwrap();
        store.save_checkpoint("projection:cp\x1b[2J", 1).await.unwrap();
    }
    let raw = |text: &str| text.contains('\x1b') || text.contains('\x07') || text.contains('\r');
    for args in [
        vec!["--db", db.path(), "streams"],
        vec!["--db", db.path(), "projections"],
        vec!["--db", db.path(), "follow", "--from", "0", "--count", "1"],
    ] {
        let out = ok(&args);
        assert!(!raw(&out), "es {args:?} printed raw control characters: {out:?}");
        assert!(out.contains("\\u{1b}"), "es {args:?}: {out}");
        assert!(
            !out.lines().any(|l| l.starts_with("bank_account/forged")),
            "a forged row: {out}"
        );
    }
    let stream = format!("bank_account/{evil}x");
    let error = failing(&["--db", db.path(), "events", &stream]);
    assert!(!raw(&error), "an error printed raw control characters: {error:?}");
    let reset = ok(&["--db", db.path(), "reset", "cp\x1b[2J", "--yes"]);
    assert!(!raw(&reset) && reset.contains("\\u{1b}[2J"), "{reset:?}");
}

/// A corrupt row fails a listing naming its stream, and `events` on a
/// stream with a row at version -7 fails naming it, instead of showing
/// less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_is_named_not_skipped() {
    let db = TempDb::new();
    {
        let store = SqliteStore::open(db.path()).await.unwrap();
        bank(store.clone()).await;
        store
            .with_connection(|conn| {
                conn.execute(
                    "UPDATE es_events SET version = -7 WHERE aggregate_id = 'bob' AND version = 2",
                    [],
                )
            })
            .unwrap();
    }
    let listed = failing(&["--db", db.path(), "streams"]);
    assert!(listed.contains("bank_account/bob") && listed.contains("-7"), "{listed}");
    let events = failing(&["--db", db.path(), "events", "bank_account/bob"]);
    assert!(events.contains("bank_account/bob") && events.contains("-7"), "{events}");
    // Other streams still read.
    let ada = json_of(&["--db", db.path(), "--json", "events", "bank_account/ada"]);
    assert_eq!(ada.as_array().unwrap().len(), 3);
}

/// Personal data on the command line: sealed values are shown as whose
/// they are, never opened; `forget` needs `--yes`, erases the key and
/// records the forget; afterwards `events` shows `<forgotten>`; `unsealed`
/// lists an event written before the fields were made personal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_and_unsealed_on_a_sqlite_file() {
    use es_core::store::{AppendRequest, NewEvent};
    use es_core::{EventId, ExpectedVersion, StreamId, Timestamp};

    let db = TempDb::new();
    let store = SqliteStore::open(db.path())
        .await
        .expect("open")
        .with_keys(tests::personal::keys());
    tests::personal::register(&Dispatcher::new(store.clone()), "guest-7").await;
    // A guest registered before the name and address were personal.
    let old = br#"{"guest_id":"guest-1","name":"Old Name","email":"old@example.org"}"#;
    let at = Timestamp::now();
    store
        .append(AppendRequest {
            stream: &StreamId::new("guest", "guest-1"),
            expected: ExpectedVersion::NoStream,
            events: &[NewEvent {
                event_id: EventId::at(at),
                name: "guest.registered",
                schema_version: 1,
                payload: old,
            }],
            metadata: b"",
            command_id: None,
            recorded_at: at,
        })
        .await
        .expect("append");
    let with = |args: &[&str]| {
        let mut all = vec!["--db", db.path()];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let shown = run(with(&["--json", "events", "guest/guest-7"]));
    assert!(!shown.contains(tests::personal::NAME), "{shown}");
    assert!(shown.contains("<sealed: guest-7>"), "{shown}");

    let report: Value = serde_json::from_str(&run(with(&["--json", "unsealed"]))).unwrap();
    assert_eq!(
        report["fields"],
        json!(["guest.registered:email", "guest.registered:name"])
    );
    let found: Vec<(&str, &str)> = report["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["stream"].as_str().unwrap(), u["field"].as_str().unwrap()))
        .collect();
    assert_eq!(found, [("guest/guest-1", "email"), ("guest/guest-1", "name")]);
    let table = run(with(&["unsealed"]));
    assert!(!table.contains("Old Name"), "values are never shown: {table}");
    assert!(table.contains("2 events hold a personal field in clear"), "{table}");
    let declared: Value =
        serde_json::from_str(&run(with(&["--json", "unsealed", "--field", "guest.room_booked:room"]))).unwrap();
    assert!(
        declared["fields"]
            .as_array()
            .unwrap()
            .contains(&json!("guest.room_booked:room")),
        "{declared}"
    );
    assert_eq!(declared["found"].as_array().unwrap().len(), 3, "{declared}");
    let args = with(&["unsealed", "--field", "room"]);
    let bad = failing(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(bad.contains("event.name:field"), "{bad}");

    let args = with(&["forget", "guest-7"]);
    let refused = failing(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(refused.contains("--yes"), "{refused}");
    assert!(
        !store.keyring().unwrap().is_forgotten("guest-7").await.unwrap(),
        "forgotten without --yes"
    );
    assert!(run(with(&["forget", "guest-7", "--yes"])).contains("forgot `guest-7`"));
    let shown = run(with(&["events", "guest/guest-7"]));
    assert!(shown.contains("<forgotten>"), "{shown}");
    assert!(!shown.contains("<sealed"), "{shown}");
    let recorded = run(with(&["--json", "events", "es.personal/guest-7"]));
    assert!(recorded.contains("es.subject_forgotten"), "{recorded}");

    // The application sees it forgotten: a fresh process (no key cached).
    let fresh = SqliteStore::open(db.path())
        .await
        .expect("open")
        .with_keys(tests::personal::keys());
    let guest = Dispatcher::new(fresh)
        .load::<examples::hotel::Guest>("guest-7")
        .await
        .expect("loads");
    assert!(guest.name.as_ref().is_some_and(|n| n.is_forgotten()), "{guest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_show_the_runner_that_owns_each_partition() {
    use es_core::subscription::{PartitionOptions, RunOptions};
    use std::time::Duration;
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    bank(store.clone()).await;
    let schema = store.schema().to_owned();
    let runner = es_postgres::PgProjection::new(
        store.clone(),
        "ledger",
        tests::ledger::OrderedLedger::new(&schema, "ledger"),
    )
    .tables(tests::ledger::OrderedLedger::tables(&schema, "ledger"))
    .partitioned(4)
    .spawn(PartitionOptions {
        run: RunOptions::polling(Duration::from_millis(50)),
        lease: Duration::from_secs(5),
        heartbeat: Duration::from_millis(50),
    });
    // Owned, and listed as owned at the next heartbeat.
    assert!(runner.wait_until(Duration::from_secs(30), |s| s.owned.len() == 4).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let name = runner.status().runner;
    let url = tests::postgres::url();
    let listed = json_of(&["--db", &url, "--schema", &schema, "--json", "projections"]);
    for index in 0..4 {
        let checkpoint = format!("projection:ledger#{index}/4");
        let row = listed
            .as_array()
            .expect("a list")
            .iter()
            .find(|c| c["name"] == json!(checkpoint))
            .unwrap_or_else(|| panic!("{checkpoint} not listed: {listed}"));
        let owner = row["owner"].as_str().unwrap_or_default();
        assert!(owner.starts_with(&format!("{name} (seen ")), "{row}");
    }
    let table = ok(&["--db", &url, "--schema", &schema, "projections"]);
    assert!(table.lines().next().is_some_and(|h| h.contains("OWNER")), "{table}");
    runner.stop().await;
}
