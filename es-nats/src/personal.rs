//! The data keys of personal data, in the stream `<prefix>_keys`: one
//! subject per data subject (`<prefix>.keys.<sha-256 of it>`), whose last
//! message is its key.
//!
//! Every change is a new message written only if the subject's last one is
//! still the one read (an expected-sequence check), after which the older
//! message is erased: JetStream overwrites an erased message in its file
//! store before removing it, on every replica. Forgetting writes a message
//! holding only the subject and the time, then erases the one with the key.
//! What the store cannot reach: on a replicated stream, each server's
//! consensus log keeps the key's entry until the server compacts the log
//! (on its own, after its next snapshot of the stream), and backups or
//! mirrors taken before the forget keep their copy.

use std::sync::Arc;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use es_core::StoreError;
use es_core::personal::{KeyBackend, KeyFuture, KeyProvider, KeyWrite, Keyring, StoredKey};
use es_core::store::validate_subject;
use serde::{Deserialize, Serialize};

use crate::{NatsStore, STORE, corrupt, failed, hex, key_hash, unhex};

/// A key message's body.
#[derive(Serialize, Deserialize)]
struct KeyRecord {
    subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    master_key: Option<String>,
    /// The wrapped key, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wrapped: Option<String>,
    /// Microseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    forgotten_at: Option<i64>,
}

impl KeyRecord {
    fn stored(&self) -> Result<StoredKey, StoreError> {
        match (&self.master_key, &self.wrapped, self.forgotten_at) {
            (_, _, Some(at)) => Ok(StoredKey::Forgotten {
                at: es_core::Timestamp::from_micros(at),
            }),
            (Some(master_key), Some(wrapped), None) => Ok(StoredKey::Wrapped {
                master_key: master_key.clone(),
                wrapped: unhex(wrapped)
                    .ok_or_else(|| corrupt(format!("the key of subject {:?} is not hex", self.subject)))?,
            }),
            _ => Err(corrupt(format!(
                "the key record of subject {:?} has neither a key nor a time it was forgotten",
                self.subject
            ))),
        }
    }
}

impl NatsStore {
    /// This store, sealing personal data with data keys it keeps in the
    /// stream `<prefix>_keys`, wrapped by `provider`'s master keys (see
    /// [`es_core::personal`]). Clones made before this call do not seal.
    #[must_use]
    pub fn with_keys(mut self, provider: impl KeyProvider) -> Self {
        let backend = NatsStore {
            inner: self.inner.clone(),
            keyring: None,
        };
        self.keyring = Some(Arc::new(Keyring::new(provider, backend)));
        self
    }

    fn key_subject(&self, subject: &str) -> String {
        format!("{}.keys.{}", self.inner.names.prefix, key_hash(&[subject.as_bytes()]))
    }

    fn keys_stream(&self) -> Result<&stream::Stream, StoreError> {
        self.inner.keys.as_ref().ok_or_else(|| StoreError::Keys {
            store: STORE,
            detail: format!(
                "the store has no key stream `{}_keys` (it was opened without creating what is missing)",
                self.inner.names.prefix
            ),
        })
    }

    /// The subject's key message: its sequence and record.
    async fn key_message(&self, subject: &str) -> Result<Option<(u64, KeyRecord)>, StoreError> {
        let Ok(keys) = self.keys_stream() else {
            return Ok(None);
        };
        let key_subject = self.key_subject(subject);
        let read = || keys.raw_message_builder().last_by_subject(&key_subject).send();
        let Some(message) = self.leader_read(read, "read a data key").await? else {
            return Ok(None);
        };
        let record: KeyRecord = serde_json::from_slice(&message.payload)
            .map_err(|e| corrupt(format!("the key record of subject {subject:?} does not read: {e}")))?;
        if record.subject != subject {
            return Err(corrupt(format!(
                "the key record of subject {subject:?} names subject {:?}",
                record.subject
            )));
        }
        Ok(Some((message.sequence, record)))
    }

    /// Writes `record` if the subject's last message is still at
    /// `revision` (0: none); `false` when another writer changed it first.
    async fn write_key_message(&self, subject: &str, record: &KeyRecord, revision: u64) -> Result<bool, StoreError> {
        self.keys_stream()?;
        let body = serde_json::to_vec(record).map_err(|e| corrupt(format!("a key record: {e}")))?;
        let message = jetstream::message::PublishMessage::build()
            .payload(Bytes::from(body))
            .expected_last_subject_sequence(revision);
        let sent = self
            .inner
            .context
            .send_publish(self.key_subject(subject), message)
            .await
            .map_err(failed(&self.inner.client, "write a data key"))?;
        match sent.await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => Ok(false),
            Err(e) => Err(failed(&self.inner.client, "write a data key")(e)),
        }
    }

    /// Erases the message at `sequence`: the server overwrites it before
    /// removing it.
    async fn erase(&self, sequence: u64) -> Result<(), StoreError> {
        self.keys_stream()?
            .delete_message(sequence)
            .await
            .map(drop)
            .map_err(failed(&self.inner.client, "erase an old data key"))
    }

    async fn write_key_now(&self, subject: &str, write: KeyWrite<'_>) -> Result<StoredKey, StoreError> {
        loop {
            let current = self.key_message(subject).await?;
            let revision = current.as_ref().map_or(0, |(sequence, _)| *sequence);
            let next = match (&write, &current) {
                (KeyWrite::Create { master_key, wrapped }, None) => KeyRecord {
                    subject: subject.to_owned(),
                    master_key: Some((*master_key).to_owned()),
                    wrapped: Some(hex(wrapped)),
                    forgotten_at: None,
                },
                (KeyWrite::Create { .. }, Some((_, record))) => return record.stored(),
                (
                    KeyWrite::Rewrap {
                        from,
                        master_key,
                        wrapped,
                    },
                    Some((_, record)),
                ) if record.forgotten_at.is_none() && record.wrapped.as_deref() == Some(hex(from).as_str()) => {
                    KeyRecord {
                        subject: subject.to_owned(),
                        master_key: Some((*master_key).to_owned()),
                        wrapped: Some(hex(wrapped)),
                        forgotten_at: None,
                    }
                }
                (KeyWrite::Rewrap { .. }, Some((_, record))) => return record.stored(),
                (KeyWrite::Rewrap { .. }, None) => {
                    return Err(corrupt(format!(
                        "the key of subject {subject:?} vanished during a rotation"
                    )));
                }
                (KeyWrite::Forget { .. }, Some((sequence, record))) if record.forgotten_at.is_some() => {
                    // Forgotten already; erase any key message an
                    // interrupted forget left behind.
                    self.erase_before(subject, *sequence).await?;
                    return record.stored();
                }
                (KeyWrite::Forget { at }, _) => KeyRecord {
                    subject: subject.to_owned(),
                    master_key: None,
                    wrapped: None,
                    forgotten_at: Some(at.as_micros()),
                },
            };
            if !self.write_key_message(subject, &next, revision).await? {
                continue;
            }
            if revision > 0 {
                self.erase(revision).await?;
            }
            return next.stored();
        }
    }

    /// The first message of the key stream on `filter` at `sequence` or
    /// after, from its leader.
    async fn next_key(
        &self,
        filter: &str,
        sequence: u64,
        operation: &'static str,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, StoreError> {
        let keys = self.keys_stream()?;
        let read = || {
            keys.raw_message_builder()
                .sequence(sequence)
                .next_by_subject(filter)
                .send()
        };
        self.leader_read(read, operation).await
    }

    /// Erases every message of `subject` before `sequence`.
    async fn erase_before(&self, subject: &str, sequence: u64) -> Result<(), StoreError> {
        let key_subject = self.key_subject(subject);
        let mut from = 1;
        while from < sequence {
            let Some(message) = self.next_key(&key_subject, from, "read an old data key").await? else {
                return Ok(());
            };
            if message.sequence >= sequence {
                return Ok(());
            }
            self.erase(message.sequence).await?;
            from = message.sequence + 1;
        }
        Ok(())
    }

    async fn read_keys_now(&self, after: &str, limit: usize) -> Result<Vec<(String, StoredKey)>, StoreError> {
        if self.keys_stream().is_err() {
            return Ok(Vec::new());
        }
        // The stream holds each subject's last message only (older ones
        // are erased): read them all, in sequence order, and page by name.
        let mut all = std::collections::BTreeMap::new();
        let mut next = 1;
        let prefix = format!("{}.keys.>", self.inner.names.prefix);
        loop {
            let Some(message) = self.next_key(&prefix, next, "list data keys").await? else {
                break;
            };
            next = message.sequence + 1;
            let record: KeyRecord = serde_json::from_slice(&message.payload).map_err(|e| {
                corrupt(format!(
                    "a key record at sequence {} does not read: {e}",
                    message.sequence
                ))
            })?;
            if record.subject.as_str() > after {
                // A later message of a subject replaces an earlier one that
                // an interrupted change left.
                all.insert(record.subject.clone(), record);
            }
        }
        all.into_iter()
            .take(limit)
            .map(|(subject, r)| r.stored().map(|k| (subject, k)))
            .collect()
    }
}

impl KeyBackend for NatsStore {
    fn store_name(&self) -> &'static str {
        STORE
    }

    fn read_key<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, Option<StoredKey>> {
        Box::pin(async move {
            validate_subject(STORE, subject)?;
            self.key_message(subject).await?.map(|(_, r)| r.stored()).transpose()
        })
    }

    fn write_key<'a>(&'a self, subject: &'a str, write: KeyWrite<'a>) -> KeyFuture<'a, StoredKey> {
        Box::pin(async move {
            validate_subject(STORE, subject)?;
            self.write_key_now(subject, write).await
        })
    }

    fn read_keys<'a>(&'a self, after: &'a str, limit: usize) -> KeyFuture<'a, Vec<(String, StoredKey)>> {
        Box::pin(self.read_keys_now(after, limit))
    }
}
