//! Shared code of the cross-crate test suites: the store conformance suite
//! and test doubles.

pub mod conformance;
pub mod crash;
pub mod decoding;
pub mod faulty;
pub mod fixtures;
pub mod guarantees;
pub mod ledger;
pub mod nats;
pub mod personal;
pub mod postgres;
pub mod read_side;
pub mod sqlite;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use es_core::store::{AppendOutcome, AppendRequest, CommandRecord, ContextFields, RecordedEvent, Snapshot, Visitor};
use es_core::{AppendError, EventStore, StoreError, StreamId};

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Wraps a store and counts stream reads and the events they visit, to
/// check what the dispatcher reads, and reads of the global log, to check
/// what runners read.
#[derive(Clone)]
pub struct CountingStore<S> {
    inner: S,
    stream_reads: Arc<AtomicU64>,
    events_read: Arc<AtomicU64>,
    log_reads: Arc<AtomicU64>,
}

impl<S: EventStore> CountingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            stream_reads: Arc::default(),
            events_read: Arc::default(),
            log_reads: Arc::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many times a stream was read.
    pub fn stream_reads(&self) -> u64 {
        self.stream_reads.load(Ordering::Relaxed)
    }

    /// How many reads of the global log there were.
    pub fn log_reads(&self) -> u64 {
        self.log_reads.load(Ordering::Relaxed)
    }

    /// How many events stream reads visited.
    pub fn events_read(&self) -> u64 {
        self.events_read.load(Ordering::Relaxed)
    }
}

impl<S: EventStore> EventStore for CountingStore<S> {
    const NAME: &'static str = S::NAME;

    fn keyring(&self) -> Option<&Arc<es_core::personal::Keyring>> {
        self.inner.keyring()
    }

    fn append(&self, request: AppendRequest<'_>) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send {
        self.inner.append(request)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        fields: ContextFields,
        mut visit: impl Visitor,
    ) -> Result<(), StoreError> {
        self.stream_reads.fetch_add(1, Ordering::Relaxed);
        let counter = &self.events_read;
        let counting = move |e: &RecordedEvent<'_>| {
            counter.fetch_add(1, Ordering::Relaxed);
            visit(e)
        };
        self.inner.read_stream(stream, from_version, fields, counting).await
    }

    fn read_all(
        &self,
        after: u64,
        limit: usize,
        fields: ContextFields,
        visit: impl Visitor,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.log_reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_all(after, limit, fields, visit)
    }

    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.inner.stream_version(stream)
    }

    fn last_position(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.inner.last_position()
    }

    fn events_after(&self, position: u64) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.inner.events_after(position)
    }

    fn find_command(
        &self,
        stream: &StreamId,
        command_id: &str,
    ) -> impl Future<Output = Result<Option<CommandRecord>, StoreError>> + Send {
        self.inner.find_command(stream, command_id)
    }

    fn load_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
        self.inner.load_snapshot(stream)
    }

    fn save_snapshot(
        &self,
        stream: &StreamId,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.save_snapshot(stream, snapshot)
    }

    fn load_checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        self.inner.load_checkpoint(name)
    }

    fn save_checkpoint(&self, name: &str, position: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.save_checkpoint(name, position)
    }

    fn notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.notifications()
    }
}

/// Wraps a store and, while switched off, fails every call as a store that
/// cannot be reached would: an outage to inject. While contended, another
/// writer gets to every stream just before each append that expects a
/// version: a conflict that no retry outlasts. Appends can be slowed down.
#[derive(Clone)]
pub struct SwitchableStore<S> {
    inner: S,
    down: Arc<std::sync::atomic::AtomicBool>,
    contended: Arc<std::sync::atomic::AtomicBool>,
    append_delay_ms: Arc<AtomicU64>,
    /// A stream version its loads leave out (0: none): a store that lost
    /// an event.
    lost_version: Arc<AtomicU64>,
}

impl<S: EventStore> SwitchableStore<S> {
    /// Wraps `inner`, switched on.
    pub fn new(inner: S) -> Self {
        SwitchableStore {
            inner,
            down: Arc::default(),
            contended: Arc::default(),
            append_delay_ms: Arc::default(),
            lost_version: Arc::default(),
        }
    }

    /// Makes loads of every stream leave out the event at `version` (0:
    /// none), as a corrupt store would.
    pub fn set_lost_version(&self, version: u64) {
        self.lost_version.store(version, Ordering::SeqCst);
    }

    /// Makes every append wait `delay` first: a slow commit, in flight.
    pub fn set_append_delay(&self, delay: std::time::Duration) {
        self.append_delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Starts or ends the contention.
    pub fn set_contended(&self, contended: bool) {
        self.contended.store(contended, Ordering::SeqCst);
    }

    /// Starts or ends the outage.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn up(&self, operation: &'static str) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                store: S::NAME,
                operation,
                source: "connection refused (injected outage)".into(),
            });
        }
        Ok(())
    }
}

impl<S: EventStore> EventStore for SwitchableStore<S> {
    const NAME: &'static str = S::NAME;

    fn keyring(&self) -> Option<&Arc<es_core::personal::Keyring>> {
        self.inner.keyring()
    }

    async fn append(&self, request: AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        self.up("append")?;
        let delay = self.append_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        let exact = matches!(request.expected, es_core::ExpectedVersion::Exact(_));
        if exact && self.contended.load(Ordering::SeqCst) {
            // The other writer appends a copy of the batch's first event.
            let first: Vec<_> = request
                .events
                .first()
                .map(|e| es_core::store::NewEvent {
                    event_id: es_core::EventId::new(),
                    ..*e
                })
                .into_iter()
                .collect();
            self.inner
                .append(AppendRequest {
                    stream: request.stream,
                    expected: es_core::ExpectedVersion::Any,
                    events: &first,
                    metadata: b"",
                    command_id: None,
                    recorded_at: request.recorded_at,
                })
                .await?;
        }
        self.inner.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        fields: ContextFields,
        visit: impl Visitor,
    ) -> Result<(), StoreError> {
        self.up("read a stream")?;
        let lost = self.lost_version.load(Ordering::SeqCst);
        let mut visit = visit;
        self.inner
            .read_stream(stream, from_version, fields, |e: &RecordedEvent<'_>| {
                if e.version == lost {
                    std::ops::ControlFlow::Continue(())
                } else {
                    visit(e)
                }
            })
            .await
    }

    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        fields: ContextFields,
        visit: impl Visitor,
    ) -> Result<(), StoreError> {
        self.up("read the log")?;
        self.inner.read_all(after, limit, fields, visit).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.up("read a stream version")?;
        self.inner.stream_version(stream).await
    }

    async fn last_position(&self) -> Result<u64, StoreError> {
        self.up("read the last position")?;
        self.inner.last_position().await
    }

    async fn events_after(&self, position: u64) -> Result<u64, StoreError> {
        self.up("count events")?;
        self.inner.events_after(position).await
    }

    async fn find_command(&self, stream: &StreamId, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        self.up("find a command")?;
        self.inner.find_command(stream, command_id).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.up("load a snapshot")?;
        self.inner.load_snapshot(stream).await
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), StoreError> {
        self.up("save a snapshot")?;
        self.inner.save_snapshot(stream, snapshot).await
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.up("load a checkpoint")?;
        self.inner.load_checkpoint(name).await
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError> {
        self.up("save a checkpoint")?;
        self.inner.save_checkpoint(name, position).await
    }

    fn notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.notifications()
    }
}

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
