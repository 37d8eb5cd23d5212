//! Shared code of the cross-crate test suites: the store conformance suite
//! and test doubles.

pub mod audit;
pub mod conformance;
pub mod crash;
pub mod decoding;
pub mod doubles;
pub mod faulty;
pub mod fixtures;
pub mod guarantees;
pub mod ledger;
pub mod nats;
pub mod partitioned;
pub mod personal;
pub mod postgres;
pub mod read_side;
pub mod sqlite;

pub use doubles::{CountingStore, SwitchableStore};

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// One test per case and per store — in memory, a SQLite file, PostgreSQL
/// (skipped loudly without a server) and NATS JetStream on one node
/// (skipped loudly without a current `nats-server`): what the README calls
/// "every store". Each case is `name => |store| future`:
///
/// ```text
/// tests::on_every_store! {
///     a_guarantee => |store| tests::guarantees::a_guarantee(store),
/// }
/// ```
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident => |$store:ident| $body:expr),* $(,)?) => {
        mod memory {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $store = ::es_core::InMemoryStore::new();
                    $body.await;
                }
            )*
        }

        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $store = $crate::sqlite::temp_store().await;
                    $body.await;
                }
            )*
        }

        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let ::core::option::Option::Some($store) = $crate::postgres::store().await else {
                        return;
                    };
                    $body.await;
                }
            )*
        }

        mod nats {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let ::core::option::Option::Some($store) = $crate::nats::store().await else {
                        return;
                    };
                    $body.await;
                }
            )*
        }
    };
}

/// Spawns an append of `events` events to stream `g/{id}` (payloads
/// `{id}-0`, `{id}-1`, …; each with a fresh event id, or `reuse` for all),
/// for tests of appends that wait together for a store's committer.
pub fn spawn_append<S: es_core::EventStore + Clone + 'static>(
    store: &S,
    id: &'static str,
    expected: es_core::ExpectedVersion,
    events: usize,
    command_id: Option<&'static str>,
    reuse: Option<es_core::EventId>,
) -> tokio::task::JoinHandle<Result<es_core::store::AppendOutcome, es_core::AppendError>> {
    use es_core::store::{AppendRequest, NewEvent};
    let store = store.clone();
    tokio::spawn(async move {
        let stream = es_core::StreamId::new("g", id);
        let payloads: Vec<String> = (0..events).map(|i| format!("{id}-{i}")).collect();
        let events: Vec<NewEvent<'_>> = payloads
            .iter()
            .map(|payload| NewEvent {
                event_id: reuse.unwrap_or_default(),
                name: "e",
                schema_version: 1,
                payload: payload.as_bytes(),
            })
            .collect();
        store
            .append(AppendRequest {
                stream: &stream,
                expected,
                events: &events,
                metadata: b"",
                command_id,
                recorded_at: es_core::Timestamp::now(),
            })
            .await
    })
}
