//! Extractors whose every refusal is a [`Problem`]: a JSON command body,
//! the `Idempotency-Key` header, the read-your-writes position, and axum's
//! path and query extractors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use es_core::Metadata;
use serde::de::DeserializeOwned;

use crate::Problem;
use crate::follow::Follower;

/// A JSON request body of type `T`.
///
/// Refused with a 415 unless the request says `Content-Type:
/// application/json` (an HTML form cannot, so a cross-site form cannot
/// post a command), and with a 400 naming what is wrong when the body is
/// not a `T` (malformed JSON, an unknown variant, a missing field).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// A 415 unless `headers` say the body is JSON.
pub fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON",
            "send the request with `Content-Type: application/json`",
        ))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        require_json(request.headers())?;
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|e| Problem::bad_request("unreadable body", e.body_text()))?;
        serde_json::from_slice(&body).map(Json).map_err(|e| {
            Problem::bad_request(
                "malformed body",
                format!("{e}; expected a `{}` as JSON", short_type_name::<T>()),
            )
        })
    }
}

/// `T`'s name without its module path.
fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    let end = name.find('<').unwrap_or(name.len());
    name[..end].rsplit("::").next().unwrap_or(name)
}

/// The `Idempotency-Key` header (the IETF httpapi draft), which becomes
/// the command's id: a client that sends a command again with the same
/// key (a retry after a timeout) gets the first answer back, marked
/// deduplicated, and nothing is written twice. A key used for another
/// command is refused ([`DispatchError::CommandIdReused`](es_core::DispatchError::CommandIdReused),
/// a 422).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdempotencyKey(pub Option<String>);

impl IdempotencyKey {
    /// The command's metadata: the key as its command id.
    pub fn metadata(self) -> Metadata {
        let mut metadata = Metadata::new();
        metadata.command_id = self.0;
        metadata
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        match parts.headers.get("idempotency-key") {
            None => Ok(IdempotencyKey(None)),
            Some(key) => match key.to_str() {
                Ok(key) => Ok(IdempotencyKey(Some(key.to_owned()))),
                Err(_) => Err(Problem::bad_request(
                    "invalid request",
                    "the Idempotency-Key header must be visible ASCII",
                )),
            },
        }
    }
}

/// Read-your-writes: the `after` query parameter, the
/// [`position`](es_core::Committed::position) a command answered with.
/// [`After::wait`] waits until a read model has seen it, so a client that
/// sends it reads its own write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct After(pub Option<u64>);

impl After {
    /// Waits (up to `timeout`) until `follower` has seen the position, if
    /// one was asked for; a 504 problem when it has not in time, never a
    /// stale answer.
    pub async fn wait(self, follower: &impl Follower, timeout: std::time::Duration) -> Result<(), Problem> {
        match self.0 {
            Some(position) => follower.wait_for(position, timeout).await.map_err(Problem::from),
            None => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for After {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        #[derive(serde::Deserialize)]
        struct Raw {
            after: Option<u64>,
        }
        let Query(raw) = Query::<Raw>::from_request_parts(parts, state).await?;
        Ok(After(raw.after))
    }
}

/// axum's [`Path`](axum::extract::Path), refused with a 400 problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| Problem::bad_request("invalid path", e.body_text()))
    }
}

/// axum's [`Query`](axum::extract::Query), refused with a 400 problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|e| Problem::bad_request("invalid query string", e.body_text()))
    }
}
