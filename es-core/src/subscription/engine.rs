//! The catch-up loop: pages read, visited and committed, with panics
//! isolated and decoding failures named.

use std::future::Future;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::task::Poll;

use tracing::Instrument;

use super::{Partition, Sink, SubscriptionError};
use crate::error::DecodeError;
use crate::personal::seal::{At, Scope};
use crate::store::{ContextFields, EventStore, FOREIGN, RecordedEvent};

/// Applies every event after the sink's checkpoint, page by page, up to the
/// end of the log. Returns the new checkpoint.
pub async fn catch_up<S: EventStore, K: Sink>(store: &S, sink: &mut K) -> Result<u64, SubscriptionError> {
    Ok(run_pages(store, sink, false, &mut |_| {}, &|| false).await?.0)
}

/// What a catch-up reports as it goes.
pub(crate) enum Step {
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
pub(crate) async fn run_pages<S: EventStore, K: Sink>(
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

/// One page: read it, visiting handled events, then commit it. On a store
/// with keys, personal values open with keys from the keyring's cache; a
/// key not there yet fails the page, which is read again once it is.
async fn read_and_commit<S: EventStore, K: Sink>(
    store: &S,
    sink: &mut K,
    from: u64,
    size: usize,
) -> Result<Page, SubscriptionError> {
    let Some(keyring) = store.keyring() else {
        return read_and_commit_once(store, sink, from, size, None).await;
    };
    let mut scope = Scope::new(keyring.clone(), false);
    let mut runs = 0;
    loop {
        let page = read_and_commit_once(store, sink, from, size, Some(&mut scope)).await;
        if !scope.again(page.is_err(), false, &mut runs, 4).await? {
            return page;
        }
    }
}

async fn read_and_commit_once<S: EventStore, K: Sink>(
    store: &S,
    sink: &mut K,
    from: u64,
    size: usize,
    mut scope: Option<&mut Scope>,
) -> Result<Page, SubscriptionError> {
    let mut seen = 0;
    let mut foreign = 0;
    let mut last = from;
    let mut failure: Option<Failure> = None;
    let fields = match scope {
        // Where each event is, for the sealed values' associated data.
        Some(_) => sink.fields().union(
            ContextFields::EVENT_ID
                .union(ContextFields::AGGREGATE_TYPE)
                .union(ContextFields::AGGREGATE_ID),
        ),
        None => sink.fields(),
    };
    let partition = sink.partition();
    let fields = if partition == Partition::WHOLE {
        fields
    } else {
        fields.union(ContextFields::AGGREGATE_TYPE.union(ContextFields::AGGREGATE_ID))
    };
    let mut undecoded_at = None;
    let read = store
        .read_all(from, size, fields, |e: &RecordedEvent<'_>| {
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
            } else if sink.handles(e.name) && partition.holds(e.aggregate_type, e.aggregate_id) {
                let visited = match scope.as_deref_mut() {
                    None => std::panic::catch_unwind(AssertUnwindSafe(|| sink.visit(e))),
                    Some(scope) => {
                        scope.place(e.aggregate_type, e.aggregate_id, At::Event(e.event_id));
                        scope.run(|| std::panic::catch_unwind(AssertUnwindSafe(|| sink.visit(e))))
                    }
                };
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
        && !fields.contains(
            ContextFields::AGGREGATE_TYPE
                .union(ContextFields::AGGREGATE_ID)
                .union(ContextFields::VERSION),
        )
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
        .read_all(position - 1, 1, ContextFields::ALL, |e: &RecordedEvent<'_>| {
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
