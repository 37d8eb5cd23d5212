//! The service's OpenAPI description, checked three ways: it is a valid
//! OpenAPI 3.1 document (the OpenAPI Initiative's JSON Schema for 3.1,
//! `tests/data/openapi-3.1.schema.json`); it describes exactly the routes the
//! service documents and serves; and every answer the service gives, the
//! errors included, has a documented status and content type and a body
//! its documented schema accepts, as does every request body sent.

use std::collections::BTreeSet;
use std::time::Duration;

use es_core::InMemoryStore;
use examples::service;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The routes the service module's documentation lists, as
/// (method, path template): the table of `examples/src/service/mod.rs`.
fn documented_routes() -> BTreeSet<(String, String)> {
    let source = include_str!("../../examples/src/service/mod.rs");
    let mut routes = BTreeSet::new();
    for line in source.lines().filter(|l| l.starts_with("//! | `")) {
        let cell = line.split(" | ").nth(1).unwrap_or_default();
        for route in cell.split('`').filter(|c| c.contains(" /")) {
            let (method, path) = route.split_once(' ').unwrap();
            let path = path.split(['[', '?']).next().unwrap().trim();
            routes.insert((method.to_lowercase(), path.to_owned()));
        }
    }
    routes
}

/// A JSON Schema validator for `schema`, with the document's components
/// beside it so that its `$ref`s resolve.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.as_object().cloned().unwrap_or_default();
    root.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    root.insert("components".into(), doc["components"].clone());
    jsonschema::validator_for(&Value::Object(root)).unwrap_or_else(|e| panic!("schema {schema}: {e}"))
}

fn check(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let validator = validator(doc, schema);
    let errors: Vec<String> = validator.iter_errors(instance).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{what}: {instance} does not match its documented schema {schema}: {errors:?}"
    );
}

/// The operation of `doc` for `method` on the path template matching
/// `path` (`{...}` segments match any one segment).
fn operation<'d>(doc: &'d Value, method: &Method, path: &str) -> Option<(&'d str, &'d Value)> {
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"].as_object().unwrap().iter().find_map(|(template, item)| {
        let parts: Vec<&str> = template.split('/').collect();
        let matches = parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}')));
        let op = &item[method.as_str().to_lowercase()];
        (matches && op.is_object()).then_some((template.as_str(), op))
    })
}

struct Exchange {
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    key: Option<&'static str>,
    body: Option<&'static str>,
    status: u16,
}

fn call(method: Method, path: &'static str, status: u16) -> Exchange {
    Exchange {
        method,
        path,
        content_type: None,
        key: None,
        body: None,
        status,
    }
}

fn command(body: &'static str, key: Option<&'static str>, status: u16) -> Exchange {
    Exchange {
        method: Method::POST,
        path: "/commands",
        content_type: Some("application/json"),
        key,
        body: Some(body),
        status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_is_valid_complete_and_matches_every_answer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (router, running) = service::start(InMemoryStore::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(running.serve(listener, router, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();

    // Served as JSON, and a valid OpenAPI 3.1 document.
    let served = client.get(format!("{base}/openapi.json")).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "application/json");
    let doc: Value = served.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let oas: Value = serde_json::from_str(include_str!("../data/openapi-3.1.schema.json")).unwrap();
    let oas = jsonschema::validator_for(&oas).unwrap();
    let errors: Vec<String> = oas.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "not a valid OpenAPI 3.1 document: {errors:?}");

    // Exactly the routes the module documents, less the two served beside
    // the API: the description itself, and `/metrics` (mounted by
    // `with_metrics`, in the Prometheus format, not an API operation).
    let mut expected = documented_routes();
    assert!(expected.remove(&("get".to_owned(), "/openapi.json".to_owned())));
    assert!(expected.remove(&("get".to_owned(), "/metrics".to_owned())));
    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    assert_eq!(described, expected);
    assert!(expected.len() >= 8, "{expected:?}");

    // Every operation may answer with a problem.
    for (method, path) in &described {
        let default = &doc["paths"][path][method]["responses"]["default"];
        assert_eq!(
            default["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem",
            "{method} {path}"
        );
    }

    // The request schema of a command accepts what the service takes and
    // refuses what it refuses.
    let command_schema = &doc["paths"]["/commands"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let commands = validator(&doc, command_schema);
    for good in [
        json!({"type": "open", "account": "a", "owner": "A"}),
        json!({"type": "deposit", "account": "a", "amount": 5}),
        json!({"type": "withdraw", "account": "a", "amount": 5}),
        json!({"type": "close", "account": "a"}),
    ] {
        assert!(commands.is_valid(&good), "{good} refused by {command_schema}");
    }
    for bad in [
        json!({"type": "transfer", "account": "a"}),
        json!({"type": "deposit", "account": "a"}),
        json!({"type": "deposit", "account": "a", "amount": -1}),
        json!({"account": "a", "amount": 5}),
    ] {
        assert!(!commands.is_valid(&bad), "{bad} accepted by {command_schema}");
    }

    // The answers' schemas are not vacuous: a wrong answer fails them.
    let answer = validator(&doc, &json!({"$ref": "#/components/schemas/CommandAnswer"}));
    assert!(!answer.is_valid(&json!({"version": 1, "position": 2, "events": [], "deduplicated": false})));
    assert!(
        !answer.is_valid(&json!({"stream": "s", "version": "1", "position": 2, "events": [], "deduplicated": false}))
    );
    let problem = validator(&doc, &json!({"$ref": "#/components/schemas/Problem"}));
    assert!(!problem.is_valid(&json!({"title": "t", "status": 400})));

    // Every answer, the errors included, is as documented.
    let exchanges = [
        command(r#"{"type":"open","account":"ada","owner":"Ada"}"#, None, 200),
        command(r#"{"type":"deposit","account":"ada","amount":500}"#, Some("k1"), 200),
        command(r#"{"type":"deposit","account":"ada","amount":500}"#, Some("k1"), 200),
        command(r#"{"type":"deposit","account":"ada","amount":9}"#, Some("k1"), 422),
        command(r#"{"type":"withdraw","account":"ada","amount":9000}"#, None, 422),
        command(r#"{"type":"open","account":"ada","owner":"Ada"}"#, None, 422),
        command(r#"{"type":"deposit","account":"ada""#, None, 400),
        command(r#"{"type":"transfer","account":"ada"}"#, None, 400),
        command(r#"{"type":"open","account":"","owner":"Nobody"}"#, None, 400),
        Exchange {
            content_type: Some("text/plain"),
            ..command(r#"{"type":"close","account":"ada"}"#, None, 415)
        },
        call(Method::GET, "/accounts/ada/balance?after=2", 200),
        call(Method::GET, "/accounts/nobody/balance", 404),
        call(Method::GET, "/accounts/ada/balance?after=soon", 400),
        call(Method::GET, "/accounts/ada", 200),
        call(Method::GET, "/accounts/ada?version=1", 200),
        call(Method::GET, "/accounts/nobody", 200),
        call(Method::GET, "/accounts/ada?version=1&at=5", 400),
        call(Method::GET, "/accounts/ada/events", 200),
        call(Method::GET, "/accounts/nobody/events", 200),
        Exchange {
            content_type: Some("application/json"),
            body: Some("{}"),
            ..call(Method::POST, "/subjects/Ada/forget", 501)
        },
        call(Method::POST, "/subjects/Ada/forget", 415),
        call(Method::GET, "/audit/head", 404),
        call(Method::GET, "/health", 200),
        call(Method::GET, "/ready", 200),
        call(Method::DELETE, "/commands", 405),
        call(Method::GET, "/no/such/route", 404),
    ];
    let mut problems = 0;
    for exchange in &exchanges {
        if exchange.path == "/ready" {
            // Ready once the read model has caught up with the commands.
            for _ in 0..100 {
                if client.get(format!("{base}/ready")).send().await.unwrap().status() == 200 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut request = client.request(exchange.method.clone(), format!("{base}{}", exchange.path));
        if let Some(content_type) = exchange.content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(key) = exchange.key {
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = exchange.body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let what = format!("{} {} -> {status}", exchange.method, exchange.path);
        assert_eq!(status, exchange.status, "{what}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        let text = response.text().await.unwrap();
        let Some((template, op)) = operation(&doc, &exchange.method, exchange.path) else {
            // No such operation (404, 405): still a documented problem.
            assert_eq!(content_type, "application/problem+json", "{what}");
            let body: Value = serde_json::from_str(&text).unwrap();
            check(&doc, &json!({"$ref": "#/components/schemas/Problem"}), &body, &what);
            problems += 1;
            continue;
        };
        let responses = &op["responses"];
        let answer = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .unwrap_or_else(|| panic!("{what}: status not documented for {template}"));
        let media = content_type.split(';').next().unwrap().trim();
        let documented = answer["content"]
            .as_object()
            .and_then(|c| c.iter().find(|(k, _)| k.split(';').next().unwrap().trim() == media))
            .unwrap_or_else(|| panic!("{what}: content type {content_type} not documented: {answer}"));
        let schema = &documented.1["schema"];
        if media.ends_with("json") {
            let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
            check(&doc, schema, &body, &what);
            problems += usize::from(media == "application/problem+json");
        } else {
            check(&doc, schema, &json!(text), &what);
        }
        if exchange.method == Method::POST
            && let Some(body) = exchange.body.and_then(|b| serde_json::from_str::<Value>(b).ok())
            && status == 200
        {
            let request_schema = &op["requestBody"]["content"]["application/json"]["schema"];
            check(&doc, request_schema, &body, &format!("{what} (request)"));
        }
    }
    assert!(problems >= 12, "{problems} problems checked");

    // The live log: an event stream whose events' data are documented
    // events.
    let response = client.get(format!("{base}/events")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (_, op) = operation(&doc, &Method::GET, "/events").unwrap();
    assert!(op["responses"]["200"]["content"]["text/event-stream"].is_object());
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text.lines().find_map(|l| l.strip_prefix("data:")).unwrap().trim();
    let event: Value = serde_json::from_str(data).unwrap();
    check(
        &doc,
        &json!({"$ref": "#/components/schemas/Event"}),
        &event,
        "GET /events (first event)",
    );
    drop(stream);

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
