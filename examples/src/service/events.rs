//! The live event stream: one feed of the log for the service, and each
//! client's stream (the store until caught up, then the feed).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use es_core::store::StoredEvent;
use es_core::{EventStore, EventStoreExt};
use futures_util::stream;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use super::{Service, bad_query};

#[derive(Deserialize)]
pub(super) struct From {
    from: Option<u64>,
}

/// The service's one follower of the log: it reads each commit once and
/// hands it to every live event stream, so idle streams cost nothing when
/// a command commits.
pub(super) struct Feed {
    events: broadcast::Sender<Arc<StoredEvent>>,
}

impl Feed {
    /// Events a slow stream may fall behind the feed before it reads from
    /// the store again.
    const BUFFER: usize = 1_024;

    pub(super) fn start<S: EventStore + Clone>(store: S, mut shutdown: watch::Receiver<bool>) -> Feed {
        let (events, _) = broadcast::channel(Self::BUFFER);
        let sender = events.clone();
        tokio::spawn(async move {
            // Streams read what was stored before they opened themselves.
            let after = loop {
                match store.last_position().await {
                    Ok(head) => break head,
                    Err(e) => {
                        tracing::warn!(error = %e, "the event feed cannot read the log's end; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            let mut tail = es_core::subscription::Tail::new(store, after);
            loop {
                tokio::select! {
                    next = tail.next() => match next {
                        // No receiver is no error: nobody listens.
                        Ok(e) => {
                            let _ = sender.send(Arc::new(e));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the event feed could not read the log; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    return;
                }
            }
        });
        Feed { events }
    }
}

/// Where a live event stream reads next.
enum Source {
    /// The store, from the stream's position, until its end.
    Store,
    /// The feed, past the stream's position.
    Feed,
}

/// The live log. Each SSE event carries one stored event; its id is the
/// position, so `Last-Event-ID` resumes after it. A stream reads the store
/// until it has caught up, then follows the service's feed (and reads the
/// store again if it falls more than the feed's buffer behind).
pub(super) async fn tail<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    headers: HeaderMap,
    from: Result<Query<From>, QueryRejection>,
) -> Response {
    let Query(from) = match from {
        Ok(from) => from,
        Err(rejection) => return bad_query(rejection),
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let after = resume.or(from.from).unwrap_or(0);
    let store = service.store.clone();
    // Subscribed before the store is read: nothing committed in between is
    // missed (what both hold is sent once, by position).
    let feed = service.feed.events.subscribe();
    let shutdown = service.shutdown.clone();
    let state = (
        store,
        after,
        std::collections::VecDeque::new(),
        feed,
        Source::Store,
        shutdown,
    );
    let events = stream::unfold(
        state,
        |(store, mut after, mut pending, mut feed, mut source, mut shutdown)| async move {
            loop {
                if *shutdown.borrow() {
                    return None;
                }
                if let Some(e) = pending.pop_front() {
                    let e: Arc<StoredEvent> = e;
                    if e.position <= after {
                        continue;
                    }
                    after = e.position;
                    let sse = SseEvent::default()
                        .id(e.position.to_string())
                        .event(e.name.clone())
                        .data(e.to_json().to_string());
                    return Some((
                        Ok::<_, Infallible>(sse),
                        (store, after, pending, feed, source, shutdown),
                    ));
                }
                match source {
                    Source::Store => match store.read_all_vec(after, 256).await {
                        Ok(page) => {
                            if page.len() < 256 {
                                source = Source::Feed;
                            }
                            pending.extend(page.into_iter().map(Arc::new));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "an event stream could not read the log; retrying");
                            tokio::select! {
                                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = shutdown.changed() => {}
                            }
                        }
                    },
                    Source::Feed => tokio::select! {
                        received = feed.recv() => match received {
                            Ok(e) => pending.push_back(e),
                            // Fell behind the feed's buffer: the store has it.
                            Err(broadcast::error::RecvError::Lagged(_)) => source = Source::Store,
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                        _ = shutdown.changed() => {}
                    },
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
