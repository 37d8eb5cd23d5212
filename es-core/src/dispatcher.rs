//! The dispatcher: load, decide, append, apply.

use std::any::{Any, TypeId};
use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Arc, PoisonError, RwLock};

use crate::aggregate::{Aggregate, Handle, IntoId};
use crate::cache::{Cache, Cell, Slot};
use crate::codec::{Codec, Json};
use crate::command::{Command, Dispatchable};
use crate::envelope::{Envelope, EventId, Metadata, StreamId, Timestamp};
use crate::error::{AppendError, DecodeError, DispatchError, StoreError};
use crate::event::{Event, IntoEvents};
use crate::projection::InlineProjection;
use crate::store::{
    AppendOutcome, AppendRequest, Appended, CommandRecord, EventStore, ExpectedVersion, LoadedEvent, NewEvent,
    RecordedEvent, Snapshot,
};
use crate::util::TypeMap;

/// What one command committed.
pub struct Committed<A: Aggregate> {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The stream's version after the command.
    pub version: u64,
    /// The global position of the last event, `None` if the command produced
    /// no events.
    pub position: Option<u64>,
    /// The committed events, in order.
    pub events: Vec<Envelope<A::Event>>,
    /// Whether the command id had been committed before and this is the
    /// earlier outcome, read back from the store.
    pub deduplicated: bool,
}

impl<A: Aggregate> fmt::Debug for Committed<A>
where
    A::Event: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Committed")
            .field("stream", &self.stream)
            .field("version", &self.version)
            .field("position", &self.position)
            .field("events", &self.events)
            .field("deduplicated", &self.deduplicated)
            .finish()
    }
}

impl<A: Aggregate> Clone for Committed<A>
where
    A::Event: Clone,
{
    fn clone(&self) -> Self {
        Committed {
            stream: self.stream.clone(),
            version: self.version,
            position: self.position,
            events: self.events.clone(),
            deduplicated: self.deduplicated,
        }
    }
}

impl<A: Aggregate> Committed<A> {
    /// The committed events without their envelopes.
    pub fn payloads(&self) -> impl Iterator<Item = &A::Event> {
        self.events.iter().map(|e| &e.payload)
    }
}

/// What a routed command (a variant of a command enum) committed, without
/// the aggregate's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnyCommitted {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The stream's version after the command.
    pub version: u64,
    /// The global position of the last event, if any.
    pub position: Option<u64>,
    /// The stored names of the committed events, in order.
    pub events: Vec<&'static str>,
    /// Whether this is an earlier outcome of the same command id.
    pub deduplicated: bool,
}

impl<A: Aggregate> From<Committed<A>> for AnyCommitted {
    fn from(c: Committed<A>) -> Self {
        AnyCommitted {
            events: c.events.iter().map(|e| e.payload.name()).collect(),
            stream: c.stream,
            version: c.version,
            position: c.position,
            deduplicated: c.deduplicated,
        }
    }
}

/// Why an aggregate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A stored event could not be decoded (boxed: it is rare and large).
    #[error(transparent)]
    Decode(Box<DecodeError>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DecodeError> for LoadError {
    fn from(e: DecodeError) -> Self {
        LoadError::Decode(Box::new(e))
    }
}

impl<E> From<LoadError> for DispatchError<E> {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Decode(e) => DispatchError::Decode(e),
            LoadError::Store(e) => DispatchError::Store(e),
        }
    }
}

/// Configures a [`Dispatcher`].
pub struct DispatcherBuilder<S, C = Json> {
    store: S,
    codec: C,
    inline: Vec<Box<dyn InlineProjection<S>>>,
    services: TypeMap<Box<dyn Any + Send + Sync>>,
    cache_capacity: usize,
    max_attempts: u32,
}

impl<S: EventStore, C: Codec> DispatcherBuilder<S, C> {
    /// Encodes events and snapshots with `codec` instead.
    pub fn codec<C2: Codec>(self, codec: C2) -> DispatcherBuilder<S, C2> {
        if !self.inline.is_empty() {
            tracing::warn!("inline projections are dropped when the codec changes; add them after `codec(..)`");
        }
        DispatcherBuilder {
            store: self.store,
            codec,
            inline: Vec::new(),
            services: self.services,
            cache_capacity: self.cache_capacity,
            max_attempts: self.max_attempts,
        }
    }

    /// Gives aggregate `A`'s handlers their services.
    pub fn services<A: Aggregate>(mut self, services: A::Services) -> Self {
        self.services.insert(TypeId::of::<A>(), Box::new(services));
        self
    }

    /// Keeps at most `capacity` recently used instances of each aggregate
    /// type in memory (default 10,000); 0 loads from the store every time.
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Decides a command at most `attempts` times when other writers keep
    /// winning the append (default 5).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Updates `projection` right after each command commits, before
    /// `dispatch` returns: its readers see their own writes. A failing
    /// projection is logged, not the command's failure (the command has
    /// committed); it catches up on the next command. It reads events with
    /// the dispatcher's codec type (a dispatcher on `Binary` takes a
    /// projection made `with_codec(Binary)`).
    pub fn inline<R: crate::ReadModel>(mut self, projection: crate::Projection<R, C>) -> Self {
        self.inline.push(Box::new(projection));
        self
    }

    /// Builds the dispatcher.
    pub fn build(self) -> Dispatcher<S, C> {
        Dispatcher {
            inner: Arc::new(Inner {
                store: self.store,
                codec: self.codec,
                inline: self.inline,
                services: self.services,
                caches: RwLock::new(TypeMap::default()),
                cache_capacity: self.cache_capacity,
                max_attempts: self.max_attempts,
            }),
        }
    }
}

/// Routes commands to aggregates and commits their events.
///
/// For each command: find the aggregate (in its in-memory cache, or load it
/// from snapshot and events), decide with its handler, append the events with
/// the loaded version as the expected version, and apply them. When another
/// writer appended first, it reads what it missed and decides again, a
/// bounded number of times. Clones share the store and the caches.
pub struct Dispatcher<S, C = Json> {
    inner: Arc<Inner<S, C>>,
}

struct Inner<S, C> {
    store: S,
    codec: C,
    inline: Vec<Box<dyn InlineProjection<S>>>,
    services: TypeMap<Box<dyn Any + Send + Sync>>,
    caches: RwLock<TypeMap<Arc<dyn Any + Send + Sync>>>,
    cache_capacity: usize,
    max_attempts: u32,
}

impl<S, C> Clone for Dispatcher<S, C> {
    fn clone(&self) -> Self {
        Dispatcher {
            inner: self.inner.clone(),
        }
    }
}

impl<S: fmt::Debug, C: Codec> fmt::Debug for Dispatcher<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("store", &self.inner.store)
            .field("codec", &C::NAME)
            .field("cache_capacity", &self.inner.cache_capacity)
            .field("max_attempts", &self.inner.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<S: EventStore> Dispatcher<S, Json> {
    /// A dispatcher over `store` with the JSON codec and default settings.
    pub fn new(store: S) -> Self {
        Self::builder(store).build()
    }

    /// Starts configuring a dispatcher over `store`.
    pub fn builder(store: S) -> DispatcherBuilder<S, Json> {
        DispatcherBuilder {
            store,
            codec: Json,
            inline: Vec::new(),
            services: TypeMap::default(),
            cache_capacity: 10_000,
            max_attempts: 5,
        }
    }
}

impl<S: EventStore, C: Codec> Dispatcher<S, C> {
    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.inner.codec
    }

    /// Dispatches a command (or a command enum) with no metadata.
    ///
    /// Each command runs in an `es.dispatch` span (level INFO) with the
    /// fields `es.aggregate.type`, `es.aggregate.id`, `es.command.type`,
    /// `es.command.id`, `es.correlation_id`, and, when it ends,
    /// `es.attempts`, `es.outcome` (`committed`, `duplicate`, `no_events`,
    /// `rejected`, `conflict`, `panicked`, `error`), `es.version`,
    /// `es.position`, and OpenTelemetry's `otel.status_code` and
    /// `error.type` on failure.
    pub async fn dispatch<D: Dispatchable>(&self, command: D) -> Result<D::Output, DispatchError<D::Rejection>> {
        command.dispatch_on(self, Metadata::new()).await
    }

    /// Dispatches a command with metadata, which is stored with every event
    /// it produces. A command id in the metadata makes the command
    /// idempotent: dispatching the same id again returns the first outcome.
    pub async fn dispatch_with<D: Dispatchable>(
        &self,
        command: D,
        metadata: Metadata,
    ) -> Result<D::Output, DispatchError<D::Rejection>> {
        command.dispatch_on(self, metadata).await
    }

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
        metadata: Metadata,
    ) -> Result<Committed<A>, DispatchError<A::Error>> {
        const COMMAND: &str = "append_events";
        let inner = &*self.inner;
        let id = id.into_id();
        let stream = StreamId::of::<A>(&id);
        let mut list = Vec::new();
        events.into_events(&mut list);
        let cell = self.slot::<A>(&id);
        let mut slot = cell.take().await;
        self.refresh(&stream, &mut slot, &tracing::Span::none()).await?;
        if list.is_empty() {
            return Ok(Committed {
                stream,
                version: slot.version,
                position: None,
                events: Vec::new(),
                deduplicated: false,
            });
        }
        slot.fresh = false;
        let before = slot.version;
        if let Err(message) = catch_panic(|| list.iter().for_each(|e| slot.state.apply(e))) {
            return Err(DispatchError::Panicked {
                aggregate: A::NAME,
                stream,
                command: COMMAND,
                message,
            });
        }
        let recorded_at = Timestamp::now();
        let (batch, ids) = encode_batch::<A, C>(&inner.codec, &stream, &list, recorded_at)?;
        let encoded_metadata = metadata.encode();
        let request = AppendRequest {
            stream: &stream,
            expected: ExpectedVersion::Exact(before),
            events: batch,
            metadata: &encoded_metadata,
            command_id: metadata.command_id.as_deref(),
            recorded_at,
        };
        match inner.store.append(request).await {
            Ok(AppendOutcome::Committed(appended)) => {
                slot.version = appended.last_version;
                slot.fresh = true;
                let metadata = Arc::new(metadata);
                let events = envelopes(list, &ids, &stream, &appended, recorded_at, &metadata);
                self.maybe_snapshot(&stream, &slot, before).await;
                drop(slot);
                self.feed_inline().await;
                Ok(Committed {
                    stream,
                    version: appended.last_version,
                    position: appended.positions.last(),
                    events,
                    deduplicated: false,
                })
            }
            Ok(AppendOutcome::Duplicate(record)) => {
                drop(slot);
                Ok(self.earlier_outcome(record, metadata).await?)
            }
            Err(AppendError::Conflict(conflict)) => Err(DispatchError::Conflict {
                command: COMMAND,
                attempts: 1,
                conflict,
            }),
            Err(AppendError::Store(e)) => Err(e.into()),
        }
    }

    /// The current state of aggregate `A` with id `id` (the default state if
    /// it has no events). Reads whatever the store has beyond the cache.
    pub async fn load<A: Aggregate + Clone>(&self, id: impl IntoId<A::Id>) -> Result<A, LoadError> {
        let id = id.into_id();
        let stream = StreamId::of::<A>(&id);
        let cell = self.slot::<A>(&id);
        let mut slot = cell.take().await;
        self.refresh(&stream, &mut slot, &tracing::Span::current()).await?;
        Ok(slot.state.clone())
    }

    /// The state of aggregate `A` as of stream version `version` (the state
    /// after its first `version` events).
    pub async fn load_at_version<A: Aggregate>(
        &self,
        id: impl IntoId<A::Id>,
        version: u64,
    ) -> Result<(A, u64), LoadError> {
        self.replay::<A>(&id.into_id(), |e| e.version <= version).await
    }

    /// The state of aggregate `A` as of time `at`: every event recorded at or
    /// before `at`. Returns the state and its version.
    pub async fn load_as_of<A: Aggregate>(&self, id: impl IntoId<A::Id>, at: Timestamp) -> Result<(A, u64), LoadError> {
        self.replay::<A>(&id.into_id(), |e| e.recorded_at <= at).await
    }

    async fn replay<A: Aggregate>(
        &self,
        id: &A::Id,
        keep: impl Fn(&LoadedEvent<'_>) -> bool + Send + Sync,
    ) -> Result<(A, u64), LoadError> {
        let stream = StreamId::of::<A>(id);
        crate::store::validate_stream(S::NAME, &stream)?;
        let mut slot = Slot::<A>::empty();
        self.read_into(&stream, &mut slot, false, keep).await?;
        Ok((slot.state, slot.version))
    }

    /// Runs one command: the typed core under [`Dispatcher::dispatch`],
    /// which is what to call (it takes command enums too).
    #[doc(hidden)]
    pub async fn execute<Cmd: Command>(
        &self,
        command: Cmd,
        metadata: Metadata,
    ) -> Result<Committed<Cmd::Aggregate>, DispatchError<<Cmd::Aggregate as Aggregate>::Error>> {
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
        if let Some(command_id) = &metadata.command_id {
            let stream = StreamId::of::<Cmd::Aggregate>(id);
            attempt!(crate::store::validate_stream(S::NAME, &stream));
            attempt!(crate::store::validate_command_id(S::NAME, command_id));
            if let Some(record) = attempt!(inner.store.find_command(&stream, command_id).await) {
                return finish(probe, Ok(attempt!(self.earlier_outcome(record, metadata).await)));
            }
        }
        let encoded_metadata = metadata.encode();
        let metadata = if metadata.is_empty() {
            Metadata::shared_empty()
        } else {
            Arc::new(metadata)
        };
        let cell = self.slot::<Cmd::Aggregate>(id);
        let mut slot = cell.take().await;
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
            let decide = || {
                catch_panic(|| {
                    slot.state
                        .handle(crate::__private::CommandClone::clone_command(&command), services)
                })
            };
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
            let events = match decision {
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
                return finish(
                    probe,
                    Ok(Committed {
                        stream,
                        version: slot.version,
                        position: None,
                        events: Vec::new(),
                        deduplicated: false,
                    }),
                );
            }
            // Apply before appending: an event its aggregate cannot apply
            // (a panic, an overflow) is never stored, where it would make the
            // stream unloadable. Until the append commits, the state holds
            // events the store does not: any outcome but a commit reloads it.
            slot.fresh = false;
            let before = slot.version;
            if let Err(message) = catch_panic(|| events.iter().for_each(|e| slot.state.apply(e))) {
                return finish(probe, Err(panicked::<Cmd>(stream, message)));
            }
            let recorded_at = Timestamp::now();
            let (batch, ids) = attempt!(encode_batch::<Cmd::Aggregate, C>(
                &inner.codec,
                &stream,
                &events,
                recorded_at
            ));
            let request = AppendRequest {
                stream: &stream,
                expected: ExpectedVersion::Exact(before),
                events: batch,
                metadata: &encoded_metadata,
                command_id: metadata.command_id.as_deref(),
                recorded_at,
            };
            let clock = crate::metrics::Clock::start();
            let appended = inner.store.append(request).await;
            crate::metrics::append(S::NAME, &clock);
            match appended {
                Ok(AppendOutcome::Committed(appended)) => {
                    slot.version = appended.last_version;
                    slot.fresh = true;
                    let envelopes = envelopes(events, &ids, &stream, &appended, recorded_at, &metadata);
                    self.maybe_snapshot(&stream, &slot, before).await;
                    drop(slot);
                    self.feed_inline().await;
                    return finish(
                        probe,
                        Ok(Committed {
                            stream,
                            version: appended.last_version,
                            position: appended.positions.last(),
                            events: envelopes,
                            deduplicated: false,
                        }),
                    );
                }
                Ok(AppendOutcome::Duplicate(record)) => {
                    drop(slot);
                    return finish(
                        probe,
                        Ok(attempt!(
                            self.earlier_outcome(record, Arc::unwrap_or_clone(metadata)).await
                        )),
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

    async fn feed_inline(&self) {
        for projection in &self.inner.inline {
            if let Err(error) = projection.catch_up_inline(&self.inner.store).await {
                tracing::error!(projection = projection.projection_name(), %error, "an inline projection failed");
            }
        }
    }

    fn services<A: Aggregate>(&self) -> Result<&A::Services, DispatchError<A::Error>> {
        if let Some(unit) = (&() as &dyn Any).downcast_ref::<A::Services>() {
            return Ok(unit);
        }
        self.inner
            .services
            .get(&TypeId::of::<A>())
            .and_then(|s| s.downcast_ref::<A::Services>())
            .ok_or(DispatchError::MissingServices {
                aggregate: A::NAME,
                services: std::any::type_name::<A::Services>(),
            })
    }

    fn slot<A: Aggregate>(&self, id: &A::Id) -> Arc<Cell<A>> {
        let capacity = self.inner.cache_capacity;
        if capacity == 0 {
            return Cell::new();
        }
        let key = TypeId::of::<A>();
        {
            let caches = self.inner.caches.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(cache) = caches.get(&key).and_then(|c| c.downcast_ref::<Cache<A>>()) {
                return cache.cell(id);
            }
        }
        let mut caches = self.inner.caches.write().unwrap_or_else(PoisonError::into_inner);
        let cache = caches
            .entry(key)
            .or_insert_with(|| Arc::new(Cache::<A>::new(capacity)) as Arc<dyn Any + Send + Sync>);
        match cache.downcast_ref::<Cache<A>>() {
            Some(cache) => cache.cell(id),
            None => Cell::new(),
        }
    }

    /// Brings `slot` up to date: a full load if it is not fresh (snapshot,
    /// then events), otherwise only the events after its version.
    ///
    /// Runs in an `es.load` span (level DEBUG): `es.aggregate.type`,
    /// `es.aggregate.id`, `es.cached` (whether it only read the tail after a
    /// cached state), `es.snapshot` (whether a snapshot was used),
    /// `es.version` (the version it reached).
    async fn refresh<A: Aggregate>(
        &self,
        stream: &StreamId,
        slot: &mut Slot<A>,
        parent: &tracing::Span,
    ) -> Result<(), LoadError> {
        let span = if !tracing::dispatcher::has_been_set() {
            tracing::Span::none()
        } else {
            tracing::debug_span!(
                parent: parent,
                "es.load",
                es.aggregate.type = A::NAME,
                es.aggregate.id = stream.aggregate_id(),
                es.cached = slot.fresh,
                es.snapshot = tracing::field::Empty,
                es.version = tracing::field::Empty,
            )
        };
        let clock = crate::metrics::Clock::start();
        let loaded = self.refresh_untraced(stream, slot, &span).await;
        crate::metrics::load(A::NAME, &clock);
        if !span.is_disabled() {
            span.record("es.version", slot.version);
        }
        loaded
    }

    async fn refresh_untraced<A: Aggregate>(
        &self,
        stream: &StreamId,
        slot: &mut Slot<A>,
        span: &tracing::Span,
    ) -> Result<(), LoadError> {
        if !slot.fresh {
            crate::store::validate_stream(S::NAME, stream)?;
            let kept = slot.stream.take();
            *slot = Slot::empty();
            slot.stream = kept;
            let restored = A::SNAPSHOT_EVERY > 0 && self.restore_snapshot(stream, slot).await?;
            if !span.is_disabled() {
                span.record("es.snapshot", restored);
            }
            if restored {
                // A snapshot is only good if its version is in the stream (a
                // snapshot ahead of it would make every append conflict):
                // the tail read starts at that version to see it.
                if self.read_into(stream, slot, true, |_| true).await? {
                    slot.fresh = true;
                    return Ok(());
                }
                tracing::warn!(%stream, version = slot.version, "ignoring a snapshot ahead of its stream; replaying events");
                let kept = slot.stream.take();
                *slot = Slot::empty();
                slot.stream = kept;
            }
        }
        self.read_into(stream, slot, false, |_| true).await?;
        slot.fresh = true;
        Ok(())
    }

    /// Restores the stream's snapshot into `slot`, if it has a usable one.
    async fn restore_snapshot<A: Aggregate>(&self, stream: &StreamId, slot: &mut Slot<A>) -> Result<bool, LoadError> {
        let Some(snapshot) = self.inner.store.load_snapshot(stream).await? else {
            return Ok(false);
        };
        if snapshot.schema_version != A::SNAPSHOT_VERSION {
            return Ok(false);
        }
        let fingerprint = A::snapshot_fingerprint();
        if fingerprint != 0 && snapshot.fingerprint != fingerprint {
            tracing::warn!(
                %stream,
                version = snapshot.version,
                stored = snapshot.fingerprint,
                current = fingerprint,
                "ignoring a snapshot of another state shape; replaying events"
            );
            return Ok(false);
        }
        match A::decode_snapshot(&self.inner.codec, &snapshot.payload) {
            Some(Ok(state)) => {
                slot.state = state;
                slot.version = snapshot.version;
                Ok(true)
            }
            Some(Err(error)) => {
                tracing::warn!(%stream, version = snapshot.version, %error, "ignoring a snapshot that does not decode; replaying events");
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// Applies the stream's events after `slot.version` while `keep` holds.
    /// With `confirm`, the read starts at `slot.version` itself, which must
    /// be there; returns whether it was (always true without `confirm`).
    async fn read_into<A: Aggregate>(
        &self,
        stream: &StreamId,
        slot: &mut Slot<A>,
        confirm: bool,
        keep: impl Fn(&LoadedEvent<'_>) -> bool + Send + Sync,
    ) -> Result<bool, LoadError> {
        let codec = &self.inner.codec;
        let mut failure: Option<LoadError> = None;
        let from = if confirm { slot.version } else { slot.version + 1 };
        let mut unconfirmed = confirm;
        let Slot { state, version, .. } = slot;
        let visit = |e: &LoadedEvent<'_>| {
            if unconfirmed {
                unconfirmed = e.version != *version;
                return if unconfirmed {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                };
            }
            if !keep(e) {
                return ControlFlow::Break(());
            }
            if e.version != *version + 1 {
                failure = Some(LoadError::Store(StoreError::Corrupt {
                    store: S::NAME,
                    detail: format!(
                        "stream `{stream}` returned version {} after version {}",
                        e.version, *version
                    ),
                }));
                return ControlFlow::Break(());
            }
            match state.apply_stored(codec, e.name, e.schema_version, e.payload) {
                Ok(()) => {
                    *version = e.version;
                    ControlFlow::Continue(())
                }
                Err(source) => {
                    failure = Some(LoadError::from(DecodeError {
                        stream: stream.clone(),
                        stream_version: e.version,
                        event_name: e.name.to_owned(),
                        schema_version: e.schema_version,
                        source,
                    }));
                    ControlFlow::Break(())
                }
            }
        };
        self.inner.store.load_events(stream, from, visit).await?;
        match failure {
            Some(e) => {
                slot.fresh = false;
                Err(e)
            }
            None => Ok(!unconfirmed),
        }
    }

    async fn maybe_snapshot<A: Aggregate>(&self, stream: &StreamId, slot: &Slot<A>, before: u64) {
        let every = A::SNAPSHOT_EVERY;
        if every == 0 || slot.version / every == before / every {
            return;
        }
        match slot.state.encode_snapshot(&self.inner.codec) {
            Some(Ok(payload)) => {
                let snapshot = Snapshot {
                    version: slot.version,
                    schema_version: A::SNAPSHOT_VERSION,
                    fingerprint: A::snapshot_fingerprint(),
                    payload,
                };
                if let Err(error) = self.inner.store.save_snapshot(stream, snapshot).await {
                    tracing::warn!(%stream, %error, "could not save a snapshot");
                }
            }
            Some(Err(error)) => tracing::warn!(%stream, %error, "could not encode a snapshot"),
            None => {}
        }
    }

    /// What an earlier command with the same id committed, read back.
    async fn earlier_outcome<A: Aggregate>(
        &self,
        record: CommandRecord,
        metadata: Metadata,
    ) -> Result<Committed<A>, LoadError> {
        let codec = &self.inner.codec;
        let mut events = Vec::new();
        let mut failure = None;
        let stream = record.stream.clone();
        let metadata = Arc::new(metadata);
        let visit = |e: &RecordedEvent<'_>| {
            if e.version > record.last_version {
                return ControlFlow::Break(());
            }
            let stored = Metadata::decode(e.metadata)
                .map(Arc::new)
                .unwrap_or_else(|_| metadata.clone());
            let decoded = A::Event::decode_each(codec, e.name, e.schema_version, e.payload, |payload| {
                events.push(Envelope {
                    event_id: e.event_id,
                    stream: stream.clone(),
                    version: e.version,
                    position: e.position,
                    recorded_at: e.recorded_at,
                    metadata: stored.clone(),
                    payload,
                })
            });
            match decoded {
                Ok(()) => ControlFlow::Continue(()),
                Err(source) => {
                    failure = Some(crate::projection::decode_error(e, source));
                    ControlFlow::Break(())
                }
            }
        };
        self.inner
            .store
            .read_stream(&record.stream, record.first_version, visit)
            .await?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok(Committed {
            position: events.last().map(|e| e.position),
            stream: record.stream,
            version: record.last_version,
            events,
            deduplicated: true,
        })
    }
}

/// Runs `f`, turning a panic into its message.
fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|payload| crate::subscription::panic_message(&*payload))
}

/// Encodes decided (or imported) events into a batch, with their ids.
#[inline]
fn encode_batch<A: Aggregate, C: Codec>(
    codec: &C,
    stream: &StreamId,
    events: &[A::Event],
    recorded_at: Timestamp,
) -> Result<(Vec<NewEvent>, EventIds), DispatchError<A::Error>> {
    let mut ids = EventIds::default();
    let mut batch = Vec::with_capacity(events.len());
    for event in events {
        let payload = event.encode(codec).map_err(|source| DispatchError::Encode {
            stream: stream.clone(),
            event_name: event.name(),
            source: Box::new(source),
        })?;
        let event_id = EventId::at(recorded_at);
        ids.push(event_id);
        batch.push(NewEvent {
            event_id,
            name: event.name().into(),
            schema_version: event.version(),
            payload,
        });
    }
    Ok((batch, ids))
}

/// The committed events in their envelopes.
#[inline]
fn envelopes<E>(
    events: Vec<E>,
    ids: &EventIds,
    stream: &StreamId,
    appended: &Appended,
    recorded_at: Timestamp,
    metadata: &Arc<Metadata>,
) -> Vec<Envelope<E>> {
    events
        .into_iter()
        .zip(ids.iter())
        .enumerate()
        .map(|(i, (event, event_id))| Envelope {
            event_id,
            stream: stream.clone(),
            version: appended.first_version + i as u64,
            position: appended.positions.get(i).unwrap_or_default(),
            recorded_at,
            metadata: metadata.clone(),
            payload: event,
        })
        .collect()
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
        Ok(committed) if committed.events.is_empty() => "no_events",
        Ok(_) => "committed",
        Err(DispatchError::Rejected { .. }) => "rejected",
        Err(DispatchError::Conflict { .. }) => "conflict",
        Err(DispatchError::Panicked { .. }) => "panicked",
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

fn panicked<Cmd: Command>(stream: StreamId, message: String) -> DispatchError<<Cmd::Aggregate as Aggregate>::Error> {
    tracing::error!(%stream, command = Cmd::NAME, %message, "a handler panicked; nothing was committed");
    DispatchError::Panicked {
        aggregate: <Cmd::Aggregate as Aggregate>::NAME,
        stream,
        command: Cmd::NAME,
        message,
    }
}

/// The ids of a batch, without an allocation for the usual single event.
#[derive(Default)]
struct EventIds {
    first: Option<EventId>,
    rest: Vec<EventId>,
}

impl EventIds {
    fn push(&mut self, id: EventId) {
        if self.first.is_none() {
            self.first = Some(id);
        } else {
            self.rest.push(id);
        }
    }

    fn iter(&self) -> impl Iterator<Item = EventId> + '_ {
        self.first.iter().chain(&self.rest).copied()
    }
}

/// Dispatches a command enum's variant: the code `#[derive(Command)]` on an
/// enum generates for each variant.
#[doc(hidden)]
pub fn route<D: Dispatchable, S: EventStore, C: Codec>(
    command: D,
    dispatcher: &Dispatcher<S, C>,
    metadata: Metadata,
) -> crate::__private::RouteFuture<'_> {
    Box::pin(async move {
        match command.dispatch_on(dispatcher, metadata).await {
            Ok(out) => Ok(out.into()),
            Err(e) => Err(e.erased()),
        }
    })
}
