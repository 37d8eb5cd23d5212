//! The data keys of personal data, in `<schema>.personal_keys`.
//!
//! Forgetting a subject sets its row's key to NULL (the row keeps the
//! subject and when it was forgotten) and then runs `VACUUM` on the key
//! table, which removes the dead row version that still held the wrapped
//! key from the table's pages as soon as no transaction can see it. What
//! the store cannot reach, and the operator must see to: the write-ahead
//! log segments and base backups taken before the forget (they age out
//! with the archive's retention), and replicas' copies of those segments.
//! `VACUUM FULL <schema>.personal_keys` rewrites the table into new files
//! where a stricter reading of "erased" is wanted.

use std::sync::Arc;

use es_core::StoreError;
use es_core::personal::{KeyBackend, KeyFuture, KeyProvider, KeyWrite, Keyring, StoredKey};
use es_core::store::validate_subject;
use sqlx::{AssertSqlSafe, Row, SqlSafeStr};

use crate::{PostgresStore, STORE, corrupt, error};

impl PostgresStore {
    /// This store, sealing personal data with data keys it keeps in
    /// `<schema>.personal_keys`, wrapped by `provider`'s master keys (see
    /// [`es_core::personal`]). Clones made before this call do not seal.
    #[must_use]
    pub fn with_keys(mut self, provider: impl KeyProvider) -> Self {
        let backend = PostgresStore {
            inner: self.inner.clone(),
            keyring: None,
        };
        self.keyring = Some(Arc::new(Keyring::new(provider, backend)));
        self
    }

    fn key_sql(&self, text: &str) -> sqlx::SqlStr {
        AssertSqlSafe(text.replace("{s}", &self.inner.schema)).into_sql_str()
    }
}

fn stored_key(subject: &str, row: &sqlx::postgres::PgRow) -> Result<StoredKey, StoreError> {
    let get = error("read a data key");
    let master_key: Option<String> = row.try_get("master_key").map_err(&get)?;
    let wrapped: Option<Vec<u8>> = row.try_get("wrapped").map_err(&get)?;
    let forgotten_at: Option<i64> = row.try_get("forgotten_at").map_err(&get)?;
    match (master_key, wrapped, forgotten_at) {
        (_, _, Some(at)) => Ok(StoredKey::Forgotten {
            at: es_core::Timestamp::from_micros(at),
        }),
        (Some(master_key), Some(wrapped), None) => Ok(StoredKey::Wrapped { master_key, wrapped }),
        _ => Err(corrupt(format!(
            "the key row of subject {subject:?} has neither a key nor a time it was forgotten"
        ))),
    }
}

/// The columns of a key row, the time as microseconds since the Unix epoch.
const COLUMNS: &str = "subject, master_key, wrapped, \
     (EXTRACT(EPOCH FROM forgotten_at) * 1000000)::BIGINT AS forgotten_at";

impl KeyBackend for PostgresStore {
    fn store_name(&self) -> &'static str {
        STORE
    }

    fn read_key<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, Option<StoredKey>> {
        Box::pin(async move {
            validate_subject(STORE, subject)?;
            let row = sqlx::query(self.key_sql(&format!(
                r#"SELECT {COLUMNS} FROM "{{s}}".personal_keys WHERE subject = $1"#
            )))
            .bind(subject)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(error("read a data key"))?;
            row.map(|row| stored_key(subject, &row)).transpose()
        })
    }

    fn write_key<'a>(&'a self, subject: &'a str, write: KeyWrite<'a>) -> KeyFuture<'a, StoredKey> {
        Box::pin(async move {
            validate_subject(STORE, subject)?;
            let returning = format!("RETURNING {COLUMNS}");
            let row = match write {
                KeyWrite::Create { master_key, wrapped } => {
                    // Insert, or read the key another writer stored first.
                    sqlx::query(self.key_sql(&format!(
                        r#"WITH inserted AS (
                               INSERT INTO "{{s}}".personal_keys (subject, master_key, wrapped) VALUES ($1, $2, $3)
                               ON CONFLICT (subject) DO NOTHING {returning})
                           SELECT * FROM inserted
                           UNION ALL
                           SELECT {COLUMNS} FROM "{{s}}".personal_keys WHERE subject = $1
                               AND NOT EXISTS (SELECT 1 FROM inserted)"#
                    )))
                    .bind(subject)
                    .bind(master_key)
                    .bind(wrapped)
                    .fetch_optional(&self.inner.pool)
                    .await
                    .map_err(error("store a data key"))?
                }
                KeyWrite::Rewrap {
                    from,
                    master_key,
                    wrapped,
                } => {
                    sqlx::query(self.key_sql(
                        r#"UPDATE "{s}".personal_keys SET master_key = $2, wrapped = $3
                           WHERE subject = $1 AND wrapped = $4 AND forgotten_at IS NULL"#,
                    ))
                    .bind(subject)
                    .bind(master_key)
                    .bind(wrapped)
                    .bind(from)
                    .execute(&self.inner.pool)
                    .await
                    .map_err(error("re-wrap a data key"))?;
                    return self
                        .read_key(subject)
                        .await?
                        .ok_or_else(|| corrupt(format!("the key row of subject {subject:?} vanished")));
                }
                KeyWrite::Forget { at } => {
                    let row = sqlx::query(self.key_sql(&format!(
                        r#"INSERT INTO "{{s}}".personal_keys (subject, forgotten_at)
                               VALUES ($1, to_timestamp($2::DOUBLE PRECISION / 1000000))
                           ON CONFLICT (subject) DO UPDATE SET master_key = NULL, wrapped = NULL,
                               forgotten_at = COALESCE(personal_keys.forgotten_at, excluded.forgotten_at)
                           {returning}"#
                    )))
                    .bind(subject)
                    .bind(at.as_micros())
                    .fetch_optional(&self.inner.pool)
                    .await
                    .map_err(error("forget a data key"))?;
                    // The old row version, which held the key, is dead now:
                    // remove it from the table's pages.
                    let vacuum = self.key_sql(r#"VACUUM "{s}".personal_keys"#);
                    if let Err(e) = sqlx::raw_sql(vacuum).execute(&self.inner.pool).await {
                        tracing::warn!(error = %e, "could not vacuum the key table after forgetting a subject");
                    }
                    row
                }
            };
            let row =
                row.ok_or_else(|| corrupt(format!("the key row of subject {subject:?} vanished as it was written")))?;
            stored_key(subject, &row)
        })
    }

    fn read_keys<'a>(&'a self, after: &'a str, limit: usize) -> KeyFuture<'a, Vec<(String, StoredKey)>> {
        Box::pin(async move {
            let rows = sqlx::query(self.key_sql(&format!(
                r#"SELECT {COLUMNS} FROM "{{s}}".personal_keys WHERE subject COLLATE "C" > $1 ORDER BY subject COLLATE "C" LIMIT $2"#
            )))
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(error("list data keys"))?;
            rows.iter()
                .map(|row| {
                    let subject: String = row.try_get("subject").map_err(error("list data keys"))?;
                    let key = stored_key(&subject, row)?;
                    Ok((subject, key))
                })
                .collect()
        })
    }
}
