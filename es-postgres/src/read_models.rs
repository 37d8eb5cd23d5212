//! The tables of read models kept in PostgreSQL: their migrations, and the
//! version each read model's tables are at (`read_models` in the store's
//! schema).

use es_core::{StoreError, Tables};
use sqlx::{AssertSqlSafe, Connection};

use crate::{PostgresStore, error};

/// Brings read model `name`'s tables to the version `tables` declares: each
/// missing migration in one transaction with the version it reaches, so a
/// crash between two leaves the tables at one of them. Migrations of one
/// schema's read models take turns under a transaction-scoped advisory
/// lock, so racing runners run each migration once.
pub(crate) async fn migrate(store: &PostgresStore, name: &str, tables: &Tables) -> Result<(), StoreError> {
    let s = store.schema();
    let mut conn = store
        .pool()
        .acquire()
        .await
        .map_err(error("connect to migrate a read model"))?;
    loop {
        let mut tx = conn.begin().await.map_err(error("begin a read model migration"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("es-read-model-tables:{s}"))
            .execute(&mut *tx)
            .await
            .map_err(error("lock the read models' tables"))?;
        sqlx::query(AssertSqlSafe(format!(
            r#"CREATE TABLE IF NOT EXISTS "{s}".read_models (name TEXT PRIMARY KEY, version BIGINT NOT NULL)"#
        )))
        .execute(&mut *tx)
        .await
        .map_err(error("create the read models' version table"))?;
        let stored: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            r#"SELECT version FROM "{s}".read_models WHERE name = $1"#
        )))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(error("read a read model's version"))?;
        let stored = crate::append::stored_u64(stored.unwrap_or(0), || {
            format!("read model `{name}`'s tables are at a negative version")
        })?;
        let Some((version, sql)) = tables.next_migration("postgres", name, stored)? else {
            return Ok(());
        };
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Backend {
                store: "postgres",
                operation: "run a read model's migration",
                source: format!("read model `{name}`, migration {version}: {e}").into(),
            })?;
        sqlx::query(AssertSqlSafe(format!(
            r#"INSERT INTO "{s}".read_models (name, version) VALUES ($1, $2)
               ON CONFLICT (name) DO UPDATE SET version = excluded.version"#
        )))
        .bind(name)
        .bind(crate::to_i64(version, "version")?)
        .execute(&mut *tx)
        .await
        .map_err(error("record a read model's version"))?;
        tx.commit().await.map_err(error("commit a read model migration"))?;
        tracing::info!(read_model = %name, version, "migrated a read model's tables");
    }
}
