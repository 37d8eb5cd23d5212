//! PostgreSQL for tests: each store gets its own schema, so test runs (and
//! tests within a run) never see each other's events.
//!
//! The server is found at `ES_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When none answers, the
//! tests that need it say so loudly and skip, unless `ES_REQUIRE_POSTGRES=1`
//! (CI sets it), which makes them fail instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use es_postgres::{PostgresOptions, PostgresStore};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool, SqlSafeStr};
use tokio::sync::OnceCell;

/// Where the tests look for PostgreSQL.
pub fn url() -> String {
    std::env::var("ES_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn required() -> bool {
    std::env::var("ES_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

static AVAILABLE: OnceCell<bool> = OnceCell::const_new();

/// Whether PostgreSQL answers (asked once per process; says so loudly when
/// it does not, and fails instead when it is required).
pub async fn available() -> bool {
    *AVAILABLE
        .get_or_init(|| async {
            let url = url();
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect(&url)
                .await;
            match pool {
                Ok(pool) => {
                    drop_stale_schemas(&pool).await;
                    pool.close().await;
                    true
                }
                Err(e) if required() => panic!("ES_REQUIRE_POSTGRES=1 but PostgreSQL at {url} does not answer: {e}"),
                Err(e) => {
                    eprintln!(
                        "\n*** SKIPPING PostgreSQL tests: nothing answers at {url} ({e}).\n*** Start PostgreSQL or set ES_POSTGRES_URL; CI sets ES_REQUIRE_POSTGRES=1 so they never skip there.\n"
                    );
                    false
                }
            }
        })
        .await
}

/// A small pool for a test's own SQL, or `None` when PostgreSQL is absent.
pub async fn pool() -> Option<PgPool> {
    if !available().await {
        return None;
    }
    Some(
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&url())
            .await
            .expect("connect to PostgreSQL"),
    )
}

/// Drops the schemas of earlier test processes that are gone.
async fn drop_stale_schemas(pool: &PgPool) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE 'es\\_test\\_%'")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    for name in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive =
            pid.is_some_and(|p| p == std::process::id() || std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = sqlx::query(AssertSqlSafe(format!(r#"DROP SCHEMA IF EXISTS "{name}" CASCADE"#)).into_sql_str())
                .execute(pool)
                .await;
        }
    }
}

/// A fresh schema name for this process.
pub fn schema_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "es_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A migrated store in a fresh schema, or `None` when PostgreSQL is absent.
pub async fn store() -> Option<PostgresStore> {
    store_with(PostgresOptions {
        schema: schema_name(),
        max_connections: 20,
        ..PostgresOptions::default()
    })
    .await
}

/// A migrated store with `options` (its schema should be fresh).
pub async fn store_with(options: PostgresOptions) -> Option<PostgresStore> {
    if !available().await {
        return None;
    }
    let store = PostgresStore::connect_with(&url(), options)
        .await
        .expect("connect to PostgreSQL");
    store.migrate().await.expect("migrate");
    Some(store)
}

/// A migrated store in a fresh schema on `pool` (a pool with settings of
/// the test's own).
pub async fn store_on(pool: PgPool) -> PostgresStore {
    let store = PostgresStore::from_pool_with(
        pool,
        PostgresOptions {
            schema: schema_name(),
            ..PostgresOptions::default()
        },
    )
    .expect("a valid schema name");
    store.migrate().await.expect("migrate");
    store
}
