//! PostgreSQL for tests: each store gets its own schema, so test runs (and
//! tests within a run) never see each other's events.
//!
//! The server is found at `ES_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). The tests work in a
//! database of their own on it, `es_tests` (created when missing), never in
//! the server's `postgres` database; a URL naming another database is used
//! as given. When no server answers, the tests that need it say so loudly
//! and skip, unless `ES_REQUIRE_POSTGRES=1` (CI sets it), which makes them
//! fail instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use es_postgres::{PostgresOptions, PostgresStore};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool, SqlSafeStr};
use tokio::sync::OnceCell;

/// The tests' own database when `ES_POSTGRES_URL` names the server's
/// maintenance database (or none).
pub const TEST_DATABASE: &str = "es_tests";

/// The server as configured in `ES_POSTGRES_URL`.
pub fn server_url() -> String {
    std::env::var("ES_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The database the tests use: [`TEST_DATABASE`] on the configured server,
/// unless the URL names a database other than `postgres`.
pub fn url() -> String {
    with_database(&server_url())
}

fn with_database(server: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let authority_at = base.find("://").map_or(0, |i| i + 3);
    let (root, database) = match base[authority_at..].find('/') {
        Some(slash) => base.split_at(authority_at + slash),
        None => (base, ""),
    };
    let database = database.trim_start_matches('/');
    let chosen = if database.is_empty() || database == "postgres" {
        TEST_DATABASE
    } else {
        database
    };
    match query {
        Some(query) => format!("{root}/{chosen}?{query}"),
        None => format!("{root}/{chosen}"),
    }
}

/// Creates the tests' database if it is missing (concurrent test processes
/// may race to create it: losing the race is fine).
async fn ensure_database(server: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(server)
        .await?;
    if exists {
        return Ok(());
    }
    let create = format!("CREATE DATABASE \"{name}\"");
    match sqlx::query(AssertSqlSafe(create)).execute(server).await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => Ok(()),
        Err(e) => Err(e),
    }
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
            let connect = |url: String| async move {
                PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(&url)
                    .await
            };
            let pool = match connect(server_url()).await {
                Ok(server) => {
                    let created = if url != server_url() {
                        ensure_database(&server, TEST_DATABASE).await
                    } else {
                        Ok(())
                    };
                    server.close().await;
                    match created {
                        Ok(()) => connect(url.clone()).await,
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
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

/// A PostgreSQL server of the test's own: Debian's `initdb` and `pg_ctl`
/// (run as the `postgres` user when the tests run as root), on a free
/// loopback port, under a temporary directory; stopped and removed when
/// dropped. For a test that needs a server no other client uses (no
/// transaction of another client holds back what `VACUUM` may remove).
/// The shared server is never touched.
pub struct PrivateServer {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub url: String,
}

impl PrivateServer {
    /// Starts one, or says loudly why it cannot and returns `None`
    /// (a failure under `ES_REQUIRE_POSTGRES=1`).
    pub fn start() -> Option<PrivateServer> {
        match Self::try_start() {
            Ok(server) => Some(server),
            Err(e) if std::env::var("ES_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
                panic!("ES_REQUIRE_POSTGRES=1 but a private PostgreSQL server could not be started: {e}")
            }
            Err(e) => {
                eprintln!("*** skipping a test: a private PostgreSQL server could not be started: {e}");
                None
            }
        }
    }

    fn try_start() -> Result<PrivateServer, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("/usr/lib/postgresql: {e}"))?
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .ok_or("no initdb under /usr/lib/postgresql/*/bin")?;
        let dir = std::env::temp_dir().join(format!(
            "es-private-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let server = PrivateServer {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            bin,
        };
        if is_root() {
            run("chown", &["-R", "postgres:postgres", &server.dir.to_string_lossy()])?;
        }
        let data = server.dir.join("data");
        server.pg(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            server.dir.display()
        );
        server.pg(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &options,
                "-l",
                &server.dir.join("log").to_string_lossy(),
                "-w",
                "start",
            ],
        )?;
        Ok(server)
    }

    /// Runs one of the server's programs, as `postgres` when root.
    fn pg(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let path = self.bin.join(program);
        let path = path.to_string_lossy();
        if is_root() {
            let mut all = vec!["-u", "postgres", "--", path.as_ref()];
            all.extend_from_slice(args);
            run("runuser", &all)
        } else {
            run(&path, args)
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.pg(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_tests_never_use_the_maintenance_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/es_tests"
        );
        assert_eq!(with_database("postgres://u@h:1"), "postgres://u@h:1/es_tests");
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable"),
            "postgres://u@h/es_tests?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h/mine"), "postgres://u@h/mine");
    }
}
