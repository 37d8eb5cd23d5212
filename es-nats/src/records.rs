//! Keyed records (command ids, event ids, snapshots, checkpoints) on one
//! JetStream stream that keeps the last message per subject: what
//! JetStream's key-value buckets are made of, built from the same calls the
//! event stream uses (the key-value API of async-nats 0.46 cannot parse
//! server 2.9's answer when it creates a bucket).

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use es_core::StoreError;

use crate::{Guard, STORE, failed};

/// One subject space of the records stream.
pub(crate) struct Records {
    pub(crate) context: jetstream::Context,
    pub(crate) stream: stream::Stream,
    pub(crate) client: async_nats::Client,
    /// `<prefix>.records.<kind>`
    pub(crate) space: String,
    pub(crate) guard: Guard,
}

impl Records {
    fn subject(&self, key: &str) -> String {
        format!("{}.{key}", self.space)
    }

    /// The record under `key`, if any.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.get_versioned(key).await?.1)
    }

    /// The record under `key` with its revision (0 when there is none), for
    /// [`Records::replace`].
    pub(crate) async fn get_versioned(&self, key: &str) -> Result<(u64, Option<Bytes>), StoreError> {
        match self.stream.get_last_raw_message_by_subject(&self.subject(key)).await {
            Ok(message) => Ok((message.sequence, Some(message.payload))),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok((0, None)),
            Err(e) => Err(failed(&self.client, "read a record")(e)),
        }
    }

    /// Sets the record under `key` if its revision is still `revision`
    /// (0: there is none): `false` if another writer changed it first.
    pub(crate) async fn replace(&self, key: &str, value: Vec<u8>, revision: u64) -> Result<bool, StoreError> {
        let value = Bytes::from(value);
        loop {
            let message = jetstream::message::PublishMessage::build().payload(value.clone());
            let message = match self.guard {
                Guard::Subject => message.expected_last_subject_sequence(revision),
                Guard::Stream => {
                    // The stream's last sequence, then the record's: any
                    // write after the first read fails the publish.
                    let last = self
                        .stream
                        .get_info()
                        .await
                        .map_err(failed(&self.client, "write a record"))?
                        .state
                        .last_sequence;
                    if self.get_versioned(key).await?.0 != revision {
                        return Ok(false);
                    }
                    message.expected_last_sequence(last)
                }
            };
            let sent = self
                .context
                .send_publish(self.subject(key), message)
                .await
                .map_err(failed(&self.client, "write a record"))?;
            match sent.await {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                    if self.guard == Guard::Subject {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(failed(&self.client, "write a record")(e)),
            }
        }
    }

    /// Sets the record under `key`.
    pub(crate) async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.context
            .publish(self.subject(key), value.into())
            .await
            .map_err(failed(&self.client, "write a record"))?
            .await
            .map(drop)
            .map_err(failed(&self.client, "write a record"))
    }

    /// Sets the record under `key` if there is none: `false` if there was.
    pub(crate) async fn create(&self, key: String, value: Vec<u8>) -> Result<bool, StoreError> {
        self.replace(&key, value, 0).await
    }

    /// Removes the record under `key`.
    pub(crate) async fn remove(&self, key: String) -> Result<(), StoreError> {
        self.stream
            .purge()
            .filter(self.subject(&key))
            .await
            .map(drop)
            .map_err(|e| StoreError::Backend {
                store: STORE,
                operation: "remove a record",
                source: Box::new(e),
            })
    }
}
