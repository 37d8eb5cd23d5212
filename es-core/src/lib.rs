//! Event-sourced aggregates and CQRS, where derive macros write the plumbing
//! and the compiler checks the wiring.
//!
//! You write plain structs: one per event, an enum of an aggregate's events,
//! one per command, the aggregate's state, and one `impl` block whose methods
//! are marked `#[handle]` (decide a command) or `#[apply]` (evolve on an
//! event). The derives generate the routing as trait impls — [`Apply<E>`],
//! [`Handle<C>`], [`Command::Aggregate`] — so a forgotten handler, an
//! unrouted command, a duplicate or a typo is a compile error at your line.
//!
//! # Example
//!
//! ```
//! use es_core::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! #[event(name = "counter.incremented")]
//! pub struct Incremented { pub by: u32 }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! #[event(name = "counter.reset")]
//! pub struct Reset;
//!
//! #[derive(Debug, Clone, PartialEq, Event)]
//! pub enum CounterEvent { Incremented(Incremented), Reset(Reset) }
//!
//! #[derive(Debug, Clone, Command)]
//! #[command(aggregate = Counter)]
//! pub struct Increment { #[aggregate_id] pub id: u64, pub by: u32 }
//!
//! #[derive(Debug, Clone, Command)]
//! #[command(aggregate = Counter)]
//! pub struct ResetCounter(#[aggregate_id] pub u64);
//!
//! #[derive(Debug, PartialEq, thiserror::Error)]
//! pub enum CounterError {
//!     #[error("would pass the limit of {0}")]
//!     Limit(u32),
//! }
//!
//! #[derive(Debug, Default, Clone, Aggregate)]
//! #[aggregate(name = "counter", id = u64, event = CounterEvent, error = CounterError)]
//! pub struct Counter { value: u32 }
//!
//! #[es_core::handlers]
//! impl Counter {
//!     #[handle]
//!     fn increment(&self, cmd: Increment) -> Result<Incremented, CounterError> {
//!         if self.value + cmd.by > 100 {
//!             return Err(CounterError::Limit(100));
//!         }
//!         Ok(Incremented { by: cmd.by })
//!     }
//!
//!     /// Resetting a counter at zero does nothing: no event.
//!     #[handle]
//!     fn reset(&self, _: ResetCounter) -> Result<Option<Reset>, CounterError> {
//!         Ok((self.value > 0).then_some(Reset))
//!     }
//!
//!     #[apply]
//!     fn incremented(&mut self, e: &Incremented) { self.value += e.by }
//!
//!     #[apply]
//!     fn was_reset(&mut self, _: &Reset) { self.value = 0 }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Dispatcher::new(InMemoryStore::new());
//! let committed = app.dispatch(Increment { id: 7, by: 60 }).await?;
//! assert_eq!((committed.version, committed.events.len()), (1, 1));
//! let refused = app.dispatch(Increment { id: 7, by: 60 }).await.unwrap_err();
//! assert_eq!(refused.rejection(), Some(&CounterError::Limit(100)));
//! assert_eq!(app.load::<Counter>(&7).await?.value, 60);
//! # Ok(())
//! # }
//! ```
//!
//! # Attributes
//!
//! ## `#[derive(Event)]` on a struct
//!
//! One event. It must also derive serde's `Serialize` and `Deserialize`.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `name = "text"` | the stored name; keep it when you rename the type | the type's name |
//! | `version = N` | the schema version written with it (1 or more) | 1 |
//! | `aliases = ["old.name", ..]` | older stored names it still decodes (after renaming the event) | none |
//! | `older = [V1, V2, ..]` | on the current version: the structs of its older versions, version 1 first; `version` must then be their count + 1 | none |
//! | `next = Type` | on an older version: the struct of the version after it; the derive implements [`Upcast`] through `From<Self> for Type` | none |
//! | `custom_upcast` | with `next`: you implement [`Upcast`] yourself (to drop the event, or split it in several) | off |
//! | `crate = "path"` | where es-core is, if renamed | `::es_core` |
//!
//! ```
//! # use es_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! #[event(name = "order.placed", version = 2)]
//! pub struct OrderPlaced {
//!     pub total: u64,
//!     #[serde(default)] // added in version 2: version 1 events still decode
//!     pub currency: String,
//! }
//! assert_eq!(<OrderPlaced as Event>::NAMES, &["order.placed"]);
//! ```
//!
//! Decoding refuses another name and a version newer than the code's; an
//! older version decodes into the current struct (serde defaults fill added
//! fields) — unless the struct lists its older versions, then each goes up
//! the chain of upcasts, written as plain Rust and checked by the compiler:
//!
//! ```
//! # use es_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! #[event(name = "order.placed", version = 1, next = PlacedV2)]
//! pub struct PlacedV1 { pub total: u64 }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! #[event(name = "order.placed", version = 2, next = Placed, custom_upcast)]
//! pub struct PlacedV2 { pub cents: u64, pub gift: u64 }
//!
//! /// The current version: what is written today.
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! #[event(name = "order.placed", version = 3, older = [PlacedV1, PlacedV2])]
//! pub struct Placed { pub cents: u64 }
//!
//! impl From<PlacedV1> for PlacedV2 {        // a field renamed, one added
//!     fn from(v1: PlacedV1) -> Self { PlacedV2 { cents: v1.total, gift: 0 } }
//! }
//! impl Upcast for PlacedV2 {                // split: the gift is an order of its own
//!     type Next = Placed;
//!     fn upcast(self, out: &mut Vec<Placed>) {
//!         out.push(Placed { cents: self.cents });
//!         if self.gift > 0 { out.push(Placed { cents: self.gift }) }
//!     }
//! }
//!
//! let mut read = Vec::new();
//! Placed::decode_each(&es_core::Json, "order.placed", 1, br#"{"total":5}"#, |e| read.push(e)).unwrap();
//! assert_eq!(read, [Placed { cents: 5 }]);
//! ```
//!
//! A gap in `older`, a version listed twice, a step that does not lead to
//! the next entry (or the last to the current struct), an older version in
//! an event enum and an alias that another event of the enum uses are
//! compile errors. The schema lock ([`schema::SchemaLock`]) fails a test when
//! a stored version's shape changes without a new version.
//!
//! ## `#[derive(Event)]` on an enum
//!
//! An aggregate's events: one-field tuple variants, each holding an event
//! struct. Generates `From` each payload into the enum and `TryFrom` back,
//! the stored name of each value, encoding and decoding by name, and the
//! dispatch to the aggregate's [`Apply`] impls ([`ApplyTo`]). Only `crate`
//! is accepted as a key: names, aliases and versions belong to the payloads.
//! Two payloads with a stored name (or alias) in common are a compile error,
//! and so is an older version (a struct with `next = ..`) as a payload.
//!
//! ```
//! # use es_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! # pub struct Placed;
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! # pub struct Cancelled;
//! #[derive(Debug, Clone, PartialEq, Event)]
//! pub enum OrderEvent {
//!     Placed(Placed),
//!     Cancelled(Cancelled),
//! }
//! assert_eq!(OrderEvent::from(Cancelled).name(), "Cancelled");
//! ```
//!
//! ## `#[derive(Aggregate)]`
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `id = Type` | the id type; its `Display` form is the stored stream id | required |
//! | `event = Type` | the event enum (or one event struct) | required |
//! | `error = Type` | the handlers' error (a `std::error::Error`) | required |
//! | `name = "text"` | the stored aggregate type, first half of each stream id | the type's name |
//! | `services = Type` | what handlers may take as `&Services` | `()` |
//! | `snapshot_every = N` | store a snapshot every N events (needs serde on the state) | never |
//! | `snapshot_version = N` | bump to ignore older snapshots (snapshots of another state shape are ignored anyway: each records a fingerprint of the state's serialized shape) | 1 |
//! | `crate = "path"` | where es-core is, if renamed | `::es_core` |
//!
//! The state starts as `Default` and changes only in `#[apply]` handlers.
//!
//! ## `#[derive(Command)]` on a struct
//!
//! `#[command(aggregate = Type)]` names the aggregate that decides it; one
//! field marked `#[aggregate_id]` holds the target's id, of the aggregate's
//! id type. Commands are `Clone`: a conflict makes the dispatcher decide a
//! command again.
//!
//! ```
//! # use es_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! # pub struct Noted;
//! # #[derive(Debug, thiserror::Error)] #[error("x")] pub struct E;
//! # #[derive(Default, Aggregate)] #[aggregate(id = String, event = Noted, error = E)] pub struct Pad;
//! # #[es_core::handlers] impl Pad {
//! #     #[handle] fn note(&self, _: Note) -> Result<Noted, E> { Ok(Noted) }
//! #     #[apply] fn noted(&mut self, _: &Noted) {}
//! # }
//! #[derive(Debug, Clone, Command)]
//! #[command(aggregate = Pad)]
//! pub struct Note {
//!     #[aggregate_id]
//!     pub pad: String,
//!     pub text: String,
//! }
//! ```
//!
//! ## `#[derive(Command)]` on an enum
//!
//! Commands of different aggregates in one type, for commands that arrive as
//! JSON over HTTP or a queue: each variant holds one command and is routed
//! to its aggregate. It implements [`Dispatchable`], so
//! [`Dispatcher::dispatch`] takes it; the result is a [`Receipt`] and a
//! rejection arrives as a [`Rejection`] that downcasts to the aggregate's
//! error.
//!
//! ```
//! # use es_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! # pub struct Noted;
//! # #[derive(Debug, thiserror::Error)] #[error("x")] pub struct E;
//! # #[derive(Default, Aggregate)] #[aggregate(id = String, event = Noted, error = E)] pub struct Pad;
//! # #[es_core::handlers] impl Pad {
//! #     #[handle] fn note(&self, _: Note) -> Result<Noted, E> { Ok(Noted) }
//! #     #[apply] fn noted(&mut self, _: &Noted) {}
//! # }
//! # #[derive(Debug, Clone, Deserialize, Command)]
//! # #[command(aggregate = Pad)]
//! # pub struct Note { #[aggregate_id] pub pad: String }
//! #[derive(Debug, Clone, Deserialize, Command)]
//! #[serde(tag = "type")]
//! pub enum PadCommand {
//!     Note(Note),
//! }
//! ```
//!
//! ## `#[es_core::handlers]`
//!
//! On an inherent `impl` block of the aggregate. Its arguments: `crate =
//! "path"` where `es_core` is known by another path, and `read_model` or
//! `process, command = C` for the blocks of the next sections. Each
//! `#[apply]` event must be one of the aggregate's events (a handler for an
//! event it never stores is a compile error: it could not run).
//!
//! - `#[handle] fn name(&self, command: C) -> Result<X, E>` implements
//!   [`Handle<C>`]. `X` is one event of the aggregate, an `Option`, `Vec`,
//!   array or tuple of them, or `()`; `E` converts into the aggregate's
//!   error. A third argument `services: &S` receives the aggregate's
//!   services.
//! - `#[apply] fn name(&mut self, event: &E)` implements [`Apply<E>`].
//!
//! # Mistakes are compile errors
//!
//! A missing `#[apply]` handler is reported at the aggregate:
//!
//! ```compile_fail,E0277
//! # use es_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! # pub struct Opened;
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! # pub struct Closed;
//! #[derive(Debug, Clone, PartialEq, Event)]
//! pub enum DoorEvent { Opened(Opened), Closed(Closed) }
//! # #[derive(Debug, thiserror::Error)] #[error("x")] pub struct E;
//!
//! #[derive(Default, Aggregate)]
//! #[aggregate(id = u32, event = DoorEvent, error = E)]
//! // error: `Door` has no `#[apply]` handler for event `Closed`
//! pub struct Door { open: bool }
//!
//! #[es_core::handlers]
//! impl Door {
//!     #[apply]
//!     fn opened(&mut self, _: &Opened) { self.open = true }
//! }
//! ```
//!
//! A command without a handler is reported at the command:
//!
//! ```compile_fail,E0277
//! # use es_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! # pub struct Opened;
//! # #[derive(Debug, thiserror::Error)] #[error("x")] pub struct E;
//! # #[derive(Default, Aggregate)]
//! # #[aggregate(id = u32, event = Opened, error = E)]
//! # pub struct Door;
//! # #[es_core::handlers] impl Door { #[apply] fn opened(&mut self, _: &Opened) {} }
//! #[derive(Debug, Clone, Command)]
//! #[command(aggregate = Door)] // error: `Door` has no `#[handle]` handler for command `Knock`
//! pub struct Knock { #[aggregate_id] pub door: u32 }
//! ```
//!
//! Two events with one stored name are reported at the enum:
//!
//! ```compile_fail,E0080
//! # use es_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! #[event(name = "door.moved")]
//! pub struct Opened;
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! #[event(name = "door.moved")]
//! pub struct Closed;
//! #[derive(Debug, Clone, PartialEq, Event)]
//! pub enum DoorEvent { Opened(Opened), Closed(Closed) } // error: same stored event name
//! ```
//!
//! A handler that mutates while deciding is refused:
//!
//! ```compile_fail
//! # use es_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! # pub struct Opened;
//! # #[derive(Debug, thiserror::Error)] #[error("x")] pub struct E;
//! # #[derive(Debug, Clone, Command)] #[command(aggregate = Door)] pub struct Open { #[aggregate_id] pub door: u32 }
//! # #[derive(Default, Aggregate)]
//! # #[aggregate(id = u32, event = Opened, error = E)]
//! # pub struct Door { open: bool }
//! #[es_core::handlers]
//! impl Door {
//!     #[handle] // error: `#[handle]` handlers take `&self`
//!     fn open(&mut self, _: Open) -> Result<Opened, E> { Ok(Opened) }
//!     #[apply]
//!     fn opened(&mut self, _: &Opened) { self.open = true }
//! }
//! ```
//!
//! The full list, each pinned by a compiler output, is in the workspace's
//! `tests/ui/`.
//!
//! ## `#[es_core::handlers(read_model)]` and `#[derive(Query)]`
//!
//! A read model's `#[apply]` methods take the event and, when they need it,
//! its [`EventContext`] (stream, version, position, time, metadata):
//! `fn(&mut self, event: &E[, context: &EventContext<'_>])`
//! for a read model in memory (implementing [`Project<E>`] and, for the
//! block, [`ReadModel`]), or `[async] fn(&self, event: &E[, context:
//! &EventContext<'_>], tx: &mut Tx) -> Result<(), Err>` for one kept in a
//! database ([`ProjectIn`], [`ReadModelIn`]). Its `#[handle]` methods answer
//! queries, `fn(&self, query: Q) -> Q::Output` ([`Answer<Q>`]); a query is a
//! struct with `#[derive(Query)]` and `#[query(output = T)]`.
//!
//! ```
//! # use es_core::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! # pub struct Incremented { by: u32 }
//! #[derive(Debug, Clone, Query)]
//! #[query(output = u64)]
//! pub struct Total;
//!
//! #[derive(Debug, Default)]
//! pub struct Totals { total: u64 }
//!
//! #[es_core::handlers(read_model)]
//! impl Totals {
//!     #[apply]
//!     fn incremented(&mut self, e: &Incremented, _: &EventContext<'_>) {
//!         self.total += u64::from(e.by);
//!     }
//!
//!     #[handle]
//!     fn total(&self, _: Total) -> u64 {
//!         self.total
//!     }
//! }
//! let totals = Projection::new("totals", Totals::default());
//! assert_eq!(totals.query(Total), 0);
//! ```
//!
//! ## `#[es_core::handlers(process, command = C)]`
//!
//! A process's `#[apply]` methods, `fn(&self, event: &E[, context:
//! &EventContext<'_>]) -> impl IntoIterator<Item: Into<C>>`, say which
//! commands an event calls for ([`Process`]); a [`ProcessManager`] sends them
//! with ids derived from the event, so each takes effect once. The context
//! argument is optional, for processes as for read models.
//!
//! # Runtime
//!
//! - [`Dispatcher`]: load, decide, append with optimistic concurrency,
//!   apply; retries on conflicts, caches recently used aggregates,
//!   idempotent command ids, temporal loads, inline projections.
//! - [`Projection`]: a read model in memory, caught up, followed, rebuilt,
//!   queried; [`ProcessManager`]: a process, checkpointed, its refused
//!   commands recorded, retried or stopping it ([`OnRefusal`]).
//! - [`subscription`]: the one engine under both (and under the SQL read
//!   models of `es-sqlite` and `es-postgres`): paging, panic isolation,
//!   supervised [`Runner`]s with backoff and a [`Status`].
//! - [`EventStore`]: the storage contract; [`InMemoryStore`] here, SQLite and
//!   PostgreSQL in `es-sqlite` and `es-postgres`.
//! - [`codec`]: [`Json`] by default, `Binary` (postcard) with the `binary` feature.
//! - [`testing::AggregateTest`]: given / when / then.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
mod cache;
pub mod codec;
mod command;
mod dispatcher;
mod envelope;
pub mod error;
mod event;
pub mod process;
pub mod projection;
pub mod schema;
pub mod shape;
pub mod store;
pub mod subscription;
pub mod testing;
mod util;

pub use crate::aggregate::{Aggregate, AggregateId, Handle, IntoId};
#[cfg(feature = "binary")]
pub use crate::codec::Binary;
pub use crate::codec::{Codec, CodecError, Json};
pub use crate::command::{Command, Dispatchable};
pub use crate::dispatcher::{Committed, Dispatcher, DispatcherBuilder, LoadError, Receipt};
pub use crate::envelope::{Envelope, EventId, Metadata, StreamId, Timestamp};
pub use crate::error::{
    AppendError, BoxError, Conflict, DecodeError, DispatchError, EventDecodeError, Rejection, StoreError,
};
pub use crate::event::{Apply, ApplyTo, Event, IntoEvents, Upcast, events_of};
pub use crate::process::{OnRefusal, Process, ProcessManager, Refusal};
pub use crate::projection::{Answer, EventContext, Project, ProjectIn, Projection, Query, ReadModel, ReadModelIn};
pub use crate::store::{EventStore, EventStoreExt, ExpectedVersion, InMemoryStore};
pub use crate::subscription::{RunState, Runner, Status, SubscriptionError, WaitTimeout};

/// Derives [`Event`](trait@Event) for an event struct or an enum of events;
/// see the [crate docs](crate#deriveevent-on-a-struct) for its keys.
///
/// A variant must hold exactly one event:
///
/// ```compile_fail
/// # use es_core::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// # pub struct Opened;
/// #[derive(Debug, Clone, PartialEq, Event)]
/// pub enum DoorEvent {
///     Opened(Opened),
///     Closed { at: u64 }, // error: variant `Closed` must hold exactly one event
/// }
/// ```
#[cfg(feature = "derive")]
pub use es_derive::Event;

/// Derives [`Aggregate`](trait@Aggregate); see the
/// [crate docs](crate#deriveaggregate) for its keys.
///
/// `id`, `event` and `error` are required:
///
/// ```compile_fail
/// # use es_core::prelude::*;
/// # #[derive(Debug, thiserror::Error)] #[error("x")] pub struct E;
/// #[derive(Default, Aggregate)]
/// #[aggregate(id = u32, error = E)] // error: needs `event = ..`
/// pub struct Door;
/// ```
#[cfg(feature = "derive")]
pub use es_derive::Aggregate;

/// Derives [`Command`](trait@Command) for a command struct, or
/// [`Dispatchable`] for an enum of commands; see the
/// [crate docs](crate#derivecommand-on-a-struct).
///
/// A command struct marks exactly one field `#[aggregate_id]`:
///
/// ```compile_fail
/// # use es_core::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// # pub struct Opened;
/// # #[derive(Debug, thiserror::Error)] #[error("x")] pub struct E;
/// # #[derive(Default, Aggregate)] #[aggregate(id = u32, event = Opened, error = E)] pub struct Door;
/// # #[es_core::handlers] impl Door {
/// #     #[handle] fn open(&self, _: Open) -> Result<Opened, E> { Ok(Opened) }
/// #     #[apply] fn opened(&mut self, _: &Opened) {}
/// # }
/// #[derive(Debug, Clone, Command)]
/// #[command(aggregate = Door)]
/// pub struct Open { pub door: u32 } // error: needs one field marked `#[aggregate_id]`
/// ```
#[cfg(feature = "derive")]
pub use es_derive::Command;

/// Turns the `#[handle]` and `#[apply]` methods of an aggregate's `impl`
/// block into [`Handle`] and [`Apply`] impls; see the
/// [crate docs](crate#es_corehandlers).
///
/// An `#[apply]` handler takes the event by reference:
///
/// ```compile_fail
/// # use es_core::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// # pub struct Opened;
/// # #[derive(Debug, thiserror::Error)] #[error("x")] pub struct E;
/// # #[derive(Default, Aggregate)] #[aggregate(id = u32, event = Opened, error = E)] pub struct Door { open: bool }
/// #[es_core::handlers]
/// impl Door {
///     #[apply] // error: `#[apply]` handlers take the event by reference
///     fn opened(&mut self, _: Opened) { self.open = true }
/// }
/// ```
#[cfg(feature = "derive")]
pub use es_derive::handlers;

/// A marker read by [`handlers`]: on its own, it reports that the method's
/// `impl` block lacks `#[es_core::handlers]`.
#[cfg(feature = "derive")]
pub use es_derive::{apply, handle};

/// Derives [`Query`](trait@Query): `#[query(output = T)]` names the type of
/// the answer.
///
/// ```compile_fail
/// # use es_core::prelude::*;
/// #[derive(Debug, Query)] // error: needs `#[query(output = ..)]`
/// pub struct BalanceOf { pub account: String }
/// ```
#[cfg(feature = "derive")]
pub use es_derive::Query;

/// Everything a domain module needs: `use es_core::prelude::*;`.
///
/// [`Apply`] is left out on purpose: with both it and [`Aggregate`] in
/// scope, `state.apply(&event)` would be ambiguous. Import it where you
/// write an `Apply` impl by hand.
pub mod prelude {
    pub use crate::testing::AggregateTest;
    pub use crate::{
        Aggregate, Answer, Command, Committed, DispatchError, Dispatcher, Envelope, Event, EventContext, EventStore,
        Handle, InMemoryStore, IntoEvents, Json, Metadata, ProcessManager, Projection, Query, StreamId, Timestamp,
        Upcast,
    };
    #[cfg(feature = "derive")]
    pub use crate::{apply, handle, handlers};
}

/// What generated code needs. Not public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::dispatcher::route;
    pub use crate::projection::decode_error;

    /// The future of a routed command.
    pub type RouteFuture<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<crate::Receipt, crate::DispatchError>> + Send + 'a>>;
    pub use crate::util::{ConstMessage, first_overlap, names_overlap};
    pub use serde;

    use crate::aggregate::Aggregate;
    use crate::event::IntoEvents;

    /// The return value of a `#[handle]` method, turned into what
    /// [`Handle::handle`](crate::Handle::handle) returns.
    #[diagnostic::on_unimplemented(
        message = "a `#[handle]` handler of `{A}` must return `Result<events, error>`, not `{Self}`",
        label = "this return type",
        note = "return `Result<X, E>` where X is an event of the aggregate (or an `Option`, `Vec` or tuple of them, or `()`) and E converts into its error type"
    )]
    pub trait Decision<A: Aggregate> {
        /// The events, or the error converted into the aggregate's.
        fn into_decision(self) -> Result<Vec<A::Event>, A::Error>;
    }

    impl<A, T, E> Decision<A> for Result<T, E>
    where
        A: Aggregate,
        T: IntoEvents<A::Event>,
        E: Into<A::Error>,
    {
        #[inline]
        fn into_decision(self) -> Result<Vec<A::Event>, A::Error> {
            match self {
                Ok(events) => {
                    // One event is the common case: room for exactly that.
                    let mut out = Vec::with_capacity(1);
                    events.into_events(&mut out);
                    Ok(out)
                }
                Err(e) => Err(e.into()),
            }
        }
    }

    /// What an event struct needs to be stored: serde's two traits. The
    /// generated `encode` and `decode` both go through this one trait, so a
    /// missing serde derive gives one error, with a message naming the fix.
    #[diagnostic::on_unimplemented(
        message = "event `{Self}` must implement serde's `Serialize` and `Deserialize`",
        label = "`{Self}` cannot be stored",
        note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`: events are stored through a serde codec"
    )]
    pub trait Storable: Sized {
        /// Encodes `self` with `codec`.
        fn encode_with<C: crate::Codec>(&self, codec: &C) -> Result<Vec<u8>, crate::CodecError>;
        /// Decodes a value with `codec`.
        fn decode_with<C: crate::Codec>(codec: &C, payload: &[u8]) -> Result<Self, crate::EventDecodeError>;
        /// The stored shape.
        fn shape() -> Result<crate::shape::Shape, crate::shape::ShapeError>;
    }

    /// An event struct's entry in the schema lock.
    pub fn describe<T>(
        name: &'static str,
        version: u32,
        aliases: &'static [&'static str],
        current: bool,
        shape: Result<crate::shape::Shape, crate::shape::ShapeError>,
        out: &mut Vec<crate::schema::EventShape>,
    ) {
        out.push(crate::schema::EventShape {
            name,
            version,
            aliases,
            rust_type: std::any::type_name::<T>(),
            current,
            shape: match shape {
                Ok(shape) => shape.structure(),
                Err(e) => format!("untraceable: {}", e.message),
            },
        });
    }

    #[diagnostic::do_not_recommend]
    impl<T: serde::Serialize + serde::de::DeserializeOwned> Storable for T {
        fn shape() -> Result<crate::shape::Shape, crate::shape::ShapeError> {
            crate::shape::of::<T>()
        }

        #[inline]
        fn encode_with<C: crate::Codec>(&self, codec: &C) -> Result<Vec<u8>, crate::CodecError> {
            codec.encode(self)
        }

        #[inline]
        fn decode_with<C: crate::Codec>(codec: &C, payload: &[u8]) -> Result<Self, crate::EventDecodeError> {
            match codec.decode(payload) {
                Ok(event) => Ok(event),
                Err(e) => Err(crate::EventDecodeError::Codec(e)),
            }
        }
    }

    /// What an aggregate's state needs to start: its `Default`.
    #[diagnostic::on_unimplemented(
        message = "aggregate `{Self}` must implement `Default`: its state starts as the default value",
        label = "`{Self}` has no `Default`",
        note = "add `#[derive(Default)]` to `{Self}`, or implement `Default` for it: the state before the first event"
    )]
    pub trait InitialState {
        /// The state before the first event.
        fn initial_state() -> Self;
    }

    #[diagnostic::do_not_recommend]
    impl<T: Default> InitialState for T {
        #[inline]
        fn initial_state() -> Self {
            T::default()
        }
    }

    /// A command a process's handler returns, as the process's command type.
    #[diagnostic::on_unimplemented(
        message = "this process handler returns `{Self}`, which is not one of the process's commands `{C}`",
        label = "returns `{Self}`",
        note = "add a variant holding `{Self}` to `{C}` (the `command = ..` of the `#[es_core::handlers(process, ..)]` block), or return one of its commands"
    )]
    pub trait IntoCommand<C> {
        /// `self` as a `C`.
        fn into_command(self) -> C;
    }

    #[diagnostic::do_not_recommend]
    impl<T: Into<C>, C> IntoCommand<C> for T {
        #[inline]
        fn into_command(self) -> C {
            self.into()
        }
    }

    /// What a command needs: `Clone`, with the reason.
    #[diagnostic::on_unimplemented(
        message = "command `{Self}` must implement `Clone`",
        label = "`{Self}` is not `Clone`",
        note = "the dispatcher keeps a copy of each command to decide it again when another writer appended to the stream first (a version conflict): add `#[derive(Clone)]` to `{Self}`"
    )]
    pub trait CommandClone: Sized {
        /// A copy of the command, to decide it again.
        fn clone_command(&self) -> Self;
    }

    #[diagnostic::do_not_recommend]
    impl<T: Clone> CommandClone for T {
        #[inline]
        fn clone_command(&self) -> Self {
            self.clone()
        }
    }

    /// What an aggregate's error needs: to be an error that crosses threads.
    #[diagnostic::on_unimplemented(
        message = "the error type `{Self}` of an aggregate must implement `std::error::Error + Send + Sync + 'static`",
        label = "`{Self}` is not a `std::error::Error`",
        note = "derive it with `thiserror`: `#[derive(Debug, thiserror::Error)]` and an `#[error(\"..\")]` message on each variant"
    )]
    pub trait AggregateError: std::error::Error + Send + Sync + 'static {}

    #[diagnostic::do_not_recommend]
    impl<T: std::error::Error + Send + Sync + 'static> AggregateError for T {}

    /// The `#[aggregate_id]` field of a command, which must have the type of
    /// its aggregate's id.
    #[diagnostic::on_unimplemented(
        message = "the `#[aggregate_id]` field has type `{Self}`, but the aggregate's id is `{Id}`",
        label = "expected `{Id}`",
        note = "change the field's type to `{Id}`, or the aggregate's `#[aggregate(id = ..)]`"
    )]
    pub trait IdField<Id> {
        /// The field as the aggregate's id.
        fn id_field(&self) -> &Id;
    }

    impl<T> IdField<T> for T {
        #[inline]
        fn id_field(&self) -> &T {
            self
        }
    }

    /// The event type of an aggregate whose `#[aggregate(..)]` lacks
    /// `event = ..`: the derive reports that, and implements the aggregate
    /// with this uninhabited type so its handlers still type-check and the
    /// mistake gives one error. Every event derive makes its type
    /// `IntoEvents<MissingEvents>` for the same reason.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum MissingEvents {}

    impl crate::Event for MissingEvents {
        const NAMES: &'static [&'static str] = &[];

        fn name(&self) -> &'static str {
            match *self {}
        }

        fn version(&self) -> u32 {
            match *self {}
        }

        fn encode<C: crate::Codec>(&self, _: &C) -> Result<Vec<u8>, crate::CodecError> {
            match *self {}
        }

        fn decode<C: crate::Codec>(_: &C, name: &str, _: u32, _: &[u8]) -> Result<Self, crate::EventDecodeError> {
            Err(unknown_name::<Self>(name, Self::NAMES))
        }
    }

    /// A query nobody asks, answered by every type. It exists so that no
    /// read model has exactly one `Answer` impl: with one, rustc infers the
    /// query type from that impl instead of from the argument, and asking
    /// the wrong query reads "expected `Total`, found `Names`" instead of
    /// "`Totals` does not answer query `Names`".
    #[derive(Debug)]
    pub struct NoQuery;

    impl crate::Query for NoQuery {
        type Output = ();
    }

    impl<R: ?Sized> crate::Answer<NoQuery> for R {
        fn answer(&self, _: NoQuery) {}
    }

    /// The output of a query handler, which must be the query's output.
    #[diagnostic::on_unimplemented(
        message = "this query handler returns `{Self}`, but the query's output is `{Output}`",
        label = "expected `{Output}`",
        note = "return the type in the query's `#[query(output = ..)]`, or change that"
    )]
    pub trait QueryOutput<Output> {
        /// The value, as the query's output.
        fn into_output(self) -> Output;
    }

    impl<T> QueryOutput<T> for T {
        #[inline]
        fn into_output(self) -> T {
            self
        }
    }

    /// "`Self` upcasts to `N`": what the current version's `older = [..]`
    /// requires of each step of its chain.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` does not upcast to `{N}`",
        label = "the version after `{Self}` in this list is `{N}`",
        note = "give `{Self}` `#[event(.., next = {N})]`: each older version's `next` is the one after it in `older = [..]`, and the last one's is the current struct"
    )]
    pub trait UpcastTo<N> {
        /// Pushes what `self` is at version `N` onto `out`.
        fn upcast_to(self, out: &mut Vec<N>);
    }

    #[diagnostic::do_not_recommend]
    impl<T: crate::Upcast> UpcastTo<T::Next> for T {
        #[inline]
        fn upcast_to(self, out: &mut Vec<T::Next>) {
            self.upcast(out)
        }
    }

    /// The conversion a `next = N` step without `custom_upcast` goes
    /// through.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be made from the older version `{Old}`",
        label = "no `From<{Old}>` for `{Self}`",
        note = "implement `From<{Old}> for {Self}` (one event to one), or add `custom_upcast` to the `#[event(..)]` of `{Old}` and implement `es_core::Upcast` for it (none, one or several events)"
    )]
    pub trait FromOlder<Old> {
        /// `Self` made from `old`.
        fn from_older(old: Old) -> Self;
    }

    #[diagnostic::do_not_recommend]
    impl<Old, T: From<Old>> FromOlder<Old> for T {
        #[inline]
        fn from_older(old: Old) -> Self {
            T::from(old)
        }
    }

    /// The one event an upcast chain made, for a caller that needs one.
    #[inline]
    pub fn exactly_one<T>(mut events: Vec<T>, name: &'static str, stored: u32) -> Result<T, crate::EventDecodeError> {
        if events.len() == 1
            && let Some(one) = events.pop()
        {
            return Ok(one);
        }
        Err(crate::EventDecodeError::UpcastCount {
            name,
            stored,
            produced: events.len(),
        })
    }

    /// Why a stored version is none the code knows, for generated `decode`s.
    #[cold]
    pub fn unknown_version(name: &'static str, stored: u32, current: u32) -> crate::EventDecodeError {
        crate::EventDecodeError::UnknownVersion { name, stored, current }
    }

    /// Concatenates name lists into one array of `N` names; usable in
    /// constants (an event enum's names, aliases included).
    pub const fn concat_names<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
        let mut out = [""; N];
        let mut k = 0;
        let mut i = 0;
        while i < parts.len() {
            let mut j = 0;
            while j < parts[i].len() {
                out[k] = parts[i][j];
                k += 1;
                j += 1;
            }
            i += 1;
        }
        out
    }

    /// Why a stored event has an unknown name, for generated `decode`s.
    #[cold]
    pub fn unknown_name<T>(name: &str, known: &'static [&'static str]) -> crate::EventDecodeError {
        crate::EventDecodeError::UnknownName {
            name: name.to_owned(),
            type_name: std::any::type_name::<T>(),
            known,
        }
    }

    /// Why a stored event is newer than the code, for generated `decode`s.
    #[cold]
    pub fn newer_version(name: &'static str, stored: u32, supported: u32) -> crate::EventDecodeError {
        crate::EventDecodeError::NewerVersion {
            name,
            stored,
            supported,
        }
    }
}
