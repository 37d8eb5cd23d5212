//! `GET /metrics`: es's metrics (and any other of the process, recorded
//! through the [`metrics`](https://docs.rs/metrics) facade) in the
//! Prometheus text format, by
//! [`metrics-exporter-prometheus`](https://docs.rs/metrics-exporter-prometheus).

use axum::Router;
use axum::http::header;
use axum::routing::get;
pub use metrics_exporter_prometheus::{BuildError, PrometheusHandle};

/// Installs a Prometheus recorder as the process's metrics recorder and
/// returns the route that renders it. Fails if the process already has a
/// recorder: install one per process.
pub fn install<St: Clone + Send + Sync + 'static>() -> Result<Router<St>, BuildError> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    Ok(routes(handle))
}

/// `GET /metrics` over a recorder installed elsewhere.
pub fn routes<St: Clone + Send + Sync + 'static>(handle: PrometheusHandle) -> Router<St> {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        handle.render(),
                    )
                }
            }),
        )
        .with_state(())
}
