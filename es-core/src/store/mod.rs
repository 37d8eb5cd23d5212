//! The storage contract, and the in-memory store.
//!
//! A store keeps streams of encoded events under names and versions, and one
//! global log across all streams. It knows no domain types. Every store in
//! the workspace passes the same conformance suite (`tests/src/conformance.rs`).

use std::future::Future;
use std::ops::ControlFlow;

use crate::envelope::StreamId;
use crate::error::{AppendError, StoreError};

pub mod chain;
mod group;
mod memory;
mod memory_keys;
mod records;
mod validate;

pub use chain::{Heads, Link, link_batch};
pub use group::{Alone, BatchLimits, Batches, GroupCommit, Pending, fail_all};
pub use memory::InMemoryStore;
pub use records::{
    AppendOutcome, AppendRequest, Appended, CommandRecord, ContextFields, ExpectedVersion, NewEvent, OwnedAppend,
    OwnedEvent, Positions, RecordedEvent, Snapshot, StoredEvent,
};
pub use validate::{validate_append, validate_command_id, validate_event_name, validate_stream, validate_subject};

/// The longest aggregate type name a store keeps, in bytes.
pub const MAX_AGGREGATE_TYPE: usize = 255;
/// The longest aggregate id a store keeps, in bytes.
pub const MAX_AGGREGATE_ID: usize = 1_024;
/// The longest command id a store keeps, in bytes.
pub const MAX_COMMAND_ID: usize = 1_024;
/// The longest stored event name, in bytes.
pub const MAX_EVENT_NAME: usize = 255;

/// The name under which [`EventStore::read_all`] hands over an entry of the
/// log that is not an event of this store: on NATS, a message another client
/// published on the store's subjects (a test script, a misconfigured
/// client), which the stream keeps and nobody may delete. Such an entry has
/// the position it holds in the log, version 0, the nil event id, the raw
/// bytes as its payload and, as its aggregate id, where it was found (the
/// subject). Readers skip it: no sink handles this name, so the subscription
/// engine moves its checkpoint past it, counts it in its
/// [`Status::skipped`](crate::subscription::Status::skipped) and logs a
/// warning. No event may be stored under this name.
pub const FOREIGN: &str = "$foreign";

/// An event store: streams with optimistic concurrency and one global log.
///
/// Reads hand each event to a visitor while it is still borrowed from the
/// store, so loading an aggregate decodes straight from the store's buffers.
/// [`EventStoreExt`] has owned, collecting versions.
pub trait EventStore: Send + Sync + 'static {
    /// The store's name in errors (`"memory"`, `"sqlite"`, `"postgres"`).
    const NAME: &'static str;

    /// Appends a batch to one stream if its version matches
    /// `request.expected`: the whole batch or nothing.
    fn append(&self, request: AppendRequest<'_>) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send;

    /// Visits the events of `stream` with version `>= from_version`, in
    /// version order. A stream that does not exist has no events.
    ///
    /// Each event carries its stream's names, its version, name, schema
    /// version and payload; of the rest, the store may leave those not in
    /// `fields` empty (zero, the nil id, an empty text, the epoch), and SQL
    /// stores then do not read their columns. Loading an aggregate asks for
    /// [`ContextFields::LOAD`].
    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        fields: ContextFields,
        visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Visits up to `limit` events of the global log with position `> after`,
    /// in position order. Never skips an event that commits later with a
    /// smaller position than one already returned. An entry of the log that
    /// is not an event of this store is visited as one named [`FOREIGN`].
    ///
    /// Each event carries its position, name, schema version and payload;
    /// of the rest, the store may leave those not in `fields` empty, as
    /// [`read_stream`](EventStore::read_stream) does.
    fn read_all(
        &self,
        after: u64,
        limit: usize,
        fields: ContextFields,
        visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The version of `stream` (0 if it has no events).
    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The position of the last event in the global log (0 if empty).
    fn last_position(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// How many events of the global log come after `position`: a reader's
    /// lag, in events (positions may leave gaps: a rolled-back transaction
    /// on PostgreSQL, a record between two events on NATS). The default
    /// counts by reading the log; stores count without reading it.
    fn events_after(&self, position: u64) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let mut after = position;
            let mut count = 0u64;
            loop {
                let mut seen = 0;
                self.read_all(after, 10_000, ContextFields::NONE, |e: &RecordedEvent<'_>| {
                    seen += 1;
                    after = e.position;
                    ControlFlow::Continue(())
                })
                .await?;
                count += seen;
                if seen < 10_000 {
                    return Ok(count);
                }
            }
        }
    }

    /// What an earlier batch with `command_id` committed to `stream`, if
    /// any. Command ids are scoped to their stream: a batch on another stream
    /// with the same id is never the answer.
    fn find_command(
        &self,
        stream: &StreamId,
        command_id: &str,
    ) -> impl Future<Output = Result<Option<CommandRecord>, StoreError>> + Send;

    /// The latest snapshot of `stream`, if any.
    fn load_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;

    /// Stores a snapshot of `stream`, replacing an older one.
    fn save_snapshot(
        &self,
        stream: &StreamId,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Wakes readers of the global log when events may have been appended
    /// (the receiver changes); `None` where the store cannot tell, and
    /// readers poll.
    fn notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// The saved checkpoint (a global position) of a named reader.
    fn load_checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Saves the checkpoint of a named reader.
    fn save_checkpoint(&self, name: &str, position: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The keyring that seals and opens personal data in this store, if it
    /// was opened with a key provider (`with_keys`); see
    /// [`personal`](crate::personal).
    fn keyring(&self) -> Option<&std::sync::Arc<crate::personal::Keyring>>;
}

/// Owned reads for tests, tools and code where convenience beats speed.
pub trait EventStoreExt: EventStore {
    /// The events of `stream` from `from_version`, collected.
    fn read_stream_vec(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send {
        async move {
            let mut out = Vec::new();
            self.read_stream(stream, from_version, ContextFields::ALL, |e: &RecordedEvent<'_>| {
                out.push(e.to_owned());
                ControlFlow::Continue(())
            })
            .await?;
            Ok(out)
        }
    }

    /// Up to `limit` events of the global log after `after`, collected.
    fn read_all_vec(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send {
        async move {
            let mut out = Vec::new();
            self.read_all(after, limit, ContextFields::ALL, |e: &RecordedEvent<'_>| {
                out.push(e.to_owned());
                ControlFlow::Continue(())
            })
            .await?;
            Ok(out)
        }
    }
}

impl<S: EventStore> EventStoreExt for S {}

/// A shared store is a store: one `Arc` can feed a dispatcher and projections.
impl<S: EventStore> EventStore for std::sync::Arc<S> {
    const NAME: &'static str = S::NAME;

    fn append(&self, request: AppendRequest<'_>) -> impl Future<Output = Result<AppendOutcome, AppendError>> + Send {
        (**self).append(request)
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        fields: ContextFields,
        visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).read_stream(stream, from_version, fields, visit)
    }

    fn read_all(
        &self,
        after: u64,
        limit: usize,
        fields: ContextFields,
        visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).read_all(after, limit, fields, visit)
    }

    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).stream_version(stream)
    }

    fn last_position(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).last_position()
    }

    fn events_after(&self, position: u64) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).events_after(position)
    }

    fn find_command(
        &self,
        stream: &StreamId,
        command_id: &str,
    ) -> impl Future<Output = Result<Option<CommandRecord>, StoreError>> + Send {
        (**self).find_command(stream, command_id)
    }

    fn load_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
        (**self).load_snapshot(stream)
    }

    fn save_snapshot(
        &self,
        stream: &StreamId,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).save_snapshot(stream, snapshot)
    }

    fn load_checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        (**self).load_checkpoint(name)
    }

    fn notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        (**self).notifications()
    }

    fn save_checkpoint(&self, name: &str, position: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).save_checkpoint(name, position)
    }

    fn keyring(&self) -> Option<&std::sync::Arc<crate::personal::Keyring>> {
        (**self).keyring()
    }
}
