//! The bank's HTTP service (`examples::service`), served on an ephemeral
//! port and driven by a real HTTP client: commands and every error status,
//! read-your-writes, the audit trail and past states, the live event tail,
//! a restart that resumes, and a store outage.

use std::time::Duration;

use es_core::InMemoryStore;
use examples::service;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::SwitchableStore;
use tokio::sync::oneshot;

/// A server running in this process.
struct Server {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start<S: es_core::EventStore + Clone>(store: S) -> Server {
        Self::start_with(store, service::Limits::default()).await
    }

    async fn start_with<S: es_core::EventStore + Clone>(store: S, limits: service::Limits) -> Server {
        Self::serve(service::start_with(store, limits)).await
    }

    /// Serves what `service::start*` built.
    async fn serve((router, running): (axum::Router, es_axum::Server)) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            running
                .serve(listener, router, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Server {
            base,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Shuts down gracefully and waits until it has.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the server stops within 10 s, even with a live event stream open")
            .unwrap();
    }
}

async fn post(client: &reqwest::Client, server: &Server, body: &str, key: Option<&str>) -> (StatusCode, Value, String) {
    let mut request = client
        .post(server.url("/commands"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = response.json().await.unwrap();
    (status, body, content_type)
}

async fn get(client: &reqwest::Client, server: &Server, path: &str) -> (StatusCode, Value) {
    let response = client.get(server.url(path)).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("es-service-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("bank.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_queries_and_every_error_status() {
    let store = es_sqlite::SqliteStore::open(temp_db("commands")).await.unwrap();
    let server = Server::start(store).await;
    let client = reqwest::Client::new();

    let (status, opened, _) = post(
        &client,
        &server,
        r#"{"type":"open","account":"ada","owner":"Ada"}"#,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    assert_eq!(
        (&opened["stream"], &opened["version"], &opened["position"]),
        (&json!("bank_account/ada"), &json!(1), &json!(1))
    );

    // The same Idempotency-Key twice: one deposit, the second answer says so.
    let deposit = r#"{"type":"deposit","account":"ada","amount":500}"#;
    let (status, first, _) = post(&client, &server, deposit, Some("dep-1")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!((&first["version"], &first["deduplicated"]), (&json!(2), &json!(false)));
    let (status, again, _) = post(&client, &server, deposit, Some("dep-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&again["version"], &again["deduplicated"]), (&json!(2), &json!(true)));
    // The key reused for another command: 422, and nothing is withdrawn.
    let (status, reused, content_type) = post(
        &client,
        &server,
        r#"{"type":"withdraw","account":"ada","amount":100}"#,
        Some("dep-1"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reused}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(
        reused["title"],
        json!("the Idempotency-Key was already used by another command")
    );
    assert!(
        reused["detail"]
            .as_str()
            .unwrap()
            .contains("already used there by command `Deposit`"),
        "{reused}"
    );

    // A refusal: 422, problem+json, the domain error as data.
    let (status, refused, content_type) = post(
        &client,
        &server,
        r#"{"type":"withdraw","account":"ada","amount":900}"#,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(refused["status"], json!(422));
    assert_eq!(refused["error"]["code"], json!("insufficient_funds"));
    assert_eq!(
        (&refused["error"]["balance"], &refused["error"]["requested"]),
        (&json!(500), &json!(900))
    );

    // Malformed JSON, an unknown command, a missing field, an id the store
    // refuses: 400 with a message that says what is wrong.
    for (body, says) in [
        (r#"{"type":"deposit","#, "EOF"),
        (r#"{"type":"fly","account":"ada"}"#, "unknown variant `fly`"),
        (r#"{"type":"deposit","account":"ada"}"#, "missing field `amount`"),
    ] {
        let (status, problem, content_type) = post(&client, &server, body, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(content_type, "application/problem+json");
        assert!(problem["detail"].as_str().unwrap().contains(says), "{problem}");
    }
    let long_key = "k".repeat(2_000);
    let (status, problem, _) = post(&client, &server, deposit, Some(&long_key)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("limit"), "{problem}");
    // None of the refused requests wrote anything.
    let (_, events) = get(&client, &server, "/accounts/ada/events").await;
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");

    // Read-your-writes: the position a command answered with.
    let (status, balance) = get(&client, &server, "/accounts/ada/balance?after=2").await;
    assert_eq!(status, StatusCode::OK, "{balance}");
    assert_eq!(balance["balance"], json!(500));
    let (status, _) = get(&client, &server, "/accounts/nobody/balance").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A position nobody will reach in time: 504, not a stale answer.
    let (status, late) = get(&client, &server, "/accounts/ada/balance?after=999").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{late}");

    // The audit trail, and the state now and in the past.
    assert_eq!(events[1]["name"], json!("account.deposited"));
    assert_eq!(events[1]["payload"]["amount"], json!(500));
    assert_eq!(events[1]["metadata"]["command_id"], json!("dep-1"));
    let (_, now) = get(&client, &server, "/accounts/ada").await;
    assert_eq!((&now["version"], &now["state"]["balance"]), (&json!(2), &json!(500)));
    let (_, then) = get(&client, &server, "/accounts/ada?version=1").await;
    assert_eq!((&then["version"], &then["state"]["balance"]), (&json!(1), &json!(0)));
    let opened_at = events[0]["recorded_at_micros"].as_i64().unwrap();
    let (_, at_open) = get(&client, &server, &format!("/accounts/ada?at={opened_at}")).await;
    assert_eq!(at_open["version"], json!(1));
    let (status, _) = get(&client, &server, "/accounts/ada?version=1&at=5").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) = get(&client, &server, "/health").await;
    assert_eq!(status, StatusCode::OK);
    let (status, ready) = get(&client, &server, "/ready").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    server.stop().await;
}

/// Reads SSE events from `body` until `count` have arrived: (id, data).
async fn next_events(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    count: usize,
) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    while out.len() < count {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str(v.trim()).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, data));
            }
        }
        if out.len() >= count {
            break;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream stays open")
            .unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_tail_is_live_and_resumes_after_a_restart() {
    let path = temp_db("tail");
    let client = reqwest::Client::new();
    let server = Server::start(es_sqlite::SqliteStore::open(&path).await.unwrap()).await;
    for body in [
        r#"{"type":"open","account":"bob","owner":"Bob"}"#,
        r#"{"type":"deposit","account":"bob","amount":100}"#,
    ] {
        assert_eq!(post(&client, &server, body, None).await.0, StatusCode::OK);
    }

    let response = client.get(server.url("/events?from=0")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let stored = next_events(&mut body, &mut buffer, 2).await;
    assert_eq!(stored.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(stored[0].1["name"], json!("account.opened"));

    // A commit while the stream is open arrives on it.
    let (_, third, _) = post(
        &client,
        &server,
        r#"{"type":"deposit","account":"bob","amount":7}"#,
        None,
    )
    .await;
    let live = next_events(&mut body, &mut buffer, 1).await;
    assert_eq!(live[0].0, third["position"].as_u64().unwrap());
    assert_eq!(live[0].1["payload"]["amount"], json!(7));

    // A graceful stop ends the open stream instead of waiting for it.
    server.stop().await;
    drop(body);

    // Restarted on the same file: the read model is rebuilt, and a client
    // resuming with Last-Event-ID gets only what came after.
    let server = Server::start(es_sqlite::SqliteStore::open(&path).await.unwrap()).await;
    let (status, balance) = get(&client, &server, "/accounts/bob/balance?after=3").await;
    assert_eq!(status, StatusCode::OK, "{balance}");
    assert_eq!(balance["balance"], json!(107));
    let response = client
        .get(server.url("/events"))
        .header("Last-Event-ID", "3")
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let (_, fourth, _) = post(
        &client,
        &server,
        r#"{"type":"withdraw","account":"bob","amount":5}"#,
        None,
    )
    .await;
    let resumed = next_events(&mut body, &mut buffer, 1).await;
    assert_eq!(resumed[0].0, 4);
    assert_eq!(resumed[0].0, fourth["position"].as_u64().unwrap());
    assert_eq!(resumed[0].1["name"], json!("account.withdrawn"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_answers_503_and_the_service_recovers() {
    let store = SwitchableStore::new(InMemoryStore::new());
    let server = Server::start(store.clone()).await;
    let client = reqwest::Client::new();
    let open = r#"{"type":"open","account":"cy","owner":"Cy"}"#;

    store.set_down(true);
    let (status, problem, content_type) = post(&client, &server, open, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert!(problem["detail"].as_str().unwrap().contains("unavailable"), "{problem}");
    let (status, _) = get(&client, &server, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = get(&client, &server, "/accounts/cy/events").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    store.set_down(false);
    let (status, opened, _) = post(&client, &server, open, None).await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    let (status, balance) = get(&client, &server, "/accounts/cy/balance?after=1").await;
    assert_eq!((status, &balance["balance"]), (StatusCode::OK, &json!(0)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_that_outlast_the_retries_answer_409() {
    let store = SwitchableStore::new(InMemoryStore::new());
    let server = Server::start(store.clone()).await;
    let client = reqwest::Client::new();
    let (status, opened, _) = post(&client, &server, r#"{"type":"open","account":"di","owner":"Di"}"#, None).await;
    assert_eq!(status, StatusCode::OK, "{opened}");

    // Another writer deposits before each of the service's attempts.
    store.set_contended(true);
    let deposit = r#"{"type":"deposit","account":"di","amount":3}"#;
    let (status, problem, content_type) = post(&client, &server, deposit, Some("dep-di")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert!(problem["detail"].as_str().unwrap().contains("Deposit"), "{problem}");

    // The same request, retried by the client once the contention is over,
    // is decided afresh: the first attempt wrote nothing of its own.
    store.set_contended(false);
    let (status, committed, _) = post(&client, &server, deposit, Some("dep-di")).await;
    assert_eq!(status, StatusCode::OK, "{committed}");
    assert_eq!(committed["deduplicated"], json!(false));
    let (_, events) = get(&client, &server, "/accounts/di/events").await;
    let events = events.as_array().expect("an array");
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["metadata"]["command_id"] == json!("dep-di"))
        .collect();
    assert_eq!(mine.len(), 1, "{events:?}");
    // The other writer's deposits are real: the balance counts them.
    let others = events.len() - 2;
    assert!(others >= 1);
    let after = committed["position"].as_u64().unwrap();
    let (_, balance) = get(&client, &server, &format!("/accounts/di/balance?after={after}")).await;
    assert_eq!(balance["balance"], json!(3 * (others as u64 + 1)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_commands_in_flight() {
    let store = SwitchableStore::new(InMemoryStore::new());
    let server = Server::start(store.clone()).await;
    let client = reqwest::Client::new();
    let (status, _, _) = post(&client, &server, r#"{"type":"open","account":"ed","owner":"Ed"}"#, None).await;
    assert_eq!(status, StatusCode::OK);

    // A deposit whose commit takes half a second, and a shutdown during it.
    store.set_append_delay(Duration::from_millis(500));
    let request = client
        .post(server.url("/commands"))
        .header("content-type", "application/json")
        .body(r#"{"type":"deposit","account":"ed","amount":9}"#)
        .send();
    let in_flight = tokio::spawn(async move {
        let response = request.await.unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let url = server.url("/commands");
    server.stop().await;
    let (status, committed) = in_flight.await.unwrap();
    assert_eq!(
        (status, &committed["version"]),
        (StatusCode::OK, &json!(2)),
        "{committed}"
    );
    let stream = es_core::StreamId::new("bank_account", "ed");
    assert_eq!(es_core::EventStore::stream_version(&store, &stream).await.unwrap(), 2);
    // Stopped means stopped: nothing listens any more.
    assert!(client.post(url).body("{}").send().await.is_err());
}

/// Stripe's rule: a key reused with another body is refused. Twenty
/// deposits race under one key, ten of 5 and ten of 500: one is stored,
/// those with its body get its outcome (200), the others a 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_with_another_body_is_a_422_and_withdraws_nothing() {
    let server = Server::start(InMemoryStore::new()).await;
    let client = reqwest::Client::new();
    let (status, _, _) = post(&client, &server, r#"{"type":"open","account":"key","owner":"K"}"#, None).await;
    assert_eq!(status, StatusCode::OK);
    let requests: Vec<_> = (0..20)
        .map(|i| {
            let (client, url) = (client.clone(), server.url("/commands"));
            let amount = if i % 2 == 0 { 5 } else { 500 };
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("Idempotency-Key", "same-key")
                    .body(format!(r#"{{"type":"deposit","account":"key","amount":{amount}}}"#))
                    .send()
                    .await
                    .unwrap();
                (amount, response.status(), response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    let stored: Vec<_> = answers
        .iter()
        .filter(|(_, status, body)| *status == StatusCode::OK && body["deduplicated"] == json!(false))
        .collect();
    assert_eq!(stored.len(), 1, "{answers:?}");
    let winner = stored[0].0;
    for (amount, status, body) in &answers {
        if *amount == winner {
            assert_eq!(*status, StatusCode::OK, "{body}");
        } else {
            assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("another `Deposit` with other content"),
                "{body}"
            );
        }
    }
    let (_, balance) = get(&client, &server, "/accounts/key?version=2").await;
    assert_eq!(balance["state"]["balance"], json!(winner));
    let (_, events) = get(&client, &server, "/accounts/key/events").await;
    assert_eq!(events.as_array().unwrap().len(), 2, "one deposit stored");
    server.stop().await;
}

/// What the framework answers by itself is `application/problem+json` too:
/// 404, 405, 413, a bad query string, a command that is not JSON (a form
/// post), an empty account id, and an id no store keeps.
async fn framework_errors_on<S: es_core::EventStore + Clone>(store: S) {
    let server = Server::start(store).await;
    // A connection per request: the server rightly closes one whose body it
    // refused (413), and a pooled client could send the next request on it
    // as it closes (a broken pipe, seen in CI).
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let problem = async |response: reqwest::Response| {
        let status = response.status();
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(content_type, "application/problem+json", "{status} {body}");
        assert_eq!(body["status"], json!(status.as_u16()));
        (status, body)
    };
    let (status, body) = problem(client.get(server.url("/nowhere")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = problem(client.get(server.url("/commands")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let huge = format!(r#"{{"type":"open","account":"a","owner":"{}"}}"#, "x".repeat(100_000));
    let (status, _) = problem(
        client
            .post(server.url("/commands"))
            .header("content-type", "application/json")
            .body(huge)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = problem(
        client
            .get(server.url("/accounts/a/balance?after=abc"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = problem(client.get(server.url("/events?from=-1")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A cross-site form can post `application/x-www-form-urlencoded` or
    // `text/plain`, never JSON.
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut request = client
            .post(server.url("/commands"))
            .body(r#"{"type":"open","account":"form","owner":"F"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, _) = problem(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
    }
    let (status, body, _) = post(&client, &server, r#"{"type":"open","account":"","owner":"E"}"#, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("empty"), "{body}");
    let (status, body) = problem(client.get(server.url("/accounts/a%00b/events")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = problem(client.get(server.url("/accounts/a%00b")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_errors_are_problems_too() {
    framework_errors_on(InMemoryStore::new()).await;
    if let Some(store) = tests::postgres::store().await {
        framework_errors_on(store).await;
    }
}

/// The README's command on a database that has never seen es: the service
/// creates its tables and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_runs_on_a_fresh_postgres_database() {
    let Some(pool) = tests::postgres::pool().await else {
        return;
    };
    let database = format!("es_fresh_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"DROP DATABASE IF EXISTS "{database}" WITH (FORCE)"#
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{database}""#)))
        .execute(&pool)
        .await
        .unwrap();
    let server_url = tests::postgres::server_url();
    let base = server_url
        .split('?')
        .next()
        .unwrap()
        .rsplit_once('/')
        .unwrap()
        .0
        .to_owned();
    let store = service::postgres(&format!("{base}/{database}"))
        .await
        .expect("connect and create the tables");
    let server = Server::start(store.clone()).await;
    let client = reqwest::Client::new();
    let (status, body, _) = post(
        &client,
        &server,
        r#"{"type":"open","account":"fresh","owner":"F"}"#,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get(&client, &server, "/accounts/fresh/events").await;
    assert_eq!((status, body.as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    server.stop().await;
    store.pool().close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"DROP DATABASE "{database}" WITH (FORCE)"#
    )))
    .execute(&pool)
    .await
    .unwrap();
}

/// Slow clients (one header byte at a time, a body that never ends) are cut
/// off by the limits; while they hold every connection slot, a real client
/// is served as soon as one frees; a shutdown does not wait for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_do_not_hold_the_service() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = service::Limits {
        header_timeout: Duration::from_millis(800),
        body_timeout: Duration::from_millis(800),
        max_connections: 20,
        shutdown_grace: Duration::from_secs(2),
        ..service::Limits::default()
    };
    let server = Server::start_with(InMemoryStore::new(), limits).await;
    let address = server.base.trim_start_matches("http://").to_owned();
    // Fifty clients trickling one header byte every 200 ms.
    let started = std::time::Instant::now();
    let slow: Vec<_> = (0..50)
        .map(|_| {
            let address = address.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else {
                    return None;
                };
                let opened = std::time::Instant::now();
                for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
                    if stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    let mut buf = [0u8; 512];
                    match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        _ => {}
                    }
                    if opened.elapsed() > Duration::from_secs(20) {
                        return Some(opened.elapsed());
                    }
                }
                Some(opened.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A real client, while the slow ones hold every slot.
    let client = reqwest::Client::new();
    let (status, body, _) = post(
        &client,
        &server,
        r#"{"type":"open","account":"real","owner":"R"}"#,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let served_after = started.elapsed();
    // A body that never ends: 408.
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(
            b"POST /commands HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a body that never ends held the connection for 5 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let mut held = Vec::new();
    for task in slow {
        if let Some(elapsed) = task.await.unwrap() {
            held.push(elapsed);
        }
    }
    let longest = held.iter().max().copied().unwrap_or_default();
    assert!(longest < Duration::from_secs(5), "a slow client was held {longest:?}");
    // Slow clients again, then a shutdown: it ends within the grace.
    let address_again = address.clone();
    let lingering: Vec<_> = (0..10)
        .map(|_| {
            let address = address_again.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(&address).await.ok()?;
                stream.write_all(b"GET /heal").await.ok()?;
                tokio::time::sleep(Duration::from_secs(30)).await;
                Some(stream)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = std::time::Instant::now();
    server.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    for task in lingering {
        task.abort();
    }
    eprintln!(
        "slow clients: {} cut off after at most {longest:?}; a real client served after {served_after:?}",
        held.len()
    );
}

/// One follower feeds every live event stream: fifty idle streams add no
/// read of the log per command, and each still gets every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_event_streams_cost_no_reads_per_command() {
    let store = tests::CountingStore::new(InMemoryStore::new());
    let server = Server::start(store.clone()).await;
    let client = reqwest::Client::new();
    let (status, _, _) = post(&client, &server, r#"{"type":"open","account":"sse","owner":"S"}"#, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut streams = Vec::new();
    for _ in 0..50 {
        let response = client.get(server.url("/events?from=0")).send().await.unwrap();
        streams.push((response.bytes_stream(), String::new()));
    }
    // Each has its first event: it caught up from the store.
    for (stream, buffer) in &mut streams {
        let events = next_events(stream, buffer, 1).await;
        assert_eq!(events.len(), 1);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = store.log_reads();
    for _ in 0..20 {
        let (status, _, _) = post(
            &client,
            &server,
            r#"{"type":"deposit","account":"sse","amount":1}"#,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    for (stream, buffer) in &mut streams {
        let events = next_events(stream, buffer, 20).await;
        assert_eq!(events.len(), 20);
        assert_eq!(events.last().unwrap().0, 21);
    }
    let reads = store.log_reads() - before;
    // The feed and the read model: about two reads a command, not fifty.
    assert!(
        reads <= 20 * 4,
        "{reads} reads of the log for 20 commands and 50 idle streams"
    );
    drop(streams);
    server.stop().await;
}

/// `POST /subjects/{subject}/forget`: the guest's values read as forgotten
/// afterwards, the forget is recorded once, a form cannot post it, an id
/// no store keeps is a 400, and a store without keys answers 501.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_request_forgets_the_subject() {
    use examples::hotel::Guest;

    let store = InMemoryStore::new().with_keys(tests::personal::keys());
    let server = Server::start(store.clone()).await;
    let client = reqwest::Client::new();
    let guest = tests::personal::guest();
    tests::personal::register(&es_core::Dispatcher::new(store.clone()), &guest).await;

    let forget = |subject: &str, content_type: Option<&str>| {
        let mut request = client.post(server.url(&format!("/subjects/{subject}/forget")));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let refused = forget(&guest, Some("application/x-www-form-urlencoded")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let loaded = es_core::Dispatcher::new(store.clone())
        .load::<Guest>(&guest)
        .await
        .unwrap();
    assert!(
        loaded.name.as_ref().is_some_and(|n| n.get().is_some()),
        "a refused forget forgot"
    );

    for _ in 0..2 {
        let answer = forget(&guest, Some("application/json")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body, json!({"subject": guest, "forgotten": true}));
    }
    let loaded = es_core::Dispatcher::new(store.clone())
        .load::<Guest>(&guest)
        .await
        .unwrap();
    assert!(loaded.name.as_ref().is_some_and(|n| n.is_forgotten()), "{loaded:?}");
    assert!(loaded.email.as_ref().is_some_and(|n| n.is_forgotten()));
    assert_eq!(loaded.nights, 2);
    let recorded =
        es_core::EventStoreExt::read_stream_vec(&store, &es_core::StreamId::new(es_core::FORGOTTEN_STREAM, &guest), 1)
            .await
            .unwrap();
    assert_eq!(recorded.len(), 1, "one forget event for two requests");

    let bad = forget("a%00b", Some("application/json")).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    server.stop().await;

    let server = Server::start(InMemoryStore::new()).await;
    let answer = client
        .post(server.url("/subjects/someone/forget"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    server.stop().await;
}

/// A service started with a sealer seals what it commits, and serves the
/// last seal: signed by its key, covering the commands, and what a
/// verification of the whole log ends at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_service_serves_its_last_seal_and_the_log_verifies() {
    use es_core::audit::{Seal, SealKey, Sealer, VerifyOptions, verify};

    let store = es_sqlite::SqliteStore::memory().await.unwrap();
    let key = SealKey::generate();
    let public = key.public_key();
    let sealer = Sealer::new(store.clone(), key).every(Duration::from_millis(100));
    let server = Server::serve(service::start_sealed(store.clone(), service::Limits::default(), sealer)).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let head = || async {
        let response = client.get(format!("{base}/audit/head")).send().await.unwrap();
        let status = response.status();
        (status, response.json::<Value>().await.unwrap())
    };
    let (status, problem) = head().await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["title"], "nothing sealed yet");

    for body in [
        r#"{"type":"open","account":"sealed","owner":"Sue"}"#,
        r#"{"type":"deposit","account":"sealed","amount":5}"#,
        r#"{"type":"deposit","account":"sealed","amount":7}"#,
    ] {
        let (status, answer, _) = post(&client, &server, body, None).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let mut seal = None;
    for _ in 0..100 {
        let (status, body) = head().await;
        if status == StatusCode::OK && body["size"].as_u64() >= Some(3) {
            seal = Some(serde_json::from_value::<Seal>(body).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seal = seal.expect("a seal covering the three commands within 5 s");
    assert_eq!(seal.key, public);

    // The served head is one the whole log verifies against, signed by
    // the service's key.
    let options = VerifyOptions {
        trusted: vec![public],
        head: Some(seal.clone()),
        ..VerifyOptions::default()
    };
    let report = verify(&store, &options, |_, _| {}).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.head_checked && report.seals >= 1);

    // The sealer stops with the server.
    server.stop().await;
}
