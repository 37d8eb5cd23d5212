//! SQLite stores in temporary files for tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use es_sqlite::SqliteStore;

/// A fresh directory under the system's temporary directory, unique to
/// this process and call; removed by the OS's cleanup, not by the test, so
/// a failure leaves the file to inspect.
pub fn temp_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "es-tests-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        es_core::EventId::new()
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// A store in a new file.
pub async fn temp_store() -> SqliteStore {
    SqliteStore::open(temp_dir().join("events.db"))
        .await
        .expect("open a SQLite file")
}
