//! The bank behind HTTP: commands in, queries and the event log out.
//!
//! | route | what |
//! |---|---|
//! | `POST /commands` | a [`BankCommand`] as JSON (`{"type": "deposit", "account": "ada", "amount": 500}`); an `Idempotency-Key` header becomes the command id. Answers `{stream, version, position, events, deduplicated}`. |
//! | `GET /accounts/{id}/balance[?after=P]` | the balance from the read model; with `after`, first waits (up to 5 s) until the read model has seen position `P`, the one a command answered with: read-your-writes. |
//! | `GET /accounts/{id}[?version=N \| ?at=MICROS]` | the account's state, now, after its `N`th event, or as of a time (Unix microseconds). |
//! | `GET /accounts/{id}/events` | its audit trail: every event, decoded, with metadata. |
//! | `GET /events[?from=P]` | the global log after position `P` as server-sent events, live; each event's SSE id is its position, so a client that reconnects with `Last-Event-ID` resumes where it stopped. |
//! | `GET /health`, `GET /ready` | the process answers; the store answers and the read model has caught up. |
//!
//! Errors are `application/problem+json` (RFC 9457): 400 for malformed JSON,
//! an unknown command or an invalid id; 422 when the account refuses the
//! command (the body's `error` is the [`AccountError`]); 409 when conflicts
//! outlasted the retries; 503 when the store is unreachable; 504 when a read
//! did not catch up in time.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use es_core::store::StoredEvent;
use es_core::{
    AnyRejection, DispatchError, Dispatcher, EventStore, EventStoreExt, Metadata, Projection, Runner, StoreError,
    StreamId, Timestamp, Versioned,
};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::bank::{AccountError, AccountId, BankAccount, BankCommand};
use crate::views::{BalanceOf, Balances};

/// How long a read waits for its read model to reach the position it asked for.
pub const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
pub struct Service<S: EventStore + Clone> {
    dispatcher: Dispatcher<S>,
    store: S,
    balances: Projection<Balances>,
    shutdown: watch::Receiver<bool>,
}

/// A running service's parts that outlive the router: stop them with
/// [`Running::stop`] after the server has drained.
pub struct Running {
    balances: Runner,
    shutdown: watch::Sender<bool>,
}

impl Running {
    /// Ends the live event streams, so a graceful shutdown does not wait for
    /// clients that never hang up.
    pub fn end_streams(&self) {
        self.shutdown.send_replace(true);
    }

    /// Serves `router` on `listener` until `signal` resolves, then shuts down
    /// gracefully: new connections are refused, in-flight requests finish,
    /// live event streams end, and the read model's runner stops at a
    /// checkpoint.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        router: Router,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let running = Arc::new(self);
        let on_signal = running.clone();
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                signal.await;
                on_signal.end_streams();
            })
            .await;
        if let Ok(running) = Arc::try_unwrap(running) {
            running.stop().await;
        }
        served
    }

    /// Stops the read model's runner after its current page (checkpoint
    /// kept).
    pub async fn stop(self) {
        self.end_streams();
        self.balances.stop().await;
    }
}

/// Builds the router over `store` and starts the read model's runner.
pub fn start<S: EventStore + Clone>(store: S) -> (Router, Running) {
    let balances = Projection::new("balances", Balances::default());
    let runner = balances.spawn(store.clone(), Duration::from_millis(100));
    let (shutdown_tx, shutdown) = watch::channel(false);
    let service = Arc::new(Service {
        dispatcher: Dispatcher::new(store.clone()),
        store,
        balances,
        shutdown,
    });
    let router = Router::new()
        .route("/commands", post(command::<S>))
        .route("/accounts/{id}", get(account::<S>))
        .route("/accounts/{id}/balance", get(balance::<S>))
        .route("/accounts/{id}/events", get(audit::<S>))
        .route("/events", get(tail::<S>))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready::<S>))
        .layer(middleware::from_fn(request_span))
        .with_state(service);
    (
        router,
        Running {
            balances: runner,
            shutdown: shutdown_tx,
        },
    )
}

/// An `application/problem+json` answer.
fn problem(status: StatusCode, title: &str, detail: impl Into<String>, extra: Option<Value>) -> Response {
    let mut body = json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    if let (Some(extra), Some(map)) = (extra, body.as_object_mut()) {
        map.insert("error".into(), extra);
    }
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

fn store_problem(error: &StoreError) -> Response {
    match error {
        StoreError::Invalid { .. } => problem(StatusCode::BAD_REQUEST, "invalid request", error.to_string(), None),
        StoreError::Backend { .. } | StoreError::Unavailable { .. } => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event store is unavailable",
            error.to_string(),
            None,
        ),
        _ => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store failure",
            error.to_string(),
            None,
        ),
    }
}

async fn command<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let command: BankCommand = match serde_json::from_slice(&body) {
        Ok(command) => command,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "malformed command",
                format!("{e}; send a JSON object with \"type\" one of open, deposit, withdraw, close and its fields"),
                None,
            );
        }
    };
    let mut metadata = Metadata::new();
    if let Some(key) = headers.get("idempotency-key") {
        match key.to_str() {
            Ok(key) => metadata.command_id = Some(key.to_owned()),
            Err(_) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid request",
                    "the Idempotency-Key header must be visible ASCII",
                    None,
                );
            }
        }
    }
    match service.dispatcher.dispatch_with(command, metadata).await {
        Ok(receipt) => axum::Json(json!({
            "stream": receipt.stream.to_string(),
            "version": receipt.version,
            "position": receipt.position,
            "events": receipt.events,
            "deduplicated": receipt.deduplicated,
        }))
        .into_response(),
        Err(error) => dispatch_problem(error),
    }
}

fn dispatch_problem(error: DispatchError<AnyRejection>) -> Response {
    match &error {
        DispatchError::Rejected { error: rejection, .. } => {
            let detail = rejection.downcast_ref::<AccountError>().map(account_error);
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the account refused the command",
                error.to_string(),
                detail,
            )
        }
        DispatchError::Conflict { .. } => problem(
            StatusCode::CONFLICT,
            "the account kept changing; try again",
            error.to_string(),
            None,
        ),
        // The IETF idempotency-key draft's answer to a key reused for
        // another request.
        DispatchError::CommandIdReused { .. } => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the Idempotency-Key was already used by another command",
            error.to_string(),
            None,
        ),
        DispatchError::Store(e) => store_problem(e),
        _ => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the command failed",
            error.to_string(),
            None,
        ),
    }
}

/// The domain error as data: a code and its numbers.
fn account_error(error: &AccountError) -> Value {
    let (code, fields) = match error {
        AccountError::AlreadyOpen => ("already_open", json!({})),
        AccountError::NotOpen => ("not_open", json!({})),
        AccountError::Closed => ("closed", json!({})),
        AccountError::ZeroAmount => ("zero_amount", json!({})),
        AccountError::InsufficientFunds { balance, requested } => (
            "insufficient_funds",
            json!({ "balance": balance, "requested": requested }),
        ),
        AccountError::NotEmpty(balance) => ("not_empty", json!({ "balance": balance })),
        AccountError::TooMuch { balance, amount } => ("too_much", json!({ "balance": balance, "amount": amount })),
    };
    let mut value = json!({ "code": code, "message": error.to_string() });
    if let (Some(map), Value::Object(fields)) = (value.as_object_mut(), fields) {
        map.extend(fields);
    }
    value
}

#[derive(Deserialize)]
struct After {
    after: Option<u64>,
}

async fn balance<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    Path(id): Path<String>,
    Query(after): Query<After>,
) -> Response {
    if let Some(position) = after.after
        && let Err(timeout) = service.balances.wait_for(position, READ_YOUR_WRITES_TIMEOUT).await
    {
        return problem(
            StatusCode::GATEWAY_TIMEOUT,
            "the read model has not caught up",
            timeout.to_string(),
            None,
        );
    }
    match service.balances.query(BalanceOf { account: id.clone() }) {
        Some(balance) => axum::Json(json!({ "account": id, "balance": balance })).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "no such account",
            format!("no account `{id}` is open in the read model"),
            None,
        ),
    }
}

#[derive(Deserialize)]
struct AsOf {
    version: Option<u64>,
    at: Option<i64>,
}

async fn account<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    Path(id): Path<String>,
    Query(as_of): Query<AsOf>,
) -> Response {
    let id = AccountId::new(&id);
    let loaded = match (as_of.version, as_of.at) {
        (Some(_), Some(_)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid request",
                "ask for a version or a time, not both",
                None,
            );
        }
        (Some(version), None) => service.dispatcher.load_at_version::<BankAccount>(&id, version).await,
        (None, Some(at)) => {
            service
                .dispatcher
                .load_as_of::<BankAccount>(&id, Timestamp::from_micros(at))
                .await
        }
        (None, None) => service.dispatcher.load_versioned::<BankAccount>(&id).await,
    };
    match loaded {
        Ok(Versioned { state, version }) => {
            axum::Json(json!({ "account": id.to_string(), "version": version, "state": state })).into_response()
        }
        Err(es_core::LoadError::Store(e)) => store_problem(&e),
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot load the account",
            e.to_string(),
            None,
        ),
    }
}

/// An event as the audit trail and the tail show it.
fn event_json(e: &StoredEvent) -> Value {
    let payload: Value = serde_json::from_slice(&e.payload).unwrap_or(Value::Null);
    let metadata: Value = if e.metadata.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&e.metadata).unwrap_or(Value::Null)
    };
    json!({
        "position": e.position,
        "stream": e.stream.to_string(),
        "version": e.version,
        "event_id": e.event_id.as_uuid().to_string(),
        "name": e.name,
        "schema_version": e.schema_version,
        "recorded_at_micros": e.recorded_at.as_micros(),
        "payload": payload,
        "metadata": metadata,
    })
}

async fn audit<S: EventStore + Clone>(State(service): State<Arc<Service<S>>>, Path(id): Path<String>) -> Response {
    let stream = StreamId::of::<BankAccount>(&AccountId::new(&id));
    match service.store.read_stream_vec(&stream, 1).await {
        Ok(events) => axum::Json(Value::Array(events.iter().map(event_json).collect())).into_response(),
        Err(e) => store_problem(&e),
    }
}

#[derive(Deserialize)]
struct From {
    from: Option<u64>,
}

/// The live log. Each SSE event carries one stored event; its id is the
/// position, so `Last-Event-ID` resumes after it.
async fn tail<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    headers: HeaderMap,
    Query(from): Query<From>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let after = resume.or(from.from).unwrap_or(0);
    let store = service.store.clone();
    let notifications = store.notifications();
    let shutdown = service.shutdown.clone();
    let state = (store, after, std::collections::VecDeque::new(), notifications, shutdown);
    let events = stream::unfold(
        state,
        |(store, mut after, mut pending, mut notifications, mut shutdown)| async move {
            loop {
                if *shutdown.borrow() {
                    return None;
                }
                if let Some(e) = pending.pop_front() {
                    let e: StoredEvent = e;
                    after = e.position;
                    let sse = SseEvent::default()
                        .id(e.position.to_string())
                        .event(e.name.clone())
                        .data(event_json(&e).to_string());
                    return Some((Ok(sse), (store, after, pending, notifications, shutdown)));
                }
                match store.read_all_vec(after, 256).await {
                    Ok(page) if !page.is_empty() => {
                        pending.extend(page);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "the event tail could not read the log; retrying"),
                }
                // Wait for a commit (or poll, for a store without
                // notifications), or the end.
                let wake = async {
                    match notifications.as_mut() {
                        Some(rx) => {
                            if rx.changed().await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                        None => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                };
                tokio::select! {
                    () = wake => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}

async fn ready<S: EventStore + Clone>(State(service): State<Arc<Service<S>>>) -> Response {
    match service.store.last_position().await {
        Ok(head) if service.balances.position() >= head => "ready".into_response(),
        Ok(head) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "catching up",
            format!(
                "the read model is at position {} of {head}",
                service.balances.position()
            ),
            None,
        ),
        Err(e) => store_problem(&e),
    }
}

/// A span per request, with OpenTelemetry's HTTP field names.
async fn request_span(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http.request",
        http.request.method = %request.method(),
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}
