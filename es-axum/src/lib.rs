//! es behind HTTP with [axum](https://docs.rs/axum): the pieces every
//! event-sourced service writes, done once.
//!
//! | piece | what |
//! |---|---|
//! | [`Problem`] | every es error as `application/problem+json` (RFC 9457) with the status it deserves: `?` in a handler |
//! | [`Json`], [`Path`], [`Query`] | extractors whose refusals are problems too (415 for a body that is not JSON, 400 naming the bad field) |
//! | [`IdempotencyKey`] | the `Idempotency-Key` header as the command's id: a retried request is answered once, never run twice |
//! | [`After`] | read-your-writes: `?after=P` waits until a read model has seen the position a command answered with (504 when it does not in time) |
//! | [`EventFeed`] | `GET /events`: the live log as server-sent events, resumed with `Last-Event-ID`, one reader of the log for every client |
//! | [`Readiness`] | `GET /health` and `GET /ready` from the store and the read models |
//! | [`protect`], [`Limits`], [`Server`] | problem fallbacks (404, 405), body size and time limits (413, 408), header timeouts, a connection limit, a span per request, and a graceful shutdown that ends event streams, drains requests and stops runners at a checkpoint |
//! | [`prometheus`] (feature `prometheus`) | `GET /metrics`: es's metrics in the Prometheus text format |
//! | [`openapi`] (feature `openapi`) | OpenAPI 3.1 descriptions (utoipa) of these routes and of `Problem`, a `default` problem response on every operation, and `GET /openapi.json` |
//!
//! A command route is a few lines:
//!
//! ```
//! use std::sync::Arc;
//! use axum::extract::State;
//! use axum::routing::post;
//! use es_axum::{IdempotencyKey, Json, Problem};
//! use es_core::{Dispatcher, InMemoryStore};
//! # use es_core::prelude::*;
//! # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
//! # #[event(name = "counter.added")]
//! # pub struct Added { by: u32 }
//! # #[derive(Debug, Clone, Event)]
//! # pub enum CounterEvent { Added(Added) }
//! # #[derive(Debug, thiserror::Error)]
//! # #[error("nothing to add")]
//! # pub struct Zero;
//! # #[derive(Debug, Default, Clone, Aggregate)]
//! # #[aggregate(name = "counter", id = u64, event = CounterEvent, error = Zero)]
//! # pub struct Counter { value: u64 }
//! # #[es_core::handlers]
//! # impl Counter {
//! #     #[handle]
//! #     fn add(&self, c: Add) -> Result<Added, Zero> { if c.by == 0 { Err(Zero) } else { Ok(Added { by: c.by }) } }
//! #     #[apply]
//! #     fn added(&mut self, e: &Added) { self.value += u64::from(e.by) }
//! # }
//! #[derive(Debug, Clone, serde::Deserialize, Command)]
//! #[command(aggregate = Counter)]
//! pub struct Add { #[aggregate_id] pub id: u64, pub by: u32 }
//!
//! async fn add(
//!     State(dispatcher): State<Arc<Dispatcher<InMemoryStore>>>,
//!     key: IdempotencyKey,
//!     Json(command): Json<Add>,
//! ) -> Result<axum::Json<Option<u64>>, Problem> {
//!     let committed = dispatcher.dispatch_with(command, key.metadata()).await?;
//!     Ok(axum::Json(committed.position))
//! }
//!
//! let store = InMemoryStore::new();
//! let router: axum::Router = es_axum::protect(
//!     axum::Router::new()
//!         .route("/add", post(add))
//!         .with_state(Arc::new(Dispatcher::new(store))),
//!     es_axum::Limits::default(),
//! );
//! ```

mod events;
mod extract;
mod follow;
mod health;
mod problem;
mod serve;

#[cfg(feature = "openapi")]
pub mod openapi;
#[cfg(feature = "prometheus")]
pub mod prometheus;

pub use crate::events::{EventFeed, last_event_id};
pub use crate::extract::{After, IdempotencyKey, Json, Path, Query, require_json};
pub use crate::follow::Follower;
pub use crate::health::Readiness;
pub use crate::problem::{PROBLEM_JSON, Problem, method_not_allowed, not_found};
pub use crate::serve::{Limits, Server, protect, shutdown_signal};
