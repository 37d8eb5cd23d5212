//! Shared code of the cross-crate test suites: the store conformance suite
//! and test doubles.

pub mod conformance;
pub mod crash;
pub mod decoding;
pub mod faulty;
pub mod fixtures;
pub mod guarantees;
pub mod ledger;
pub mod postgres;
pub mod read_side;
pub mod sqlite;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use es_core::store::{AppendOutcome, AppendRequest, CommandRecord, RecordedEvent, Snapshot, Visitor};
use es_core::{AppendError, EventStore, StoreError, StreamId};

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Wraps a store and counts stream reads and the events they visit, to
/// check what the dispatcher reads.
#[derive(Clone)]
pub struct CountingStore<S> {
    inner: S,
    stream_reads: Arc<AtomicU64>,
    events_read: Arc<AtomicU64>,
}

impl<S: EventStore> CountingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            stream_reads: Arc::default(),
            events_read: Arc::default(),
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

    /// How many events stream reads visited.
    pub fn events_read(&self) -> u64 {
        self.events_read.load(Ordering::Relaxed)
    }
}

impl<S: EventStore> EventStore for CountingStore<S> {
    const NAME: &'static str = S::NAME;

    fn append(&self, request: AppendRequest<'_>) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send {
        self.inner.append(request)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        mut visit: impl Visitor,
    ) -> Result<(), StoreError> {
        self.stream_reads.fetch_add(1, Ordering::Relaxed);
        let counter = &self.events_read;
        let counting = move |e: &RecordedEvent<'_>| {
            counter.fetch_add(1, Ordering::Relaxed);
            visit(e)
        };
        self.inner.read_stream(stream, from_version, counting).await
    }

    fn read_all(
        &self,
        after: u64,
        limit: usize,
        visit: impl Visitor,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.read_all(after, limit, visit)
    }

    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.inner.stream_version(stream)
    }

    fn last_position(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.inner.last_position()
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
}
