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
//! - **ownership**: a sink that must run in one place at a time (PostgreSQL)
//!   claims it in [`Sink::acquire`] before each catch-up, and a runner that
//!   lost it stands by;
//! - **observability**: a `tracing` span per page (`es.subscription.page`,
//!   level DEBUG, with `es.subscription`, `es.from`, `es.to` and
//!   `es.events`).
//!
//! [`Projection`]: crate::Projection

use std::future::Future;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use crate::envelope::{EventId, StreamId, Timestamp};
use crate::error::{BoxError, DecodeError, DispatchError, StoreError};
use crate::store::{ContextFields, EventStore, FOREIGN, RecordedEvent, StoredEvent};

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
}

impl SubscriptionError {
    /// Whether retrying can help: false only for [`Stopped`](Self::Stopped).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SubscriptionError::Stopped { .. })
    }
}

impl From<DecodeError> for SubscriptionError {
    fn from(e: DecodeError) -> Self {
        SubscriptionError::Decode(Box::new(e))
    }
}

/// Applies every event after the sink's checkpoint, page by page, up to the
/// end of the log. Returns the new checkpoint.
pub async fn catch_up<S: EventStore, K: Sink>(store: &S, sink: &mut K) -> Result<u64, SubscriptionError> {
    Ok(run_pages(store, sink, false, &mut |_| {}, &|| false).await?.0)
}

/// What a catch-up reports as it goes.
enum Step {
    /// The events after the checkpoint when it started.
    Lag(u64),
    /// A committed page.
    Page {
        /// The new checkpoint.
        position: u64,
        /// The events it read.
        events: u64,
        /// The foreign entries it skipped.
        skipped: u64,
    },
}

/// The catch-up loop: pages until a short one, reporting the lag (when
/// `count_lag`) and each committed page, and stopping early when `stop`
/// says so. Returns the new checkpoint and whether it reached the end.
async fn run_pages<S: EventStore, K: Sink>(
    store: &S,
    sink: &mut K,
    count_lag: bool,
    progress: &mut (dyn FnMut(Step) + Send),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<(u64, bool), SubscriptionError> {
    let mut position = sink.checkpoint().await?;
    if count_lag {
        progress(Step::Lag(store.events_after(position).await?));
    }
    let size = sink.page_size().max(1);
    loop {
        let span = tracing::debug_span!(
            "es.subscription.page",
            es.subscription = sink.name(),
            es.from = position,
            es.to = tracing::field::Empty,
            es.events = tracing::field::Empty,
        );
        let page = read_and_commit(store, sink, position, size)
            .instrument(span.clone())
            .await;
        let Page { seen, last, foreign } = match page {
            Ok(page) => page,
            Err(SubscriptionError::Moved { .. }) => {
                tracing::debug!(parent: &span, "checkpoint moved by another runner; reading from it");
                position = sink.checkpoint().await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        span.record("es.to", last).record("es.events", seen);
        if last > position {
            position = last;
            progress(Step::Page {
                position,
                events: (seen as u64).saturating_sub(foreign),
                skipped: foreign,
            });
        }
        if seen < size {
            return Ok((position, true));
        }
        if stop() {
            return Ok((position, false));
        }
    }
}

/// What one page read and committed.
struct Page {
    /// Entries read, foreign ones included.
    seen: usize,
    /// The position of the last one: the new checkpoint.
    last: u64,
    /// Entries that were not events ([`FOREIGN`]), skipped.
    foreign: u64,
}

/// One page: read it, visiting handled events, then commit it.
async fn read_and_commit<S: EventStore, K: Sink>(
    store: &S,
    sink: &mut K,
    from: u64,
    size: usize,
) -> Result<Page, SubscriptionError> {
    let mut seen = 0;
    let mut foreign = 0;
    let mut last = from;
    let mut failure: Option<Failure> = None;
    let fields = sink.fields();
    let mut undecoded_at = None;
    let read = store
        .read_all_fields(from, size, fields, |e: &RecordedEvent<'_>| {
            seen += 1;
            if e.name == FOREIGN {
                foreign += 1;
                tracing::warn!(
                    subscription = sink.name(),
                    position = e.position,
                    found_at = ?e.aggregate_id,
                    bytes = e.payload.len(),
                    "skipped an entry of the log that is not an event of this store"
                );
            } else if sink.handles(e.name) {
                let visited = std::panic::catch_unwind(AssertUnwindSafe(|| sink.visit(e)));
                let failed = match visited {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => {
                        undecoded_at = Some(e.position);
                        Some(Failure::Error(error))
                    }
                    Err(payload) => Some(Failure::Panic {
                        event_name: e.name.to_owned(),
                        position: e.position,
                        message: panic_message(&*payload),
                    }),
                };
                if failed.is_some() {
                    failure = failed;
                    return ControlFlow::Break(());
                }
            }
            last = e.position;
            ControlFlow::Continue(())
        })
        .await;
    let mut failure = match (read, failure) {
        (Err(e), _) => Some(Failure::Error(e.into())),
        (Ok(()), f) => f,
    };
    if let (Some(Failure::Error(SubscriptionError::Decode(error))), Some(position)) = (&mut failure, undecoded_at)
        && fields != ContextFields::ALL
    {
        name_the_stream(store, position, error).await;
    }
    if let Some(failure) = failure {
        sink.abandon();
        return Err(failure.into_error(sink.name()));
    }
    if last > from {
        let committed = catch_panic_async(sink.commit(from, last)).await;
        let failure = match committed {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Failure::Error(e)),
            Err(message) => Some(Failure::Panic {
                event_name: format!("(one of the page after position {from})"),
                position: last,
                message,
            }),
        };
        if let Some(failure) = failure {
            sink.abandon();
            return Err(failure.into_error(sink.name()));
        }
    }
    Ok(Page { seen, last, foreign })
}

/// Fills in the stream and version of an event that did not decode, which a
/// read of fewer fields left out: a decoding error names where the event is.
async fn name_the_stream<S: EventStore>(store: &S, position: u64, error: &mut DecodeError) {
    let read = store
        .read_all(position - 1, 1, |e: &RecordedEvent<'_>| {
            if e.position == position {
                error.stream = e.stream();
                error.stream_version = e.version;
            }
            ControlFlow::Break(())
        })
        .await;
    if let Err(e) = read {
        tracing::debug!(position, error = %e, "could not read the undecodable event again to name its stream");
    }
}

enum Failure {
    Error(SubscriptionError),
    Panic {
        event_name: String,
        position: u64,
        message: String,
    },
}

impl Failure {
    fn into_error(self, subscription: &str) -> SubscriptionError {
        match self {
            Failure::Error(e) => e,
            Failure::Panic {
                event_name,
                position,
                message,
            } => SubscriptionError::Panicked {
                subscription: subscription.to_owned(),
                event_name,
                position,
                message,
            },
        }
    }
}

pub use crate::util::panic_message;

/// Runs `future`, turning a panic in it into its message: for sinks whose
/// handlers are async, so that a panic names its event.
pub async fn catch_panic_async<F: Future>(future: F) -> Result<F::Output, String> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(
        move |cx| match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        },
    )
    .await
}

/// The log from a position on, one event at a time, waiting for new ones:
/// what a tool's `follow` and a service's live event stream read. It keeps
/// no checkpoint (a reader that must resume keeps its own position:
/// [`Tail::position`]); it is woken by the store's notifications, and polls
/// every `poll` where the store has none.
///
/// ```
/// # async fn demo() -> Result<(), es_core::StoreError> {
/// let store = es_core::InMemoryStore::new();
/// let mut tail = es_core::subscription::Tail::new(store, 0);
/// // Waits until an event is committed after position 0:
/// // let event = tail.next().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Tail<S> {
    store: S,
    after: u64,
    page: std::collections::VecDeque<StoredEvent>,
    notifications: Option<watch::Receiver<u64>>,
    poll: Duration,
}

impl<S: EventStore> Tail<S> {
    /// The events of `store`'s log after `position`.
    pub fn new(store: S, position: u64) -> Self {
        let notifications = store.notifications();
        Tail {
            store,
            after: position,
            page: std::collections::VecDeque::new(),
            notifications,
            poll: Duration::from_millis(200),
        }
    }

    /// Polls every `poll` for a store without notifications (200 ms by
    /// default).
    pub fn polling(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The position of the last event [`next`](Self::next) returned (the
    /// starting position before the first).
    pub fn position(&self) -> u64 {
        self.after
    }

    /// The next event of the log, waiting for it to be committed. Entries
    /// that are not events ([`FOREIGN`]) are returned too: a tool shows
    /// them, a reader skips them.
    pub async fn next(&mut self) -> Result<StoredEvent, StoreError> {
        loop {
            if let Some(event) = self.page.pop_front() {
                self.after = event.position;
                return Ok(event);
            }
            let mut page = std::collections::VecDeque::new();
            self.store
                .read_all(self.after, 256, |e: &RecordedEvent<'_>| {
                    page.push_back(e.to_owned());
                    ControlFlow::Continue(())
                })
                .await?;
            if !page.is_empty() {
                self.page = page;
                continue;
            }
            match self.notifications.as_mut() {
                Some(woken) => {
                    // A notification since the last look wakes at once; the
                    // timeout is a safety net, not the way in.
                    let waited = tokio::time::timeout(self.poll.max(Duration::from_secs(1)), woken.changed()).await;
                    if let Ok(Err(_)) = waited {
                        // The store stopped notifying: poll from now on.
                        self.notifications = None;
                    }
                }
                None => tokio::time::sleep(self.poll).await,
            }
        }
    }
}

/// How a spawned runner waits and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// The longest a following runner waits for new events without being
    /// woken (stores without notifications are polled this often), and how
    /// often a standby runner asks for ownership.
    pub poll: Duration,
    /// The wait before the first retry after a failure; it doubles with each
    /// failure in a row, with jitter.
    pub retry_min: Duration,
    /// The longest wait between retries.
    pub retry_max: Duration,
    /// How long a following runner waits after a store's notification
    /// before it reads, so commits that land together are read as one page
    /// (under a stream of commits, one read per commit would compete with
    /// the writers). Zero reads at once. It is the least lag a spawned read
    /// model shows; inline projections do not wait.
    pub coalesce: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            poll: Duration::from_millis(500),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            coalesce: Duration::from_millis(1),
        }
    }
}

/// The defaults, polling every `poll`: what `spawn` takes as its options
/// when given just a `Duration`.
impl From<Duration> for RunOptions {
    fn from(poll: Duration) -> Self {
        RunOptions::polling(poll)
    }
}

impl RunOptions {
    /// The defaults, polling every `poll`.
    pub fn polling(poll: Duration) -> Self {
        RunOptions {
            poll,
            ..RunOptions::default()
        }
    }

    /// The wait before retry number `failures` (1 for the first): the
    /// exponential delay with "equal jitter" (between half and all of it),
    /// so runners that failed together do not retry together.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .retry_min
            .saturating_mul(1u32.checked_shl(failures.saturating_sub(1).min(31)).unwrap_or(u32::MAX));
        let delay = doubled.min(self.retry_max).max(self.retry_min.min(self.retry_max));
        let half = delay / 2;
        let jitter = half.mul_f64((crate::util::random_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64);
        half + jitter
    }
}

/// What a runner is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Spawned, not yet working.
    Starting,
    /// Another runner owns the subscription; this one asks again every poll.
    Standby,
    /// Reading and applying pages.
    CatchingUp,
    /// At the end of the log, waiting for new events.
    Following,
    /// A failure happened; waiting before the next attempt.
    Retrying,
    /// Stopped by a failure that retrying cannot mend (see
    /// [`Status::last_error`]).
    Failed,
    /// Stopped on request.
    Stopped,
}

/// A runner's state, position, lag and last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// What it is doing.
    pub state: RunState,
    /// The position of the last event it applied or skipped.
    pub position: u64,
    /// How many events it is behind the end of the log, as last counted
    /// ([`EventStore::events_after`] when a catch-up starts, less what it
    /// has read since; 0 once it reached the end): events, not positions,
    /// which may leave gaps.
    pub lag: u64,
    /// Entries of the log it skipped because they were not events of the
    /// store ([`FOREIGN`]: a message another client published on a NATS
    /// store's subjects), since it was spawned.
    pub skipped: u64,
    /// Failures in a row (0 once a catch-up succeeds).
    pub failures: u32,
    /// The last failure, kept after recovering until the next one.
    pub last_error: Option<String>,
}

/// Waiting for a subscription ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{subscription}` did not reach position {position} in time (it is at {reached})")]
pub struct WaitTimeout {
    /// The subscription's name.
    pub subscription: String,
    /// The position waited for.
    pub position: u64,
    /// Where it was when the time ran out.
    pub reached: u64,
}

/// A subscription running in a background task: see [`spawn`].
#[derive(Debug)]
pub struct Runner {
    name: String,
    stop: watch::Sender<bool>,
    status: watch::Receiver<Status>,
    task: tokio::task::JoinHandle<()>,
}

impl Runner {
    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the runner is doing, where it is and its last error. A runner
    /// whose task ended without stopping is reported
    /// [`Failed`](RunState::Failed), never silently idle.
    pub fn status(&self) -> Status {
        let mut status = self.status.borrow().clone();
        if self.task.is_finished() && !matches!(status.state, RunState::Stopped | RunState::Failed) {
            status.state = RunState::Failed;
            status
                .last_error
                .get_or_insert_with(|| "the runner's task ended".to_owned());
        }
        status
    }

    /// Waits until the runner has applied (or skipped) `position`, for at
    /// most `timeout`: read-your-writes for a command's
    /// [`position`](crate::Committed::position).
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), WaitTimeout> {
        let mut watching = self.status.clone();
        let reached = tokio::time::timeout(timeout, watching.wait_for(|s| s.position >= position)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(WaitTimeout {
                subscription: self.name.clone(),
                position,
                reached: self.status.borrow().position,
            }),
        }
    }

    /// Asks the runner to stop after the page it is working on, and waits
    /// until it has (and given up ownership).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops the runner at once, wherever it is (as a crash would).
    pub fn abort(self) {
        self.task.abort();
    }
}

/// Runs `sink` over `store` in a background task until stopped: claims
/// ownership ([`Sink::acquire`]), catches up, then follows the log, woken
/// by the store's notifications or every `options.poll`. A failure (an
/// error or a panic) is logged, shown in the [`Status`], and retried after
/// a jittered backoff; losing ownership makes it stand by.
pub fn spawn<S, K>(store: S, sink: K, options: RunOptions) -> Runner
where
    S: EventStore + Clone,
    K: Sink + 'static,
{
    let name = sink.name().to_owned();
    let (stop, stopped) = watch::channel(false);
    let (report, status) = watch::channel(Status {
        state: RunState::Starting,
        position: 0,
        lag: 0,
        skipped: 0,
        failures: 0,
        last_error: None,
    });
    let task = tokio::spawn(supervise(store, sink, options, report, stopped));
    Runner {
        name,
        stop,
        status,
        task,
    }
}

async fn supervise<S: EventStore, K: Sink>(
    store: S,
    mut sink: K,
    options: RunOptions,
    report: watch::Sender<Status>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut woken = store.notifications();
    let set = |f: &dyn Fn(&mut Status)| report.send_modify(|s| f(s));
    // Whether a notification woke the runner: it was following, so the
    // next catch-up is short and need not ask the store for its head.
    let mut notified = false;
    loop {
        if *stopped.borrow() {
            break;
        }
        let count_lag = !std::mem::take(&mut notified);
        let wait = match catch_panic_async(sink.acquire()).await {
            Ok(Ok(true)) => {
                match catch_panic_async(follow_once(&store, &mut sink, &report, &stopped, count_lag)).await {
                    Ok(Ok(())) => Wait::Woken,
                    Ok(Err(SubscriptionError::Fenced { subscription, detail })) => {
                        tracing::warn!(subscription, detail, "lost ownership; standing by");
                        sink.release().await;
                        set(&|s| {
                            s.state = RunState::Standby;
                            s.last_error = Some(format!("lost ownership: {detail}"));
                        });
                        Wait::Poll
                    }
                    Ok(Err(error)) if !error.is_retryable() => {
                        tracing::error!(subscription = sink.name(), %error, "the subscription stopped");
                        let message = error.to_string();
                        set(&|s| {
                            s.state = RunState::Failed;
                            s.last_error = Some(message.clone());
                        });
                        break;
                    }
                    Ok(Err(error)) => failed(&sink, &report, &options, error.to_string()),
                    Err(message) => failed(&sink, &report, &options, format!("panicked: {message}")),
                }
            }
            Ok(Ok(false)) => {
                set(&|s| s.state = RunState::Standby);
                Wait::Poll
            }
            Ok(Err(error)) => failed(&sink, &report, &options, error.to_string()),
            Err(message) => failed(&sink, &report, &options, format!("panicked: {message}")),
        };
        if let Wait::Backoff(_) = wait {
            // What the failed catch-up did commit shows in the status.
            if let Ok(Ok(position)) = catch_panic_async(sink.checkpoint()).await {
                set(&|s| s.position = position);
            }
        }
        let pause = async {
            match wait {
                Wait::Woken => match &mut woken {
                    Some(rx) => match tokio::time::timeout(options.poll, rx.changed()).await {
                        Ok(Ok(())) => {
                            if !options.coalesce.is_zero() {
                                tokio::time::sleep(options.coalesce).await;
                            }
                            true
                        }
                        _ => false,
                    },
                    None => {
                        tokio::time::sleep(options.poll).await;
                        false
                    }
                },
                Wait::Poll => {
                    tokio::time::sleep(options.poll).await;
                    false
                }
                Wait::Backoff(delay) => {
                    tokio::time::sleep(delay).await;
                    false
                }
            }
        };
        tokio::select! {
            _ = stopped.changed() => break,
            woke = pause => notified = woke,
        }
    }
    sink.release().await;
    report.send_modify(|s| {
        if s.state != RunState::Failed {
            s.state = RunState::Stopped;
        }
    });
}

enum Wait {
    Woken,
    Poll,
    Backoff(Duration),
}

/// One catch-up of a runner that owns the subscription, reporting progress.
/// It counts the events ahead of it (for the status's lag) unless a
/// notification woke it from following: then the catch-up is short, and it
/// ends at the end of the log.
async fn follow_once<S: EventStore, K: Sink>(
    store: &S,
    sink: &mut K,
    report: &watch::Sender<Status>,
    stopped: &watch::Receiver<bool>,
    count_lag: bool,
) -> Result<(), SubscriptionError> {
    report.send_modify(|s| s.state = RunState::CatchingUp);
    let name = if crate::metrics::ENABLED {
        sink.name().to_owned()
    } else {
        String::new()
    };
    let mut progress = |step: Step| {
        report.send_modify(|s| {
            match step {
                Step::Lag(lag) => s.lag = lag,
                Step::Page {
                    position,
                    events,
                    skipped,
                } => {
                    s.position = position;
                    s.lag = s.lag.saturating_sub(events);
                    s.skipped += skipped;
                    crate::metrics::skipped(&name, skipped);
                }
            }
            crate::metrics::subscription(&name, s.position, s.lag);
        })
    };
    let (position, at_end) = run_pages(store, sink, count_lag, &mut progress, &|| *stopped.borrow()).await?;
    report.send_modify(|s| {
        s.state = RunState::Following;
        s.position = position;
        if at_end {
            s.lag = 0;
        }
        s.failures = 0;
        crate::metrics::subscription(&name, s.position, s.lag);
    });
    Ok(())
}

fn failed<K: Sink>(sink: &K, report: &watch::Sender<Status>, options: &RunOptions, error: String) -> Wait {
    let mut failures = 0;
    report.send_modify(|s| {
        s.failures = s.failures.saturating_add(1);
        failures = s.failures;
        s.state = RunState::Retrying;
        s.last_error = Some(error.clone());
    });
    let delay = options.backoff(failures);
    tracing::error!(subscription = sink.name(), %error, failures, retry_in = ?delay, "the subscription failed; retrying");
    Wait::Backoff(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter() {
        let options = RunOptions {
            poll: Duration::from_millis(10),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
            coalesce: Duration::ZERO,
        };
        for (failures, full) in [(1, 100), (2, 200), (3, 400), (5, 1600), (6, 2000), (40, 2000)] {
            for _ in 0..50 {
                let d = options.backoff(failures).as_millis() as u64;
                assert!(
                    d >= full / 2 && d <= full,
                    "failure {failures}: {d} ms not in {}..={full}",
                    full / 2
                );
            }
        }
    }

    #[tokio::test]
    async fn a_panic_in_a_future_becomes_its_message() {
        let ok = catch_panic_async(async { 7 }).await;
        assert_eq!(ok, Ok(7));
        let failed = catch_panic_async(async {
            tokio::task::yield_now().await;
            panic!("boom {}", 42);
        })
        .await;
        assert_eq!(failed, Err("boom 42".to_owned()));
    }
}
