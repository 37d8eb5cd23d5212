//! Counters, gauges and histograms through the [`metrics`] facade, behind the
//! `metrics` feature: install any `metrics` recorder (a Prometheus exporter,
//! for one) and these appear. Without the feature nothing is measured and
//! nothing is spent.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `es_commands_total` | counter | `aggregate`, `command`, `outcome` | commands dispatched; `outcome` is the `es.outcome` of the dispatch span: `committed`, `duplicate`, `no_events`, `rejected`, `conflict`, `panicked`, `command_id_reused`, `error` |
//! | `es_command_duration_seconds` | histogram | `aggregate`, `outcome` | from the dispatch call to its answer, retries included |
//! | `es_conflicts_total` | counter | `aggregate` | version conflicts met by appends (each one, retried or not) |
//! | `es_command_retries_total` | counter | `aggregate` | commands decided again after a conflict |
//! | `es_append_duration_seconds` | histogram | `store` | the store's append, as the dispatcher waits for it (a command's, or an import's through `append_events`) |
//! | `es_load_duration_seconds` | histogram | `aggregate` | reading an aggregate's snapshot and events (a cold load, or the tail after a cached state) |
//! | `es_subscription_position` | gauge | `subscription` | the last position a spawned runner committed |
//! | `es_subscription_lag` | gauge | `subscription` | events between that position and the log's end as the runner last counted them |
//! | `es_subscription_skipped_total` | counter | `subscription` | entries of the log that were not events of the store (a foreign message on NATS), skipped |
//!
//! [`metrics`]: https://docs.rs/metrics

/// Whether measurements are taken (the `metrics` feature).
pub(crate) const ENABLED: bool = cfg!(feature = "metrics");

/// When something started, when measuring.
pub(crate) struct Clock(#[cfg(feature = "metrics")] std::time::Instant);

impl Clock {
    #[inline(always)]
    pub(crate) fn start() -> Self {
        Clock(
            #[cfg(feature = "metrics")]
            std::time::Instant::now(),
        )
    }

    #[cfg(feature = "metrics")]
    fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// A dispatched command's outcome and duration.
#[inline(always)]
pub(crate) fn command(aggregate: &'static str, command: &'static str, outcome: &'static str, started: &Clock) {
    #[cfg(feature = "metrics")]
    {
        ::metrics::counter!("es_commands_total", "aggregate" => aggregate, "command" => command, "outcome" => outcome)
            .increment(1);
        ::metrics::histogram!("es_command_duration_seconds", "aggregate" => aggregate, "outcome" => outcome)
            .record(started.seconds());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (aggregate, command, outcome, started);
}

/// A version conflict; `retried` when the command is decided again.
#[inline(always)]
pub(crate) fn conflict(aggregate: &'static str, retried: bool) {
    #[cfg(feature = "metrics")]
    {
        ::metrics::counter!("es_conflicts_total", "aggregate" => aggregate).increment(1);
        if retried {
            ::metrics::counter!("es_command_retries_total", "aggregate" => aggregate).increment(1);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (aggregate, retried);
}

/// An append's duration.
#[inline(always)]
pub(crate) fn append(store: &'static str, started: &Clock) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!("es_append_duration_seconds", "store" => store).record(started.seconds());
    #[cfg(not(feature = "metrics"))]
    let _ = (store, started);
}

/// A load's duration.
#[inline(always)]
pub(crate) fn load(aggregate: &'static str, started: &Clock) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!("es_load_duration_seconds", "aggregate" => aggregate).record(started.seconds());
    #[cfg(not(feature = "metrics"))]
    let _ = (aggregate, started);
}

/// A runner's committed position and its lag in events.
#[inline(always)]
pub(crate) fn subscription(name: &str, position: u64, lag: u64) {
    #[cfg(feature = "metrics")]
    {
        let name = name.to_owned();
        ::metrics::gauge!("es_subscription_position", "subscription" => name.clone()).set(position as f64);
        ::metrics::gauge!("es_subscription_lag", "subscription" => name).set(lag as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (name, position, lag);
}

/// Foreign entries of the log a runner skipped.
#[inline(always)]
pub(crate) fn skipped(name: &str, count: u64) {
    #[cfg(feature = "metrics")]
    if count > 0 {
        ::metrics::counter!("es_subscription_skipped_total", "subscription" => name.to_owned()).increment(count);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (name, count);
}
