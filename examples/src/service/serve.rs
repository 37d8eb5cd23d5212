//! Serving within limits: header, body and connection limits, and a
//! bounded graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::{Semaphore, watch};

use super::{Running, problem};

/// What a service allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's headers; a
    /// connection idle this long between requests is closed too.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body (408 after).
    pub body_timeout: Duration,
    /// The largest request body, in bytes (413 above).
    pub max_body: usize,
    /// Connections served at once; more wait in the listen queue until one
    /// ends. Keep it below the process's open-file limit.
    pub max_connections: usize,
    /// How long a graceful shutdown waits for the requests in flight before
    /// it closes the connections left.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_body: 64 * 1024,
            max_connections: 200,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Running {
    /// Ends the live event streams, so a graceful shutdown does not wait for
    /// clients that never hang up.
    pub fn end_streams(&self) {
        self.shutdown.send_replace(true);
    }

    /// Serves `router` on `listener` until `signal` resolves, within the
    /// service's [`Limits`], then shuts down gracefully: no new connection
    /// is taken, in-flight requests finish, live event streams end, the
    /// connections left after [`Limits::shutdown_grace`] are closed, and the
    /// read model's runner stops at a checkpoint.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        router: Router,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = self.limits;
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let (close, closing) = watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(signal);
        loop {
            // A free slot first: past the limit, clients wait in the
            // kernel's queue instead of taking the process's files.
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                () = &mut signal => break,
            };
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of files, or a connection reset before it was
                        // taken: wait a moment, never stop serving.
                        tracing::warn!(%error, "could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut signal => break,
            };
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            let mut closing = closing.clone();
            connections.spawn(async move {
                let _slot = slot;
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(limits.header_timeout);
                let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::pin!(connection);
                let closed = tokio::select! {
                    _ = connection.as_mut() => false,
                    closed = closing.wait_for(|closing| *closing) => closed.is_ok(),
                };
                if closed {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            });
            // Reap the connections that ended.
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        self.end_streams();
        close.send_replace(true);
        let drained = tokio::time::timeout(limits.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = connections.len(),
                "connections still open after the shutdown grace; closing them"
            );
            connections.abort_all();
        }
        self.stop().await;
        Ok(())
    }

    /// Stops the read model's runner after its current page (checkpoint
    /// kept).
    pub async fn stop(self) {
        self.end_streams();
        self.balances.stop().await;
    }
}

/// Reads the whole body within [`Limits::body_timeout`] and
/// [`Limits::max_body`] before any handler runs.
pub(super) async fn limit_body(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_body as u64) {
        return too_large(limits);
    }
    let limited = http_body_util::Limited::new(body, limits.max_body);
    let read = tokio::time::timeout(limits.body_timeout, http_body_util::BodyExt::collect(limited)).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => return too_large(limits),
        Ok(Err(error)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "unreadable body",
                format!("the request's body could not be read: {error}"),
                None,
            );
        }
        Err(_) => {
            return problem(
                StatusCode::REQUEST_TIMEOUT,
                "the body took too long",
                format!("send the request's body within {:?}", limits.body_timeout),
                None,
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn too_large(limits: Limits) -> Response {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the body is too large",
        format!("a request's body may hold up to {} bytes", limits.max_body),
        None,
    )
}
