//! The hand-written bank on each SQL driver: load the stream, fold, decide,
//! insert at version + 1 with the primary key as the conflict check. And
//! the framework's side of the same workloads on the SQL stores.

use es_core::Dispatcher;
use es_postgres::{PostgresOptions, PostgresStore};
use es_sqlite::SqliteStore;
use examples::bank::{AccountId, BankAccount, Deposit, OpenAccount};
use rusqlite::{Connection, params};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool, Row, SqlSafeStr};

use crate::baseline::{self, Account, Command, Event};

/// The stored name and JSON of a hand-written event.
pub fn encode(event: &Event) -> (&'static str, Vec<u8>) {
    match event {
        Event::Opened(e) => ("account.opened", serde_json::to_vec(e).expect("encodes")),
        Event::Deposited(e) => ("account.deposited", serde_json::to_vec(e).expect("encodes")),
        Event::Withdrawn(e) => ("account.withdrawn", serde_json::to_vec(e).expect("encodes")),
    }
}

fn account_of(cmd: &Command) -> &str {
    match cmd {
        Command::Open { account, .. } | Command::Deposit { account, .. } | Command::Withdraw { account, .. } => account,
    }
}

/// The hand-written bank on PostgreSQL through sqlx.
#[derive(Clone)]
pub struct PgBank {
    pool: PgPool,
    load: String,
    insert: String,
    insert_many: String,
}

impl PgBank {
    /// Creates its table in a fresh `schema`.
    pub async fn setup(pool: PgPool, schema: &str) -> Self {
        let sql = |s: String| AssertSqlSafe(s).into_sql_str();
        sqlx::raw_sql(sql(format!(
            r#"CREATE SCHEMA "{schema}";
               CREATE TABLE "{schema}".events (stream TEXT NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL,
                                               payload BYTEA NOT NULL, PRIMARY KEY (stream, version));"#
        )))
        .execute(&pool)
        .await
        .expect("create the baseline table");
        PgBank {
            pool,
            load: format!(r#"SELECT name, payload FROM "{schema}".events WHERE stream = $1 ORDER BY version"#),
            insert: format!(
                r#"INSERT INTO "{schema}".events (stream, version, name, payload) VALUES ($1, $2, $3, $4)"#
            ),
            insert_many: format!(
                r#"INSERT INTO "{schema}".events (stream, version, name, payload)
                   SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::BYTEA[])
                   ON CONFLICT DO NOTHING RETURNING stream, version"#
            ),
        }
    }

    /// Loads, folds, decides, inserts.
    pub async fn handle(&self, cmd: &Command) -> Result<(), baseline::Error> {
        let account = account_of(cmd);
        let (state, version) = self.fold(account).await;
        let event = state.decide(cmd)?;
        let (name, payload) = encode(&event);
        sqlx::query(AssertSqlSafe(self.insert.as_str()).into_sql_str())
            .bind(account)
            .bind(version + 1)
            .bind(name)
            .bind(payload)
            .execute(&self.pool)
            .await
            .expect("insert");
        Ok(())
    }

    /// Stores the events of `workloads::events(n)` for `account`, in one
    /// transaction.
    pub async fn fill(&self, account: &str, n: usize) {
        let (_, events) = crate::workloads::events(n);
        let mut tx = self.pool.begin().await.expect("begin");
        for (i, event) in events.iter().enumerate() {
            let (name, payload) = encode(event);
            sqlx::query(AssertSqlSafe(self.insert.as_str()).into_sql_str())
                .bind(account)
                .bind(i as i64 + 1)
                .bind(name)
                .bind(payload)
                .execute(&mut *tx)
                .await
                .expect("insert");
        }
        tx.commit().await.expect("commit");
    }

    /// Loads and folds one account.
    pub async fn load(&self, account: &str) -> Account {
        self.fold(account).await.0
    }

    /// Loads and folds one account: its state and stream version.
    async fn fold(&self, account: &str) -> (Account, i64) {
        let rows = sqlx::query(AssertSqlSafe(self.load.as_str()).into_sql_str())
            .bind(account)
            .fetch_all(&self.pool)
            .await
            .expect("load");
        let mut state = Account::default();
        for row in &rows {
            state.apply(&baseline::decode_json(row.get::<&str, _>(0), row.get::<&[u8], _>(1)));
        }
        (state, rows.len() as i64)
    }
}

/// One writer of one account on PostgreSQL that keeps the account's state
/// in memory (it is the account's only writer): decide, then insert at the
/// next version, one transaction per command, the primary key as the
/// conflict check. Through a [`PgCommitter`] when it has one.
pub struct PgCachedAccount {
    bank: PgBank,
    committer: Option<PgCommitter>,
    account: String,
    state: Account,
    version: i64,
}

impl PgCachedAccount {
    /// A writer of `account`, nothing of it loaded yet (a new account).
    pub fn new(bank: &PgBank, committer: Option<&PgCommitter>, account: &str) -> Self {
        PgCachedAccount {
            bank: bank.clone(),
            committer: committer.cloned(),
            account: account.to_owned(),
            state: Account::default(),
            version: 0,
        }
    }

    /// Decides on the cached state, appends, evolves.
    pub async fn handle(&mut self, cmd: &Command) -> Result<(), baseline::Error> {
        let event = self.state.decide(cmd)?;
        let (name, payload) = encode(&event);
        let version = self.version + 1;
        let stored = match &self.committer {
            Some(committer) => committer.append(&self.account, version, name, payload).await,
            None => sqlx::query(AssertSqlSafe(self.bank.insert.as_str()).into_sql_str())
                .bind(&self.account)
                .bind(version)
                .bind(name)
                .bind(payload)
                .execute(&self.bank.pool)
                .await
                .is_ok(),
        };
        assert!(
            stored,
            "`{}` has no other writer: version {version} is free",
            self.account
        );
        self.state.apply(&event);
        self.version = version;
        Ok(())
    }
}

/// An append handed to a [`PgCommitter`], and where its outcome goes.
struct Handed {
    stream: String,
    version: i64,
    name: &'static str,
    payload: Vec<u8>,
    done: tokio::sync::oneshot::Sender<bool>,
}

/// The hand-written group commit: writers hand their appends to one task,
/// which writes everything handed to it since its last statement in one
/// `INSERT ... ON CONFLICT DO NOTHING` (one transaction), each append with
/// its own version check (the primary key), and tells each writer whether
/// its row went in.
#[derive(Clone)]
pub struct PgCommitter {
    queue: tokio::sync::mpsc::UnboundedSender<Handed>,
}

impl PgCommitter {
    /// Starts the committer task for `bank`'s table.
    pub fn start(bank: &PgBank) -> Self {
        let (queue, mut handed) = tokio::sync::mpsc::unbounded_channel::<Handed>();
        let pool = bank.pool.clone();
        let insert = bank.insert_many.clone();
        tokio::spawn(async move {
            let mut conn = pool.acquire().await.expect("a connection");
            let mut batch = Vec::new();
            while let Some(first) = handed.recv().await {
                batch.push(first);
                while batch.len() < 64
                    && let Ok(next) = handed.try_recv()
                {
                    batch.push(next);
                }
                let streams: Vec<&str> = batch.iter().map(|h| h.stream.as_str()).collect();
                let versions: Vec<i64> = batch.iter().map(|h| h.version).collect();
                let names: Vec<&str> = batch.iter().map(|h| h.name).collect();
                let payloads: Vec<&[u8]> = batch.iter().map(|h| h.payload.as_slice()).collect();
                let stored: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(insert.as_str()).into_sql_str())
                    .bind(&streams)
                    .bind(&versions)
                    .bind(&names)
                    .bind(&payloads)
                    .fetch_all(&mut *conn)
                    .await
                    .expect("insert a batch");
                for h in batch.drain(..) {
                    let ok = stored.iter().any(|(s, v)| *s == h.stream && *v == h.version);
                    let _ = h.done.send(ok);
                }
            }
        });
        PgCommitter { queue }
    }

    /// Appends one event at `version` of `stream`: whether it went in.
    pub async fn append(&self, stream: &str, version: i64, name: &'static str, payload: Vec<u8>) -> bool {
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.queue
            .send(Handed {
                stream: stream.to_owned(),
                version,
                name,
                payload,
                done,
            })
            .expect("the committer runs");
        outcome.await.expect("the committer answers")
    }
}

/// A pool to PostgreSQL at `ES_POSTGRES_URL`, or `None` when none answers.
pub async fn pg_pool() -> Option<PgPool> {
    let url = std::env::var("ES_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    PgPoolOptions::new().max_connections(16).connect(&url).await.ok()
}

/// A migrated framework store in a fresh `schema` on `pool`.
pub async fn pg_store(pool: PgPool, schema: &str) -> PostgresStore {
    let store = PostgresStore::from_pool_with(
        pool,
        PostgresOptions {
            schema: schema.to_owned(),
            ..Default::default()
        },
    )
    .expect("a valid schema");
    store.migrate().await.expect("migrate");
    store
}

/// A dispatcher on a fresh PostgreSQL store (`pg_store`) whose committer
/// is already connected: an account of its own is opened first, so the
/// timed part starts as the baselines' does, on open connections, and does
/// not time one TLS connection being made.
pub async fn pg_dispatcher(pool: PgPool, schema: &str) -> Dispatcher<PostgresStore> {
    warmed(Dispatcher::new(pg_store(pool, schema).await)).await
}

/// `app` after it opened an account of its own (`warm-up`), which
/// connects what a store connects on its first append.
pub async fn warmed<S: es_core::EventStore>(app: Dispatcher<S>) -> Dispatcher<S> {
    framework_deposits(&app, "warm-up", 0).await;
    app
}

/// Drops benchmark schemas left by earlier runs.
pub async fn pg_clean(pool: &PgPool) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE 'es\\_bench\\_%'")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    for name in names {
        sqlx::query(AssertSqlSafe(format!(r#"DROP SCHEMA "{name}" CASCADE"#)).into_sql_str())
            .execute(pool)
            .await
            .expect("drop an old benchmark schema");
    }
}

/// The hand-written bank on SQLite through rusqlite, durable commits.
pub struct SqliteBank {
    conn: Connection,
}

impl SqliteBank {
    /// Opens (creates) its file.
    pub fn open(path: &std::path::Path) -> Self {
        let conn = Connection::open(path).expect("open");
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .expect("busy timeout");
        conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
        conn.pragma_update(None, "synchronous", "FULL").expect("durable");
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (stream TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, \
             payload BLOB NOT NULL, PRIMARY KEY (stream, version))",
        )
        .expect("create the baseline table");
        SqliteBank { conn }
    }

    fn fold(&self, account: &str) -> (Account, i64) {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, payload FROM events WHERE stream = ?1 ORDER BY version")
            .expect("prepare");
        let mut rows = stmt.query([account]).expect("load");
        let mut state = Account::default();
        let mut n = 0;
        while let Some(row) = rows.next().expect("row") {
            let name = row.get_ref(0).and_then(|v| Ok(v.as_str()?)).expect("name");
            let payload = row.get_ref(1).and_then(|v| Ok(v.as_blob()?)).expect("payload");
            state.apply(&baseline::decode_json(name, payload));
            n += 1;
        }
        (state, n)
    }

    /// Loads, folds, decides, inserts.
    pub fn handle(&self, cmd: &Command) -> Result<(), baseline::Error> {
        let account = account_of(cmd);
        let (state, n) = self.fold(account);
        let event = state.decide(cmd)?;
        let (name, payload) = encode(&event);
        self.conn
            .prepare_cached("INSERT INTO events (stream, version, name, payload) VALUES (?1, ?2, ?3, ?4)")
            .expect("prepare")
            .execute(params![account, n + 1, name, payload])
            .expect("insert");
        Ok(())
    }

    /// Loads and folds one account.
    pub fn load(&self, account: &str) -> Account {
        self.fold(account).0
    }

    /// Stores the events of `workloads::events(n)` for `account`, in one
    /// transaction.
    pub fn fill(&self, account: &str, n: usize) {
        let (_, events) = crate::workloads::events(n);
        self.conn.execute_batch("BEGIN").expect("begin");
        for (i, event) in events.iter().enumerate() {
            let (name, payload) = encode(event);
            self.conn
                .prepare_cached("INSERT INTO events (stream, version, name, payload) VALUES (?1, ?2, ?3, ?4)")
                .expect("prepare")
                .execute(params![account, i as i64 + 1, name, payload])
                .expect("insert");
        }
        self.conn.execute_batch("COMMIT").expect("commit");
    }
}

/// An append handed to a [`SqliteCommitter`], and where its outcome goes.
struct SqliteHanded {
    stream: String,
    version: i64,
    name: &'static str,
    payload: Vec<u8>,
    done: tokio::sync::oneshot::Sender<bool>,
}

/// The hand-written group commit on SQLite: writers hand their appends to
/// one thread, which writes everything handed to it since its last commit
/// in one transaction (one disk flush), each append with its own version
/// check (`INSERT OR IGNORE` on the primary key), and tells each writer
/// whether its row went in.
#[derive(Clone)]
pub struct SqliteCommitter {
    queue: std::sync::mpsc::Sender<SqliteHanded>,
}

impl SqliteCommitter {
    /// Starts the committer thread on the file at `path`; it ends when the
    /// last clone is dropped.
    pub fn start(path: &std::path::Path) -> Self {
        let (queue, handed) = std::sync::mpsc::channel::<SqliteHanded>();
        let bank = SqliteBank::open(path);
        std::thread::spawn(move || {
            let conn = bank.conn;
            let mut batch = Vec::new();
            while let Ok(first) = handed.recv() {
                batch.push(first);
                while batch.len() < 64
                    && let Ok(next) = handed.try_recv()
                {
                    batch.push(next);
                }
                conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
                let mut stored = Vec::with_capacity(batch.len());
                {
                    let mut insert = conn
                        .prepare_cached(
                            "INSERT OR IGNORE INTO events (stream, version, name, payload) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .expect("prepare");
                    for h in &batch {
                        let n = insert
                            .execute(params![h.stream, h.version, h.name, h.payload])
                            .expect("insert");
                        stored.push(n == 1);
                    }
                }
                conn.execute_batch("COMMIT").expect("commit");
                for (h, ok) in batch.drain(..).zip(stored) {
                    let _ = h.done.send(ok);
                }
            }
        });
        SqliteCommitter { queue }
    }

    /// Appends one event at `version` of `stream`: whether it went in.
    pub async fn append(&self, stream: &str, version: i64, name: &'static str, payload: Vec<u8>) -> bool {
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.queue
            .send(SqliteHanded {
                stream: stream.to_owned(),
                version,
                name,
                payload,
                done,
            })
            .expect("the committer runs");
        outcome.await.expect("the committer answers")
    }
}

/// `tasks` tasks, each the only writer of its account with the state
/// cached, opening it and making `COMMANDS / tasks` deposits through one
/// [`SqliteCommitter`] on the file at `path`.
pub async fn sqlite_one_committer_writers(path: &std::path::Path, tasks: usize) {
    let committer = SqliteCommitter::start(path);
    let tasks: Vec<_> = (0..tasks)
        .map(|t| {
            let committer = committer.clone();
            tokio::spawn(async move {
                let account = format!("t{t}");
                let commands = std::iter::once(crate::stores::open(&account)).chain(
                    std::iter::repeat_with(|| crate::stores::deposit(&account)).take(crate::stores::COMMANDS / tasks),
                );
                let (mut state, mut version) = (Account::default(), 0);
                for cmd in commands {
                    let event = state.decide(&cmd).expect("accepted");
                    let (name, payload) = encode(&event);
                    assert!(
                        committer.append(&account, version + 1, name, payload).await,
                        "no other writer"
                    );
                    state.apply(&event);
                    version += 1;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}

/// Opens `account` through the framework and makes `commands` deposits.
pub async fn framework_deposits<S: es_core::EventStore>(app: &Dispatcher<S>, account: &str, commands: usize) {
    let id = AccountId::new(account);
    app.dispatch(OpenAccount {
        account: id.clone(),
        owner: "ada".into(),
    })
    .await
    .expect("opens");
    for _ in 0..commands {
        app.dispatch(Deposit {
            account: id.clone(),
            amount: 1,
        })
        .await
        .expect("deposits");
    }
}

/// The balance the framework loads for `account`.
pub async fn framework_balance<S: es_core::EventStore>(app: &Dispatcher<S>, account: &str) -> u64 {
    app.load::<BankAccount>(&AccountId::new(account))
        .await
        .expect("loads")
        .balance
}

/// Opens an SQLite store for the framework, durable commits.
pub async fn sqlite_store(path: &std::path::Path) -> SqliteStore {
    SqliteStore::open(path).await.expect("open")
}
