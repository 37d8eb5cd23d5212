//! es-axum through a real router on an ephemeral port and a real HTTP
//! client: every es error as a problem, the extractors' refusals,
//! idempotency keys, read-your-writes, readiness, the event stream's
//! resume, and a graceful stop with a stream open.

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use es_axum::{After, EventFeed, IdempotencyKey, Json, Limits, Path, Problem, Query, Readiness, Server};
use es_core::prelude::*;
use es_core::store::ExpectedVersion;
use es_core::{Conflict, LoadError, StoreError, WaitTimeout};
use serde_json::{Value, json};
use tokio::sync::oneshot;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(name = "counter.added")]
pub struct Added {
    by: u32,
}

#[derive(Debug, Clone, Event)]
pub enum CounterEvent {
    Added(Added),
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("cannot add nothing")]
pub struct Zero;

#[derive(Debug, Default, Clone, Aggregate)]
#[aggregate(name = "counter", id = u64, event = CounterEvent, error = Zero)]
pub struct Counter {
    value: u64,
}

#[es_core::handlers]
impl Counter {
    #[handle]
    fn add(&self, c: Add) -> Result<Added, Zero> {
        if c.by == 0 { Err(Zero) } else { Ok(Added { by: c.by }) }
    }

    #[apply]
    fn added(&mut self, e: &Added) {
        self.value += u64::from(e.by);
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Command)]
#[command(aggregate = Counter)]
pub struct Add {
    #[aggregate_id]
    id: u64,
    by: u32,
}

/// A read model: the total of every counter.
#[derive(Debug, Default)]
struct Total(u64);

#[es_core::handlers(read_model)]
impl Total {
    #[apply]
    fn added(&mut self, e: &Added) {
        self.0 += u64::from(e.by);
    }
}

struct App {
    dispatcher: Dispatcher<InMemoryStore>,
    total: Projection<Total>,
}

async fn add(
    State(app): State<Arc<App>>,
    key: IdempotencyKey,
    Json(command): Json<Add>,
) -> Result<axum::Json<Value>, Problem> {
    let committed = app
        .dispatcher
        .dispatch_with(command, key.metadata())
        .await
        .map_err(|e| Problem::from_dispatch(e, "the counter refused", |_: &Zero| Some(json!({"code": "zero"}))))?;
    Ok(axum::Json(
        json!({ "position": committed.position, "deduplicated": committed.deduplicated }),
    ))
}

async fn total_handler(State(app): State<Arc<App>>, after: After) -> Result<axum::Json<u64>, Problem> {
    after.wait(&app.total, Duration::from_millis(300)).await?;
    Ok(axum::Json(app.total.read(|t| t.0)))
}

#[derive(serde::Deserialize)]
struct Page {
    size: u32,
}

async fn counter(Path(id): Path<u64>, Query(page): Query<Page>) -> axum::Json<Value> {
    axum::Json(json!({ "id": id, "size": page.size }))
}

struct Running {
    base: String,
    store: InMemoryStore,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve(limits: Limits) -> Running {
    let store = InMemoryStore::new();
    let total = Projection::new("total", Total::default());
    let runner = total.spawn(store.clone(), Duration::from_millis(20));
    let feed = EventFeed::start(store.clone());
    let app = Arc::new(App {
        dispatcher: Dispatcher::new(store.clone()),
        total: total.clone(),
    });
    let router = es_axum::protect(
        Router::new()
            .route("/add", post(add))
            .route("/total", get(total_handler))
            .route("/counters/{id}", get(counter))
            .merge(feed.routes())
            .merge(Readiness::new(store.clone()).follower(total).routes())
            .with_state(app),
        limits,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = Server::new(limits).closing(feed).stopping(runner);
    let task = tokio::spawn(server.serve(listener, router, async {
        let _ = stopped.await;
    }));
    Running {
        base,
        store,
        stop,
        task,
    }
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, String, Value) {
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn assert_problem(answer: &(StatusCode, String, Value), status: StatusCode, detail_says: &str) {
    let (got, content_type, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(content_type, "application/problem+json", "{body}");
    assert_eq!(body["status"], json!(status.as_u16()), "{body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains(detail_says),
        "`{detail_says}` in {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extractors_refuse_with_problems_and_commands_run_once() {
    let running = serve(Limits::default()).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", running.base);
    let json_post = |body: &str| {
        client
            .post(url("/add"))
            .header("content-type", "application/json")
            .body(body.to_owned())
    };

    // A command, then the same Idempotency-Key again: run once.
    let first = send(json_post(r#"{"id":1,"by":5}"#).header("Idempotency-Key", "k1")).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.2);
    let again = send(json_post(r#"{"id":1,"by":5}"#).header("Idempotency-Key", "k1")).await;
    assert_eq!(again.2["deduplicated"], json!(true), "{}", again.2);
    assert_eq!(running.store.last_position().await.unwrap(), 1);
    // The same key with another body: 422, nothing written.
    let reused = send(json_post(r#"{"id":1,"by":6}"#).header("Idempotency-Key", "k1")).await;
    assert_problem(&reused, StatusCode::UNPROCESSABLE_ENTITY, "already used");
    // A refusal: 422 with the domain error as data.
    let refused = send(json_post(r#"{"id":1,"by":0}"#)).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, "cannot add nothing");
    assert_eq!(refused.2["title"], json!("the counter refused"));
    assert_eq!(refused.2["error"], json!({"code": "zero"}));
    // Not JSON: 415; malformed: 400 naming the field; a key that is not
    // visible ASCII: 400.
    let form = send(
        client
            .post(url("/add"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("id=1&by=2"),
    )
    .await;
    assert_problem(&form, StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json");
    let missing = send(json_post(r#"{"id":1}"#)).await;
    assert_problem(&missing, StatusCode::BAD_REQUEST, "missing field `by`");
    assert!(missing.2["detail"].as_str().unwrap().contains("`Add`"), "{}", missing.2);
    let bad_key = send(json_post(r#"{"id":1,"by":1}"#).header("Idempotency-Key", "caf\u{e9}".as_bytes())).await;
    assert_problem(&bad_key, StatusCode::BAD_REQUEST, "visible ASCII");
    // Path and query refusals, an unknown route, a method not taken.
    assert_problem(
        &send(client.get(url("/counters/x?size=1"))).await,
        StatusCode::BAD_REQUEST,
        "",
    );
    assert_problem(
        &send(client.get(url("/counters/1?size=big"))).await,
        StatusCode::BAD_REQUEST,
        "size",
    );
    assert_eq!(send(client.get(url("/counters/1?size=3"))).await.2["size"], json!(3));
    assert_problem(
        &send(client.get(url("/nowhere"))).await,
        StatusCode::NOT_FOUND,
        "/nowhere",
    );
    assert_problem(
        &send(client.delete(url("/add"))).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "DELETE",
    );
    assert_problem(
        &send(client.get(url("/total?after=nine"))).await,
        StatusCode::BAD_REQUEST,
        "after",
    );
    // Nothing refused wrote anything.
    assert_eq!(running.store.last_position().await.unwrap(), 1);

    // Read-your-writes, and a position not reached in time: 504.
    let (status, _, body) = send(client.get(url("/total?after=1"))).await;
    assert_eq!((status, body), (StatusCode::OK, json!(5)));
    assert_problem(
        &send(client.get(url("/total?after=99"))).await,
        StatusCode::GATEWAY_TIMEOUT,
        "position 99",
    );
    let (status, _, body) = send(client.get(url("/ready"))).await;
    assert_eq!((status, body), (StatusCode::OK, json!("ready")));
    let (status, _, _) = send(client.get(url("/health"))).await;
    assert_eq!(status, StatusCode::OK);

    // Body limits: declared too large, and sent too large without a length.
    let limited = send(json_post(&"x".repeat(70_000))).await;
    assert_problem(&limited, StatusCode::PAYLOAD_TOO_LARGE, "65536");
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_follower_behind() {
    let store = InMemoryStore::new();
    let dispatcher = Dispatcher::new(store.clone());
    dispatcher.dispatch(Add { id: 2, by: 1 }).await.unwrap();
    // A projection nobody feeds stays at 0 of 1.
    let idle = Projection::new("idle_total", Total::default());
    let readiness = Readiness::new(store.clone()).follower(idle.clone());
    let problem = readiness.check().await.unwrap_err();
    assert_eq!(problem.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        problem.detail().contains("`idle_total` is at position 0 of 1"),
        "{problem}"
    );
    idle.catch_up(&store).await.unwrap();
    readiness.check().await.unwrap();
}

/// Reads the SSE stream until `text` holds `frames` events.
async fn read_frames(response: &mut reqwest::Response, text: &mut String, frames: usize) {
    while text.matches("\n\n").count() < frames {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_and_a_graceful_stop_ends_it() {
    let running = serve(Limits::default()).await;
    let client = reqwest::Client::new();
    let dispatcher = Dispatcher::new(running.store.clone());
    for by in 1..=3 {
        dispatcher.dispatch(Add { id: 3, by }).await.unwrap();
    }
    let mut response = client
        .get(format!("{}/events", running.base))
        .header("Last-Event-ID", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    // Stored events after 1, then one committed while the stream is open.
    read_frames(&mut response, &mut text, 2).await;
    dispatcher.dispatch(Add { id: 3, by: 4 }).await.unwrap();
    read_frames(&mut response, &mut text, 3).await;
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(str::trim)
        .collect();
    assert_eq!(ids, ["2", "3", "4"], "{text}");
    assert!(text.contains("event: counter.added"), "{text}");

    // A stop while the stream is open ends it, then the server.
    let _ = running.stop.send(());
    tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .expect("the server stops with a stream open")
        .unwrap()
        .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .unwrap();
    assert!(matches!(rest, Ok(None) | Err(_)), "the stream ended: {rest:?}");
}

#[test]
fn every_es_error_has_its_status() {
    let stream = StreamId::new("counter", "1");
    let unavailable = || StoreError::Unavailable {
        store: "test",
        operation: "append",
        source: "connection refused".into(),
    };
    let cases: Vec<(Problem, StatusCode)> = vec![
        (
            Problem::from(StoreError::Invalid {
                store: "test",
                detail: "an id over the limit".into(),
            }),
            StatusCode::BAD_REQUEST,
        ),
        (Problem::from(unavailable()), StatusCode::SERVICE_UNAVAILABLE),
        (
            Problem::from(StoreError::Corrupt {
                store: "test",
                detail: "a row".into(),
            }),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            Problem::from(LoadError::Store(unavailable())),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            Problem::from(DispatchError::<Zero>::Rejected {
                command: "Add",
                stream: stream.clone(),
                error: Zero,
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Problem::from(DispatchError::<Zero>::Conflict {
                command: "Add",
                attempts: 3,
                conflict: Conflict {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Exact(1),
                    actual: 2,
                },
            }),
            StatusCode::CONFLICT,
        ),
        (
            Problem::from(DispatchError::<Zero>::CommandIdReused {
                command: "Add",
                stream: stream.clone(),
                command_id: "k".into(),
                earlier: "Other".into(),
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Problem::from(DispatchError::<Zero>::Panicked {
                aggregate: "counter",
                stream: stream.clone(),
                command: "Add",
                message: "boom".into(),
            }),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            Problem::from(DispatchError::<Zero>::Store(unavailable())),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            Problem::from(WaitTimeout {
                subscription: "total".into(),
                position: 9,
                reached: 3,
            }),
            StatusCode::GATEWAY_TIMEOUT,
        ),
    ];
    for (problem, status) in cases {
        assert_eq!(problem.status(), status, "{problem}");
        let body = problem.to_json();
        assert_eq!(body["status"], json!(status.as_u16()));
        assert_eq!(body["type"], json!("about:blank"));
        assert!(!problem.detail().is_empty() && !problem.title().is_empty());
        assert!(body.get("error").is_none());
    }
}
