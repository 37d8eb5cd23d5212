//! Snapshots and checkpoints, in the records stream: the last message of
//! each subject is the record, as in a key-value bucket.

use async_nats::jetstream;
use bytes::Bytes;
use es_core::store::Snapshot;
use es_core::{StoreError, StreamId};

use crate::{NatsStore, STORE, corrupt, failed, hex, key_hash, wire};

impl NatsStore {
    fn snapshot_subject(&self, stream: &StreamId) -> String {
        let key = key_hash(&[stream.aggregate_type().as_bytes(), stream.aggregate_id().as_bytes()]);
        format!("{}.{key}", self.inner.names.snapshots())
    }

    pub(crate) fn checkpoint_subject(&self, name: &str) -> String {
        format!("{}.c{}", self.inner.names.checkpoints(), hex(name.as_bytes()))
    }

    /// The record on `subject`, with its sequence (for a compare-and-set),
    /// from the records stream's leader.
    pub(crate) async fn record(&self, subject: &str) -> Result<Option<(u64, Bytes)>, StoreError> {
        let read = || self.inner.records.raw_message_builder().last_by_subject(subject).send();
        Ok(self
            .leader_read(read, "read a record")
            .await?
            .map(|message| (message.sequence, message.payload)))
    }

    /// Writes the record on `subject` if its sequence is still `revision`
    /// (0: there is none; `None`: whatever it is). `false` when another
    /// writer changed it first.
    async fn write_record(&self, subject: &str, value: Vec<u8>, revision: Option<u64>) -> Result<bool, StoreError> {
        Ok(self.swap_record(subject, value, revision).await?.is_some())
    }

    /// [`write_record`](Self::write_record), returning the record's new
    /// sequence, or `None` when another writer changed it first.
    pub(crate) async fn swap_record(
        &self,
        subject: &str,
        value: Vec<u8>,
        revision: Option<u64>,
    ) -> Result<Option<u64>, StoreError> {
        let mut message = jetstream::message::PublishMessage::build().payload(value.into());
        if let Some(revision) = revision {
            message = message.expected_last_subject_sequence(revision);
        }
        let sent = self
            .inner
            .context
            .send_publish(subject.to_owned(), message)
            .await
            .map_err(failed(&self.inner.client, "write a record"))?;
        match sent.await {
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(failed(&self.inner.client, "write a record")(e)),
        }
    }

    pub(crate) async fn load_snapshot_now(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        match self.record(&self.snapshot_subject(stream)).await? {
            None => Ok(None),
            Some((_, value)) => wire::decode_snapshot(&value, stream)
                .map(Some)
                .ok_or_else(|| corrupt(format!("the snapshot of `{stream}` cannot be read"))),
        }
    }

    pub(crate) async fn save_snapshot_now(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        let subject = self.snapshot_subject(stream);
        // An older snapshot never replaces a newer one of the same shape;
        // a compare-and-set keeps that true when writers race.
        loop {
            let current = self.record(&subject).await?;
            let revision = current.as_ref().map_or(0, |(sequence, _)| *sequence);
            if let Some(current) = current.as_ref().and_then(|(_, v)| wire::decode_snapshot(v, stream))
                && current.schema_version == snapshot.schema_version
                && current.fingerprint == snapshot.fingerprint
                && current.version >= snapshot.version
            {
                return Ok(());
            }
            let value = wire::encode_snapshot(stream, &snapshot);
            if self.write_record(&subject, value, Some(revision)).await? {
                return Ok(());
            }
        }
    }

    pub(crate) async fn load_checkpoint_now(&self, name: &str) -> Result<Option<u64>, StoreError> {
        match self.record(&self.checkpoint_subject(name)).await? {
            None => Ok(None),
            Some((_, value)) => std::str::from_utf8(&value)
                .ok()
                .and_then(|t| t.parse().ok())
                .map(Some)
                .ok_or_else(|| corrupt(format!("checkpoint {name:?} is not a position"))),
        }
    }

    pub(crate) async fn save_checkpoint_now(&self, name: &str, position: u64) -> Result<(), StoreError> {
        self.write_record(&self.checkpoint_subject(name), position.to_string().into_bytes(), None)
            .await
            .map(drop)
    }
}
