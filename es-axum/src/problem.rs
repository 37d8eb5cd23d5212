//! Errors as `application/problem+json` (RFC 9457), one mapping for every
//! es error.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use es_core::{DispatchError, LoadError, StoreError, WaitTimeout};
use serde_json::{Map, Value, json};

/// The media type of a [`Problem`].
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer: an HTTP status, a short title that is the same for
/// every occurrence of the problem, a detail about this one, and an
/// optional `error` member with the domain's own error as data.
///
/// Every es error converts into one (`?` in a handler that returns
/// `Result<_, Problem>`):
///
/// | error | status |
/// |---|---|
/// | [`DispatchError::Rejected`] | 422 (the rejection's message is the detail; attach it as data with [`Problem::with_error`]) |
/// | [`DispatchError::CommandIdReused`] | 422 (the IETF idempotency-key draft's answer to a key reused for another request) |
/// | [`DispatchError::Conflict`] | 409 (conflicts outlasted the retries) |
/// | [`StoreError::Invalid`] | 400 |
/// | [`StoreError::Unavailable`], [`StoreError::Backend`] | 503 |
/// | [`WaitTimeout`] | 504 (a read model did not catch up in time) |
/// | anything else (a stored event that cannot be decoded, a panicked handler, a corrupt store) | 500 |
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    status: StatusCode,
    title: String,
    detail: String,
    error: Option<Value>,
}

impl Problem {
    /// A problem with `status`, `title` and `detail`.
    pub fn new(status: StatusCode, title: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            title: title.into(),
            detail: detail.into(),
            error: None,
        }
    }

    /// Adds the domain's error as data (the body's `error` member): a code
    /// and its numbers, say, for a client to act on.
    #[must_use]
    pub fn with_error(mut self, error: Value) -> Problem {
        self.error = Some(error);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// A 400 with `title` and `detail`.
    pub fn bad_request(title: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, title, detail)
    }

    /// A 404 with `title` and `detail`.
    pub fn not_found(title: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, title, detail)
    }

    /// A [`DispatchError`], with `rejection` turning the handler's error
    /// into data for the body's `error` member (see
    /// [`Problem::with_error`]); `title` is the title of a rejection.
    pub fn from_dispatch<E: std::fmt::Display>(
        error: DispatchError<E>,
        title: &str,
        rejection: impl FnOnce(&E) -> Option<Value>,
    ) -> Problem {
        let data = error.rejection().and_then(rejection);
        let problem = match &error {
            DispatchError::Rejected { .. } => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, title, error.to_string()),
            _ => Problem::from(error),
        };
        match data {
            Some(data) => problem.with_error(data),
            None => problem,
        }
    }

    /// The body, as sent.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), json!("about:blank"));
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        if let Some(error) = &self.error {
            body.insert("error".into(), error.clone());
        }
        Value::Object(body)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.title, self.detail)
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.to_json())).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Problem {
        match &error {
            StoreError::Invalid { .. } => Problem::bad_request("invalid request", error.to_string()),
            StoreError::Backend { .. } | StoreError::Unavailable { .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event store is unavailable",
                error.to_string(),
            ),
            _ => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "store failure", error.to_string()),
        }
    }
}

impl From<LoadError> for Problem {
    fn from(error: LoadError) -> Problem {
        match error {
            LoadError::Store(e) => Problem::from(e),
            LoadError::Decode(e) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "a stored event cannot be decoded",
                e.to_string(),
            ),
        }
    }
}

impl<E: std::fmt::Display> From<DispatchError<E>> for Problem {
    fn from(error: DispatchError<E>) -> Problem {
        match error {
            DispatchError::Rejected { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the command was refused",
                error.to_string(),
            ),
            DispatchError::Conflict { .. } => Problem::new(
                StatusCode::CONFLICT,
                "the aggregate kept changing; try again",
                error.to_string(),
            ),
            DispatchError::CommandIdReused { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the Idempotency-Key was already used by another command",
                error.to_string(),
            ),
            DispatchError::Store(e) => Problem::from(e),
            other => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the command failed",
                other.to_string(),
            ),
        }
    }
}

impl From<WaitTimeout> for Problem {
    fn from(timeout: WaitTimeout) -> Problem {
        Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "the read model has not caught up",
            timeout.to_string(),
        )
    }
}

/// A path as it may be shown back: at most 200 characters.
pub(crate) fn printable_path(path: &str) -> String {
    let shown: String = path.chars().take(200).collect();
    if shown.len() < path.len() {
        format!("{shown}…")
    } else {
        shown
    }
}

/// The fallback for a route that does not exist: a 404 problem.
pub async fn not_found(request: axum::extract::Request) -> Problem {
    Problem::not_found(
        "no such route",
        format!("nothing is served at {}", printable_path(request.uri().path())),
    )
}

/// The fallback for a method a route does not take: a 405 problem.
pub async fn method_not_allowed(request: axum::extract::Request) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        format!(
            "{} is not served at {}",
            request.method(),
            printable_path(request.uri().path())
        ),
    )
}
