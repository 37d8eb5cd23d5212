//! Example domains for es, used by the runnable examples, the tests and the
//! benchmarks.

pub mod bank;
pub mod cart;
pub mod hotel;
pub mod service;
pub mod transfer;
pub mod views;

/// Installs a subscriber that writes es's events, and a line with the
/// timings of each span as it closes, to standard error, filtered by
/// `RUST_LOG` (`RUST_LOG=info` shows each command and each HTTP request,
/// `RUST_LOG=es_core=debug` also each load and each catch-up page; `warn`
/// when it is not set). Colours only on a terminal; tracing-subscriber
/// (0.3.20 on) escapes control characters in logged values, so an id sent
/// by a client cannot drive the terminal. A second call does nothing.
///
/// With the `otlp` feature (on by default) and `OTEL_EXPORTER_OTLP_ENDPOINT`
/// set, spans are also exported over OTLP (HTTP, JSON: an OpenTelemetry
/// Collector's port 4318 takes it) to `$OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces`,
/// as service `OTEL_SERVICE_NAME` (else the binary's name), filtered by
/// `OTEL_LOG_FILTER` (`info` when not set: every command and request). Keep
/// the returned [`Telemetry`] until the end of `main`: dropping it sends
/// the spans still batched.
pub fn init_tracing() -> Telemetry {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let (otlp, telemetry) = telemetry::layer();
    let _ = tracing_subscriber::registry().with(fmt).with(otlp).try_init();
    telemetry
}

pub use telemetry::Telemetry;

mod telemetry;
