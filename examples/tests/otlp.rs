//! Spans leave the process over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set: the examples are run as a user runs them, against a stand-in
//! collector this test starts (OTLP over HTTP with JSON bodies, as an
//! OpenTelemetry Collector's port 4318 takes them).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::Value;

/// A collector: every OTLP trace export it receives, as JSON.
struct Collector {
    endpoint: String,
    exports: Arc<Mutex<Vec<Value>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Collector {
    fn start() -> Collector {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let exports = Arc::new(Mutex::new(Vec::new()));
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = exports.clone();
        let router = Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                let seen = seen.clone();
                async move {
                    let export: Value = serde_json::from_slice(&body).expect("an OTLP export in JSON");
                    seen.lock().unwrap().push(export);
                    ([("content-type", "application/json")], "{}")
                }
            }),
        );
        runtime.spawn(async move { axum::serve(listener, router).await.unwrap() });
        Collector {
            endpoint,
            exports,
            _runtime: runtime,
        }
    }

    /// Every span received, with its service's name.
    fn spans(&self) -> Vec<(String, Value)> {
        let mut spans = Vec::new();
        for export in self.exports.lock().unwrap().iter() {
            for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                let service = attribute(&resource["resource"], "service.name").unwrap_or_default();
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    for span in scope["spans"].as_array().into_iter().flatten() {
                        spans.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }
}

/// A string attribute of an OTLP span or resource.
fn attribute(item: &Value, key: &str) -> Option<String> {
    item["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"]["stringValue"].as_str().map(str::to_owned))
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("es-otlp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_bank_exports_a_span_per_command_to_the_collector() {
    let collector = Collector::start();
    let dir = temp_dir("bank");
    let output = Command::new(env!("CARGO_BIN_EXE_bank"))
        .env("BANK_DB", dir.join("bank.db"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint)
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("RUST_LOG")
        .env_remove("NATS_URL")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Exporting prints nothing: no failure to send, no log below a warning.
    assert!(stderr.trim().is_empty(), "{stderr}");

    // Sent before the process exited: dropping the guard flushes the batch.
    let spans = collector.spans();
    let dispatches: Vec<&Value> = spans
        .iter()
        .filter(|(service, span)| service == "bank" && span["name"] == "es.dispatch")
        .map(|(_, span)| span)
        .collect();
    assert!(dispatches.len() >= 5, "a span per command: {spans:?}");
    let opened = dispatches
        .iter()
        .find(|s| attribute(s, "es.command.type").as_deref() == Some("OpenAccount"))
        .unwrap_or_else(|| panic!("an OpenAccount command: {dispatches:?}"));
    assert_eq!(attribute(opened, "es.aggregate.type").as_deref(), Some("bank_account"));
    assert_eq!(attribute(opened, "es.outcome").as_deref(), Some("committed"));
    for span in &dispatches {
        assert_eq!(span["traceId"].as_str().map(str::len), Some(32), "{span}");
        assert_eq!(span["spanId"].as_str().map(str::len), Some(16), "{span}");
    }
}

#[test]
fn the_service_exports_each_request_with_its_command_inside_it() {
    let collector = Collector::start();
    let dir = temp_dir("service");
    let mut service = Command::new(env!("CARGO_BIN_EXE_service"))
        .env("BANK_DB", dir.join("bank.db"))
        .env("ADDR", "127.0.0.1:0")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint)
        .env("OTEL_SERVICE_NAME", "bank-service")
        .env_remove("RUST_LOG")
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .env_remove("ES_MASTER_KEYS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(service.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap_or_else(|| panic!("the service says where it listens: {line}"))
        .to_owned();

    let body = r#"{"type":"open","account":"otel","owner":"Ann"}"#;
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "POST /commands HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A graceful stop (SIGTERM) flushes the spans on its way out.
    let killed = Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = service.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the service did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    service.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{stderr}");

    let spans = collector.spans();
    let request = spans
        .iter()
        .find(|(service, span)| {
            service == "bank-service" && attribute(span, "url.path").as_deref() == Some("/commands")
        })
        .map(|(_, span)| span)
        .unwrap_or_else(|| panic!("the request's span: {spans:?}"));
    assert_eq!(attribute(request, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(request["kind"], 2, "a server span: {request}");
    let dispatch = spans
        .iter()
        .map(|(_, span)| span)
        .find(|span| span["name"] == "es.dispatch")
        .unwrap_or_else(|| panic!("the command's span: {spans:?}"));
    // One trace: the command ran inside the request.
    assert_eq!(dispatch["traceId"], request["traceId"]);
    assert_eq!(dispatch["parentSpanId"], request["spanId"]);
    assert_eq!(attribute(dispatch, "es.aggregate.id").as_deref(), Some("otel"));
}
