//! The live log as server-sent events: one follower of the log for the
//! whole service, and each client's stream (the store until caught up,
//! then the feed).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use es_core::store::StoredEvent;
use es_core::{EventStore, EventStoreExt};
use futures_util::stream;
use tokio::sync::{broadcast, watch};

use crate::Query;

/// The service's one follower of the log: it reads each commit once and
/// hands it to every open event stream, so idle streams cost nothing when
/// a command commits. Cloning it shares the feed.
///
/// Each SSE event carries one stored event as JSON
/// ([`StoredEvent::to_json`]), its SSE `event` is the event's name and its
/// `id` its position, so a client that reconnects with `Last-Event-ID`
/// resumes after it. A stream reads the store until it has caught up, then
/// follows the feed (and reads the store again if it falls more than the
/// feed's buffer behind). [`EventFeed::close`] ends every stream, so a
/// graceful shutdown does not wait for clients that never hang up.
pub struct EventFeed<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    events: broadcast::Sender<Arc<StoredEvent>>,
    closed: watch::Sender<bool>,
}

impl<S> Clone for EventFeed<S> {
    fn clone(&self) -> Self {
        EventFeed {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for EventFeed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFeed")
            .field("streams", &self.inner.events.receiver_count())
            .field("closed", &*self.inner.closed.borrow())
            .finish()
    }
}

/// How many events a stream reads from the store at a time.
const PAGE: usize = 256;

impl<S: EventStore + Clone> EventFeed<S> {
    /// Events a slow stream may fall behind the feed before it reads from
    /// the store again.
    pub const BUFFER: usize = 1_024;

    /// Starts following the log of `store` (a task on the current tokio
    /// runtime, until [`EventFeed::close`]).
    pub fn start(store: S) -> EventFeed<S> {
        let (events, _) = broadcast::channel(Self::BUFFER);
        let (closed, mut closing) = watch::channel(false);
        let sender = events.clone();
        let follower = store.clone();
        tokio::spawn(async move {
            // Streams read what was stored before they opened themselves.
            let after = loop {
                match follower.last_position().await {
                    Ok(head) => break head,
                    Err(e) => {
                        tracing::warn!(error = %e, "the event feed cannot read the log's end; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            changed = closing.changed() => if changed.is_err() { return },
                        }
                        if *closing.borrow() {
                            return;
                        }
                    }
                }
            };
            let mut tail = es_core::subscription::Tail::new(follower, after);
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
                    // Every handle of the feed dropped: nobody can listen.
                    changed = closing.changed() => if changed.is_err() { return },
                }
                if *closing.borrow() {
                    return;
                }
            }
        });
        EventFeed {
            inner: Arc::new(Inner { store, events, closed }),
        }
    }

    /// Ends every open stream and the feed.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// The stream of the log after position `after`, as an SSE response.
    pub fn stream(&self, after: u64) -> Response {
        // Subscribed before the store is read: nothing committed in between
        // is missed (what both hold is sent once, by position).
        let state = Reading {
            store: self.inner.store.clone(),
            after,
            pending: VecDeque::new(),
            feed: self.inner.events.subscribe(),
            source: Source::Store,
            closed: self.inner.closed.subscribe(),
        };
        let events = stream::unfold(state, |mut reading| async move {
            let event = reading.next().await?;
            let sse = SseEvent::default()
                .id(event.position.to_string())
                .event(event.name.clone())
                .data(event.to_json().to_string());
            Some((Ok::<_, Infallible>(sse), reading))
        });
        Sse::new(events).keep_alive(KeepAlive::default()).into_response()
    }

    /// `GET /events[?from=P]`: the log after `Last-Event-ID`, else after
    /// `from`, else from its start; for any router state.
    pub fn routes<St: Clone + Send + Sync + 'static>(&self) -> Router<St> {
        #[derive(serde::Deserialize)]
        struct From {
            from: Option<u64>,
        }
        let feed = self.clone();
        Router::new()
            .route(
                "/events",
                get(move |headers: HeaderMap, Query(from): Query<From>| {
                    let feed = feed.clone();
                    async move { feed.stream(last_event_id(&headers).or(from.from).unwrap_or(0)) }
                }),
            )
            .with_state(())
    }
}

/// The `Last-Event-ID` a reconnecting client sends, when it is a position.
pub fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Where a stream reads next.
enum Source {
    /// The store, from the stream's position, until its end.
    Store,
    /// The feed, past the stream's position.
    Feed,
}

/// One client's stream.
struct Reading<S> {
    store: S,
    after: u64,
    pending: VecDeque<Arc<StoredEvent>>,
    feed: broadcast::Receiver<Arc<StoredEvent>>,
    source: Source,
    closed: watch::Receiver<bool>,
}

impl<S: EventStore> Reading<S> {
    /// The next event past the stream's position; `None` once the feed is
    /// closed.
    async fn next(&mut self) -> Option<Arc<StoredEvent>> {
        loop {
            if *self.closed.borrow() {
                return None;
            }
            if let Some(e) = self.pending.pop_front() {
                if e.position <= self.after {
                    continue;
                }
                self.after = e.position;
                return Some(e);
            }
            match self.source {
                Source::Store => match self.store.read_all_vec(self.after, PAGE).await {
                    Ok(page) => {
                        if page.len() < PAGE {
                            self.source = Source::Feed;
                        }
                        self.pending.extend(page.into_iter().map(Arc::new));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "an event stream could not read the log; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            changed = self.closed.changed() => if changed.is_err() { return None },
                        }
                    }
                },
                Source::Feed => tokio::select! {
                    received = self.feed.recv() => match received {
                        Ok(e) => self.pending.push_back(e),
                        // Fell behind the feed's buffer: the store has it.
                        Err(broadcast::error::RecvError::Lagged(_)) => self.source = Source::Store,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    changed = self.closed.changed() => if changed.is_err() { return None },
                },
            }
        }
    }
}
