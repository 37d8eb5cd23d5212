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
//! assert_eq!((committed.version, committed.events().len()), (1, 1));
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
//! | `snapshot_untraced` | the state's shape cannot be traced (a `Deserialize` that refuses sample values, such as a validated newtype): snapshots are told apart by `snapshot_version` alone, which you bump whenever the state changes. Without it such a state takes no snapshots, says so in the log, and fails its `AggregateTest`s | off |
//! | `crate = "path"` | where es-core is, if renamed | `::es_core` |
//!
//! The state starts as `Default` and changes only in `#[apply]` handlers.
//!
//! ## `#[derive(Command)]` on a struct
//!
//! `#[command(aggregate = Type)]` names the aggregate that decides it; one
//! field marked `#[aggregate_id]` holds the target's id, of the aggregate's
//! id type. A conflict makes the dispatcher decide a command again, so a
//! handler borrows it or gets a copy: a command whose handler takes it by
//! reference (`command: &Deposit`) need not be `Clone`.
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
//! [`Dispatcher::dispatch`] takes it; the result is an [`AnyCommitted`] and a
//! rejection arrives as an [`AnyRejection`] that downcasts to the aggregate's
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
//! - `#[handle] fn name(&self, command: C) -> Result<X, E>` (or
//!   `command: &C`, which saves the copy a by-value handler gets and does not
//!   need `C: Clone`) implements [`Handle<C>`]. `X` is one event of the aggregate, an `Option`, `Vec`,
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
//!
//! # Architecture: imports point one way
//!
//! - The foundation — envelopes, codecs, errors, the store's records and
//!   contract, personal data's keys and sealing, traced shapes, utilities,
//!   metrics — imports nothing above it.
//! - The write side (events, aggregates, commands, the dispatcher and its
//!   cache) imports nothing of the read side: the read side plugs into it
//!   (an inline projection is added by the read side's own
//!   `DispatcherBuilder::inline`).
//! - The read side is one engine ([`subscription`]) and its sinks
//!   ([`projection`], [`process`], the SQL stores' runners); the engine
//!   imports none of them.
//! - The core traits import no tooling ([`schema`], [`testing`]).
//! - No module imports `__private`; it imports the crate, for generated
//!   code.
//!
//! `tests/tests/layers.rs` fails on a new back-edge, naming the file.
//!
//! # Glossary
//!
//! One word per concept, in the API, the docs and the messages
//! (`tests/tests/glossary.rs` keeps retired words out):
//!
//! - **rejection**: an aggregate's own error when it refuses a command
//!   ([`DispatchError::Rejected`]).
//! - **refusal**: what a process manager records when a command it sent
//!   was not taken: rejected, or its derived id used by another command
//!   ([`Refusal`], handled by [`OnRefusal`]). A refusal may hold a
//!   rejection; a rejection is never called a refusal.
//! - **version**: a stream's version, the number of its events (also
//!   `#[event(version = N)]`, where the attribute's context says which).
//! - **schema version**: the version of an event's stored shape
//!   (`schema_version` in records).
//! - **position**: an event's place in the global log.
//! - **checkpoint**: the position a named reader has processed up to
//!   (`load_checkpoint`, `Sink::checkpoint`); the name it is saved under is
//!   its `checkpoint_name()`.
//! - **catch up**: process every event up to the head once and return
//!   ([`Projection::catch_up`], [`ProcessManager::catch_up`]); **run** or
//!   **spawn**: keep following the log ([`Runner`]).
//! - **committed**: what the dispatcher returns for a command that took
//!   effect ([`Committed`]); **appended**: what a store answers for a batch
//!   it wrote ([`store::AppendOutcome::Appended`]).
//! - **codec**, **services**: set on every builder with `.codec(..)` and
//!   `.services(..)`.
//! - **link**: an event's hash in its stream's chain
//!   ([`store::Link`]); **seal**: a signed root of the log's Merkle tree
//!   ([`audit::Seal`]); **head**: the latest seal, exported to be kept
//!   elsewhere (the *head* of a stream is its last event, where the
//!   context says so).
//!
//! # Every public name, and what it means
//!
//! Each name means one thing. The types and traits below are all the crate
//! root holds; the modules hold what only implementers of stores, codecs or
//! hand-written impls name. A name starting with `Any` is the type-erased
//! twin of another, for code that handles many aggregates at once.
//!
//! | you write | names |
//! |---|---|
//! | events | [`Event`](trait@Event) (derive and trait: a stored fact with a name and a schema version), [`Upcast`] (one step from an older version of an event to the next), [`Apply`] (an aggregate evolving on one event; generated by `#[apply]`) |
//! | aggregates | [`Aggregate`](trait@Aggregate) (derive and trait: the state, its id, events and error), [`Handle`] (deciding one command; generated by `#[handle]`), [`IntoId`] (what `load` accepts as an id), [`UNTRACED_SHAPE`] (the snapshot fingerprint of a state whose shape cannot be traced: snapshots off) |
//! | commands | [`Command`](trait@Command) (derive and trait: one command struct, routed to its aggregate), [`Dispatchable`] (anything [`Dispatcher::dispatch`] takes: a command, or a command enum), [`Fingerprint`] and [`command_fingerprint`] (a command's content, recorded with its command id: the same id with other content is refused) |
//! | the write side | [`Dispatcher`] and its [`DispatcherBuilder`]; [`Committed`] (what one command committed, typed) and [`AnyCommitted`] (the same for a command enum); [`Versioned`] (a loaded state and its version); [`Envelope`] (a committed event with its stream, version, position, time, metadata); [`Metadata`], [`EventId`], [`StreamId`], [`Timestamp`] |
//! | errors | [`DispatchError`] (why a command did not commit); a *rejection* is an aggregate's own error when it refuses a command: [`DispatchError::Rejected`] holds it, [`DispatchError::rejection`] returns it, [`Dispatchable::Rejection`] is its type, [`AnyRejection`] is any aggregate's, boxed; [`LoadError`], [`StoreError`], [`AppendError`] and [`Conflict`] (an append that lost a race), [`DecodeError`] (a stored event that cannot be read, with its place) around [`EventDecodeError`] (why), [`CodecError`], [`BoxError`] |
//! | the read side | [`Projection`] (an in-memory read model, caught up and followed), [`EventContext`] (where an event was stored, for read-model handlers), [`Query`](trait@Query) (derive and trait: a typed question) and [`Answer`] (a read model answering it; generated by `#[handle]`); [`Tables`] (a database read model's tables: migrations its runner applies, and what a rebuild empties); [`ProcessManager`], [`OnRefusal`], [`Refusal`] (processes that react with commands) |
//! | running | [`Runner`] (a spawned subscription), its [`Status`] and [`RunState`], [`SubscriptionError`], [`WaitTimeout`] |
//! | personal data | the [`personal`] module: `Personal<T>` (a field sealed under its subject's key, known or forgotten), `Subject`, `Keyring` and the key providers; [`Dispatcher::forget`] forgets a subject, recording [`SubjectForgotten`] on the stream [`FORGOTTEN_STREAM`]; [`forget_subject`] does the same from a tool holding only a store |
//! | the audit trail | the [`audit`] module: each stored event's `Link` in its stream's hash chain (computed by every store), a `Sealer` appending Ed25519-signed seals of the log's Merkle tree, `verify` (chains, seals, an exported head), `prove` and `check_proof` (one event, checked with the public key alone); [`DispatcherBuilder::verify_chains`] checks chains on load |
//! | storing | [`EventStore`] (the storage contract), [`EventStoreExt`] (its conveniences), [`InMemoryStore`], [`ExpectedVersion`]; [`Codec`], [`Json`] (and `Binary` with the `binary` feature) |
//! | what the derives implement | [`ApplyTo`] (an event enum applied to a state), [`IntoEvents`] (what a handler may return: one event, an enum, a `Vec`, an `Option`), [`ReadModel`], [`ReadModelIn`], [`Project`], [`ProjectIn`] (read models in memory and in a database transaction), [`Process`]; [`events_of`] collects what a handler returned into a `Vec` of events. Each has a method that decodes a stored event and applies it, generated and not called by hand. |
//!
//! Modules: [`store`] (the records a store reads and writes), [`codec`],
//! [`personal`] (personal data: sealed fields, keys, forgetting),
//! [`audit`] (hash chains, signed seals, verification, proofs),
//! [`subscription`] (the engine and its `Sink`s), [`projection`],
//! [`process`], [`schema`] (the schema lock), [`shape`] (traced shapes),
//! [`testing`], [`metrics`], [`time_conversions`], [`error`], [`prelude`].

#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
pub mod audit;
mod cache;
pub mod codec;
mod command;
mod dispatcher;
mod envelope;
pub mod error;
mod event;
pub mod metrics;
pub mod personal;
pub mod process;
pub mod projection;
pub mod schema;
pub mod shape;
pub mod store;
pub mod subscription;
pub mod testing;
pub mod time_conversions;
mod util;

pub use crate::aggregate::{Aggregate, Handle, IntoId, UNTRACED_SHAPE};
#[cfg(feature = "binary")]
pub use crate::codec::Binary;
pub use crate::codec::{Codec, CodecError, Json};
pub use crate::command::{Command, Dispatchable, Fingerprint, command_fingerprint};
pub use crate::dispatcher::{
    AnyCommitted, Committed, Dispatcher, DispatcherBuilder, FORGOTTEN_STREAM, LoadError, SubjectForgotten, Versioned,
    forget_subject,
};
pub use crate::envelope::{Envelope, EventId, Metadata, StreamId, Timestamp};
pub use crate::error::{
    AnyRejection, AppendError, BoxError, Conflict, DecodeError, DispatchError, EventDecodeError, StoreError,
};
pub use crate::event::{Apply, ApplyTo, Event, IntoEvents, Upcast, events_of};
pub use crate::process::{OnRefusal, Process, ProcessManager, Refusal};
pub use crate::projection::{
    Answer, EventContext, Project, ProjectIn, Projection, Query, ReadModel, ReadModelIn, Tables,
};
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
pub mod __private;
