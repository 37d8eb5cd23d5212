//! The service's `GET /metrics`, in a test binary of its own: the recorder
//! it installs is the process's, and no other test's commands may count.

use es_core::InMemoryStore;
use examples::service;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;

/// `GET /metrics` is scraped as Prometheus would: es's own counters for the
/// commands just served, and the read model's position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_the_prometheus_format() {
    let store = InMemoryStore::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (router, running) = service::start(store);
    // The only test of this binary that installs a recorder.
    let router = service::with_metrics(router).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(running.serve(listener, router, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let mut position = 0;
    for body in [
        r#"{"type":"open","account":"mo","owner":"Mo"}"#,
        r#"{"type":"withdraw","account":"mo","amount":5}"#,
    ] {
        let answer: Value = client
            .post(format!("{base}/commands"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        position = answer["position"].as_u64().unwrap_or(position);
    }
    // The read model has seen the commit before the scrape.
    let balance = client
        .get(format!("{base}/accounts/mo/balance?after={position}"))
        .send()
        .await
        .unwrap();
    assert_eq!(balance.status(), StatusCode::OK);
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        response.headers()
    );
    let text = response.text().await.unwrap();
    for line in [
        r#"es_commands_total{aggregate="bank_account",command="OpenAccount",outcome="committed"} 1"#,
        r#"es_commands_total{aggregate="bank_account",command="Withdraw",outcome="rejected"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "`{line}` in:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with(r#"es_subscription_position{subscription="balances"}"#)),
        "{text}"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
