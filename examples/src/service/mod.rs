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
//! | `GET /audit/head` | the last signed seal of the log ([`es_core::audit`]): size, Merkle root, position, signature, public key; keep copies of it elsewhere, and `es audit verify --head` checks the log only grew since. 404 until the first seal ([`start_sealed`]; the binary seals when `ES_SEAL_KEY` holds a key). |
//! | `GET /health`, `GET /ready` | the process answers; the store answers and the read model has caught up. |
//! | `GET /openapi.json` | the OpenAPI 3.1 description of these routes ([`openapi`]), bodies and problems included. |
//! | `GET /metrics` | es's metrics in the Prometheus text format (the binary; [`with_metrics`], feature `metrics`). |
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
//!
//! Everything that is not the bank's own comes from [`es_axum`]: the
//! problems, the extractors, the event stream, health and readiness, the
//! limits and the graceful shutdown. What is left here is the routes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use es_axum::{After, EventFeed, IdempotencyKey, Json, Path, Problem, Query, Readiness, Server};
use es_core::store::StoredEvent;
use es_core::{
    AnyRejection, DispatchError, Dispatcher, EventStore, EventStoreExt, Projection, Runner, StreamId, Timestamp,
    Versioned,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

use crate::bank::{AccountError, AccountId, BankAccount, BankCommand};
use crate::views::{BalanceOf, Balances};

pub use es_axum::Limits;

/// How long a read waits for its read model to reach the position it asked for.
pub const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
pub struct Service<S: EventStore + Clone> {
    dispatcher: Dispatcher<S>,
    store: S,
    balances: Projection<Balances>,
}

/// Builds the router over `store` with the default [`Limits`], and starts
/// the read model's runner and the event feed. The [`Server`] serves the
/// router ([`Server::serve`]) and, when it stops, ends the live event
/// streams and stops the read model's runner at a checkpoint.
pub fn start<S: EventStore + Clone>(store: S) -> (Router, Server) {
    start_with(store, Limits::default())
}

/// [`start`] with `limits`.
pub fn start_with<S: EventStore + Clone>(store: S, limits: Limits) -> (Router, Server) {
    build(store, limits, None)
}

/// [`start_with`], and `sealer` running beside the service: it seals the
/// log every so many events or seconds (as it was built), and stops when
/// the server does.
pub fn start_sealed<S: EventStore + Clone>(
    store: S,
    limits: Limits,
    sealer: es_core::audit::Sealer<S>,
) -> (Router, Server) {
    build(store, limits, Some(sealer))
}

fn build<S: EventStore + Clone>(
    store: S,
    limits: Limits,
    sealer: Option<es_core::audit::Sealer<S>>,
) -> (Router, Server) {
    let balances = Projection::new("balances", Balances::default());
    let runner: Runner = balances.spawn(store.clone(), Duration::from_millis(100));
    let feed = EventFeed::start(store.clone());
    let readiness = Readiness::new(store.clone()).follower(balances.clone());
    let service = Arc::new(Service {
        dispatcher: Dispatcher::new(store.clone()),
        store,
        balances,
    });
    let routes = Router::new()
        .route("/commands", post(command::<S>))
        .route("/accounts/{id}", get(account::<S>))
        .route("/accounts/{id}/balance", get(balance::<S>))
        .route("/accounts/{id}/events", get(audit::<S>))
        .route("/subjects/{subject}/forget", post(forget::<S>))
        .route("/audit/head", get(audit_head::<S>))
        .merge(feed.routes())
        .merge(readiness.routes())
        .merge(es_axum::openapi::routes(&openapi()))
        .with_state(service);
    let router = es_axum::protect(routes, limits);
    let mut server = Server::new(limits).closing(feed).stopping(runner);
    if let Some(sealer) = sealer {
        server = server.aborting(tokio::spawn(sealer.run()));
    }
    (router, server)
}

/// The service's routes as described at `GET /openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "bank", description = "The es example bank: commands in, queries and the event log out."),
    paths(command, balance, account, audit, audit_head, forget),
    components(schemas(BankCommand, CommandAnswer, BalanceAnswer, AccountAnswer, Forgotten, BankAccount)),
    tags(
        (name = "commands", description = "Deciding: each command appends events or is refused."),
        (name = "queries", description = "Reading: the read model, an account's state, its events."),
        (name = "personal data", description = "Forgetting a data subject."),
        (name = "audit", description = "The signed seals of the log."),
    )
)]
struct BankApi;

/// The OpenAPI 3.1 description of the service: its routes, es-axum's
/// (`/health`, `/ready`, `/events`), and the problem every operation may
/// answer with.
pub fn openapi() -> utoipa::openapi::OpenApi {
    es_axum::openapi::problems(BankApi::openapi().merge_from(es_axum::openapi::description()))
}

/// `router` with `GET /metrics`: installs a Prometheus recorder as the
/// process's metrics recorder (once per process; a second call fails) and
/// serves es's metrics (commands, conflicts, appends, loads, each
/// subscription's position and lag) in the Prometheus text format.
#[cfg(feature = "metrics")]
pub fn with_metrics(router: Router) -> Result<Router, es_axum::prometheus::BuildError> {
    Ok(router.merge(es_axum::prometheus::install::<()>()?))
}

/// Connects to PostgreSQL at `url` and creates or upgrades the store's
/// tables: a service on a fresh database works from its first request.
#[cfg(feature = "postgres")]
pub async fn postgres(url: &str) -> Result<es_postgres::PostgresStore, es_core::StoreError> {
    let store = es_postgres::PostgresStore::connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

/// A 400 when `id` is no id an account can have: empty, or not storable on
/// every store (a NUL, too long).
fn check_account(id: &str) -> Result<StreamId, Problem> {
    let stream = StreamId::of::<BankAccount>(&AccountId::new(id));
    let checked = if id.is_empty() {
        Err("the account id is empty".to_owned())
    } else {
        es_core::store::validate_stream("http", &stream).map_err(|e| e.to_string())
    };
    checked
        .map(|()| stream)
        .map_err(|detail| Problem::bad_request("invalid account id", detail))
}

/// What a command committed.
#[derive(Debug, Serialize, ToSchema)]
struct CommandAnswer {
    /// The account's stream.
    stream: String,
    /// The stream's version after the command.
    version: u64,
    /// The global position of its last event: pass it as `after` to read
    /// your write. Null when it appended nothing.
    position: Option<u64>,
    /// The names of the events it appended (none: the command changed
    /// nothing).
    events: Vec<&'static str>,
    /// Whether its `Idempotency-Key` had been used for the same command
    /// before: nothing was appended this time, and this is the first
    /// answer again.
    deduplicated: bool,
}

/// Sends a command to an account.
#[utoipa::path(
    post,
    path = "/commands",
    tag = "commands",
    request_body(content = BankCommand, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "The command's id: a retried request with the same key and body is answered again and not run twice; with another body, 422.")),
    responses(
        (status = 200, description = "Committed (or deduplicated).", body = CommandAnswer),
        (status = 400, description = "Malformed JSON, an unknown command type, an invalid account id.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflicting writers outlasted the retries.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The account refused the command (`error` holds its code and numbers), or the key was used for another command.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn command<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    key: IdempotencyKey,
    command: Result<Json<BankCommand>, Problem>,
) -> Result<axum::Json<CommandAnswer>, Problem> {
    let Json(command) = command.map_err(|problem| match problem.status() {
        axum::http::StatusCode::BAD_REQUEST => Problem::bad_request(
            "malformed command",
            format!(
                "{}; send a JSON object with \"type\" one of open, deposit, withdraw, close and its fields",
                problem.detail()
            ),
        ),
        _ => problem,
    })?;
    check_account(command_account(&command))?;
    let committed = service
        .dispatcher
        .dispatch_with(command, key.metadata())
        .await
        .map_err(dispatch_problem)?;
    Ok(axum::Json(CommandAnswer {
        stream: committed.stream.to_string(),
        version: committed.version,
        position: committed.position,
        events: committed.events,
        deduplicated: committed.deduplicated,
    }))
}

/// A subject forgotten.
#[derive(Debug, Serialize, ToSchema)]
struct Forgotten {
    /// The subject.
    subject: String,
    /// Always true.
    forgotten: bool,
}

/// Forgets a data subject: its key is erased, and every personal value
/// sealed for it reads as forgotten from now on.
#[utoipa::path(
    post,
    path = "/subjects/{subject}/forget",
    tag = "personal data",
    params(("subject" = String, Path, description = "The data subject (for the bank, the account's owner).")),
    request_body(content = Object, content_type = "application/json", description = "Ignored; a JSON content type is required, so that a cross-site form cannot post it."),
    responses(
        (status = 200, description = "Forgotten (again, for a subject forgotten before).", body = Forgotten),
        (status = 415, description = "The request is not `application/json`.", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "The store was opened without keys: no personal data is kept.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn forget<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    Path(subject): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<Forgotten>, Problem> {
    es_axum::require_json(&headers)?;
    if service.store.keyring().is_none() {
        return Err(Problem::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "this service keeps no personal data",
            "the store was opened without a key provider (start the service with ES_MASTER_KEYS)",
        ));
    }
    service.dispatcher.forget(subject.as_str()).await?;
    Ok(axum::Json(Forgotten {
        subject,
        forgotten: true,
    }))
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

/// A refusal names the account and carries the domain error as data.
fn dispatch_problem(error: DispatchError<AnyRejection>) -> Problem {
    Problem::from_dispatch(error, "the account refused the command", |rejection| {
        rejection.downcast_ref::<AccountError>().map(account_error)
    })
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

/// An account's balance, from the read model.
#[derive(Debug, Serialize, ToSchema)]
struct BalanceAnswer {
    /// The account.
    account: String,
    /// In cents.
    balance: u64,
}

/// An account's balance from the read model; with `after`, once the read
/// model has seen that position (read-your-writes).
#[utoipa::path(
    get,
    path = "/accounts/{id}/balance",
    tag = "queries",
    params(
        ("id" = String, Path, description = "The account."),
        ("after" = Option<u64>, Query, description = "Wait (up to 5 s) until the read model has seen this position: the one a command answered with."),
    ),
    responses(
        (status = 200, description = "The balance.", body = BalanceAnswer),
        (status = 404, description = "No such account is open in the read model.", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The read model did not reach `after` in time.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn balance<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    Path(id): Path<String>,
    after: After,
) -> Result<axum::Json<BalanceAnswer>, Problem> {
    check_account(&id)?;
    after.wait(&service.balances, READ_YOUR_WRITES_TIMEOUT).await?;
    match service.balances.query(BalanceOf { account: id.clone() }) {
        Some(balance) => Ok(axum::Json(BalanceAnswer { account: id, balance })),
        None => Err(Problem::not_found(
            "no such account",
            format!("no account `{id}` is open in the read model"),
        )),
    }
}

#[derive(Deserialize)]
struct AsOf {
    version: Option<u64>,
    at: Option<i64>,
}

/// An account's state at a version or a time.
#[derive(Debug, Serialize, ToSchema)]
struct AccountAnswer {
    /// The account.
    account: String,
    /// The version the state is at (0: no events, a default state).
    version: u64,
    /// The state.
    state: BankAccount,
}

/// An account's state, rebuilt from its events: now, after its `version`th
/// event, or as of a time.
#[utoipa::path(
    get,
    path = "/accounts/{id}",
    tag = "queries",
    params(
        ("id" = String, Path, description = "The account."),
        ("version" = Option<u64>, Query, description = "The state after this many events."),
        ("at" = Option<i64>, Query, description = "The state as of this time, in Unix microseconds."),
    ),
    responses(
        (status = 200, description = "The state (version 0 for an account with no events).", body = AccountAnswer),
        (status = 400, description = "Both `version` and `at`, or an invalid account id.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn account<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    Path(id): Path<String>,
    Query(as_of): Query<AsOf>,
) -> Result<axum::Json<AccountAnswer>, Problem> {
    check_account(&id)?;
    let id = AccountId::new(&id);
    let Versioned { state, version } = match (as_of.version, as_of.at) {
        (Some(_), Some(_)) => {
            return Err(Problem::bad_request(
                "invalid request",
                "ask for a version or a time, not both",
            ));
        }
        (Some(version), None) => service.dispatcher.load_at_version::<BankAccount>(&id, version).await?,
        (None, Some(at)) => {
            service
                .dispatcher
                .load_as_of::<BankAccount>(&id, Timestamp::from_micros(at))
                .await?
        }
        (None, None) => service.dispatcher.load_versioned::<BankAccount>(&id).await?,
    };
    Ok(axum::Json(AccountAnswer {
        account: id.to_string(),
        version,
        state,
    }))
}

/// An account's audit trail: every event of its stream, decoded, with its
/// metadata and place.
#[utoipa::path(
    get,
    path = "/accounts/{id}/events",
    tag = "queries",
    params(("id" = String, Path, description = "The account.")),
    responses((status = 200, description = "Its events, oldest first (none for an unknown account).", body = Vec<es_axum::openapi::EventJson>))
)]
async fn audit<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, Problem> {
    let stream = check_account(&id)?;
    let events = service.store.read_stream_vec(&stream, 1).await?;
    Ok(axum::Json(Value::Array(
        events.iter().map(StoredEvent::to_json).collect(),
    )))
}

/// The last seal of the log: what an outsider keeps to check later that
/// the log only grew.
#[utoipa::path(
    get,
    path = "/audit/head",
    tag = "audit",
    responses(
        (status = 200, description = "The last seal: `size` events covered, their Merkle `root`, the `position` of the last, the `previous` seal's hash, `sealed_at` (Unix microseconds), the signing `key` and its Ed25519 `signature`, and the tree's `frontier`.", body = Object),
        (status = 404, description = "Nothing sealed yet.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn audit_head<S: EventStore + Clone>(
    State(service): State<Arc<Service<S>>>,
) -> Result<axum::Json<Value>, Problem> {
    let (_, seal) = es_core::audit::latest_seal(&service.store).await.map_err(|e| {
        Problem::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the seals do not read",
            e.to_string(),
        )
    })?;
    let seal =
        seal.ok_or_else(|| Problem::not_found("nothing sealed yet", "no seal of the log has been appended yet"))?;
    serde_json::to_value(seal).map(axum::Json).map_err(|e| {
        Problem::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "a seal did not serialize",
            e.to_string(),
        )
    })
}
