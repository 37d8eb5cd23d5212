//! Reading aggregates: from the cache, a snapshot and the events after it,
//! at a version or a time; snapshots taken after commits; earlier outcomes
//! of a command id read back.

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::aggregate::{Aggregate, IntoId};
use crate::cache::Slot;
use crate::codec::Codec;
use crate::envelope::{Envelope, Metadata, StreamId, Timestamp};
use crate::error::{DecodeError, DispatchError, StoreError};
use crate::event::Event;
use crate::personal::seal::{At, Scope};
use crate::store::{CommandRecord, ContextFields, EventStore, RecordedEvent, Snapshot};

use super::{Committed, Dispatcher, LoadError, Versioned};

impl<S: EventStore, C: Codec> Dispatcher<S, C> {
    /// The current state of aggregate `A` with id `id` (the default state if
    /// it has no events). Reads whatever the store has beyond the cache.
    /// [`load_versioned`](Self::load_versioned) also tells its version.
    pub async fn load<A: Aggregate + Clone>(&self, id: impl IntoId<A::Id>) -> Result<A, LoadError> {
        Ok(self.load_versioned(id).await?.state)
    }

    /// The current state of aggregate `A` and the stream version it
    /// reflects (0 if it has no events), read together.
    pub async fn load_versioned<A: Aggregate + Clone>(
        &self,
        id: impl IntoId<A::Id>,
    ) -> Result<Versioned<A>, LoadError> {
        let id = id.into_id();
        let stream = StreamId::of::<A>(&id);
        let mut slot = self.slot::<A>(&id).await;
        self.refresh(&stream, &mut slot, &tracing::Span::current()).await?;
        Ok(Versioned {
            state: slot.state.clone(),
            version: slot.version,
        })
    }

    /// The state of aggregate `A` as of stream version `version`: after its
    /// first `version` events, or all of them if it has fewer (the version
    /// returned says which).
    pub async fn load_at_version<A: Aggregate>(
        &self,
        id: impl IntoId<A::Id>,
        version: u64,
    ) -> Result<Versioned<A>, LoadError> {
        self.replay::<A>(&id.into_id(), |e| e.version <= version).await
    }

    /// The state of aggregate `A` as of time `at`: every event recorded at or
    /// before `at`, and the version that makes.
    pub async fn load_as_of<A: Aggregate>(
        &self,
        id: impl IntoId<A::Id>,
        at: Timestamp,
    ) -> Result<Versioned<A>, LoadError> {
        self.replay::<A>(&id.into_id(), |e| e.recorded_at <= at).await
    }

    pub(super) async fn replay<A: Aggregate>(
        &self,
        id: &A::Id,
        keep: impl Fn(&RecordedEvent<'_>) -> bool + Send + Sync,
    ) -> Result<Versioned<A>, LoadError> {
        let stream = StreamId::of::<A>(id);
        crate::store::validate_stream(S::NAME, &stream)?;
        let mut slot = Slot::<A>::empty(id.clone());
        self.read_into(&stream, &mut slot, false, keep).await?;
        Ok(Versioned {
            state: slot.state,
            version: slot.version,
        })
    }

    /// Brings `slot` up to date: a full load if it is not fresh (snapshot,
    /// then events), otherwise only the events after its version.
    ///
    /// Runs in an `es.load` span (level DEBUG): `es.aggregate.type`,
    /// `es.aggregate.id`, `es.cached` (whether it only read the tail after a
    /// cached state), `es.snapshot` (whether a snapshot was used),
    /// `es.version` (the version it reached).
    pub(super) async fn refresh<A: Aggregate>(
        &self,
        stream: &StreamId,
        slot: &mut Slot<A>,
        parent: &tracing::Span,
    ) -> Result<(), LoadError> {
        let span = if !tracing::dispatcher::has_been_set() {
            tracing::Span::none()
        } else {
            tracing::debug_span!(
                parent: parent,
                "es.load",
                es.aggregate.type = A::NAME,
                es.aggregate.id = stream.aggregate_id(),
                es.cached = slot.fresh,
                es.snapshot = tracing::field::Empty,
                es.version = tracing::field::Empty,
            )
        };
        let clock = crate::metrics::Clock::start();
        let loaded = self.refresh_untraced(stream, slot, &span).await;
        crate::metrics::load(A::NAME, &clock);
        if !span.is_disabled() {
            span.record("es.version", slot.version);
        }
        loaded
    }

    pub(super) async fn refresh_untraced<A: Aggregate>(
        &self,
        stream: &StreamId,
        slot: &mut Slot<A>,
        span: &tracing::Span,
    ) -> Result<(), LoadError> {
        if !slot.fresh {
            crate::store::validate_stream(S::NAME, stream)?;
            slot.reset();
            let restored =
                A::SNAPSHOT_EVERY > 0 && !self.inner.verify_chains && self.restore_snapshot(stream, slot).await?;
            if !span.is_disabled() {
                span.record("es.snapshot", restored);
            }
            if restored {
                // A snapshot is only good if its version is in the stream (a
                // snapshot ahead of it would make every append conflict):
                // the tail read starts at that version to see it.
                if self.read_into(stream, slot, true, |_| true).await? {
                    slot.fresh = true;
                    return Ok(());
                }
                tracing::warn!(%stream, version = slot.version, "ignoring a snapshot ahead of its stream; replaying events");
                slot.reset();
            }
        }
        self.read_into(stream, slot, false, |_| true).await?;
        slot.fresh = true;
        Ok(())
    }

    /// Restores the stream's snapshot into `slot`, if it has a usable one.
    pub(super) async fn restore_snapshot<A: Aggregate>(
        &self,
        stream: &StreamId,
        slot: &mut Slot<A>,
    ) -> Result<bool, LoadError> {
        let Some(snapshot) = self.inner.store.load_snapshot(stream).await? else {
            return Ok(false);
        };
        if snapshot.schema_version != A::SNAPSHOT_VERSION {
            return Ok(false);
        }
        let fingerprint = A::snapshot_fingerprint();
        if fingerprint == crate::aggregate::UNTRACED_SHAPE {
            return Ok(false);
        }
        if fingerprint != 0 && snapshot.fingerprint != fingerprint {
            tracing::warn!(
                %stream,
                version = snapshot.version,
                stored = snapshot.fingerprint,
                current = fingerprint,
                "ignoring a snapshot of another state shape; replaying events"
            );
            return Ok(false);
        }
        let decoded = match self.personal_scope::<A>(false)? {
            None => A::decode_snapshot(&self.inner.codec, &snapshot.payload),
            Some(mut scope) => {
                let decoded = scope
                    .retry_on_snapshot(stream, snapshot.version, || {
                        A::decode_snapshot(&self.inner.codec, &snapshot.payload)
                    })
                    .await?;
                if scope.forgotten {
                    // It holds a value whose subject was forgotten: what the
                    // state made of it is rebuilt from the events.
                    tracing::debug!(%stream, version = snapshot.version, "ignoring a snapshot with forgotten personal data; replaying events");
                    return Ok(false);
                }
                decoded
            }
        };
        match decoded {
            Some(Ok(state)) => {
                slot.state = state;
                slot.version = snapshot.version;
                Ok(true)
            }
            Some(Err(error)) => {
                tracing::warn!(%stream, version = snapshot.version, %error, "ignoring a snapshot that does not decode; replaying events");
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// Applies the stream's events after `slot.version` while `keep` holds.
    /// With `confirm`, the read starts at `slot.version` itself, which must
    /// be there; returns whether it was (always true without `confirm`).
    pub(super) async fn read_into<A: Aggregate>(
        &self,
        stream: &StreamId,
        slot: &mut Slot<A>,
        confirm: bool,
        keep: impl Fn(&RecordedEvent<'_>) -> bool + Send + Sync,
    ) -> Result<bool, LoadError> {
        let Some(mut scope) = self.personal_scope::<A>(false)? else {
            return self.read_once(stream, slot, confirm, &keep, None).await;
        };
        // Personal values open with keys from the keyring's cache; a key
        // not there yet stops the read at its event, is fetched, and the
        // read goes on from there.
        let mut confirm = confirm;
        let mut stalled = 0;
        loop {
            let before = slot.version;
            let read = self.read_once(stream, slot, confirm, &keep, Some(&mut scope)).await;
            if read.is_err() && !scope.missing.is_empty() {
                stalled = if slot.version == before { stalled + 1 } else { 0 };
                if stalled < 3 {
                    scope.fetch_missing(false).await?;
                    // The confirmed event was passed before any decoding.
                    confirm = false;
                    continue;
                }
            }
            return read;
        }
    }

    async fn read_once<A: Aggregate>(
        &self,
        stream: &StreamId,
        slot: &mut Slot<A>,
        confirm: bool,
        keep: &(impl Fn(&RecordedEvent<'_>) -> bool + Send + Sync),
        mut scope: Option<&mut Scope>,
    ) -> Result<bool, LoadError> {
        let codec = &self.inner.codec;
        let verify = self.inner.verify_chains;
        let fields = if verify {
            ContextFields::ALL
        } else if scope.is_some() {
            ContextFields::LOAD.union(ContextFields::EVENT_ID)
        } else {
            ContextFields::LOAD
        };
        let mut failure: Option<LoadError> = None;
        let from = if confirm { slot.version } else { slot.version + 1 };
        let mut unconfirmed = confirm;
        let Slot {
            state, version, link, ..
        } = slot;
        let visit = |e: &RecordedEvent<'_>| {
            if unconfirmed {
                unconfirmed = e.version != *version || (verify && e.link != *link);
                return if unconfirmed {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                };
            }
            if !keep(e) {
                return ControlFlow::Break(());
            }
            if e.version != *version + 1 {
                failure = Some(LoadError::Store(StoreError::Corrupt {
                    store: S::NAME,
                    detail: format!(
                        "stream `{stream}` returned version {} after version {}",
                        e.version, *version
                    ),
                }));
                return ControlFlow::Break(());
            }
            if verify && e.compute_link(link) != e.link {
                failure = Some(LoadError::Store(StoreError::Corrupt {
                    store: S::NAME,
                    detail: format!(
                        "version {} of stream `{stream}` (position {}) does not match its link in the stream's hash \
                         chain: it was changed after it was written; `es audit verify` lists every such place",
                        e.version, e.position
                    ),
                }));
                return ControlFlow::Break(());
            }
            let applied = match scope.as_deref_mut() {
                None => state.apply_stored(codec, e.name, e.schema_version, e.payload),
                Some(scope) => {
                    scope.place(stream.aggregate_type(), stream.aggregate_id(), At::Event(e.event_id));
                    scope.run(|| state.apply_stored(codec, e.name, e.schema_version, e.payload))
                }
            };
            match applied {
                Ok(()) => {
                    *version = e.version;
                    *link = e.link;
                    ControlFlow::Continue(())
                }
                Err(source) => {
                    failure = Some(LoadError::from(DecodeError {
                        stream: stream.clone(),
                        stream_version: e.version,
                        event_name: e.name.to_owned(),
                        schema_version: e.schema_version,
                        source,
                    }));
                    ControlFlow::Break(())
                }
            }
        };
        self.inner.store.read_stream(stream, from, fields, visit).await?;
        match failure {
            Some(e) => {
                slot.fresh = false;
                Err(e)
            }
            None => Ok(!unconfirmed),
        }
    }

    /// Saves a snapshot of `slot`'s state (a failure is only logged: the
    /// events are stored).
    pub(super) async fn save_snapshot<A: Aggregate>(&self, stream: &StreamId, slot: &Slot<A>) {
        if A::snapshot_fingerprint() == crate::aggregate::UNTRACED_SHAPE {
            return;
        }
        let encoded = match self.personal_scope::<A>(true) {
            Ok(None) => slot.state.encode_snapshot(&self.inner.codec),
            Ok(Some(mut scope)) => {
                let sealed = scope
                    .retry_on_snapshot(stream, slot.version, || slot.state.encode_snapshot(&self.inner.codec))
                    .await;
                match sealed {
                    Ok(encoded) => encoded,
                    Err(error) => {
                        tracing::warn!(%stream, %error, "could not seal a snapshot");
                        return;
                    }
                }
            }
            Err(error) => Some(Err(crate::CodecError::encode::<A>("personal", error))),
        };
        match encoded {
            Some(Ok(payload)) => {
                let snapshot = Snapshot {
                    version: slot.version,
                    schema_version: A::SNAPSHOT_VERSION,
                    fingerprint: A::snapshot_fingerprint(),
                    payload,
                };
                if let Err(error) = self.inner.store.save_snapshot(stream, snapshot).await {
                    tracing::warn!(%stream, %error, "could not save a snapshot");
                }
            }
            Some(Err(error)) => tracing::warn!(%stream, %error, "could not encode a snapshot"),
            None => {}
        }
    }

    /// What an earlier command with the same id committed, read back; an
    /// error if that command was not a `command` (the id was reused).
    pub(super) async fn earlier_outcome<A: Aggregate>(
        &self,
        record: CommandRecord,
        metadata: Metadata,
        command: &'static str,
    ) -> Result<Committed<A>, DispatchError<A::Error>> {
        let command_id = record.command_id.clone();
        let fingerprint = metadata.command_fingerprint.clone();
        let committed = self.read_back::<A>(record, metadata).await?;
        // The command that used the id first, as the dispatcher recorded it.
        // Batches stored without the name or the fingerprint (before they
        // were recorded, appended straight to the store, or of a command
        // without a fingerprint) are taken as the same command.
        let first = committed.events().next().map(|e| e.metadata);
        let earlier_name = first.as_ref().and_then(|m| m.command_name.as_deref());
        let earlier_fingerprint = first.as_ref().and_then(|m| m.command_fingerprint.as_deref());
        let other_name = earlier_name.is_some_and(|earlier| earlier != command);
        let other_content = matches!((earlier_fingerprint, fingerprint.as_deref()), (Some(a), Some(b)) if a != b);
        if other_name || other_content {
            return Err(DispatchError::CommandIdReused {
                command,
                earlier: earlier_name.unwrap_or(command).to_owned(),
                stream: committed.stream,
                command_id,
            });
        }
        Ok(committed)
    }

    /// The events a command id's record names, read back.
    async fn read_back<A: Aggregate>(
        &self,
        record: CommandRecord,
        metadata: Metadata,
    ) -> Result<Committed<A>, LoadError> {
        let mut scope = self.personal_scope::<A>(false)?;
        let metadata = Arc::new(metadata);
        let mut runs = 0;
        loop {
            let read = self.read_back_once::<A>(&record, &metadata, scope.as_mut()).await;
            let Some(scope) = scope.as_mut() else {
                return read;
            };
            if !scope.again(read.is_err(), false, &mut runs, 3).await? {
                return read;
            }
        }
    }

    async fn read_back_once<A: Aggregate>(
        &self,
        record: &CommandRecord,
        metadata: &Arc<Metadata>,
        mut scope: Option<&mut Scope>,
    ) -> Result<Committed<A>, LoadError> {
        let codec = &self.inner.codec;
        let mut events = Vec::new();
        let mut failure = None;
        let stream = record.stream.clone();
        let visit = |e: &RecordedEvent<'_>| {
            if e.version > record.last_version {
                return ControlFlow::Break(());
            }
            let stored = Metadata::decode(e.metadata)
                .map(Arc::new)
                .unwrap_or_else(|_| metadata.clone());
            let mut decode = || {
                A::Event::decode_each(codec, e.name, e.schema_version, e.payload, |payload| {
                    events.push(Envelope {
                        event_id: e.event_id,
                        stream: stream.clone(),
                        version: e.version,
                        position: e.position,
                        recorded_at: e.recorded_at,
                        metadata: stored.clone(),
                        payload,
                    })
                })
            };
            let decoded = match scope.as_deref_mut() {
                None => decode(),
                Some(scope) => {
                    scope.place(e.aggregate_type, e.aggregate_id, At::Event(e.event_id));
                    scope.run(decode)
                }
            };
            match decoded {
                Ok(()) => ControlFlow::Continue(()),
                Err(source) => {
                    failure = Some(crate::error::decode_error(e, source));
                    ControlFlow::Break(())
                }
            }
        };
        self.inner
            .store
            .read_stream(&record.stream, record.first_version, ContextFields::ALL, visit)
            .await?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok(Committed::read_back(record.stream.clone(), record.last_version, events))
    }
}
