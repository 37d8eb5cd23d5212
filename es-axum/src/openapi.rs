//! OpenAPI 3.1 descriptions of what this crate serves, built with
//! [utoipa](https://docs.rs/utoipa) (feature `openapi`).
//!
//! A service describes its own routes with utoipa's derives and merges in
//! [`description`] (`/health`, `/ready`, `/events`) and, with the
//! `prometheus` feature, [`metrics_description`] (`/metrics`);
//! [`problems`] documents the problem every operation may answer with, and
//! [`routes`] serves the whole document at `GET /openapi.json`:
//!
//! ```
//! use axum::Router;
//! use utoipa::OpenApi;
//!
//! /// Says hello.
//! #[utoipa::path(get, path = "/hello", responses((status = 200, description = "a greeting", body = String)))]
//! async fn hello() -> &'static str {
//!     "hello"
//! }
//!
//! #[derive(OpenApi)]
//! #[openapi(paths(hello))]
//! struct Api;
//!
//! let api = es_axum::openapi::problems(Api::openapi().merge_from(es_axum::openapi::description()));
//! let router: Router = Router::new()
//!     .route("/hello", axum::routing::get(hello))
//!     .merge(es_axum::openapi::routes(&api));
//! assert!(api.paths.paths.contains_key("/ready"));
//! ```

use std::borrow::Cow;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

use crate::problem::{PROBLEM_JSON, Problem};

fn typed(kind: Type, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(kind))
        .description(Some(description))
}

fn any(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some(description))
}

impl PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some("An error (RFC 9457 `application/problem+json`)."))
            .property(
                "type",
                typed(Type::String, "Always `about:blank`: the title says what happened."),
            )
            .required("type")
            .property(
                "title",
                typed(Type::String, "What happened, the same for every occurrence."),
            )
            .required("title")
            .property(
                "status",
                typed(Type::Integer, "The HTTP status.")
                    .minimum(Some(100))
                    .maximum(Some(599)),
            )
            .required("status")
            .property("detail", typed(Type::String, "What happened this time."))
            .required("detail")
            .property(
                "error",
                any("The domain's own error as data, when a command was refused: a `code` and its numbers."),
            )
            .into()
    }
}

impl ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }
}

/// The schema of a stored event as this crate and es's tools show it
/// ([`StoredEvent::to_json`](es_core::store::StoredEvent::to_json)): an
/// event with its place, or a foreign entry of the log.
#[derive(Debug)]
pub struct EventJson;

impl PartialSchema for EventJson {
    fn schema() -> RefOr<Schema> {
        let event = ObjectBuilder::new()
            .description(Some("An event of the log."))
            .property(
                "position",
                typed(Type::Integer, "Its place in the global log.").minimum(Some(1)),
            )
            .required("position")
            .property(
                "stream",
                typed(Type::String, "Its stream: `aggregate_type/aggregate_id`."),
            )
            .required("stream")
            .property(
                "version",
                typed(Type::Integer, "Its place in its stream, from 1.").minimum(Some(1)),
            )
            .required("version")
            .property("event_id", typed(Type::String, "Its id."))
            .required("event_id")
            .property("name", typed(Type::String, "Its stored name."))
            .required("name")
            .property(
                "schema_version",
                typed(Type::Integer, "The schema version it was written with."),
            )
            .required("schema_version")
            .property(
                "recorded_at",
                typed(Type::String, "When it was committed (RFC 3339, UTC)."),
            )
            .required("recorded_at")
            .property(
                "recorded_at_micros",
                typed(Type::Integer, "The same, in microseconds since the Unix epoch."),
            )
            .required("recorded_at_micros")
            .property(
                "link",
                typed(
                    Type::String,
                    "Its link in its stream's hash chain, hex (empty when unchained).",
                ),
            )
            .required("link")
            .property(
                "payload",
                any("The event as stored: its JSON, or `{\"hex\": ...}` for other bytes."),
            )
            .required("payload")
            .property(
                "metadata",
                any("Its metadata: command id, correlation, causation, user fields."),
            )
            .required("metadata");
        let foreign = ObjectBuilder::new()
            .description(Some("An entry of the log that is not an event of the store."))
            .property("position", typed(Type::Integer, "Its place in the global log."))
            .required("position")
            .property("foreign", typed(Type::String, "Where it was published."))
            .required("foreign")
            .property("bytes", typed(Type::Integer, "Its size."))
            .required("bytes");
        OneOfBuilder::new().item(event).item(foreign).into()
    }
}

impl ToSchema for EventJson {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Event")
    }
}

/// `GET /health` ([`Readiness::routes`](crate::Readiness::routes)).
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "The process answers.", body = String, content_type = "text/plain"))
)]
#[allow(dead_code)]
fn health() {}

/// `GET /ready` ([`Readiness::routes`](crate::Readiness::routes)).
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "The store answers and every read model has caught up.", body = String, content_type = "text/plain"),
        (status = 503, description = "The store does not answer, or a read model is behind (named in the detail).", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn ready() {}

/// `GET /events` ([`EventFeed::routes`](crate::EventFeed::routes)).
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    params(
        ("from" = Option<u64>, Query, description = "Start after this position (0: the log's start)."),
        ("Last-Event-ID" = Option<String>, Header, description = "A reconnecting client's last event id: the stream resumes after it, and `from` is ignored."),
    ),
    responses((
        status = 200,
        description = "The log after the position, live, as server-sent events: each event's `id` is its position and its `data` one `Event` as JSON.",
        body = String,
        content_type = "text/event-stream"
    ))
)]
#[allow(dead_code)]
fn events() {}

/// `GET /metrics` ([`prometheus::routes`](crate::prometheus::routes)).
#[cfg(feature = "prometheus")]
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((
        status = 200,
        description = "es's metrics in the Prometheus text format.",
        body = String,
        content_type = "text/plain; version=0.0.4"
    ))
)]
#[allow(dead_code)]
fn metrics() {}

#[derive(utoipa::OpenApi)]
#[openapi(paths(health, ready, events), components(schemas(Problem, EventJson)))]
struct Served;

/// `/health`, `/ready` and `/events`, with the `Problem` and `Event`
/// schemas.
pub fn description() -> OpenApi {
    use utoipa::OpenApi as _;
    Served::openapi()
}

/// `/metrics`.
#[cfg(feature = "prometheus")]
pub fn metrics_description() -> OpenApi {
    use utoipa::OpenApi as _;
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(metrics))]
    struct Metrics;
    Metrics::openapi()
}

/// `api` with a `default` response on every operation: a [`Problem`], as
/// `application/problem+json`. It stands for the statuses an operation does
/// not list, which [`protect`](crate::protect) and the extractors may
/// answer with on any route (400, 404, 405, 408, 413, 415, 503).
pub fn problems(mut api: OpenApi) -> OpenApi {
    let problem = ResponseBuilder::new()
        .description("An error (RFC 9457): a refused request, a missing resource, an unavailable store.")
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Problem"))))
                .build(),
        )
        .build();
    for item in api.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            operation
                .responses
                .responses
                .entry("default".to_owned())
                .or_insert_with(|| problem.clone().into());
        }
    }
    let components = api.components.get_or_insert_with(Default::default);
    components
        .schemas
        .entry("Problem".to_owned())
        .or_insert_with(Problem::schema);
    api
}

/// `GET /openapi.json`: `api`, serialized once, for any router state.
pub fn routes<St: Clone + Send + Sync + 'static>(api: &OpenApi) -> Router<St> {
    let body = api.to_json().unwrap_or_else(|e| {
        // A description made of utoipa's own types always serializes.
        format!("{{\"error\": \"the OpenAPI description did not serialize: {e}\"}}")
    });
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let body = body.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                        body,
                    )
                        .into_response()
                }
            }),
        )
        .with_state(())
}
