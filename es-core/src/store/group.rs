//! Group commit for stores: writers hand their appends to the store's
//! committers, each of which writes every append waiting for it in one
//! transaction.
//!
//! A store keeps a [`GroupCommit`]; its `append` calls
//! [`GroupCommit::append`], which queues the request (owned) and waits for
//! its outcome, starting the store's committers on the caller's runtime when
//! none runs. A committer loops over [`Batches::next`] and answers each
//! [`Pending`] of a batch with its own outcome, so a conflict fails only its
//! command.
//!
//! A batch is everything queued since the committer's last one, one append
//! per stream (a second append to a stream waits for the next batch, so each
//! append in a batch can be checked against the stream's head as it was
//! before the batch), within [`BatchLimits`]. No append waits for a timer:
//! a lone writer's append goes at once, and while a batch commits the next
//! one fills. Before it takes the next batch, a committer lets the writers
//! it just answered run, so that their next appends join it.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

use super::records::{AppendOutcome, AppendRequest, OwnedAppend};
use crate::error::{AppendError, StoreError};

/// An append waiting for its committer: the request, owned, and where its
/// outcome goes.
#[derive(Debug)]
pub struct Pending {
    /// The request.
    pub append: OwnedAppend,
    done: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    _in_flight: InFlight,
}

/// One append counted in [`GroupCommit::alone`] while it lives.
#[derive(Debug)]
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pending {
    /// Tells the writer its append's outcome (a writer that stopped waiting
    /// is not told).
    pub fn answer(self, outcome: Result<AppendOutcome, AppendError>) {
        let _ = self.done.send(outcome);
    }
}

/// Answers every append of `batch` with the failure `e` (of the batch's
/// transaction as a whole), each with its own copy: the engine's message
/// stands for its source.
pub fn fail_all(batch: impl IntoIterator<Item = Pending>, e: &StoreError) {
    for pending in batch {
        pending.answer(Err(copy(e).into()));
    }
}

/// The same failure, once more.
fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::Backend {
            store,
            operation,
            source,
        } => StoreError::Backend {
            store,
            operation,
            source: source.to_string().into(),
        },
        StoreError::Unavailable {
            store,
            operation,
            source,
        } => StoreError::Unavailable {
            store,
            operation,
            source: source.to_string().into(),
        },
        StoreError::Corrupt { store, detail } => StoreError::Corrupt {
            store,
            detail: detail.clone(),
        },
        StoreError::Invalid { store, detail } => StoreError::Invalid {
            store,
            detail: detail.clone(),
        },
        StoreError::Keys { store, detail } => StoreError::Keys {
            store,
            detail: detail.clone(),
        },
        StoreError::DuplicateEventId { store, event_id } => StoreError::DuplicateEventId {
            store,
            event_id: *event_id,
        },
    }
}

/// The most a batch carries.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Appends (requests) in a batch.
    pub requests: usize,
    /// Events in a batch; a larger request still goes, alone.
    pub events: usize,
}

/// Where a store's appends wait for its committers. `Default` is empty;
/// the committers start with the first append.
#[derive(Debug, Default)]
pub struct GroupCommit {
    queue: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
    /// Appends queued or being committed, and appends running alone.
    in_flight: Arc<AtomicUsize>,
}

/// An append running alone, outside the committers, counted in
/// [`GroupCommit::alone`] until dropped.
#[derive(Debug)]
pub struct Alone(#[allow(dead_code)] InFlight);

/// What one committer takes its batches from.
#[derive(Debug)]
pub struct Batches {
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>,
    /// Taken from the queue but left for a later batch.
    held: Vec<Pending>,
    limits: BatchLimits,
    answered: bool,
}

impl GroupCommit {
    /// Claims the store for a lone append when no other append is queued,
    /// being committed or running alone: a store whose appends block (one
    /// writer connection) can then run it on the caller's thread, without
    /// the hand-over to its committer. `None` when another append is in
    /// flight: queue it with [`append`](Self::append).
    pub fn alone(&self) -> Option<Alone> {
        self.in_flight
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Alone(InFlight(self.in_flight.clone())))
    }

    /// Queues `request` for a committer and waits for its outcome. When no
    /// committer runs (the first append, or the runtime that ran them shut
    /// down), `committers` new ones are spawned on the current runtime, each
    /// running `start(batches)`. The `store` names the store in errors.
    pub async fn append<F, Fut>(
        &self,
        store: &'static str,
        request: &AppendRequest<'_>,
        committers: usize,
        limits: BatchLimits,
        start: F,
    ) -> Result<AppendOutcome, AppendError>
    where
        F: Fn(Batches) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (done, outcome) = oneshot::channel();
        self.enqueue(
            store,
            Pending {
                append: OwnedAppend::new(request),
                done,
                _in_flight: InFlight::new(&self.in_flight),
            },
            committers,
            limits,
            start,
        )?;
        outcome.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable {
                store,
                operation: "append in a batch",
                source: "the committer stopped before the append ran (its runtime shut down)".into(),
            }
            .into())
        })
    }

    fn enqueue<F, Fut>(
        &self,
        store: &'static str,
        pending: Pending,
        committers: usize,
        limits: BatchLimits,
        start: F,
    ) -> Result<(), StoreError>
    where
        F: Fn(Batches) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let pending = match queue.as_ref() {
            Some(sender) => match sender.send(pending) {
                Ok(()) => return Ok(()),
                // Its committers are gone with their runtime.
                Err(mpsc::error::SendError(pending)) => pending,
            },
            None => pending,
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StoreError::Unavailable {
            store,
            operation: "append",
            source: "no tokio runtime to run the store's committer on".into(),
        })?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..committers.max(1) {
            runtime.spawn(start(Batches {
                queue: receiver.clone(),
                held: Vec::new(),
                limits,
                answered: false,
            }));
        }
        // The committers hold the receiver: this cannot fail.
        let _ = sender.send(pending);
        *queue = Some(sender);
        Ok(())
    }
}

impl Batches {
    /// The next batch, in arrival order: waits for an append, then takes
    /// every other one queued by then (one per stream, within the limits).
    /// `None` once the store's [`GroupCommit`] is dropped and nothing waits.
    pub async fn next(&mut self) -> Option<Vec<Pending>> {
        if self.answered {
            // The writers just answered run first, so that their next
            // appends join this batch: otherwise the first one back goes
            // alone, and batches alternate between few and many.
            tokio::task::yield_now().await;
        }
        self.answered = true;
        let mut queue = self.queue.lock().await;
        if self.held.is_empty() {
            self.held.push(queue.recv().await?);
        }
        while self.held.len() < self.limits.requests
            && let Ok(pending) = queue.try_recv()
        {
            self.held.push(pending);
        }
        drop(queue);
        Some(take_batch(&mut self.held, self.limits))
    }
}

/// The appends of `queue` for the next batch: in arrival order, one per
/// stream, within `limits`; the rest stay.
fn take_batch(queue: &mut Vec<Pending>, limits: BatchLimits) -> Vec<Pending> {
    let mut streams = HashSet::new();
    let mut events = 0;
    let mut batch = Vec::new();
    let mut rest = Vec::new();
    for pending in queue.drain(..) {
        let n = pending.append.events.len();
        let fits = batch.is_empty() || (batch.len() < limits.requests && events + n <= limits.events);
        if fits && streams.insert(pending.append.stream.clone()) {
            events += n;
            batch.push(pending);
        } else {
            rest.push(pending);
        }
    }
    *queue = rest;
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{EventId, StreamId, Timestamp};
    use crate::store::{ExpectedVersion, NewEvent};

    fn pending(stream: &str, events: usize) -> (Pending, oneshot::Receiver<Result<AppendOutcome, AppendError>>) {
        let stream = StreamId::new("t", stream);
        let payload = b"{}".to_vec();
        let new: Vec<NewEvent<'_>> = (0..events)
            .map(|_| NewEvent {
                event_id: EventId::new(),
                name: "e",
                schema_version: 1,
                payload: &payload,
            })
            .collect();
        let (done, outcome) = oneshot::channel();
        let request = AppendRequest {
            stream: &stream,
            expected: ExpectedVersion::Any,
            events: &new,
            metadata: b"{}",
            command_id: None,
            recorded_at: Timestamp::from_micros(0),
        };
        (
            Pending {
                append: OwnedAppend::new(&request),
                done,
                _in_flight: InFlight::new(&Arc::default()),
            },
            outcome,
        )
    }

    #[test]
    fn a_batch_takes_one_append_per_stream_in_order_within_its_limits() {
        let limits = BatchLimits {
            requests: 3,
            events: 10,
        };
        let mut queue: Vec<Pending> = ["a", "b", "a", "c", "d", "e"].iter().map(|s| pending(s, 1).0).collect();
        let names = |b: &[Pending]| {
            b.iter()
                .map(|p| p.append.stream.aggregate_id().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&take_batch(&mut queue, limits)), ["a", "b", "c"]);
        assert_eq!(names(&queue), ["a", "d", "e"]);
        // Events: a large request goes alone, first; nothing joins past the limit.
        let mut queue = vec![pending("big", 20).0, pending("x", 1).0];
        assert_eq!(names(&take_batch(&mut queue, limits)), ["big"]);
        let mut queue = vec![pending("x", 6).0, pending("y", 5).0, pending("z", 4).0];
        assert_eq!(names(&take_batch(&mut queue, limits)), ["x", "z"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn appends_queued_while_a_committer_works_share_its_next_batch() {
        let group = GroupCommit::default();
        let (sizes_tx, mut sizes) = mpsc::unbounded_channel();
        let limits = BatchLimits {
            requests: 64,
            events: 1000,
        };
        let start = {
            let sizes_tx = sizes_tx.clone();
            move |mut batches: Batches| {
                let sizes_tx = sizes_tx.clone();
                async move {
                    while let Some(batch) = batches.next().await {
                        let _ = sizes_tx.send(batch.len());
                        for p in batch {
                            let v = p.append.events.len() as u64;
                            p.answer(Ok(AppendOutcome::Appended(crate::store::Appended {
                                first_version: 1,
                                last_version: v,
                                positions: crate::store::Positions::Consecutive { first: 1, count: v },
                            })));
                        }
                    }
                }
            }
        };
        // Five writers at once on one thread: the first starts the
        // committer; all five are queued before it first runs.
        let group = Arc::new(group);
        let writers: Vec<_> = (0..5)
            .map(|i| {
                let group = group.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    let stream = StreamId::new("t", format!("s{i}"));
                    let events = [NewEvent {
                        event_id: EventId::new(),
                        name: "e",
                        schema_version: 1,
                        payload: b"{}",
                    }];
                    let request = AppendRequest {
                        stream: &stream,
                        expected: ExpectedVersion::Any,
                        events: &events,
                        metadata: b"{}",
                        command_id: None,
                        recorded_at: Timestamp::from_micros(0),
                    };
                    group.append("test", &request, 1, limits, start).await
                })
            })
            .collect();
        for w in writers {
            assert!(matches!(w.await.unwrap(), Ok(AppendOutcome::Appended(_))));
        }
        assert_eq!(sizes.recv().await, Some(5));
        // The store is dropped: its committer ends.
        drop(group);
        drop(start);
        drop(sizes_tx);
        assert_eq!(sizes.recv().await, None);
    }
}
