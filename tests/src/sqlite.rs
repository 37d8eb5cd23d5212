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

/// Turns the closed store file at `path` back into the layout of schema
/// version 4, as a release before packed cells wrote it: each event's
/// payload in its own cell, no `packed` column.
pub fn unpack(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).expect("open the file");
    let rows: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT position, packed FROM es_events")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("read the packed cells");
    for (position, cell) in rows {
        let packed = es_sqlite::packed::Packed::read(&cell).expect("a packed cell");
        conn.execute(
            "UPDATE es_events SET payload = ?1 WHERE position = ?2",
            rusqlite::params![packed.payload, position],
        )
        .expect("unpack a row");
    }
    conn.execute_batch("ALTER TABLE es_events DROP COLUMN packed; PRAGMA user_version = 4;")
        .expect("drop the packed column");
}

/// Replaces the payload of the event at `position` in the store file at
/// `path`, in its packed cell, as a tool editing the file would.
pub fn set_payload(path: &std::path::Path, position: u64, payload: &[u8]) {
    let conn = rusqlite::Connection::open(path).expect("open the file");
    let cell: Vec<u8> = conn
        .query_row(
            "SELECT packed FROM es_events WHERE position = ?1",
            [position as i64],
            |r| r.get(0),
        )
        .expect("read the packed cell");
    let edited = es_sqlite::packed::Packed::read(&cell)
        .expect("a packed cell")
        .with_payload(payload);
    conn.execute(
        "UPDATE es_events SET packed = ?1 WHERE position = ?2",
        rusqlite::params![edited, position as i64],
    )
    .expect("write the packed cell");
}
