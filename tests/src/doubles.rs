//! Test doubles: a store wrapped once ([`Watched`]), and what each double
//! watches or breaks as a [`Hooks`] of a few lines. A double implements
//! only the hooks it needs; the wrapper forwards every method of the
//! storage contract, so a new method is forwarded in one place.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use es_core::store::{AppendOutcome, AppendRequest, CommandRecord, ContextFields, RecordedEvent, Snapshot};
use es_core::{AppendError, EventStore, StoreError, StreamId};

/// One call of the storage contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `append`.
    Append,
    /// `read_stream`.
    ReadStream,
    /// `read_all`.
    ReadAll,
    /// `stream_version`.
    StreamVersion,
    /// `last_position`.
    LastPosition,
    /// `events_after`.
    EventsAfter,
    /// `find_command`.
    FindCommand,
    /// `load_snapshot`.
    LoadSnapshot,
    /// `save_snapshot`.
    SaveSnapshot,
    /// `load_checkpoint`.
    LoadCheckpoint,
    /// `save_checkpoint`.
    SaveCheckpoint,
}

impl Op {
    /// Whether the call writes.
    pub fn writes(self) -> bool {
        matches!(self, Op::Append | Op::SaveSnapshot | Op::SaveCheckpoint)
    }

    /// What the call does, for errors.
    pub fn describe(self) -> &'static str {
        match self {
            Op::Append => "append",
            Op::ReadStream => "read a stream",
            Op::ReadAll => "read the log",
            Op::StreamVersion => "read a stream version",
            Op::LastPosition => "read the last position",
            Op::EventsAfter => "count events",
            Op::FindCommand => "find a command",
            Op::LoadSnapshot => "load a snapshot",
            Op::SaveSnapshot => "save a snapshot",
            Op::LoadCheckpoint => "load a checkpoint",
            Op::SaveCheckpoint => "save a checkpoint",
        }
    }
}

/// What a double does around the wrapped store. Every hook has a default
/// that changes nothing.
pub trait Hooks<S: EventStore>: Send + Sync + 'static {
    /// Before every call; an error fails it without reaching the store.
    fn before(&self, op: Op) -> Result<(), StoreError> {
        let _ = op;
        Ok(())
    }

    /// Before an append reaches the store, after [`before`](Hooks::before):
    /// may wait, or write to `inner` itself.
    fn before_append(
        &self,
        inner: &S,
        request: &AppendRequest<'_>,
    ) -> impl Future<Output = Result<(), AppendError>> + Send {
        let _ = (inner, request);
        async { Ok(()) }
    }

    /// Whether a read (of a stream, or of the log) hands `event` on.
    fn keep(&self, op: Op, event: &RecordedEvent<'_>) -> bool {
        let _ = (op, event);
        true
    }
}

/// `inner` with `hooks` around each call; clones share the hooks.
pub struct Watched<S, H> {
    inner: S,
    hooks: Arc<H>,
}

impl<S: Clone, H> Clone for Watched<S, H> {
    fn clone(&self) -> Self {
        Watched {
            inner: self.inner.clone(),
            hooks: Arc::clone(&self.hooks),
        }
    }
}

impl<S, H> Watched<S, H> {
    /// Wraps `inner`.
    pub fn wrap(inner: S, hooks: H) -> Self {
        Watched {
            inner,
            hooks: Arc::new(hooks),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The hooks.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }
}

impl<S: EventStore, H: Hooks<S>> Watched<S, H> {
    /// `visit`, handed only the events the hooks keep from a read.
    fn kept<'a>(
        &'a self,
        op: Op,
        mut visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send + 'a,
    ) -> impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send + 'a {
        move |e: &RecordedEvent<'_>| {
            if self.hooks.keep(op, e) {
                visit(e)
            } else {
                ControlFlow::Continue(())
            }
        }
    }
}

impl<S: EventStore, H: Hooks<S>> EventStore for Watched<S, H> {
    const NAME: &'static str = S::NAME;

    fn keyring(&self) -> Option<&Arc<es_core::personal::Keyring>> {
        self.inner.keyring()
    }

    async fn append(&self, request: AppendRequest<'_>) -> Result<AppendOutcome, AppendError> {
        self.hooks.before(Op::Append)?;
        self.hooks.before_append(&self.inner, &request).await?;
        self.inner.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        fields: ContextFields,
        visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        self.hooks.before(Op::ReadStream)?;
        let kept = self.kept(Op::ReadStream, visit);
        self.inner.read_stream(stream, from_version, fields, kept).await
    }

    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        fields: ContextFields,
        visit: impl FnMut(&RecordedEvent<'_>) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        self.hooks.before(Op::ReadAll)?;
        let kept = self.kept(Op::ReadAll, visit);
        self.inner.read_all(after, limit, fields, kept).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.hooks.before(Op::StreamVersion)?;
        self.inner.stream_version(stream).await
    }

    async fn last_position(&self) -> Result<u64, StoreError> {
        self.hooks.before(Op::LastPosition)?;
        self.inner.last_position().await
    }

    async fn events_after(&self, position: u64) -> Result<u64, StoreError> {
        self.hooks.before(Op::EventsAfter)?;
        self.inner.events_after(position).await
    }

    async fn find_command(&self, stream: &StreamId, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        self.hooks.before(Op::FindCommand)?;
        self.inner.find_command(stream, command_id).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.hooks.before(Op::LoadSnapshot)?;
        self.inner.load_snapshot(stream).await
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), StoreError> {
        self.hooks.before(Op::SaveSnapshot)?;
        self.inner.save_snapshot(stream, snapshot).await
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.hooks.before(Op::LoadCheckpoint)?;
        self.inner.load_checkpoint(name).await
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError> {
        self.hooks.before(Op::SaveCheckpoint)?;
        self.inner.save_checkpoint(name, position).await
    }

    fn notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.notifications()
    }
}

/// Counts stream reads and the events they visit, to check what the
/// dispatcher reads, and reads of the global log, to check what runners
/// read.
#[derive(Default)]
pub struct Counting {
    stream_reads: AtomicU64,
    events_read: AtomicU64,
    log_reads: AtomicU64,
}

impl<S: EventStore> Hooks<S> for Counting {
    fn before(&self, op: Op) -> Result<(), StoreError> {
        match op {
            Op::ReadStream => self.stream_reads.fetch_add(1, Ordering::Relaxed),
            Op::ReadAll => self.log_reads.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        Ok(())
    }

    fn keep(&self, op: Op, _: &RecordedEvent<'_>) -> bool {
        if op == Op::ReadStream {
            self.events_read.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

/// A store that counts what is read from it: see [`Counting`].
pub type CountingStore<S> = Watched<S, Counting>;

impl<S: EventStore> Watched<S, Counting> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Watched::wrap(inner, Counting::default())
    }

    /// How many times a stream was read.
    pub fn stream_reads(&self) -> u64 {
        self.hooks.stream_reads.load(Ordering::Relaxed)
    }

    /// How many reads of the global log there were.
    pub fn log_reads(&self) -> u64 {
        self.hooks.log_reads.load(Ordering::Relaxed)
    }

    /// How many events stream reads visited.
    pub fn events_read(&self) -> u64 {
        self.hooks.events_read.load(Ordering::Relaxed)
    }
}

/// While switched off, fails every call as a store that cannot be reached
/// would: an outage to inject. While contended, another writer gets to
/// every stream just before each append that expects a version: a conflict
/// that no retry outlasts. Appends can be slowed down, and a version left
/// out of stream reads.
#[derive(Default)]
pub struct Switch {
    down: AtomicBool,
    contended: AtomicBool,
    append_delay_ms: AtomicU64,
    /// A stream version reads leave out (0: none): a store that lost an
    /// event.
    lost_version: AtomicU64,
}

impl<S: EventStore> Hooks<S> for Switch {
    fn before(&self, op: Op) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                store: S::NAME,
                operation: op.describe(),
                source: "connection refused (injected outage)".into(),
            });
        }
        Ok(())
    }

    async fn before_append(&self, inner: &S, request: &AppendRequest<'_>) -> Result<(), AppendError> {
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
            inner
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
        Ok(())
    }

    fn keep(&self, op: Op, event: &RecordedEvent<'_>) -> bool {
        op != Op::ReadStream || event.version != self.lost_version.load(Ordering::SeqCst)
    }
}

/// A store with an outage, contention, slow appends and a lost version to
/// switch on: see [`Switch`].
pub type SwitchableStore<S> = Watched<S, Switch>;

impl<S: EventStore> Watched<S, Switch> {
    /// Wraps `inner`, switched on.
    pub fn new(inner: S) -> Self {
        Watched::wrap(inner, Switch::default())
    }

    /// Makes loads of every stream leave out the event at `version` (0:
    /// none), as a corrupt store would.
    pub fn set_lost_version(&self, version: u64) {
        self.hooks.lost_version.store(version, Ordering::SeqCst);
    }

    /// Makes every append wait `delay` first: a slow commit, in flight.
    pub fn set_append_delay(&self, delay: std::time::Duration) {
        self.hooks
            .append_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Starts or ends the contention.
    pub fn set_contended(&self, contended: bool) {
        self.hooks.contended.store(contended, Ordering::SeqCst);
    }

    /// Starts or ends the outage.
    pub fn set_down(&self, down: bool) {
        self.hooks.down.store(down, Ordering::SeqCst);
    }
}

/// Fails every write after the first `allowed`, as if the process died
/// there; reads keep working.
pub struct Crash {
    writes: AtomicU64,
    allowed: u64,
}

impl<S: EventStore> Hooks<S> for Crash {
    fn before(&self, op: Op) -> Result<(), StoreError> {
        if op.writes() && self.writes.fetch_add(1, Ordering::SeqCst) >= self.allowed {
            return Err(StoreError::Unavailable {
                store: "crashing",
                operation: "write",
                source: "the process died here".into(),
            });
        }
        Ok(())
    }
}

/// A store whose process dies after a number of writes: see [`Crash`].
pub type CrashingStore<S> = Watched<S, Crash>;

impl<S: EventStore> Watched<S, Crash> {
    /// `inner`, dying after `allowed` writes.
    pub fn new(inner: S, allowed: u64) -> Self {
        Watched::wrap(
            inner,
            Crash {
                writes: AtomicU64::new(0),
                allowed,
            },
        )
    }

    /// Whether it died.
    pub fn crashed(&self) -> bool {
        self.hooks.writes.load(Ordering::SeqCst) > self.hooks.allowed
    }
}
