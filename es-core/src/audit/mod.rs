//! An audit trail anyone can check: hash-chained streams, signed seals of
//! the log, verification, and inclusion proofs.
//!
//! - **Chains.** Every store gives each event a [`Link`]: the SHA-256 of
//!   its stored form (stream, version, name, schema version, event id,
//!   time, metadata and payload bytes as stored, ciphertext for personal
//!   fields) and the link of the event before it in its stream. Changing,
//!   removing or reordering an event breaks its stream's chain there.
//! - **Seals.** A [`Sealer`] folds the links, in log order, into the Merkle
//!   tree of RFC 9162 and appends a [`Seal`] every N events or T seconds:
//!   the tree's size and root, the previous seal's hash, signed with an
//!   Ed25519 [`SealKey`] the operator holds. A seal is an event of the
//!   stream [`seal_stream`], so every store keeps seals with no table of
//!   their own, and later seals cover earlier ones. Rewriting a stream's
//!   chain consistently (every link recomputed) still changes the root.
//! - **Verification.** [`verify`] reads the whole log once: every chain,
//!   every seal's root, signature and predecessor, and (given an exported
//!   head) that the log only grew since. It reports the first broken
//!   places by stream, version and position.
//! - **Proofs.** [`prove`] makes an [`InclusionProof`] of one event: its
//!   stored form, the audit path to a seal's root, and the seal; anyone
//!   checks it with [`check_proof`] and the public key alone.
//!
//! What this cannot show: that the newest events (after the last seal an
//! outsider kept) were not cut, or that a store was not rewritten whole by
//! someone who also holds the signing key. Export the head
//! ([`latest_seal`], `es audit head`) and keep copies where the database's
//! administrators cannot write: a verification against a kept head catches
//! both.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::store::{AppendOutcome, AppendRequest, ContextFields, EventStore, Link, NewEvent, RecordedEvent};
use crate::subscription::{self, Sink, SubscriptionError};
use crate::{EventId, ExpectedVersion, Timestamp};

mod merkle;
mod seal;
mod verify;

pub use merkle::{Frontier, MerkleLog, empty_root, leaf_hash, node_hash, root_of_frontier, verify_inclusion};
pub use seal::{AuditError, PublicKey, SEAL_EVENT, SEAL_STREAM_ID, SEAL_STREAM_TYPE, Seal, SealKey, seal_stream};
pub use verify::{InclusionProof, Problem, ProvenEvent, Report, VerifyOptions, check_proof, prove, verify};

/// The last seal of `store`, with its version in the seal stream (0 and
/// `None` when there is none).
pub async fn latest_seal<S: EventStore>(store: &S) -> Result<(u64, Option<Seal>), AuditError> {
    let mut last = None;
    let mut version = 0;
    let mut failure = None;
    store
        .read_stream(&seal_stream(), 1, ContextFields::VERSION, |e: &RecordedEvent<'_>| {
            version = e.version;
            match serde_json::from_slice::<Seal>(e.payload) {
                Ok(seal) => last = Some(seal),
                Err(error) => failure = Some(format!("the seal at version {} does not read: {error}", e.version)),
            }
            ControlFlow::Continue(())
        })
        .await?;
    match failure {
        Some(text) if version > 0 => Err(AuditError::Unreadable(text)),
        _ => Ok((version, last)),
    }
}

/// Where a sealer stands: the tree so far and the last seal.
struct SealerState {
    frontier: Frontier,
    /// The position of the last event folded (or skipped).
    position: u64,
    /// The position of the last leaf, the one a seal names.
    last_leaf: u64,
    last: Option<Seal>,
    seal_version: u64,
    /// Events folded since the last seal, seals aside.
    unsealed: u64,
    sealed: Instant,
}

/// Folds the log's links into its Merkle tree and appends signed seals.
///
/// A [`Sink`] of the subscription engine: [`run`](Sealer::run) follows the
/// log and seals every [`every_events`](Sealer::every_events) events (1,000
/// by default), or [`every`](Sealer::every) (10 s by default) after the
/// last seal when fewer came; [`seal_now`](Sealer::seal_now) catches up and
/// seals at once (what `es audit seal` runs, before exporting a head).
///
/// It keeps no checkpoint of its own: each seal records the tree's frontier
/// and the position it covers, and a sealer starts from the last seal.
/// Seals are appended at the seal stream's expected version, so of two
/// sealers racing, one seal lands and the other sealer starts again from
/// it: the seals form one chain.
#[derive(Debug)]
pub struct Sealer<S> {
    store: S,
    key: SealKey,
    every_events: u64,
    every: Duration,
    state: Option<SealerState>,
}

impl std::fmt::Debug for SealerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealerState")
            .field("size", &self.frontier.size())
            .field("position", &self.position)
            .field("unsealed", &self.unsealed)
            .finish_non_exhaustive()
    }
}

impl<S: EventStore + Clone> Sealer<S> {
    /// A sealer of `store`'s log, signing with `key`.
    pub fn new(store: S, key: SealKey) -> Self {
        Sealer {
            store,
            key,
            every_events: 1_000,
            every: Duration::from_secs(10),
            state: None,
        }
    }

    /// Seals once `n` events (seals aside) came since the last seal.
    #[must_use]
    pub fn every_events(mut self, n: u64) -> Self {
        self.every_events = n.max(1);
        self
    }

    /// Seals the events that came, if any, once `interval` passed since the
    /// last seal.
    #[must_use]
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval;
        self
    }

    async fn load(&mut self) -> Result<&mut SealerState, AuditError> {
        if self.state.is_none() {
            let (seal_version, last) = latest_seal(&self.store).await?;
            let (frontier, position) = match &last {
                None => (Frontier::new(), 0),
                Some(seal) => {
                    let frontier = Frontier::from_roots(seal.size, seal.frontier.clone()).ok_or_else(|| {
                        AuditError::Unreadable(format!(
                            "the last seal (of {} events) has a frontier of {} roots, which does not fit its size",
                            seal.size,
                            seal.frontier.len()
                        ))
                    })?;
                    if frontier.root() != seal.root {
                        return Err(AuditError::Unreadable(format!(
                            "the last seal (of {} events) has a frontier whose root is not its root",
                            seal.size
                        )));
                    }
                    (frontier, seal.position)
                }
            };
            self.state = Some(SealerState {
                frontier,
                position,
                last_leaf: position,
                last,
                seal_version,
                unsealed: 0,
                sealed: Instant::now(),
            });
        }
        Ok(self.state.as_mut().expect("just loaded"))
    }

    /// Appends a seal of the tree so far; `None` if another sealer's seal
    /// landed first (this one then starts again from it).
    async fn append_seal(&mut self) -> Result<Option<Seal>, AuditError> {
        let store = self.store.clone();
        let state = self.load().await?;
        let previous = state.last.as_ref().map_or(Link::GENESIS, Seal::hash);
        let (frontier, last_leaf, expected) = (
            state.frontier.clone(),
            state.last_leaf,
            match state.seal_version {
                0 => ExpectedVersion::NoStream,
                v => ExpectedVersion::Exact(v),
            },
        );
        let seal = self.key.seal(&frontier, last_leaf, previous);
        let payload = serde_json::to_vec(&seal).map_err(|e| AuditError::Unreadable(e.to_string()))?;
        let stream = seal_stream();
        let appended = store
            .append(AppendRequest {
                stream: &stream,
                expected,
                events: &[NewEvent {
                    event_id: EventId::new(),
                    name: SEAL_EVENT,
                    schema_version: 1,
                    payload: &payload,
                }],
                metadata: b"",
                command_id: None,
                recorded_at: Timestamp::now(),
            })
            .await;
        match appended {
            Ok(AppendOutcome::Appended(a)) => {
                let state = self.state.as_mut().expect("loaded");
                state.seal_version = a.last_version;
                state.unsealed = 0;
                state.sealed = Instant::now();
                state.last = Some(seal.clone());
                tracing::info!(size = seal.size, root = %seal.root, position = seal.position, "sealed the log");
                Ok(Some(seal))
            }
            Ok(AppendOutcome::Duplicate(_)) => Ok(None),
            Err(crate::AppendError::Conflict(_)) => {
                tracing::info!("another sealer sealed first; starting again from its seal");
                self.state = None;
                Ok(None)
            }
            Err(crate::AppendError::Store(e)) => {
                // The outcome is unknown: start again from what is stored.
                self.state = None;
                Err(e.into())
            }
        }
    }

    /// Catches up with the log and seals what came since the last seal (if
    /// anything besides seals did): the seal appended, or `None`.
    pub async fn seal_now(&mut self) -> Result<Option<Seal>, AuditError> {
        for _ in 0..100 {
            let store = self.store.clone();
            subscription::catch_up(&store, self).await?;
            if self.load().await?.unsealed == 0 {
                return Ok(None);
            }
            if let Some(seal) = self.append_seal().await? {
                return Ok(Some(seal));
            }
        }
        Err(AuditError::Unreadable(
            "other sealers kept sealing first; is more than one sealer running?".to_owned(),
        ))
    }

    /// Follows the log and seals until the task is dropped; a failure is
    /// logged and the sealer starts again from the last seal a second
    /// later.
    pub async fn run(mut self) {
        let mut notifications = self.store.notifications();
        loop {
            let store = self.store.clone();
            let round = async {
                subscription::catch_up(&store, &mut self).await?;
                let every = self.every;
                let state = self.load().await?;
                if state.unsealed > 0 && state.sealed.elapsed() >= every {
                    self.append_seal().await?;
                }
                Ok::<_, AuditError>(())
            }
            .await;
            if let Err(error) = round {
                tracing::warn!(%error, "the sealer failed; starting again from the last seal");
                self.state = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let wait = self.every.min(Duration::from_secs(1));
            match notifications.as_mut() {
                Some(n) => {
                    let _ = tokio::time::timeout(wait, n.changed()).await;
                }
                None => tokio::time::sleep(wait).await,
            }
        }
    }
}

/// The sealer's name as a subscription.
const SEALER: &str = "es.audit.sealer";

/// A sealer's failure as the engine reports it: the store's error as is,
/// anything else (a seal that does not read) as the sealer's, at `position`.
fn engine_error(error: AuditError, position: u64) -> SubscriptionError {
    match error {
        AuditError::Store(e) => e.into(),
        e => SubscriptionError::Handler {
            subscription: SEALER.to_owned(),
            event_name: SEAL_EVENT.to_owned(),
            position,
            source: e.to_string().into(),
        },
    }
}

impl<S: EventStore + Clone> Sink for Sealer<S> {
    fn name(&self) -> &str {
        SEALER
    }

    async fn checkpoint(&mut self) -> Result<u64, SubscriptionError> {
        match self.load().await {
            Ok(state) => Ok(state.position),
            Err(e) => Err(engine_error(e, 0)),
        }
    }

    fn handles(&self, _name: &str) -> bool {
        true
    }

    fn fields(&self) -> ContextFields {
        ContextFields::LINK
    }

    fn visit(&mut self, event: &RecordedEvent<'_>) -> Result<(), SubscriptionError> {
        let state = self.state.as_mut().expect("the checkpoint loads the state");
        state.frontier.push(&event.link);
        state.last_leaf = event.position;
        if event.name != SEAL_EVENT {
            state.unsealed += 1;
        }
        Ok(())
    }

    async fn commit(&mut self, _from: u64, to: u64) -> Result<(), SubscriptionError> {
        let state = self.state.as_mut().expect("the checkpoint loads the state");
        state.position = to;
        if state.unsealed >= self.every_events {
            match self.append_seal().await {
                Ok(Some(_)) => {}
                // Another sealer's seal: start again from it.
                Ok(None) => {
                    return Err(SubscriptionError::Moved {
                        subscription: SEALER.to_owned(),
                    });
                }
                Err(e) => return Err(engine_error(e, to)),
            }
        }
        Ok(())
    }

    fn abandon(&mut self) {
        // What the page folded is in the frontier: start again from the
        // last seal.
        self.state = None;
    }
}
