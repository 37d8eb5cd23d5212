//! The dispatcher: load, decide, append, apply.
//!
//! `mod.rs` holds the dispatcher, its builder and the entry points;
//! [`outcome`] what a command returns; `execute` deciding and appending;
//! `load` reading aggregates (cache, snapshots, events).

mod encode;
mod execute;
mod load;
mod outcome;
mod personal;

pub use outcome::{AnyCommitted, Committed, LoadError, Versioned};
pub use personal::{FORGOTTEN_STREAM, SubjectForgotten, forget_subject};

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use crate::aggregate::Aggregate;
use crate::cache::{Caches, Held};
use crate::codec::{Codec, Json};
use crate::command::Dispatchable;
use crate::envelope::Metadata;
use crate::error::DispatchError;

/// What the dispatcher feeds right after each commit, in the command's
/// task: an in-memory read model (see `DispatcherBuilder::inline`, defined
/// with the read side). The write side names no read-side type.
pub(crate) trait InlineProjection<S>: Send + Sync + 'static {
    /// Catches up with the store.
    fn catch_up_inline<'a>(
        &'a self,
        store: &'a S,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, crate::error::BoxError>> + Send + 'a>>;

    /// The projection's name.
    fn projection_name(&self) -> &'static str;
}
use crate::store::EventStore;
use crate::util::TypeMap;

/// Configures a [`Dispatcher`].
pub struct DispatcherBuilder<S, C = Json> {
    store: S,
    codec: C,
    inline: Vec<Box<dyn InlineProjection<S>>>,
    services: TypeMap<Box<dyn Any + Send + Sync>>,
    cache_capacity: usize,
    max_attempts: u32,
    verify_chains: bool,
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
            verify_chains: self.verify_chains,
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

    /// Checks each stream's hash chain as it loads (off by default): every
    /// event read must hash to its stored link, chained from the one
    /// before, or the load fails with [`StoreError::Corrupt`](crate::StoreError::Corrupt) naming the
    /// stream, version and position, so a command is never decided on a
    /// tampered aggregate. Loads then replay from the first event (a
    /// snapshot is not chained, so none is used) and read every field. See
    /// [`audit`](crate::audit) for what the chain proves.
    pub fn verify_chains(mut self, on: bool) -> Self {
        self.verify_chains = on;
        self
    }

    /// Adds something to feed after each commit (`inline`, defined by the
    /// read side, calls it: the write side knows no read model).
    pub(crate) fn push_inline(mut self, inline: Box<dyn InlineProjection<S>>) -> Self {
        self.inline.push(inline);
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
                caches: Caches::new(self.cache_capacity),
                max_attempts: self.max_attempts,
                verify_chains: self.verify_chains,
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
    caches: Caches,
    max_attempts: u32,
    verify_chains: bool,
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
            .field("cache_capacity", &self.inner.caches.capacity())
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
            verify_chains: false,
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

    pub(super) async fn feed_inline(&self) {
        for projection in &self.inner.inline {
            if let Err(error) = projection.catch_up_inline(&self.inner.store).await {
                tracing::error!(projection = projection.projection_name(), %error, "an inline projection failed");
            }
        }
    }

    pub(super) fn services<A: Aggregate>(&self) -> Result<&A::Services, DispatchError<A::Error>> {
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

    /// Exclusive use of the cached slot of `A`'s instance `id`.
    pub(super) fn slot<'a, A: Aggregate>(&'a self, id: &'a A::Id) -> impl Future<Output = Held<'a, A>> + 'a {
        self.inner.caches.take::<A>(id)
    }
}

/// Dispatches a command enum's variant: the code `#[derive(Command)]` on an
/// enum generates for each variant.
#[doc(hidden)]
pub fn route<D: Dispatchable, S: EventStore, C: Codec>(
    command: D,
    dispatcher: &Dispatcher<S, C>,
    metadata: Metadata,
) -> RouteFuture<'_> {
    Box::pin(async move {
        match command.dispatch_on(dispatcher, metadata).await {
            Ok(out) => Ok(out.into()),
            Err(e) => Err(e.erased()),
        }
    })
}

/// The future of a routed command.
pub type RouteFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<crate::AnyCommitted, crate::DispatchError>> + Send + 'a>>;
