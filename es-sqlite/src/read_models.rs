//! The tables of read models kept in the file: their migrations, and the
//! version each read model's tables are at (`es_read_models`).

use es_core::{StoreError, Tables};
use rusqlite::{Connection, OptionalExtension};

use crate::error;

/// Brings read model `name`'s tables to the version `tables` declares: each
/// missing migration in one write transaction with the version it reaches,
/// so a crash between two leaves the tables at one of them. Runners racing
/// on one file take turns under SQLite's write lock and run each migration
/// once.
pub(crate) fn migrate(conn: &mut Connection, name: &str, tables: &Tables) -> Result<(), StoreError> {
    loop {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(error("begin a read model migration"))?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS es_read_models (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            .map_err(error("create es_read_models"))?;
        let stored: i64 = tx
            .query_row("SELECT version FROM es_read_models WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(error("read a read model's version"))?
            .unwrap_or(0);
        let stored = u64::try_from(stored).map_err(|_| StoreError::Corrupt {
            store: "sqlite",
            detail: format!("read model `{name}`'s tables are at version {stored}"),
        })?;
        let Some((version, sql)) = tables.next_migration("sqlite", name, stored)? else {
            return Ok(());
        };
        tx.execute_batch(sql).map_err(|e| StoreError::Backend {
            store: "sqlite",
            operation: "run a read model's migration",
            source: format!("read model `{name}`, migration {version}: {e}").into(),
        })?;
        tx.execute(
            "INSERT INTO es_read_models (name, version) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET version = excluded.version",
            rusqlite::params![name, crate::to_i64(version, "version")?],
        )
        .map_err(error("record a read model's version"))?;
        tx.commit().map_err(error("commit a read model migration"))?;
        tracing::info!(read_model = %name, version, "migrated a read model's tables");
    }
}
