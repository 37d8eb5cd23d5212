//! What operators' tools read: every stream's head, the checkpoints, and
//! the foreign messages in the log.

use std::ops::ControlFlow;

use bytes::Bytes;
use es_core::store::{FOREIGN, RecordedEvent};
use es_core::{StoreError, StreamId, Timestamp};
use futures_util::StreamExt;

use crate::wire::EventMessage;
use crate::{NatsStore, checkpoint_name, corrupt, failed, js, js_failed};

/// One stream's head, for operators' tools ([`NatsStore::stream_heads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    /// The stream.
    pub stream: StreamId,
    /// Its version.
    pub version: u64,
    /// When its last event was committed.
    pub last_recorded_at: Timestamp,
    /// The JetStream sequence (the global position) of its last event.
    pub last_sequence: u64,
}

/// A message on the store's event subjects that is not one of its events:
/// another client published it there, and the stream keeps it (it denies
/// deletes). Readers step over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignMessage {
    /// Its sequence: its position in the log.
    pub sequence: u64,
    /// The subject it was published on.
    pub subject: String,
    /// What it holds.
    pub payload: Bytes,
}

/// Every subject under the event subjects: the streams' heads, and the
/// subjects that name no stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heads {
    /// Streams with events, newest last write first.
    pub streams: Vec<StreamHead>,
    /// Subjects that name no stream (only foreign messages were published
    /// there), with how many messages each holds.
    pub foreign_subjects: Vec<(String, u64)>,
}

impl NatsStore {
    /// Every stream with events, newest last write first, and the subjects
    /// that name none. The server lists the subjects; each head costs one
    /// more request: for tools, not for the command path.
    pub async fn stream_heads(&self) -> Result<Heads, StoreError> {
        let client = &self.inner.client;
        let mut subjects = self
            .inner
            .events
            .info_with_subjects(self.inner.names.all_events.clone())
            .await
            .map_err(failed(client, "list streams"))?;
        let mut listed = Vec::new();
        while let Some(entry) = subjects.next().await {
            listed.push(entry.map_err(failed(client, "list streams"))?);
        }
        let mut heads = Heads::default();
        for (subject, count) in listed {
            let Some(stream) = self.stream_of(&subject) else {
                heads.foreign_subjects.push((subject, count as u64));
                continue;
            };
            let mut last = None;
            let Some(tail) = self.last_on(&subject).await? else {
                continue;
            };
            match EventMessage::decode(&tail.payload).filter(|e| e.is_of(&stream)) {
                Some(e) => last = Some((tail.sequence, e.version, e.recorded_at)),
                None => {
                    self.visit_range(&subject, &stream, 1, tail.sequence, 1, true, &mut |sequence, e| {
                        last = Some((sequence, e.version, e.recorded_at));
                        ControlFlow::Continue(())
                    })
                    .await?;
                }
            }
            match last {
                Some((last_sequence, version, last_recorded_at)) => heads.streams.push(StreamHead {
                    stream,
                    version,
                    last_recorded_at,
                    last_sequence,
                }),
                None => heads.foreign_subjects.push((subject, count as u64)),
            }
        }
        heads.streams.sort_by_key(|h| std::cmp::Reverse(h.last_sequence));
        heads.foreign_subjects.sort();
        Ok(heads)
    }

    /// Up to `limit` foreign messages after position `after`, reading the
    /// log from there to its end.
    pub async fn foreign_messages(&self, after: u64, limit: usize) -> Result<Vec<ForeignMessage>, StoreError> {
        let mut found = Vec::new();
        let mut at = after;
        loop {
            let mut seen = 0;
            self.read_log(at, 1_000, |e: &RecordedEvent<'_>| {
                seen += 1;
                at = e.position;
                if e.name == FOREIGN {
                    found.push(ForeignMessage {
                        sequence: e.position,
                        subject: e.aggregate_id.to_owned(),
                        payload: Bytes::copy_from_slice(e.payload),
                    });
                }
                if found.len() >= limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await?;
            if seen < 1_000 || found.len() >= limit {
                return Ok(found);
            }
        }
    }

    /// Every saved checkpoint and its position, by name.
    pub async fn checkpoints(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let space = format!("{}.>", self.inner.names.checkpoints());
        let mut out = Vec::new();
        let mut start = 1;
        loop {
            let page = js::direct_batch(
                &self.inner.client,
                &self.inner.names.records,
                start,
                &space,
                1_000,
                true,
                self.inner.timeout,
            )
            .await
            .map_err(js_failed("list checkpoints"))?;
            for message in &page.messages {
                let name = checkpoint_name(&message.subject)
                    .ok_or_else(|| corrupt(format!("record `{}` names no checkpoint", message.subject)))?;
                let position = std::str::from_utf8(&message.payload)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or_else(|| corrupt(format!("checkpoint {name:?} is not a position")))?;
                out.push((name, position));
            }
            match page.messages.last() {
                Some(last) if page.pending > 0 => start = last.sequence + 1,
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }
}
