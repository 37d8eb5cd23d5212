//! Reads: a stream's events, the global log, and counts, through batched
//! direct gets that any replica answers, checked against what the leader
//! or a notification says is stored.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::time::Duration;

use es_core::store::{FOREIGN, RecordedEvent};
use es_core::{EventId, StoreError, StreamId, Timestamp};

use crate::js::Stored;
use crate::wire::EventMessage;
use crate::{Head, NatsStore, corrupt};

/// The newest messages of the log, as the last reads found them, shared by
/// the readers following it: a commit that wakes a hundred of them costs
/// one read of the server.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// Every message on the event subjects with a sequence in `from..=to`
    /// is in `messages`, in order.
    from: u64,
    to: u64,
    messages: VecDeque<Stored>,
}

/// How many messages the shared tail keeps, and how near the end of the
/// log a reader must be to use it.
const TAIL: usize = 4_096;

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
        positions: bool,
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
                .visit_range(&subject, stream, 1, tail.sequence, from, positions, &mut each)
                .await;
        };
        self.remember_head(
            &subject,
            Head {
                sequence: tail.sequence,
                version: last.version,
                link: last.link,
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
        self.visit_range(&subject, stream, start, tail.sequence, from, positions, &mut each)
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
    /// Without `positions`, it reads without headers and hands each event
    /// sequence 0.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn visit_range(
        &self,
        subject: &str,
        stream: &StreamId,
        start: u64,
        end: u64,
        from: u64,
        positions: bool,
        each: &mut (impl FnMut(u64, &EventMessage<'_>) -> ControlFlow<()> + Send),
    ) -> Result<(), StoreError> {
        let mut at = start;
        let mut next: Option<u64> = None;
        let mut behind = 0;
        while at <= end {
            let page = self.page(at, subject, PAGE, positions).await?;
            let before = at;
            // Without headers only the page's end is known: a page that
            // ran past `end` (a message stored since the tail was read)
            // is cut by version below, where `end`'s version is known.
            for message in &page.messages {
                if positions {
                    if message.sequence > end {
                        return Ok(());
                    }
                    at = message.sequence + 1;
                }
                let Some(event) = EventMessage::decode(&message.payload).filter(|e| e.is_of(stream)) else {
                    tracing::warn!(%stream, sequence = message.sequence, "stepped over a foreign message on the stream's subject");
                    continue;
                };
                if let Some(expected) = next
                    && event.version != expected
                {
                    return Err(corrupt(format!(
                        "`{stream}` has version {} where version {expected} should be (sequence {}): an event is missing",
                        event.version,
                        if positions {
                            message.sequence.to_string()
                        } else {
                            format!("after {before}")
                        }
                    )));
                }
                next = Some(event.version + 1);
                if event.version >= from && each(message.sequence, &event).is_break() {
                    return Ok(());
                }
            }
            if !positions && let Some(last) = page.last {
                if last >= end {
                    return Ok(());
                }
                at = last + 1;
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
        if limit == 0 {
            return Ok(());
        }
        for message in self.log_messages(after, limit).await? {
            let flow = match EventMessage::decode(&message.payload)
                .filter(|e| self.names_stream(&message.subject, e.aggregate_type, e.aggregate_id))
            {
                Some(e) => visit(&e.recorded(message.sequence)),
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
                    link: es_core::store::Link::GENESIS,
                }),
            };
            if flow.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Up to `limit` messages of the log after `after`: from the shared
    /// tail when the reader is near the end of the log (one read then serves
    /// every follower a commit woke), from the server otherwise.
    async fn log_messages(&self, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let known = *self.inner.known.borrow();
        if known.saturating_sub(after) > TAIL as u64 {
            // Far behind (a rebuild): its pages would only push the
            // followers' out.
            return self.fetch_log(after, limit).await;
        }
        let mut tail = self.inner.tail.lock().await;
        if after.saturating_add(1) < tail.from || after > tail.to {
            *tail = Tail {
                from: after.saturating_add(1),
                to: after,
                messages: VecDeque::new(),
            };
        }
        let first = tail.messages.partition_point(|m| m.sequence <= after);
        let mut out: Vec<Stored> = tail.messages.range(first..).take(limit).cloned().collect();
        if out.len() < limit {
            let newer = self.fetch_log(tail.to, limit - out.len()).await?;
            if let Some(last) = newer.last() {
                tail.to = last.sequence;
            }
            tail.messages.extend(newer.iter().cloned());
            while tail.messages.len() > TAIL {
                if let Some(dropped) = tail.messages.pop_front() {
                    tail.from = dropped.sequence + 1;
                }
            }
            out.extend(newer);
        }
        Ok(out)
    }

    /// Up to `limit` messages of the log after `after`, from the server:
    /// as many as there are, asking again while the replica that answered
    /// is behind what is known to be stored.
    async fn fetch_log(&self, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let mut out = Vec::new();
        let mut at = after.saturating_add(1);
        let mut behind = 0;
        while out.len() < limit {
            let known = *self.inner.known.borrow();
            let page = self
                .page(at, &self.inner.names.all_events, (limit - out.len()).min(PAGE), true)
                .await?;
            let cut_short = page.pending > 0 && !page.messages.is_empty();
            if let Some(last) = page.messages.last() {
                at = last.sequence + 1;
            }
            out.extend(page.messages);
            if out.len() >= limit || cut_short {
                continue;
            }
            if at > known {
                break;
            }
            // Known to be stored, not yet on the replica that answered.
            behind += 1;
            if behind > BEHIND {
                return Err(behind_error(known, at));
            }
            tokio::time::sleep(BEHIND_PAUSE).await;
        }
        Ok(out)
    }

    /// How many messages on the event subjects come after `position`: one
    /// direct get, whose answer says how many more match.
    pub(crate) async fn count_after(&self, position: u64) -> Result<u64, StoreError> {
        let page = self
            .page(position.saturating_add(1), &self.inner.names.all_events, 1, true)
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
