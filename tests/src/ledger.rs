//! Database read models for tests: a ledger of every deposit and
//! withdrawal, one row per event, keyed by the event's position, so an
//! event applied twice would fail on the primary key.

use es_core::EventContext;
use examples::bank::{MoneyDeposited, MoneyWithdrawn};

/// The ledger in the store's SQLite file. Handlers may be slowed down, to
/// be killed in the middle of a catch-up.
#[derive(Debug, Default)]
pub struct SqliteLedger {
    /// Sleep this long in each handler.
    pub slow: std::time::Duration,
    /// When to panic.
    pub poison: crate::faulty::Poison,
}

/// Creates the ledger's table.
pub const SQLITE_LEDGER: &str =
    "CREATE TABLE IF NOT EXISTS ledger (position INTEGER PRIMARY KEY, account TEXT NOT NULL, change INTEGER NOT NULL)";

impl SqliteLedger {
    /// The ledger's table, declared for its projection.
    pub fn tables() -> es_core::Tables {
        es_core::Tables::new().migration(SQLITE_LEDGER).owns("ledger")
    }

    fn row(&self, tx: &rusqlite::Connection, position: u64, account: &str, change: i64) -> rusqlite::Result<()> {
        std::thread::sleep(self.slow);
        self.poison.strike(change.unsigned_abs());
        tx.execute(
            "INSERT INTO ledger (position, account, change) VALUES (?1, ?2, ?3)",
            rusqlite::params![position as i64, account, change],
        )
        .map(drop)
    }
}

#[es_core::handlers(read_model)]
impl SqliteLedger {
    #[apply]
    fn deposited(
        &self,
        e: &MoneyDeposited,
        ctx: &EventContext<'_>,
        tx: &mut rusqlite::Connection,
    ) -> rusqlite::Result<()> {
        self.row(tx, ctx.position, ctx.aggregate_id, e.amount as i64)
    }

    #[apply]
    fn withdrawn(
        &self,
        e: &MoneyWithdrawn,
        ctx: &EventContext<'_>,
        tx: &mut rusqlite::Connection,
    ) -> rusqlite::Result<()> {
        self.row(tx, ctx.position, ctx.aggregate_id, -(e.amount as i64))
    }
}

/// The ledger in PostgreSQL, in the test's schema.
#[derive(Debug)]
pub struct PgLedger {
    insert: String,
    /// Sleep this long in each handler.
    pub slow: std::time::Duration,
    /// Counts handlers running at once, to check that only one runner works.
    pub running: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The most handlers ever seen running at once.
    pub most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// When to panic.
    pub poison: crate::faulty::Poison,
    /// Recorded with each row: which runner applied it.
    pub runner: &'static str,
}

impl PgLedger {
    /// A ledger whose table lives in `schema`.
    pub fn new(schema: &str) -> Self {
        PgLedger {
            insert: format!(
                r#"INSERT INTO "{schema}".ledger (position, account, change, runner) VALUES ($1, $2, $3, $4)"#
            ),
            slow: std::time::Duration::ZERO,
            running: Default::default(),
            most: Default::default(),
            poison: Default::default(),
            runner: "",
        }
    }

    /// Creates the ledger's table in `schema` without a key, so an event
    /// applied twice shows as two rows instead of failing its page.
    pub fn create_unkeyed(schema: &str) -> String {
        format!(
            r#"CREATE TABLE IF NOT EXISTS "{schema}".ledger (position BIGINT NOT NULL, account TEXT NOT NULL, change BIGINT NOT NULL, runner TEXT NOT NULL)"#
        )
    }

    /// The ledger's table in `schema`, declared for its projection.
    pub fn tables(schema: &str) -> es_core::Tables {
        es_core::Tables::new()
            .migration(Self::create(schema))
            .owns(format!(r#""{schema}".ledger"#))
    }

    /// Creates the ledger's table in `schema`.
    pub fn create(schema: &str) -> String {
        format!(
            r#"CREATE TABLE IF NOT EXISTS "{schema}".ledger (position BIGINT PRIMARY KEY, account TEXT NOT NULL, change BIGINT NOT NULL, runner TEXT NOT NULL)"#
        )
    }

    async fn row(&self, tx: &mut sqlx::PgConnection, position: u64, account: &str, change: i64) -> sqlx::Result<()> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        /// Counts down also when the runner is aborted mid-handler.
        struct Running<'a>(&'a AtomicUsize);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        let _running = Running(&self.running);
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.slow).await;
        self.poison.strike(change.unsigned_abs());
        sqlx::query(sqlx::AssertSqlSafe(self.insert.as_str()))
            .bind(position as i64)
            .bind(account)
            .bind(change)
            .bind(self.runner)
            .execute(tx)
            .await
            .map(drop)
    }
}

#[es_core::handlers(read_model)]
impl PgLedger {
    #[apply]
    async fn deposited(
        &self,
        e: &MoneyDeposited,
        ctx: &EventContext<'_>,
        tx: &mut sqlx::PgConnection,
    ) -> sqlx::Result<()> {
        self.row(tx, ctx.position, ctx.aggregate_id, e.amount as i64).await
    }

    #[apply]
    async fn withdrawn(
        &self,
        e: &MoneyWithdrawn,
        ctx: &EventContext<'_>,
        tx: &mut sqlx::PgConnection,
    ) -> sqlx::Result<()> {
        self.row(tx, ctx.position, ctx.aggregate_id, -(e.amount as i64)).await
    }
}

/// A ledger for partitioned runs, in PostgreSQL: one row per applied
/// deposit or withdrawal with no key, so an event applied twice shows as
/// two rows, and each row records whether an event of its stream with a
/// later position had been applied before it (`late`), so an order broken
/// within a stream shows too.
#[derive(Debug)]
pub struct OrderedLedger {
    insert: String,
    /// Sleep this long in each handler.
    pub slow: std::time::Duration,
    /// Recorded with each row: which runner applied it.
    pub runner: String,
}

impl OrderedLedger {
    /// The ledger in table `table` of `schema`.
    pub fn new(schema: &str, table: &str) -> Self {
        OrderedLedger {
            insert: format!(
                r#"INSERT INTO "{schema}".{table} (position, account, change, runner, late)
                   SELECT $1, $2, $3, $4,
                          EXISTS (SELECT 1 FROM "{schema}".{table} WHERE account = $2 AND position > $1)"#
            ),
            slow: std::time::Duration::ZERO,
            runner: String::new(),
        }
    }

    /// The ledger's table, declared for its projection.
    pub fn tables(schema: &str, table: &str) -> es_core::Tables {
        es_core::Tables::new()
            .migration(format!(
                r#"CREATE TABLE "{schema}".{table} (position BIGINT NOT NULL, account TEXT NOT NULL,
                   change BIGINT NOT NULL, runner TEXT NOT NULL, late BOOLEAN NOT NULL);
                   CREATE INDEX ON "{schema}".{table} (account, position)"#
            ))
            .owns(format!(r#""{schema}".{table}"#))
    }

    async fn row(&self, tx: &mut sqlx::PgConnection, position: u64, account: &str, change: i64) -> sqlx::Result<()> {
        if !self.slow.is_zero() {
            tokio::time::sleep(self.slow).await;
        }
        sqlx::query(sqlx::AssertSqlSafe(self.insert.as_str()))
            .bind(position as i64)
            .bind(account)
            .bind(change)
            .bind(&self.runner)
            .execute(tx)
            .await
            .map(drop)
    }
}

#[es_core::handlers(read_model)]
impl OrderedLedger {
    #[apply]
    async fn deposited(
        &self,
        e: &MoneyDeposited,
        ctx: &EventContext<'_>,
        tx: &mut sqlx::PgConnection,
    ) -> sqlx::Result<()> {
        self.row(tx, ctx.position, ctx.aggregate_id, e.amount as i64).await
    }

    #[apply]
    async fn withdrawn(
        &self,
        e: &MoneyWithdrawn,
        ctx: &EventContext<'_>,
        tx: &mut sqlx::PgConnection,
    ) -> sqlx::Result<()> {
        self.row(tx, ctx.position, ctx.aggregate_id, -(e.amount as i64)).await
    }
}

/// An in-memory read model for partitioned runs: each account's versions
/// in the order they were applied, and each application printed to stdout
/// (`applied <position> <account> <version>`) as it happens, so a test can
/// follow a runner process it kills.
#[derive(Debug, Default)]
pub struct AppliedOrder {
    /// Each account's versions, in the order applied.
    pub versions: std::collections::HashMap<String, Vec<u64>>,
    /// Print each application.
    pub print: bool,
}

impl AppliedOrder {
    fn applied(&mut self, ctx: &EventContext<'_>) {
        if self.print {
            println!("applied {} {} {}", ctx.position, ctx.aggregate_id, ctx.version);
        }
        self.versions
            .entry(ctx.aggregate_id.to_owned())
            .or_default()
            .push(ctx.version);
    }
}

#[es_core::handlers(read_model)]
impl AppliedOrder {
    #[apply]
    fn deposited(&mut self, _e: &MoneyDeposited, ctx: &EventContext<'_>) {
        self.applied(ctx);
    }

    #[apply]
    fn withdrawn(&mut self, _e: &MoneyWithdrawn, ctx: &EventContext<'_>) {
        self.applied(ctx);
    }
}
