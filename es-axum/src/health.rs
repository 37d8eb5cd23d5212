//! `/health` and `/ready`.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use es_core::EventStore;

use crate::{Follower, Problem};

/// Health and readiness, from the store and the read side.
///
/// `GET /health` answers as long as the process serves requests (a
/// liveness probe). `GET /ready` answers 200 when the store answers and
/// every follower has seen the end of the log, and a 503 problem naming
/// the one behind, or the store's failure, otherwise (a readiness probe:
/// a load balancer sends no reads to an instance whose read models are
/// still catching up after a start).
pub struct Readiness<S> {
    store: S,
    followers: Vec<Arc<dyn Follower>>,
}

impl<S: EventStore + Clone> Readiness<S> {
    /// Readiness of `store`, with no follower yet.
    pub fn new(store: S) -> Readiness<S> {
        Readiness {
            store,
            followers: Vec::new(),
        }
    }

    /// Also waits for `follower` (a [`Projection`](es_core::Projection),
    /// or an `Arc` of a [`Runner`](es_core::Runner)) to catch up.
    #[must_use]
    pub fn follower(mut self, follower: impl Follower + 'static) -> Readiness<S> {
        self.followers.push(Arc::new(follower));
        self
    }

    /// Ready, or the problem to answer.
    pub async fn check(&self) -> Result<(), Problem> {
        let head = self.store.last_position().await?;
        for follower in &self.followers {
            let position = follower.position();
            if position < head {
                return Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "catching up",
                    format!("`{}` is at position {position} of {head}", follower.name()),
                ));
            }
        }
        Ok(())
    }

    /// `GET /health` and `GET /ready`, for any router state.
    pub fn routes<St: Clone + Send + Sync + 'static>(self) -> Router<St> {
        let readiness = Arc::new(self);
        Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/ready",
                get(move || {
                    let readiness = readiness.clone();
                    async move {
                        match readiness.check().await {
                            Ok(()) => "ready".into_response(),
                            Err(problem) => problem.into_response(),
                        }
                    }
                }),
            )
            .with_state(())
    }
}

impl<S> std::fmt::Debug for Readiness<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.followers.iter().map(|f| f.name()).collect();
        f.debug_struct("Readiness").field("followers", &names).finish()
    }
}
