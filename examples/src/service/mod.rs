//! The bank behind HTTP: commands in, queries and the event log out.
//!
//! | route | what |
//! |---|---|
//! | `POST /commands` | a [`BankCommand`] as JSON (`{"type": "deposit", "account": "ada", "amount": 500}`); an `Idempotency-Key` header becomes the command id. Answers `{stream, version, position, events, deduplicated}`. |
//! | `GET /accounts/{id}/balance[?after=P]` | the balance from the read model; with `after`, first waits (up to 5 s) until the read model has seen position `P`, the one a command answered with: read-your-writes. |
//! | `GET /accounts/{id}[?version=N \| ?at=MICROS]` | the account's state, now, after its `N`th event, or as of a time (Unix microseconds). |
//! | `GET /accounts/{id}/events` | its audit trail: every event, decoded, with metadata. |
//! | `GET /events[?from=P]` | the global log after position `P` as server-sent events, live; each event's SSE id is its position, so a client that reconnects with `Last-Event-ID` resumes where it stopped. |
//! | `POST /subjects/{subject}/forget` | forgets a data subject ([`Dispatcher::forget`]): its key is erased, every personal value sealed for it reads as forgotten, and an `es.subject_forgotten` event is appended. Answers `{subject, forgotten: true}`; 501 when the store was opened without keys (the binary opens it with `ES_MASTER_KEYS`). JSON content type required, as for commands. |
//! | `GET /health`, `GET /ready` | the process answers; the store answers and the read model has caught up. |
//!
//! Errors are `application/problem+json` (RFC 9457), the framework's own
//! included: 400 for malformed JSON, an unknown command, an invalid or
//! empty id or a bad query string; 404 for an unknown route; 405 for a
//! method a route does not take; 408 when a body is not sent in time; 413
//! for a body over [`Limits::max_body`]; 415 for a command that is not
//! `application/json` (so a cross-site HTML form cannot post one); 422
//! when the account refuses the command (the body's `error` is the
//! [`AccountError`]) or when an `Idempotency-Key` was used for another
//! command — another kind, or the same kind with other content; 409 when
//! conflicts outlasted the retries; 503 when the store is unreachable;
//! 504 when a read did not catch up in time.
//!
//! Clients are held to [`Limits`]: the time to send a request's headers
//! (an idle connection is closed after it too), the time to send its
//! body, its size, the connections served at once, and how long a
//! graceful shutdown waits for them. The live event stream is fed by one
//! follower of the log for the whole service: an idle client costs nothing
//! when a command commits.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use es_core::store::StoredEvent;
use es_core::{
    AnyRejection, DispatchError, Dispatcher, EventStore, EventStoreExt, Metadata, Projection, Runner, StoreError,
    StreamId, Timestamp, Versioned,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::bank::{AccountError, AccountId, BankAccount, BankCommand};
use crate::views::{BalanceOf, Balances};

mod events;
mod serve;

use events::{Feed, tail};
pub use serve::Limits;
use serve::limit_body;

/// How long a read waits for its read model to reach the position it asked for.
pub const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
pub struct Service<S: EventStore + Clone> {
    dispatcher: Dispatcher<S>,
    store: S,
    balances: Projection<Balances>,
    shutdown: watch::Receiver<bool>,
    feed: Feed,
}

/// A running service's parts that outlive the router: stop them with
/// [`Running::stop`] after the server has drained.
pub struct Running {
    balances: Runner,
    shutdown: watch::Sender<bool>,
    limits: Limits,
}

/// Builds the router over `store` with the default [`Limits`], and starts
/// the read model's runner and the event feed.
pub fn start<S: EventStore + Clone>(store: S) -> (Router, Running) {
    start_with(store, Limits::default())
}

/// [`start`] with `limits`.
pub fn start_with<S: EventStore + Clone>(store: S, limits: Limits) -> (Router, Running) {
    let balances = Projection::new("balances", Balances::default());
    let runner = balances.spawn(store.clone(), Duration::from_millis(100));
    let (shutdown_tx, shutdown) = watch::channel(false);
    let feed = Feed::start(store.clone(), shutdown.clone());
    let service = Arc::new(Service {
        dispatcher: Dispatcher::new(store.clone()),
        store,
        balances,
        shutdown,
        feed,
    });
    let router = Router::new()
        .route("/commands", post(command::<S>))
        .route("/accounts/{id}", get(account::<S>))
        .route("/accounts/{id}/balance", get(balance::<S>))
        .route("/accounts/{id}/events", get(audit::<S>))
        .route("/events", get(tail::<S>))
        .route("/subjects/{subject}/forget", post(forget::<S>))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready::<S>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(limits, limit_body))
        .layer(middleware::from_fn(request_span))
        .with_state(service);
    (
        router,
        Running {
            balances: runner,
            shutdown: shutdown_tx,
            limits,
        },
    )
}

/// Connects to PostgreSQL at `url` and creates or upgrades the store's
/// tables: a service on a fresh database works from its first request.
pub async fn postgres(url: &str) -> Result<es_postgres::PostgresStore, StoreError> {
    let store = es_postgres::PostgresStore::connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

async fn not_found(request: Request) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "no such route",
        format!("nothing is served at {}", printable_path(request.uri().path())),
        None,
    )
}

async fn method_not_allowed(request: Request) -> Response {
    problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        format!(
            "{} is not served at {}",
            request.method(),
            printable_path(request.uri().path())
        ),
        None,
    )
}

/// A path as it may be shown back: at most 200 characters.
fn printable_path(path: &str) -> String {
    let shown: String = path.chars().take(200).collect();
    if shown.len() < path.len() {
        format!("{shown}…")
    } else {
        shown
    }
}

fn bad_query(rejection: QueryRejection) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid query string",
        rejection.body_text(),
        None,
    )
}

fn bad_path(rejection: PathRejection) -> Response {
    problem(StatusCode::BAD_REQUEST, "invalid path", rejection.body_text(), None)
}

/// A 400 when `id` is no id an account can have: empty, or not storable on
/// every store (a NUL, too long).
fn invalid_account(id: &str) -> Option<Response> {
    let stream = StreamId::of::<BankAccount>(&AccountId::new(id));
    let checked = if id.is_empty() {
        Err("the account id is empty".to_owned())
    } else {
        es_core::store::validate_stream("http", &stream).map_err(|e| e.to_string())
    };
    checked
        .err()
        .map(|detail| problem(StatusCode::BAD_REQUEST, "invalid account id", detail, None))
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
    if let Some(refused) = not_json(&headers) {
        return refused;
    }
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
    if let Some(invalid) = invalid_account(command_account(&command)) {
        return invalid;
    }
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
        Ok(committed) => axum::Json(json!({
            "stream": committed.stream.to_string(),
            "version": committed.version,
            "position": committed.position,
            "events": committed.events,
            "deduplicated": committed.deduplicated,
        }))
        .into_response(),
        Err(error) => dispatch_problem(error),
    }
}

/// A 415 unless the request says it is JSON: an HTML form cannot send
/// that, so a cross-site form cannot post a command or a forget.
fn not_json(headers: &HeaderMap) -> Option<Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    (!json).then(|| {
        problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "commands are JSON",
            "send the request with `Content-Type: application/json`",
            None,
        )
    })
}

/// `POST /subjects/{subject}/forget`.
async fn forget<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    headers: HeaderMap,
    subject: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(subject) = match subject {
        Ok(subject) => subject,
        Err(rejection) => return bad_path(rejection),
    };
    if let Some(refused) = not_json(&headers) {
        return refused;
    }
    if service.store.keyring().is_none() {
        return problem(
            StatusCode::NOT_IMPLEMENTED,
            "this service keeps no personal data",
            "the store was opened without a key provider (start the service with ES_MASTER_KEYS)",
            None,
        );
    }
    match service.dispatcher.forget(subject.as_str()).await {
        Ok(()) => axum::Json(json!({ "subject": subject, "forgotten": true })).into_response(),
        Err(error) => store_problem(&error),
    }
}

/// The account a command is for.
fn command_account(command: &BankCommand) -> &str {
    match command {
        BankCommand::Open(c) => &c.account.0,
        BankCommand::Deposit(c) => &c.account.0,
        BankCommand::Withdraw(c) => &c.account.0,
        BankCommand::Close(c) => &c.account.0,
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
        // another request (another command, or the same with another body).
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

/// A request's account id (from its path) and query string, or the
/// problem to answer when either is invalid.
fn account_request<Q>(
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<Q>, QueryRejection>,
) -> Result<(String, Q), Box<Response>> {
    let (Path(id), Query(query)) = match (id, query) {
        (Ok(id), Ok(query)) => (id, query),
        (Err(rejection), _) => return Err(Box::new(bad_path(rejection))),
        (_, Err(rejection)) => return Err(Box::new(bad_query(rejection))),
    };
    match invalid_account(&id) {
        Some(invalid) => Err(Box::new(invalid)),
        None => Ok((id, query)),
    }
}

#[derive(Deserialize)]
struct After {
    after: Option<u64>,
}

async fn balance<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    id: Result<Path<String>, PathRejection>,
    after: Result<Query<After>, QueryRejection>,
) -> Response {
    let (id, after) = match account_request(id, after) {
        Ok(request) => request,
        Err(problem) => return *problem,
    };
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
    id: Result<Path<String>, PathRejection>,
    as_of: Result<Query<AsOf>, QueryRejection>,
) -> Response {
    let (id, as_of) = match account_request(id, as_of) {
        Ok(request) => request,
        Err(problem) => return *problem,
    };
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

async fn audit<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return bad_path(rejection),
    };
    if let Some(invalid) = invalid_account(&id) {
        return invalid;
    }
    let stream = StreamId::of::<BankAccount>(&AccountId::new(&id));
    match service.store.read_stream_vec(&stream, 1).await {
        Ok(events) => axum::Json(Value::Array(events.iter().map(StoredEvent::to_json).collect())).into_response(),
        Err(e) => store_problem(&e),
    }
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
