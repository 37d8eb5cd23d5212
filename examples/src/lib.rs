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
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
