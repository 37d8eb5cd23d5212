//! Reads: a stream's events, the global log, and counts, through batched
//! direct gets that any replica answers, checked against what the leader
//! or a notification says is stored.

use std::ops::ControlFlow;
use std::time::Duration;

use es_core::store::{FOREIGN, RecordedEvent};
use es_core::{EventId, StoreError, StreamId, Timestamp};

use crate::wire::EventMessage;
use crate::{Head, NatsStore, corrupt};

/// Messages per direct get.
const PAGE: usize = 1_000;

/// How often a read asks again when the replica that answered is behind
/// what is known to be stored, before it gives up on that read.
const BEHIND: u32 = 100;

/// The pause before asking a replica again.
const BEHIND_PAUSE: Duration = Duration::from_millis(2);

impl NatsStore {
    /// Visits `stream`'s events from `from_version` with their sequences.
    pub(crate) async fn read_stream_now(
        &self,
        stream: &StreamId,
        from_version: u64,
        mut each: impl FnMut(u64, &EventMessage<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        es_core::store::validate_stream(crate::STORE, stream)?;
        let subject = self.subject(stream);
        let from = from_version.max(1);
        // The tail from the leader: what the stream holds now.
        let Some(tail) = self.last_on(&subject).await? else {
            return Ok(());
        };
        let Some(last) = EventMessage::decode(&tail.payload).filter(|e| e.is_of(stream)) else {
            // A foreign message after the last event: read the subject
            // from its start, stepping over it.
            tracing::warn!(%stream, sequence = tail.sequence, "the stream's last message is foreign");
            return self
                .visit_range(&subject, stream, 1, tail.sequence, from, &mut each)
                .await;
        };
        self.remember_head(
            &subject,
            Head {
                sequence: tail.sequence,
                version: last.version,
            },
        );
        if from > last.version {
            return Ok(());
        }
        // The events of one append are at consecutive sequences; before
        // that, where `from` is has to be found.
        let start = if from + u64::from(last.index) >= last.version {
            if from == last.version {
                let _ = each(tail.sequence, &last);
                return Ok(());
            }
            tail.sequence - (last.version - from)
        } else if from == 1 {
            1
        } else {
            self.find_start(&subject, stream, from, tail.sequence, last.version)
                .await?
        };
        self.visit_range(&subject, stream, start, tail.sequence, from, &mut each)
            .await
    }

    /// A sequence at or before the one of `stream`'s version `from`: a
    /// galloping search back from the tail, asking the leader for the
    /// first event at or after each guess.
    async fn find_start(
        &self,
        subject: &str,
        stream: &StreamId,
        from: u64,
        tail: u64,
        last: u64,
    ) -> Result<u64, StoreError> {
        let mut back = last - from + 1;
        loop {
            let guess = tail.saturating_sub(back);
            if guess <= 1 {
                return Ok(1);
            }
            if let Some(message) = self.next_on(subject, guess).await?
                && let Some(event) = EventMessage::decode(&message.payload).filter(|e| e.is_of(stream))
                && event.version <= from
            {
                return Ok(guess);
            }
            back = back.saturating_mul(2);
        }
    }

    /// Visits the events of `stream` stored on `subject` at sequences
    /// `start..=end` with version `from` and after, in order, each exactly
    /// once; steps over foreign messages; refuses a gap in the versions.
    pub(crate) async fn visit_range(
        &self,
        subject: &str,
        stream: &StreamId,
        start: u64,
        end: u64,
        from: u64,
        each: &mut (impl FnMut(u64, &EventMessage<'_>) -> ControlFlow<()> + Send),
    ) -> Result<(), StoreError> {
        let mut at = start;
        let mut next: Option<u64> = None;
        let mut behind = 0;
        while at <= end {
            let page = self.page(at, subject, PAGE).await?;
            let before = at;
            for message in &page.messages {
                if message.sequence > end {
                    return Ok(());
                }
                at = message.sequence + 1;
                let Some(event) = EventMessage::decode(&message.payload).filter(|e| e.is_of(stream)) else {
                    tracing::warn!(%stream, sequence = message.sequence, "stepped over a foreign message on the stream's subject");
                    continue;
                };
                if let Some(expected) = next
                    && event.version != expected
                {
                    return Err(corrupt(format!(
                        "`{stream}` has version {} at sequence {} where version {expected} should be: an event is missing",
                        event.version, message.sequence
                    )));
                }
                next = Some(event.version + 1);
                if event.version >= from && each(message.sequence, &event).is_break() {
                    return Ok(());
                }
            }
            if at <= end && (at == before || page.pending == 0) {
                // The replica that answered has not stored `end` yet.
                behind += 1;
                if behind > BEHIND {
                    return Err(behind_error(end, at));
                }
                tokio::time::sleep(BEHIND_PAUSE).await;
            }
        }
        Ok(())
    }

    /// Visits up to `limit` entries of the log after `after`.
    pub(crate) async fn read_log(
        &self,
        after: u64,
        limit: usize,
        mut visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        let mut left = limit;
        let mut at = after.saturating_add(1);
        let mut behind = 0;
        while left > 0 {
            let known = *self.inner.known.borrow();
            let page = self.page(at, &self.inner.names.all_events, left.min(PAGE)).await?;
            for message in &page.messages {
                at = message.sequence + 1;
                left -= 1;
                let flow = match EventMessage::decode(&message.payload)
                    .filter(|e| self.names_stream(&message.subject, e.aggregate_type, e.aggregate_id))
                {
                    Some(e) => visit(&RecordedEvent {
                        event_id: e.event_id,
                        aggregate_type: e.aggregate_type,
                        aggregate_id: e.aggregate_id,
                        version: e.version,
                        position: message.sequence,
                        name: e.name,
                        schema_version: e.schema_version,
                        payload: e.payload,
                        metadata: e.metadata,
                        recorded_at: e.recorded_at,
                    }),
                    None => visit(&RecordedEvent {
                        event_id: EventId::from(uuid::Uuid::nil()),
                        aggregate_type: "",
                        aggregate_id: &message.subject,
                        version: 0,
                        position: message.sequence,
                        name: FOREIGN,
                        schema_version: 0,
                        payload: &message.payload,
                        metadata: b"",
                        recorded_at: Timestamp::from_micros(0),
                    }),
                };
                if flow.is_break() || left == 0 {
                    return Ok(());
                }
            }
            if page.pending > 0 && !page.messages.is_empty() {
                // The page was cut short by size: there is more.
                continue;
            }
            if at > known {
                return Ok(());
            }
            // Known to be stored, not yet on the replica that answered.
            behind += 1;
            if behind > BEHIND {
                return Err(behind_error(known, at));
            }
            tokio::time::sleep(BEHIND_PAUSE).await;
        }
        Ok(())
    }

    /// How many messages on the event subjects come after `position`: one
    /// direct get, whose answer says how many more match.
    pub(crate) async fn count_after(&self, position: u64) -> Result<u64, StoreError> {
        let page = self
            .page(position.saturating_add(1), &self.inner.names.all_events, 1)
            .await?;
        Ok(match page.messages.first() {
            Some(_) => 1 + page.pending,
            None => 0,
        })
    }
}

fn behind_error(end: u64, at: u64) -> StoreError {
    StoreError::Unavailable {
        store: crate::STORE,
        operation: "read events",
        source: format!(
            "the replicas that answered stayed behind sequence {end} (they reached {}): a replica is lagging",
            at.saturating_sub(1)
        )
        .into(),
    }
}
