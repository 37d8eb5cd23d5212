//! Deciding a command (or taking imported events) and appending what it
//! decided: retries on conflicts, idempotent command ids, the outcome
//! recorded in the dispatch span and metrics.

use std::sync::Arc;

use crate::aggregate::{Aggregate, Handle, IntoId};
use crate::cache::{Held, Slot};
use crate::codec::{Codec, CodecError};
use crate::command::Command;
use crate::envelope::{Metadata, StreamId};
use crate::error::{AppendError, DispatchError};
use crate::event::{Event, IntoEvents};
use crate::store::{AppendOutcome, AppendRequest, Appended, EventStore, ExpectedVersion, Link, link_batch};

use super::encode::encode_batch;
use super::{Committed, Dispatcher};

impl<S: EventStore, C: Codec> Dispatcher<S, C> {
    /// Appends events to aggregate `A`'s stream without a command: for
    /// imports, fixtures and tests. The events go through the same path as
    /// decided ones: applied to the current state first (an event the
    /// aggregate cannot apply is never stored: [`DispatchError::Panicked`]),
    /// encoded with the dispatcher's codec, appended all or nothing at the
    /// version that state was loaded at (a writer that got there first makes
    /// it a [`DispatchError::Conflict`], not retried), with `metadata`; a
    /// command id in it makes the import idempotent, as for a command.
    /// Takes what a `#[handle]` handler may return: an event, a tuple,
    /// `Vec` or `Option` of them.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    /// # pub struct Opened { pub owner: String }
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    /// # pub struct Deposited { pub amount: u64 }
    /// # #[derive(Debug, Clone, PartialEq, Event)]
    /// # pub enum AccountEvent { Opened(Opened), Deposited(Deposited) }
    /// # #[derive(Debug, thiserror::Error)] #[error("never")] pub struct Never;
    /// # #[derive(Debug, Default, Clone, Aggregate)]
    /// # #[aggregate(id = String, event = AccountEvent, error = Never)]
    /// # pub struct Account { pub balance: u64 }
    /// # #[es_core::handlers] impl Account {
    /// #     #[apply] fn opened(&mut self, _: &Opened) {}
    /// #     #[apply] fn deposited(&mut self, e: &Deposited) { self.balance += e.amount }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let app = Dispatcher::new(InMemoryStore::new());
    /// let imported = app
    ///     .append_events::<Account>(
    ///         "old-1",
    ///         (Opened { owner: "Ada".into() }, Deposited { amount: 70 }),
    ///         Metadata::new(),
    ///     )
    ///     .await?;
    /// assert_eq!(imported.version, 2);
    /// assert_eq!(app.load::<Account>("old-1").await?.balance, 70);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn append_events<A: Aggregate>(
        &self,
        id: impl IntoId<A::Id>,
        events: impl IntoEvents<A::Event>,
        mut metadata: Metadata,
    ) -> Result<Committed<A>, DispatchError<A::Error>> {
        const COMMAND: &str = "append_events";
        record_command_name(&mut metadata, COMMAND);
        let id = id.into_id();
        let stream = StreamId::of::<A>(&id);
        let mut list = Vec::new();
        events.into_events(&mut list);
        bind_personal::<A>(&stream, &mut list)?;
        let mut slot = self.slot::<A>(&id).await;
        self.refresh(&stream, &mut slot, &tracing::Span::none()).await?;
        if list.is_empty() {
            return Ok(Committed::nothing(stream, slot.version));
        }
        let before = match apply_ahead(&mut slot, &list) {
            Ok(before) => before,
            Err(message) => {
                return Err(DispatchError::Panicked {
                    aggregate: A::NAME,
                    stream,
                    command: COMMAND,
                    message,
                });
            }
        };
        let encoded = if <A::Event as Event>::PERSONAL {
            self.encode_sealed::<A>(&stream, &list).await?
        } else {
            encode_batch::<A, C>(&self.inner.codec, &stream, &list, None)?
        };
        let batch = encoded.batch();
        let encoded_metadata = metadata.encode();
        let request = AppendRequest {
            stream: &stream,
            expected: ExpectedVersion::Exact(before),
            events: batch.as_slice(),
            metadata: &encoded_metadata,
            command_id: metadata.command_id.as_deref(),
            recorded_at: encoded.recorded_at,
        };
        let head = self.head_link(&slot, &request);
        let clock = crate::metrics::Clock::start();
        let appended = self.inner.store.append(request).await;
        crate::metrics::append(S::NAME, &clock);
        match appended {
            Ok(AppendOutcome::Appended(appended)) => {
                let metadata = (!metadata.is_empty()).then(|| Arc::new(metadata));
                if let Some(slot) = self.settle(slot, before, &appended, head) {
                    self.after_commit(&stream, slot, before).await;
                }
                Ok(encoded.committed(stream, appended, list, metadata))
            }
            Ok(AppendOutcome::Duplicate(record)) => {
                drop(slot);
                self.earlier_outcome(record, metadata, COMMAND).await
            }
            Err(AppendError::Conflict(conflict)) => Err(DispatchError::Conflict {
                command: COMMAND,
                attempts: 1,
                conflict,
            }),
            Err(AppendError::Store(e)) => Err(e.into()),
        }
    }

    /// The link the last event of `request` gets if it is appended, when
    /// chains are verified on load: the request expects the slot's version,
    /// so the store chains it from the head the slot holds, as
    /// [`link_batch`] does.
    fn head_link<A: Aggregate>(&self, slot: &Slot<A>, request: &AppendRequest<'_>) -> Option<Link> {
        if !self.inner.verify_chains {
            return None;
        }
        let r = request;
        link_batch(
            slot.link,
            r.stream,
            slot.version + 1,
            r.events,
            r.metadata,
            r.recorded_at,
        )
        .last()
        .copied()
    }

    /// After a commit at versions after `before`: the slot holds the
    /// committed state. Returns the slot when a snapshot is due or inline
    /// projections are to be fed, which [`Self::after_commit`] then does;
    /// most commits need neither, and then the slot goes back here, with no
    /// future to build.
    #[inline]
    fn settle<'a, A: Aggregate>(
        &self,
        mut slot: Held<'a, A>,
        before: u64,
        appended: &Appended,
        head: Option<Link>,
    ) -> Option<Held<'a, A>> {
        slot.version = appended.last_version;
        if let Some(head) = head {
            slot.link = head;
        }
        slot.fresh = true;
        (snapshot_due::<A>(before, slot.version) || !self.inner.inline.is_empty()).then_some(slot)
    }

    /// What [`Self::settle`] leaves to wait for: the snapshot when one is
    /// due, and inline projections fed once the slot is released.
    async fn after_commit<A: Aggregate>(&self, stream: &StreamId, slot: Held<'_, A>, before: u64) {
        if snapshot_due::<A>(before, slot.version) {
            self.save_snapshot(stream, &slot).await;
        }
        drop(slot);
        if !self.inner.inline.is_empty() {
            self.feed_inline().await;
        }
    }

    /// Runs one command: the typed core under [`Dispatcher::dispatch`],
    /// which is what to call (it takes command enums too).
    #[doc(hidden)]
    // Not an `async fn`: that would move the command from the future's
    // arguments into its body on the first poll (measured: a stall on
    // each command); the block uses them where they are.
    #[expect(clippy::manual_async_fn, reason = "the async block keeps the arguments in place")]
    pub fn execute<Cmd: Command>(
        &self,
        command: Cmd,
        mut metadata: Metadata,
    ) -> impl Future<Output = Result<Committed<Cmd::Aggregate>, DispatchError<<Cmd::Aggregate as Aggregate>::Error>>>
    + Send
    + '_ {
        async move {
            // Until a subscriber exists there is nothing to trace, and the span
            // macros still cost ~0.5 µs a command (their `log` fallback among
            // them): skip them.
            let span = if !tracing::dispatcher::has_been_set() {
                tracing::Span::none()
            } else {
                tracing::info_span!(
                    "es.dispatch",
                    es.aggregate.type = <Cmd::Aggregate as Aggregate>::NAME,
                    es.aggregate.id = %command.aggregate_id(),
                    es.command.type = Cmd::NAME,
                    es.command.id = metadata.command_id.as_deref(),
                    es.correlation_id = metadata.correlation_id.as_deref(),
                    es.attempts = tracing::field::Empty,
                    es.outcome = tracing::field::Empty,
                    es.version = tracing::field::Empty,
                    es.position = tracing::field::Empty,
                    otel.status_code = tracing::field::Empty,
                    error.type = tracing::field::Empty,
                )
            };
            // Not `.instrument(span)` nor a nested future: either costs a move
            // of the command's state per call. The load spans name this one as
            // parent, the handlers run inside it, and every return records its
            // outcome through `finish`.
            let span = &span;
            let probe = &Probe {
                span,
                aggregate: <Cmd::Aggregate as Aggregate>::NAME,
                command: Cmd::NAME,
                clock: crate::metrics::Clock::start(),
            };
            macro_rules! attempt {
                ($e:expr) => {
                    match $e {
                        Ok(value) => value,
                        Err(error) => return finish(probe, Err(error.into())),
                    }
                };
            }
            let inner = &*self.inner;
            let id = command.aggregate_id();
            let services = attempt!(self.services::<Cmd::Aggregate>());
            record_command_name(&mut metadata, Cmd::NAME);
            if metadata.command_id.is_some() {
                metadata.command_fingerprint = command.fingerprint().as_ref().map(crate::command::fingerprint_hex);
            }
            if let Some(command_id) = &metadata.command_id {
                let stream = StreamId::of::<Cmd::Aggregate>(id);
                attempt!(crate::store::validate_stream(S::NAME, &stream));
                attempt!(crate::store::validate_command_id(S::NAME, command_id));
                if let Some(record) = attempt!(inner.store.find_command(&stream, command_id).await) {
                    return finish(probe, self.earlier_outcome(record, metadata, Cmd::NAME).await);
                }
            }
            let (encoded_metadata, metadata) = if metadata.is_empty() {
                (Vec::new(), None)
            } else {
                (metadata.encode(), Some(Arc::new(metadata)))
            };
            let command_id = metadata.as_ref().and_then(|m| m.command_id.as_deref());
            // The slot is free but for concurrent commands on one aggregate:
            // take it without building the waiting future.
            let mut slot = match inner.caches.take_now::<Cmd::Aggregate>(id) {
                Ok(slot) => slot,
                Err(returned) => {
                    returned.await;
                    self.slot::<Cmd::Aggregate>(id).await
                }
            };
            let stream = slot
                .stream
                .get_or_insert_with(|| StreamId::of::<Cmd::Aggregate>(id))
                .clone();
            // Whether the state was read from the store during this command. A
            // cached state may be stale: an append finds out through its
            // expected version, but a rejection or a decision with no events
            // appends nothing, so those are checked against the store first.
            let mut current = false;
            if !slot.fresh {
                attempt!(self.refresh(&stream, &mut slot, span).await);
                current = true;
            }
            let mut attempts = 0;
            loop {
                attempts += 1;
                if !span.is_disabled() {
                    span.record("es.attempts", attempts);
                }
                let decide = || catch_panic(|| slot.state.handle(&command, services));
                let decided = if span.is_none() {
                    decide()
                } else {
                    span.in_scope(decide)
                };
                let decision = match decided {
                    Ok(decision) => decision,
                    Err(message) => {
                        // The handler may have left the state half-changed (through
                        // interior mutability): the next command reloads it.
                        slot.fresh = false;
                        return finish(probe, Err(panicked::<Cmd>(stream, message)));
                    }
                };
                let accepted = matches!(&decision, Ok(events) if !events.is_empty());
                if !accepted && !current {
                    let seen = slot.version;
                    attempt!(self.refresh(&stream, &mut slot, span).await);
                    current = true;
                    if slot.version != seen {
                        tracing::debug!(parent: span, %stream, seen, now = slot.version, "cached state was stale, deciding again");
                        continue;
                    }
                }
                let mut events = match decision {
                    Ok(events) => events,
                    Err(error) => {
                        return finish(
                            probe,
                            Err(DispatchError::Rejected {
                                command: Cmd::NAME,
                                stream,
                                error,
                            }),
                        );
                    }
                };
                if events.is_empty() {
                    return finish(probe, Ok(Committed::nothing(stream, slot.version)));
                }
                attempt!(bind_personal::<Cmd::Aggregate>(&stream, &mut events));
                let before = match apply_ahead(&mut slot, &events) {
                    Ok(before) => before,
                    Err(message) => return finish(probe, Err(panicked::<Cmd>(stream, message))),
                };
                // The same steps as `append_events`, written out: a nested
                // future for them would move this command's state once more
                // (measured: round-robin 0.31 -> 0.30).
                let encoded = if <<Cmd::Aggregate as Aggregate>::Event as Event>::PERSONAL {
                    attempt!(self.encode_sealed::<Cmd::Aggregate>(&stream, &events).await)
                } else {
                    attempt!(encode_batch::<Cmd::Aggregate, C>(&inner.codec, &stream, &events, None))
                };
                let batch = encoded.batch();
                let request = AppendRequest {
                    stream: &stream,
                    expected: ExpectedVersion::Exact(before),
                    events: batch.as_slice(),
                    metadata: &encoded_metadata,
                    command_id,
                    recorded_at: encoded.recorded_at,
                };
                let head = self.head_link(&slot, &request);
                let clock = crate::metrics::Clock::start();
                let appended = inner.store.append(request).await;
                crate::metrics::append(S::NAME, &clock);
                match appended {
                    Ok(AppendOutcome::Appended(appended)) => {
                        if let Some(slot) = self.settle(slot, before, &appended, head) {
                            self.after_commit(&stream, slot, before).await;
                        }
                        return finish(probe, Ok(encoded.committed(stream, appended, events, metadata)));
                    }
                    Ok(AppendOutcome::Duplicate(record)) => {
                        drop(slot);
                        return finish(
                            probe,
                            self.earlier_outcome(
                                record,
                                metadata.map(Arc::unwrap_or_clone).unwrap_or_default(),
                                Cmd::NAME,
                            )
                            .await,
                        );
                    }
                    Err(AppendError::Conflict(conflict)) => {
                        tracing::debug!(parent: span, %stream, attempts, %conflict, "version conflict, deciding again");
                        // Let the winner's task run on before racing it again.
                        tokio::task::yield_now().await;
                        // Catch up either way, so the next command starts fresh.
                        let caught_up = self.refresh(&stream, &mut slot, span).await;
                        current = true;
                        let giving_up = attempts >= inner.max_attempts || caught_up.is_err();
                        crate::metrics::conflict(probe.aggregate, !giving_up);
                        if giving_up {
                            attempt!(caught_up);
                            return finish(
                                probe,
                                Err(DispatchError::Conflict {
                                    command: Cmd::NAME,
                                    attempts,
                                    conflict,
                                }),
                            );
                        }
                    }
                    // The batch may or may not have committed; the state is
                    // reloaded next time.
                    Err(AppendError::Store(e)) => return finish(probe, Err(e.into())),
                }
            }
        }
    }
}

/// Applies events about to be appended to the state first: an event its
/// aggregate cannot apply (a panic, an overflow) is never stored, where it
/// would make the stream unloadable. Until the append commits, the state
/// holds events the store does not, so the slot is marked stale: any
/// outcome but a commit reloads it. Returns the version the events follow,
/// or the panic's message.
fn apply_ahead<A: Aggregate>(slot: &mut Slot<A>, events: &[A::Event]) -> Result<u64, String> {
    slot.fresh = false;
    let before = slot.version;
    catch_panic(|| events.iter().for_each(|e| slot.state.apply(e)))?;
    Ok(before)
}

/// Runs `f`, turning a panic into its message.
fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| crate::util::panic_message(&*payload))
}

/// Binds the personal fields of decided (or imported) events to their
/// subjects, before they are applied, so a state that keeps them keeps
/// whose they are.
#[inline]
fn bind_personal<A: Aggregate>(stream: &StreamId, events: &mut [A::Event]) -> Result<(), DispatchError<A::Error>> {
    if !<A::Event as Event>::PERSONAL {
        return Ok(());
    }
    for event in events {
        event.bind_personal().map_err(|message| DispatchError::Encode {
            stream: stream.clone(),
            event_name: event.name(),
            source: Box::new(CodecError::encode::<A::Event>("personal", message)),
        })?;
    }
    Ok(())
}

/// What `finish` reports a command's outcome to.
struct Probe<'a> {
    span: &'a tracing::Span,
    aggregate: &'static str,
    command: &'static str,
    clock: crate::metrics::Clock,
}

/// Records a command's outcome in its span and metrics, and returns it.
#[inline]
fn finish<A: Aggregate>(
    probe: &Probe<'_>,
    outcome: Result<Committed<A>, DispatchError<A::Error>>,
) -> Result<Committed<A>, DispatchError<A::Error>> {
    let span = probe.span;
    if span.is_none() && !crate::metrics::ENABLED {
        return outcome;
    }
    let what = match &outcome {
        Ok(committed) if committed.deduplicated => "duplicate",
        Ok(committed) if committed.events().len() == 0 => "no_events",
        Ok(_) => "committed",
        Err(DispatchError::Rejected { .. }) => "rejected",
        Err(DispatchError::Conflict { .. }) => "conflict",
        Err(DispatchError::Panicked { .. }) => "panicked",
        Err(DispatchError::CommandIdReused { .. }) => "command_id_reused",
        Err(_) => "error",
    };
    crate::metrics::command(probe.aggregate, probe.command, what, &probe.clock);
    if span.is_none() {
        return outcome;
    }
    span.record("es.outcome", what);
    match &outcome {
        Ok(committed) => {
            span.record("es.version", committed.version);
            if let Some(position) = committed.position {
                span.record("es.position", position);
            }
            span.record("otel.status_code", "OK");
        }
        // A rejection is the domain saying no, not a failure.
        Err(DispatchError::Rejected { .. }) => {}
        Err(_) => {
            span.record("otel.status_code", "ERROR").record("error.type", what);
        }
    }
    outcome
}

/// Records which command carries the command id, if there is one: a later
/// command of another type with the same id is refused instead of answered
/// with this one's outcome.
fn record_command_name(metadata: &mut Metadata, command: &'static str) {
    if metadata.command_id.is_some() {
        metadata.command_name = Some(command.to_owned());
    }
}

fn panicked<Cmd: Command>(stream: StreamId, message: String) -> DispatchError<<Cmd::Aggregate as Aggregate>::Error> {
    tracing::error!(%stream, command = Cmd::NAME, %message, "a handler panicked; nothing was committed");
    DispatchError::Panicked {
        aggregate: <Cmd::Aggregate as Aggregate>::NAME,
        stream,
        command: Cmd::NAME,
        message,
    }
}

/// Whether a snapshot is due after a commit from version `before` to
/// `after`: one each time the version passes a multiple of
/// `A::SNAPSHOT_EVERY` (never when that is 0).
fn snapshot_due<A: Aggregate>(before: u64, after: u64) -> bool {
    let every = A::SNAPSHOT_EVERY;
    every != 0 && after / every != before / every
}
