//! The bank as an HTTP service: `cargo run -p examples --bin service`.
//!
//! Stores events in a SQLite file (`bank-service.db`, or the path in
//! `BANK_DB`), in PostgreSQL when `DATABASE_URL` is set, or on NATS
//! JetStream when `NATS_URL` is (prefix `bank`); listens on
//! `127.0.0.1:3000` (or `ADDR`). The routes are listed in
//! `examples::service`. Ctrl-C (or SIGTERM) stops it gracefully: in-flight
//! commands finish, live event streams end, the read model's runner stops at
//! a checkpoint.
//!
//! `RUST_LOG` filters what it logs to standard error (`RUST_LOG=info` shows
//! a span per request); `GET /metrics` serves es's metrics in the
//! Prometheus text format.
//!
//! With `ES_SEAL_KEY` set (an Ed25519 key in base64, as `es audit keygen`
//! writes it), the log is sealed every 1,000 events or 10 s, and
//! `GET /audit/head` serves the last seal.
//!
//! With `ES_MASTER_KEYS` set (`id:base64key`, see `es_core::personal`),
//! the store is opened with keys and `POST /subjects/{subject}/forget`
//! forgets a data subject; without it, that route answers 501.
//!
//! ```sh
//! curl -s localhost:3000/commands -H 'Content-Type: application/json' -d '{"type":"open","account":"ada","owner":"Ada"}'
//! curl -s localhost:3000/commands -H 'Content-Type: application/json' -H 'Idempotency-Key: dep-1' -d '{"type":"deposit","account":"ada","amount":500}'
//! curl -s 'localhost:3000/accounts/ada/balance?after=2'
//! curl -sN localhost:3000/events
//! ```

use es_core::EventStore;
use es_core::personal::EnvKeys;
use examples::service;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _telemetry = examples::init_tracing();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    if let Ok(url) = std::env::var("NATS_URL") {
        #[cfg(feature = "nats")]
        {
            let options = es_nats::NatsOptions {
                prefix: "bank".to_owned(),
                ..Default::default()
            };
            let mut store = es_nats::NatsStore::connect_with(&url, options).await?;
            if let Some(keys) = master_keys()? {
                store = store.with_keys(keys);
            }
            println!(
                "events in NATS JetStream at {url}; listening on http://{}",
                listener.local_addr()?
            );
            return serve(store, listener).await;
        }
        #[cfg(not(feature = "nats"))]
        return Err(missing("NATS_URL", &url, "nats"));
    }
    if let Ok(url) = std::env::var("DATABASE_URL") {
        #[cfg(feature = "postgres")]
        {
            let mut store = service::postgres(&url).await?;
            if let Some(keys) = master_keys()? {
                store = store.with_keys(keys);
            }
            println!("events in PostgreSQL; listening on http://{}", listener.local_addr()?);
            return serve(store, listener).await;
        }
        #[cfg(not(feature = "postgres"))]
        return Err(missing("DATABASE_URL", &url, "postgres"));
    }
    let path = std::env::var("BANK_DB").unwrap_or_else(|_| "bank-service.db".to_owned());
    let mut store = es_sqlite::SqliteStore::open(&path).await?;
    if let Some(keys) = master_keys()? {
        store = store.with_keys(keys);
    }
    println!("events in {path}; listening on http://{}", listener.local_addr()?);
    serve(store, listener).await
}

/// A store's variable is set, but this build left the store out. The URL
/// is not repeated: it may hold a password.
#[allow(dead_code)]
fn missing(variable: &str, _url: &str, feature: &str) -> Box<dyn std::error::Error> {
    format!("{variable} is set, but this build has no {feature} store: build with `--features {feature}`").into()
}

/// The master keys in `ES_MASTER_KEYS`, when it is set.
fn master_keys() -> Result<Option<EnvKeys>, Box<dyn std::error::Error>> {
    if std::env::var_os("ES_MASTER_KEYS").is_none() {
        return Ok(None);
    }
    Ok(Some(EnvKeys::from_env()?))
}

async fn serve<S: EventStore + Clone>(
    store: S,
    listener: tokio::net::TcpListener,
) -> Result<(), Box<dyn std::error::Error>> {
    let (router, running) = match std::env::var_os("ES_SEAL_KEY") {
        Some(_) => {
            let key = es_core::audit::SealKey::from_env("ES_SEAL_KEY")?;
            println!("sealing the log with public key {}", key.public_key());
            service::start_sealed(
                store.clone(),
                service::Limits::default(),
                es_core::audit::Sealer::new(store, key),
            )
        }
        None => service::start(store),
    };
    #[cfg(feature = "metrics")]
    let router = service::with_metrics(router)?;
    let signal = async {
        es_axum::shutdown_signal().await;
        println!("stopping: finishing in-flight requests");
    };
    running.serve(listener, router, signal).await?;
    println!("stopped");
    Ok(())
}
