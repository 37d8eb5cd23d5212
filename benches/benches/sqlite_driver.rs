//! Why es-sqlite uses rusqlite: the same hand-written bank on SQLite through
//! rusqlite and through sqlx's SQLite driver, durable commits, same run.
//! (Here "framework" is rusqlite and "baseline" is sqlx, so the report's
//! ratio reads as "how many times faster rusqlite is".)

use std::time::Duration;

use benches::baseline::{self, Account, Command};
use benches::sql::{SqliteBank, encode};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

struct SqlxBank {
    pool: SqlitePool,
}

impl SqlxBank {
    async fn open(path: &std::path::Path) -> Self {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .expect("open");
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS events (stream TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, \
             payload BLOB NOT NULL, PRIMARY KEY (stream, version))",
        )
        .execute(&pool)
        .await
        .expect("create");
        SqlxBank { pool }
    }

    async fn fold(&self, account: &str) -> (Account, i64) {
        let rows = sqlx::query("SELECT name, payload FROM events WHERE stream = ?1 ORDER BY version")
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

    async fn handle(&self, cmd: &Command) {
        let (Command::Deposit { account, .. } | Command::Open { account, .. } | Command::Withdraw { account, .. }) =
            cmd;
        let (state, n) = self.fold(account).await;
        let (name, payload) = encode(&state.decide(cmd).expect("decides"));
        sqlx::query("INSERT INTO events (stream, version, name, payload) VALUES (?1, ?2, ?3, ?4)")
            .bind(account)
            .bind(n + 1)
            .bind(name)
            .bind(payload)
            .execute(&self.pool)
            .await
            .expect("insert");
    }
}

fn drivers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("es-driver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut n = 0;
    let mut file = move || {
        n += 1;
        dir.join(format!("{n}.db"))
    };
    let open = Command::Open {
        account: "a".into(),
        owner: "o".into(),
    };
    let deposit = Command::Deposit {
        account: "a".into(),
        amount: 1,
    };

    let mut g = c.benchmark_group("sqlite_driver_200_commands");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("framework", |b| {
        b.iter_batched(
            || SqliteBank::open(&file()),
            |bank| {
                bank.handle(&open).expect("open");
                for _ in 0..200 {
                    bank.handle(&deposit).expect("deposit");
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            || rt.block_on(SqlxBank::open(&file())),
            |bank| {
                rt.block_on(async {
                    bank.handle(&open).await;
                    for _ in 0..200 {
                        bank.handle(&deposit).await;
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("sqlite_driver_load_10000_events");
    g.sample_size(20);
    let path = file();
    let bank = SqliteBank::open(&path);
    bank.fill("big", 10_000);
    let sqlx_bank = rt.block_on(SqlxBank::open(&path));
    assert_eq!(bank.load("big"), rt.block_on(sqlx_bank.fold("big")).0);
    g.bench_function("framework", |b| b.iter(|| bank.load("big").balance));
    g.bench_function("baseline", |b| b.iter(|| rt.block_on(sqlx_bank.fold("big")).0.balance));
    g.finish();
}

criterion_group!(driver, drivers);
criterion_main!(driver);
