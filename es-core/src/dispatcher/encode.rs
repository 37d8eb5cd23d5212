//! Encoding a decided batch: personal fields sealed, payloads into a
//! buffer reused between commands, one event handed over inline.

use std::sync::Arc;

use crate::aggregate::Aggregate;
use crate::codec::Codec;
use crate::envelope::{EventId, Metadata, StreamId, Timestamp};
use crate::error::DispatchError;
use crate::event::Event;
use crate::personal::seal::{At, Scope};
use crate::store::{Appended, EventStore, NewEvent};

use super::{Committed, Dispatcher};

impl<S: EventStore, C: Codec> Dispatcher<S, C> {
    /// [`encode_batch`] for events with personal fields: sealed, with the
    /// keys of subjects seen for the first time made and stored first.
    pub(super) async fn encode_sealed<A: Aggregate>(
        &self,
        stream: &StreamId,
        events: &[A::Event],
    ) -> Result<Encoded, DispatchError<A::Error>> {
        let Some(mut scope) = self.personal_scope::<A>(true)? else {
            return encode_batch::<A, C>(&self.inner.codec, stream, events, None);
        };
        let encoded = scope
            .retry_fetching(true, 4, Result::is_err, |scope| {
                encode_batch::<A, C>(&self.inner.codec, stream, events, Some(scope))
            })
            .await?;
        if scope.forgotten {
            tracing::warn!(%stream, "new events carry personal data of a forgotten subject: stored as forgotten");
        }
        encoded
    }
}

/// Encodes decided (or imported) events one after another into a buffer,
/// giving each its id, all recorded now; in `scope`, personal fields are
/// sealed.
#[inline]
pub(super) fn encode_batch<A: Aggregate, C: Codec>(
    codec: &C,
    stream: &StreamId,
    events: &[A::Event],
    mut scope: Option<&mut Scope>,
) -> Result<Encoded, DispatchError<A::Error>> {
    let recorded_at = Timestamp::now();
    let mut encoded = Encoded {
        payloads: Payloads::take(),
        events: OneOrMore::default(),
        recorded_at,
    };
    for event in events {
        let buf = &mut encoded.payloads.0;
        let event_id = EventId::at(recorded_at);
        let written = match scope.as_deref_mut() {
            None => event.encode_into(codec, buf),
            Some(scope) => {
                scope.place(stream.aggregate_type(), stream.aggregate_id(), At::Event(event_id));
                scope.run(|| event.encode_into(codec, buf))
            }
        };
        written.map_err(|source| DispatchError::Encode {
            stream: stream.clone(),
            event_name: event.name(),
            source: Box::new(source),
        })?;
        encoded.events.push(EncodedEvent {
            event_id,
            name: event.name(),
            schema_version: event.version(),
            end: buf.len(),
        });
    }
    Ok(encoded)
}

/// A batch's payloads, one after another in one buffer, each event's id,
/// name, schema version and where its payload ends, and its commit time.
pub(super) struct Encoded {
    pub(super) payloads: Payloads,
    pub(super) events: OneOrMore<EncodedEvent>,
    pub(super) recorded_at: Timestamp,
}

#[derive(Clone, Copy)]
pub(super) struct EncodedEvent {
    pub(super) event_id: EventId,
    pub(super) name: &'static str,
    pub(super) schema_version: u32,
    pub(super) end: usize,
}

impl Encoded {
    /// What a command that committed these events at `appended` returns.
    pub(super) fn committed<A: Aggregate>(
        &self,
        stream: StreamId,
        appended: Appended,
        events: Vec<A::Event>,
        metadata: Option<Arc<Metadata>>,
    ) -> Committed<A> {
        let first_id = self.events.first.map(|e| e.event_id).unwrap_or_default();
        let more_ids = self.events.rest.iter().map(|e| e.event_id).collect();
        Committed::appended(stream, appended, events, first_id, more_ids, self.recorded_at, metadata)
    }

    /// The batch to append; no allocation for a single event.
    pub(super) fn batch(&self) -> Batch<'_> {
        let mut start = 0;
        let mut new_event = |e: EncodedEvent| {
            let payload = &self.payloads.0[start..e.end];
            start = e.end;
            NewEvent {
                event_id: e.event_id,
                name: e.name,
                schema_version: e.schema_version,
                payload,
            }
        };
        match self.events.single() {
            Some(e) => Batch::One([new_event(e)]),
            None => Batch::Many(self.events.iter().map(new_event).collect()),
        }
    }
}

/// The events of an append request, held inline when there is one.
pub(super) enum Batch<'a> {
    One([NewEvent<'a>; 1]),
    Many(Vec<NewEvent<'a>>),
}

impl<'a> Batch<'a> {
    pub(super) fn as_slice(&self) -> &[NewEvent<'a>] {
        match self {
            Batch::One(one) => one,
            Batch::Many(many) => many,
        }
    }
}

/// The buffer a command's events are encoded into: the thread's spare one,
/// given back when dropped, so a command allocates none once the thread
/// has encoded an event. A buffer grown past 64 KiB is freed instead.
pub(super) struct Payloads(Vec<u8>);

thread_local! {
    static SPARE_PAYLOADS: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Payloads {
    pub(super) fn take() -> Self {
        Payloads(SPARE_PAYLOADS.with(|spare| spare.take()))
    }
}

impl Drop for Payloads {
    fn drop(&mut self) {
        const MAX_SPARE: usize = 64 * 1024;
        if self.0.capacity() <= MAX_SPARE {
            let mut buf = std::mem::take(&mut self.0);
            buf.clear();
            // Another command on this thread may have put its own back
            // meanwhile: keep the larger.
            SPARE_PAYLOADS.with(|spare| {
                let other = spare.take();
                spare.set(if other.capacity() > buf.capacity() { other } else { buf });
            });
        }
    }
}

/// A list without an allocation for the usual single element.
pub(super) struct OneOrMore<T> {
    first: Option<T>,
    rest: Vec<T>,
}

impl<T> Default for OneOrMore<T> {
    fn default() -> Self {
        OneOrMore {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<T: Copy> OneOrMore<T> {
    fn push(&mut self, item: T) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.rest.push(item);
        }
    }

    /// The element, if there is exactly one.
    fn single(&self) -> Option<T> {
        self.first.filter(|_| self.rest.is_empty())
    }

    fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.first.iter().chain(&self.rest).copied()
    }
}
