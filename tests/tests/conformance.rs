//! The store conformance suite against every store. Adding a store is one
//! module with one line.

mod memory {
    tests::conformance_tests!(|| async { Some(es_core::InMemoryStore::new()) });
}

mod sqlite_memory {
    tests::conformance_tests!(|| async { Some(es_sqlite::SqliteStore::memory().await.unwrap()) });
}

mod sqlite_file {
    tests::conformance_tests!(|| async { Some(tests::sqlite::temp_store().await) });
}

mod postgres {
    tests::conformance_tests!(|| async { tests::postgres::store().await });
}
