//! Spans exported over OTLP when an endpoint is set (feature `otlp`).

#[cfg(feature = "otlp")]
use tracing_subscriber::Layer;

/// Keeps the span exporter running; dropping it sends what is batched and
/// stops it.
#[must_use = "dropping it stops the span exporter"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        #[cfg(feature = "otlp")]
        let exporting = self.provider.is_some();
        #[cfg(not(feature = "otlp"))]
        let exporting = false;
        f.debug_struct("Telemetry").field("exporting", &exporting).finish()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("could not send the last spans: {e}");
        }
    }
}

/// The OTLP layer, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
#[cfg(feature = "otlp")]
pub(crate) fn layer<S>() -> (Option<Box<dyn Layer<S> + Send + Sync>>, Telemetry)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};

    let none = || (None, Telemetry { provider: None });
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none_or(|e| e.is_empty()) {
        return none();
    }
    // The endpoint comes from the environment; the exporter adds `/v1/traces`.
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("spans will not be exported: {e}");
            return none();
        }
    };
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| {
        std::env::args()
            .next()
            .and_then(|a| {
                std::path::Path::new(&a)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "es".to_owned())
    });
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(name).build())
        .build();
    let filter = std::env::var("OTEL_LOG_FILTER")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("es"))
        .with_filter(filter)
        .boxed();
    (
        Some(layer),
        Telemetry {
            provider: Some(provider),
        },
    )
}

/// Without the `otlp` feature: nothing to export.
#[cfg(not(feature = "otlp"))]
pub(crate) fn layer() -> (Option<tracing_subscriber::layer::Identity>, Telemetry) {
    (None, Telemetry {})
}
