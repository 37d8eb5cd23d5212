//! The read side's one engine: a checkpointed consumer of the global log.
//!
//! Everything that follows the log — in-memory [`Projection`]s, process
//! managers, `SqliteProjection` and `PgProjection` — is a [`Sink`] run by
//! the code in this module, which is written once:
//!
//! - **paging**: it reads the log after the sink's checkpoint, a page at a
//!   time, hands each event the sink handles to [`Sink::visit`] while it is
//!   still borrowed from the store (events it does not handle are never
//!   decoded), and ends each page with [`Sink::commit`], which applies the
//!   page and moves the checkpoint, in one transaction where the sink has
//!   one;
//! - **panic isolation**: a panicking handler fails its page like an error
//!   does; what the sink committed before stays, nothing of the page after
//!   it is committed, and the process goes on;
//! - **supervision** ([`spawn`]): a runner catches up, then follows the log,
//!   woken by the store's notifications or every `poll`; a failure is
//!   retried with jittered exponential backoff and shown in its [`Status`];
//!   a runner that cannot go on says so in its status instead of vanishing;
//! - **partitions**: a sink that applies one [`Partition`] of the log gets
//!   only the events of its streams, in their order;
//! - **ownership**: a sink that must run in one place at a time (PostgreSQL)
//!   claims it in [`Sink::acquire`] before each catch-up, and a runner that
//!   lost it stands by;
//! - **observability**: a `tracing` span per page (`es.subscription.page`,
//!   level DEBUG, with `es.subscription`, `es.from`, `es.to` and
//!   `es.events`).
//!
//! [`Projection`]: crate::Projection

use std::future::Future;

use crate::envelope::{EventId, StreamId, Timestamp};
use crate::error::{BoxError, DecodeError, DispatchError, StoreError};
use crate::store::{ContextFields, RecordedEvent, StoredEvent};

mod engine;
mod partition;
mod runner;
mod shared;
mod tail;

pub(crate) use engine::{Step, run_pages};
pub use engine::{catch_panic_async, catch_up, panic_message};
pub use partition::{Partition, stream_partition};
pub use runner::{RunOptions, RunState, Runner, Status, WaitTimeout, spawn};
pub use shared::{
    Member, OwnedPartitions, PartitionOptions, PartitionRunner, PartitionStatus, PartitionsStatus, fair_share,
    free_partitions, random_start, runner_name,
};
pub use tail::Tail;

/// How many events a subscription reads per store round trip, unless its
/// sink says otherwise.
pub const PAGE: usize = 1_000;

/// What a subscription feeds: how a page of events is applied and where the
/// checkpoint lives. The engine in this module does everything else.
///
/// A page goes: [`visit`](Sink::visit) for each event the sink
/// [`handles`](Sink::handles), in log order, then
/// [`commit`](Sink::commit) — or [`abandon`](Sink::abandon) if reading,
/// visiting or committing failed.
pub trait Sink: Send {
    /// The subscription's name, for logs, spans and errors.
    fn name(&self) -> &str;

    /// How many events to read per page (default [`PAGE`]): the size of one
    /// transaction for sinks that commit pages in one.
    fn page_size(&self) -> usize {
        PAGE
    }

    /// Makes sure this runner may work: `Ok(false)` when another runner
    /// owns the subscription (the runner stands by and asks again). Called
    /// before every catch-up of a spawned runner, so a sink that holds
    /// ownership through a connection can check it is still alive. The
    /// default always may.
    fn acquire(&mut self) -> impl Future<Output = Result<bool, SubscriptionError>> + Send {
        std::future::ready(Ok(true))
    }

    /// Gives up what [`acquire`](Sink::acquire) took: the runner stops, or
    /// learned that it lost ownership.
    fn release(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// The position of the last event applied (or skipped): where the next
    /// page starts.
    fn checkpoint(&mut self) -> impl Future<Output = Result<u64, SubscriptionError>> + Send;

    /// Whether events stored under `name` go to [`visit`](Sink::visit);
    /// others only move the checkpoint, undecoded.
    fn handles(&self, name: &str) -> bool;

    /// The part of the log this sink applies: events of streams in other
    /// partitions only move its checkpoint, undecoded. The default is the
    /// whole log.
    fn partition(&self) -> Partition {
        Partition::WHOLE
    }

    /// The parts of each event's context that [`visit`](Sink::visit) uses:
    /// the store may leave the others empty and unread. The default is
    /// [`ContextFields::ALL`].
    fn fields(&self) -> ContextFields {
        ContextFields::ALL
    }

    /// Takes one handled event, while the store still lends it. A sink that
    /// applies in memory applies it here; one that applies in a transaction
    /// keeps what it needs until [`commit`](Sink::commit).
    fn visit(&mut self, event: &RecordedEvent<'_>) -> Result<(), SubscriptionError>;

    /// Ends the page: whatever [`visit`](Sink::visit) took since the last
    /// commit is applied and the checkpoint moves from `from` to `to` (the
    /// position of the page's last event, handled or not) — together, where
    /// the sink has a transaction. A sink that finds its checkpoint is no
    /// longer `from` commits nothing and returns
    /// [`SubscriptionError::Moved`]; one that finds it no longer owns the
    /// subscription returns [`SubscriptionError::Fenced`].
    fn commit(&mut self, from: u64, to: u64) -> impl Future<Output = Result<(), SubscriptionError>> + Send;

    /// Forgets what [`visit`](Sink::visit) took since the last commit: the
    /// page failed and will be read again.
    fn abandon(&mut self);
}

/// A sink that applies each page in one transaction of its own (a SQL read
/// model): it gets the page's handled events, owned, when the page ends, and
/// commits them with the checkpoint or not at all. Run it as a [`Sink`]
/// through [`Paged`]. A new store's read-model runner implements this.
pub trait PageSink: Send {
    /// See [`Sink::name`].
    fn name(&self) -> &str;

    /// See [`Sink::page_size`].
    fn page_size(&self) -> usize {
        PAGE
    }

    /// See [`Sink::acquire`].
    fn acquire(&mut self) -> impl Future<Output = Result<bool, SubscriptionError>> + Send {
        std::future::ready(Ok(true))
    }

    /// See [`Sink::release`].
    fn release(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// See [`Sink::checkpoint`].
    fn checkpoint(&mut self) -> impl Future<Output = Result<u64, SubscriptionError>> + Send;

    /// See [`Sink::handles`].
    fn handles(&self, name: &str) -> bool;

    /// See [`Sink::partition`].
    fn partition(&self) -> Partition {
        Partition::WHOLE
    }

    /// In one transaction: checks that the checkpoint is still `from`
    /// ([`SubscriptionError::Moved`] otherwise) and, where the sink has an
    /// owner, that this runner still is it ([`SubscriptionError::Fenced`]);
    /// applies `events`; moves the checkpoint to `to`; commits. Nothing of
    /// it stays if it fails or panics.
    fn apply_page(
        &mut self,
        from: u64,
        to: u64,
        events: Vec<StoredEvent>,
    ) -> impl Future<Output = Result<(), SubscriptionError>> + Send;
}

/// A [`PageSink`] as a [`Sink`]: keeps the handled events of a page while it
/// is read, and hands them over at its end.
#[derive(Debug)]
pub struct Paged<T> {
    sink: T,
    events: Vec<StoredEvent>,
}

impl<T> Paged<T> {
    /// Wraps `sink`.
    pub fn new(sink: T) -> Self {
        Paged {
            sink,
            events: Vec::new(),
        }
    }

    /// The wrapped sink.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.sink
    }
}

impl<T: PageSink> Sink for Paged<T> {
    fn name(&self) -> &str {
        self.sink.name()
    }

    fn page_size(&self) -> usize {
        self.sink.page_size()
    }

    fn acquire(&mut self) -> impl Future<Output = Result<bool, SubscriptionError>> + Send {
        self.sink.acquire()
    }

    fn release(&mut self) -> impl Future<Output = ()> + Send {
        self.sink.release()
    }

    fn checkpoint(&mut self) -> impl Future<Output = Result<u64, SubscriptionError>> + Send {
        self.sink.checkpoint()
    }

    fn handles(&self, name: &str) -> bool {
        self.sink.handles(name)
    }

    fn partition(&self) -> Partition {
        self.sink.partition()
    }

    fn visit(&mut self, event: &RecordedEvent<'_>) -> Result<(), SubscriptionError> {
        self.events.push(event.to_owned());
        Ok(())
    }

    fn commit(&mut self, from: u64, to: u64) -> impl Future<Output = Result<(), SubscriptionError>> + Send {
        let events = std::mem::take(&mut self.events);
        self.sink.apply_page(from, to, events)
    }

    fn abandon(&mut self) {
        self.events.clear();
    }
}

/// A command of a process (a sink of this engine, in [`process`](crate::process)) that an aggregate refused, or that was not run
/// because its command id was already used on the stream by a command of
/// another type (the process's reaction to the event changed since it last
/// ran).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The position of the event the command reacted to.
    pub position: u64,
    /// That event's id.
    pub event_id: EventId,
    /// The command's type name.
    pub command: &'static str,
    /// The stream that refused it.
    pub stream: StreamId,
    /// The aggregate's error, or the command that used the id, as text.
    pub reason: String,
    /// When it was refused.
    pub at: Timestamp,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command `{}` reacting to the event at position {} was refused by `{}`: {}",
            self.command, self.position, self.stream, self.reason
        )
    }
}

/// Why a subscription could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// An event it handles could not be decoded.
    #[error(transparent)]
    Decode(Box<DecodeError>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A handler returned an error; nothing of its page was committed.
    #[error("`{subscription}` failed on event `{event_name}` at position {position}: {source}")]
    Handler {
        /// The subscription's name.
        subscription: String,
        /// The event's stored name.
        event_name: String,
        /// The event's position.
        position: u64,
        /// What the handler returned.
        #[source]
        source: BoxError,
    },
    /// A handler panicked; nothing of its page after the last commit was
    /// committed.
    #[error("`{subscription}` panicked on event `{event_name}` at position {position}: {message}")]
    Panicked {
        /// The subscription's name.
        subscription: String,
        /// The event's stored name.
        event_name: String,
        /// The event's position.
        position: u64,
        /// What the panic said.
        message: String,
    },
    /// The runner no longer owns the subscription (another runner took it
    /// over); the page was not committed. A spawned runner stands by.
    #[error("`{subscription}` is no longer owned by this runner: {detail}; nothing was committed")]
    Fenced {
        /// The subscription's name.
        subscription: String,
        /// How it found out.
        detail: String,
    },
    /// Another runner moved the checkpoint while this one read a page; the
    /// page was not committed, and the engine reads again from the new
    /// checkpoint.
    #[error("`{subscription}`'s checkpoint moved under it")]
    Moved {
        /// The subscription's name.
        subscription: String,
    },
    /// A process could not send a command for a reason other than its
    /// refusal (a store failure, retries ran out): its checkpoint stays
    /// before the event, and the command is sent again.
    #[error("`{subscription}` could not send a command for the event at position {position}: {source}")]
    Dispatch {
        /// The process's name.
        subscription: String,
        /// The triggering event's position.
        position: u64,
        /// What the dispatcher reported.
        #[source]
        source: Box<DispatchError>,
    },
    /// A process's command was refused and its policy is to retry it.
    #[error("`{subscription}`: {refusal}")]
    Refused {
        /// The process's name.
        subscription: String,
        /// The refusal.
        refusal: Box<Refusal>,
    },
    /// The subscription stopped itself and must not be retried: a process
    /// whose policy is to stop on a refused command. Its checkpoint stays
    /// before the event.
    #[error("`{subscription}` stopped at position {position}: {reason}")]
    Stopped {
        /// The subscription's name.
        subscription: String,
        /// The position of the event it stopped at.
        position: u64,
        /// Why.
        reason: String,
    },
    /// The subscription's checkpoints in the store are of another number of
    /// partitions than this runner was started with: it does not run, since
    /// its partitions would apply events the others already applied. The
    /// number changes only through a rebuild.
    #[error(
        "`{subscription}` is stored as {stored} but this runner was started with {asked}; \
         run every runner with the stored number, or rebuild it with the new one \
         (a rebuild is the one way to change it)"
    )]
    Partitions {
        /// The subscription's name.
        subscription: String,
        /// What the store holds, in words ("2 partitions", "one partition").
        stored: String,
        /// What this runner was started with, in words.
        asked: String,
    },
}

impl SubscriptionError {
    /// [`Partitions`](Self::Partitions): `subscription` is stored as
    /// `stored` partitions, and this runner was started with `asked`.
    pub fn partitions(subscription: impl Into<String>, stored: u32, asked: u32) -> Self {
        let words = |count: u32| match count {
            1 => "one partition (not partitioned)".to_owned(),
            n => format!("{n} partitions"),
        };
        SubscriptionError::Partitions {
            subscription: subscription.into(),
            stored: words(stored),
            asked: words(asked),
        }
    }

    /// Whether retrying can help: false for [`Stopped`](Self::Stopped) and
    /// [`Partitions`](Self::Partitions).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            SubscriptionError::Stopped { .. } | SubscriptionError::Partitions { .. }
        )
    }
}

impl From<DecodeError> for SubscriptionError {
    fn from(e: DecodeError) -> Self {
        SubscriptionError::Decode(Box::new(e))
    }
}
