//! The data keys of personal data, in `es_personal_keys`.
//!
//! Forgetting a subject overwrites its wrapped key in place (the row keeps
//! the subject and when it was forgotten). The connections run with
//! `secure_delete` on, so the old bytes are zeroed in the page rather than
//! left in free space, and a forget ends with a `TRUNCATE` checkpoint, which
//! writes the page back into the database file and empties the write-ahead
//! log. If a reader holds the log at that moment the checkpoint cannot
//! finish: the forget still succeeds, a warning says so, and the next
//! forget (or `PRAGMA wal_checkpoint(TRUNCATE)` run by the operator) ends it.

use std::sync::Arc;

use es_core::StoreError;
use es_core::personal::{KeyBackend, KeyFuture, KeyProvider, KeyWrite, Keyring, StoredKey};
use es_core::store::validate_subject;
use rusqlite::{OptionalExtension, params};

use crate::{STORE, SqliteStore, blocking, corrupt, error, lock};

impl SqliteStore {
    /// This store, sealing personal data with data keys it keeps in
    /// `es_personal_keys`, wrapped by `provider`'s master keys (see
    /// [`es_core::personal`]). Clones made before this call do not seal.
    #[must_use]
    pub fn with_keys(mut self, provider: impl KeyProvider) -> Self {
        let backend = SqliteStore {
            inner: self.inner.clone(),
            keyring: None,
        };
        self.keyring = Some(Arc::new(Keyring::new(provider, backend)));
        self
    }
}

fn stored_key(
    subject: &str,
    master_key: Option<String>,
    wrapped: Option<Vec<u8>>,
    forgotten_at: Option<i64>,
) -> Result<StoredKey, StoreError> {
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

type KeyRow = (Option<String>, Option<Vec<u8>>, Option<i64>);

impl SqliteStore {
    fn key_row(conn: &rusqlite::Connection, subject: &str) -> Result<Option<KeyRow>, StoreError> {
        conn.prepare_cached("SELECT master_key, wrapped, forgotten_at FROM es_personal_keys WHERE subject = ?1")
            .and_then(|mut s| {
                s.query_row([subject], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(error("read a data key"))
    }

    fn write_key_now(&self, subject: &str, write: KeyWrite<'_>) -> Result<StoredKey, StoreError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(error("begin a key write"))?;
        let forgetting = matches!(write, KeyWrite::Forget { .. });
        match write {
            KeyWrite::Create { master_key, wrapped } => {
                tx.execute(
                    "INSERT INTO es_personal_keys (subject, master_key, wrapped) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (subject) DO NOTHING",
                    params![subject, master_key, wrapped],
                )
                .map_err(error("store a data key"))?;
            }
            KeyWrite::Rewrap {
                from,
                master_key,
                wrapped,
            } => {
                tx.execute(
                    "UPDATE es_personal_keys SET master_key = ?2, wrapped = ?3 \
                     WHERE subject = ?1 AND wrapped = ?4 AND forgotten_at IS NULL",
                    params![subject, master_key, wrapped, from],
                )
                .map_err(error("re-wrap a data key"))?;
            }
            KeyWrite::Forget { at } => {
                tx.execute(
                    "INSERT INTO es_personal_keys (subject, forgotten_at) VALUES (?1, ?2) \
                     ON CONFLICT (subject) DO UPDATE SET master_key = NULL, wrapped = NULL, \
                     forgotten_at = COALESCE(es_personal_keys.forgotten_at, excluded.forgotten_at)",
                    params![subject, at.as_micros()],
                )
                .map_err(error("forget a data key"))?;
            }
        }
        let row = Self::key_row(&tx, subject)?;
        tx.commit().map_err(error("commit a key write"))?;
        if forgetting {
            Self::truncate_log(&conn);
        }
        let (master_key, wrapped, forgotten_at) =
            row.ok_or_else(|| corrupt(format!("the key row of subject {subject:?} vanished as it was written")))?;
        stored_key(subject, master_key, wrapped, forgotten_at)
    }

    /// Writes the log back into the file and empties it, so the page that
    /// held a forgotten key is nowhere but (zeroed) in the database file.
    fn truncate_log(conn: &rusqlite::Connection) {
        for attempt in 0..20 {
            let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
            match busy {
                Ok(0) => return,
                Ok(_) if attempt < 19 => std::thread::sleep(std::time::Duration::from_millis(25)),
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not checkpoint the write-ahead log after forgetting a subject");
                    return;
                }
            }
        }
        tracing::warn!(
            "a reader held the write-ahead log: the forgotten key's old page stays in it until the next checkpoint; \
             run `PRAGMA wal_checkpoint(TRUNCATE)` when the store is idle"
        );
    }
}

impl KeyBackend for SqliteStore {
    fn store_name(&self) -> &'static str {
        STORE
    }

    fn read_key<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, Option<StoredKey>> {
        let read = validate_subject(STORE, subject).and_then(|()| {
            blocking(|| {
                self.read(|conn| match Self::key_row(conn, subject)? {
                    None => Ok(None),
                    Some((master_key, wrapped, forgotten_at)) => {
                        stored_key(subject, master_key, wrapped, forgotten_at).map(Some)
                    }
                })
            })
        });
        Box::pin(std::future::ready(read))
    }

    fn write_key<'a>(&'a self, subject: &'a str, write: KeyWrite<'a>) -> KeyFuture<'a, StoredKey> {
        let written = validate_subject(STORE, subject).and_then(|()| blocking(|| self.write_key_now(subject, write)));
        Box::pin(std::future::ready(written))
    }

    fn read_keys<'a>(&'a self, after: &'a str, limit: usize) -> KeyFuture<'a, Vec<(String, StoredKey)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let read = blocking(|| {
            self.read(|conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT subject, master_key, wrapped, forgotten_at FROM es_personal_keys \
                         WHERE subject > ?1 ORDER BY subject LIMIT ?2",
                    )
                    .map_err(error("list data keys"))?;
                let rows = stmt
                    .query_map(params![after, limit], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<Vec<u8>>>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                        ))
                    })
                    .map_err(error("list data keys"))?;
                let mut out = Vec::new();
                for row in rows {
                    let (subject, master_key, wrapped, forgotten_at) = row.map_err(error("list data keys"))?;
                    let key = stored_key(&subject, master_key, wrapped, forgotten_at)?;
                    out.push((subject, key));
                }
                Ok(out)
            })
        });
        Box::pin(std::future::ready(read))
    }
}
