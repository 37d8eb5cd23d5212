//! Appends: one atomic batch per append, holding the events, the command
//! id's record and the event ids' records, each checked by the server.

use std::time::Duration;

use bytes::Bytes;
use es_core::store::{AppendOutcome, AppendRequest, Appended, CommandRecord, Link, Positions, link_batch};
use es_core::{AppendError, Conflict, ExpectedVersion, StoreError, StreamId};

use crate::commit::MAX_BATCH_MESSAGES;
use crate::js::{self, Outbound};
use crate::wire::{self, EventMessage, NewEventMessage};
use crate::{Head, NatsStore, STORE, corrupt, invalid, js_failed};

/// What a message carries beyond its payload: the subject and the headers
/// the batch adds (batch id and sequence, expected sequence, commit).
const MESSAGE_OVERHEAD: usize = 512;

/// How often an append is tried again when the server asks for patience
/// (too many batches in flight) or the stream moved under an append at
/// any version.
const ATTEMPTS: u32 = 50;

impl NatsStore {
    pub(crate) async fn append_now(&self, request: AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        es_core::store::validate_append(STORE, &request)?;
        let stream = request.stream;
        let subject = self.subject(stream);
        if request.events.is_empty() {
            // Nothing to store: the command's earlier record, or the
            // version check alone.
            if let Some(command_id) = request.command_id
                && let Some(record) = self.find_command_now(stream, command_id).await?
            {
                return Ok(AppendOutcome::Duplicate(record));
            }
            let head = self.head_of(&subject, stream).await?;
            return match request.expected.matches(head.version) {
                true => Ok(AppendOutcome::Appended(Appended {
                    first_version: head.version + 1,
                    last_version: head.version,
                    positions: Positions::from_vec(Vec::new()),
                })),
                false => Err(conflict(stream, request.expected, head.version)),
            };
        }
        let messages = request.events.len() * 2 + usize::from(request.command_id.is_some());
        if messages > MAX_BATCH_MESSAGES {
            return Err(invalid(format!(
                "a batch of {} events for `{stream}`: with its event-id records{} it is {messages} messages, and \
                 the server stores at most {MAX_BATCH_MESSAGES} in one atomic publish (its `max_batch_size`); \
                 append it in parts of at most {} events",
                request.events.len(),
                if request.command_id.is_some() {
                    " and command record"
                } else {
                    ""
                },
                (MAX_BATCH_MESSAGES - usize::from(request.command_id.is_some())) / 2,
            ))
            .into());
        }
        let max_payload = self.inner.client.server_info().max_payload;
        let mut head = match self.cached_head(&subject) {
            Some(head) => head,
            None => self.head_of(&subject, stream).await?,
        };
        let mut fresh = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if !request.expected.matches(head.version) {
                if !fresh {
                    // A remembered head may be stale: read it before
                    // saying the writer is wrong.
                    head = self.head_of(&subject, stream).await?;
                    fresh = true;
                    continue;
                }
                if let Some(command_id) = request.command_id
                    && let Some(record) = self.find_command_now(stream, command_id).await?
                {
                    return Ok(AppendOutcome::Duplicate(record));
                }
                return Err(conflict(stream, request.expected, head.version));
            }
            let links = link_batch(
                head.link,
                stream,
                head.version + 1,
                request.events,
                request.metadata,
                request.recorded_at,
            );
            let batch = self.batch(&request, &subject, head, &links, max_payload)?;
            let count = request.events.len() as u64;
            let total = batch.len() as u64;
            let committed = self
                .inner
                .committer
                .commit(&self.inner.client, self.inner.timeout, batch)
                .await;
            match committed {
                Ok(last) => {
                    // The events come first in the batch, at consecutive
                    // sequences ending `total - count` before the last.
                    let first = last + 1 - total;
                    let new_head = Head {
                        sequence: first + count - 1,
                        version: head.version + count,
                        link: links.last().copied().unwrap_or(head.link),
                    };
                    self.remember_head(&subject, new_head);
                    self.saw(new_head.sequence);
                    return Ok(AppendOutcome::Appended(Appended {
                        first_version: head.version + 1,
                        last_version: new_head.version,
                        positions: Positions::Consecutive { first, count },
                    }));
                }
                Err(js::JsError::Refused { code, .. })
                    if code == js::WRONG_LAST_SEQUENCE || code == js::WRONG_LAST_SEQUENCE_IN_FLIGHT =>
                {
                    // One of the batch's checks failed; which one is read
                    // back. A command already recorded answers first.
                    if let Some(command_id) = request.command_id
                        && let Some(record) = self.find_command_now(stream, command_id).await?
                    {
                        return Ok(AppendOutcome::Duplicate(record));
                    }
                    let now = self.head_of(&subject, stream).await?;
                    if now.sequence != head.sequence {
                        // Another writer got there first: a conflict, or
                        // (at any version) another try, after a pause that
                        // grows with the tries so racing writers spread out.
                        head = now;
                        fresh = true;
                        if request.expected != ExpectedVersion::Any {
                            return Err(conflict(stream, request.expected, now.version));
                        }
                        tokio::time::sleep(jitter(attempt)).await;
                        continue;
                    }
                    if let Some(event_id) = self.taken_event_id(&request).await? {
                        return Err(StoreError::DuplicateEventId { store: STORE, event_id }.into());
                    }
                    if code == js::WRONG_LAST_SEQUENCE_IN_FLIGHT && attempt < ATTEMPTS {
                        // Another batch for the stream was in flight; it
                        // may yet fail. Ask again once it has settled.
                        tokio::time::sleep(jitter(attempt)).await;
                        head = self.head_of(&subject, stream).await?;
                        continue;
                    }
                    if let Some(command_id) = request.command_id {
                        return Err(corrupt(format!(
                            "the record subject of command id {command_id:?} on `{stream}` holds a message that \
                             is not that command's record (a foreign message on `{}`); nothing was appended",
                            self.command_subject(stream, command_id)
                        ))
                        .into());
                    }
                    if attempt >= ATTEMPTS {
                        return Err(corrupt(format!(
                            "the server kept refusing a batch for `{stream}` on an expected sequence that reads \
                             back as met; nothing was appended"
                        ))
                        .into());
                    }
                    self.forget_head(&subject);
                    head = self.head_of(&subject, stream).await?;
                }
                Err(js::JsError::Refused { code, description }) if code == js::BATCH_TOO_LARGE => {
                    return Err(invalid(format!(
                        "a batch of {count} events for `{stream}` ({total} messages with its records): {description}"
                    ))
                    .into());
                }
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::debug!(%stream, error = %e, "the server asked an append to wait");
                    tokio::time::sleep(jitter(attempt)).await;
                }
                Err(e) => {
                    // The batch may have been stored with no answer getting
                    // back: the head is read again next time.
                    self.forget_head(&subject);
                    return Err(js_failed("append a batch")(e).into());
                }
            }
        }
    }

    /// The batch's messages: the events (the first checks the stream's
    /// head), the command's record, the event ids' records.
    fn batch(
        &self,
        request: &AppendRequest<'_>,
        subject: &str,
        head: Head,
        links: &[Link],
        max_payload: usize,
    ) -> Result<Vec<Outbound>, StoreError> {
        let stream = request.stream;
        let count = request.events.len() as u64;
        let mut batch = Vec::with_capacity(request.events.len() * 2 + 1);
        for (index, event) in request.events.iter().enumerate() {
            let message = NewEventMessage {
                stream,
                version: head.version + 1 + index as u64,
                index: index as u32,
                recorded_at: request.recorded_at,
                event_id: event.event_id,
                name: event.name,
                schema_version: event.schema_version,
                link: links[index],
                metadata: request.metadata,
                payload: event.payload,
            };
            if message.len() + MESSAGE_OVERHEAD > max_payload {
                return Err(invalid(format!(
                    "event {} of a batch for `{stream}` ({:?}, {} bytes with its metadata): the server takes \
                     messages of up to {max_payload} bytes (its `max_payload`), and each event is one message; \
                     nothing was appended",
                    index + 1,
                    event.name,
                    message.len()
                )));
            }
            batch.push(Outbound {
                subject: subject.to_owned(),
                payload: Bytes::from(message.encode()),
                expected_subject_sequence: (index == 0).then_some(head.sequence),
            });
        }
        if let Some(command_id) = request.command_id {
            let record = wire::encode_command(stream, command_id, head.version + 1, head.version + count);
            batch.push(Outbound {
                subject: self.command_subject(stream, command_id),
                payload: Bytes::from(record),
                expected_subject_sequence: Some(0),
            });
        }
        for event in request.events {
            batch.push(Outbound {
                subject: self.event_id_subject(event.event_id),
                payload: Bytes::new(),
                expected_subject_sequence: Some(0),
            });
        }
        Ok(batch)
    }

    /// The first event id of `request` the store already holds.
    async fn taken_event_id(&self, request: &AppendRequest<'_>) -> Result<Option<es_core::EventId>, StoreError> {
        for event in request.events {
            if self.last_on(&self.event_id_subject(event.event_id)).await?.is_some() {
                return Ok(Some(event.event_id));
            }
        }
        Ok(None)
    }

    /// `subject`'s head from the leader: its last message, and the version
    /// of its last event (a foreign message may come after it).
    pub(crate) async fn head_of(&self, subject: &str, stream: &StreamId) -> Result<Head, StoreError> {
        let Some(last) = self.last_on(subject).await? else {
            return Ok(Head {
                sequence: 0,
                version: 0,
                link: Link::GENESIS,
            });
        };
        let head = match EventMessage::decode(&last.payload).filter(|e| e.is_of(stream)) {
            Some(event) => Head {
                sequence: last.sequence,
                version: event.version,
                link: event.link,
            },
            None => {
                tracing::warn!(%stream, sequence = last.sequence, "the stream's last message is foreign; reading back to its last event");
                let (mut version, mut link) = (0, Link::GENESIS);
                self.visit_range(subject, stream, 1, last.sequence, 1, false, &mut |_, e| {
                    (version, link) = (e.version, e.link);
                    std::ops::ControlFlow::Continue(())
                })
                .await?;
                Head {
                    sequence: last.sequence,
                    version,
                    link,
                }
            }
        };
        self.remember_head(subject, head);
        Ok(head)
    }

    pub(crate) async fn find_command_now(
        &self,
        stream: &StreamId,
        command_id: &str,
    ) -> Result<Option<CommandRecord>, StoreError> {
        es_core::store::validate_stream(STORE, stream)?;
        es_core::store::validate_command_id(STORE, command_id)?;
        let record = self.last_on(&self.command_subject(stream, command_id)).await?;
        Ok(record.and_then(|m| wire::decode_command(&m.payload, stream, command_id)))
    }
}

/// A pause before try number `attempt`: up to a millisecond per try so far
/// (at most 20), drawn at random so that writers that collided do not
/// collide again.
fn jitter(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let ceiling = u64::from(attempt.clamp(1, 20)) * 1_000;
    Duration::from_micros(random % ceiling)
}

fn conflict(stream: &StreamId, expected: ExpectedVersion, actual: u64) -> AppendError {
    AppendError::Conflict(Conflict {
        stream: stream.clone(),
        expected,
        actual,
    })
}
