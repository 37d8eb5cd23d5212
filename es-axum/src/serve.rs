//! Serving within limits: the problem fallbacks, header, body and
//! connection limits, a span per request, and a bounded graceful shutdown
//! that stops the read side at a checkpoint.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use es_core::Runner;
use tokio::sync::{Semaphore, watch};

use crate::Problem;
use crate::problem::{method_not_allowed, not_found};

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
    /// 10 s for headers and for a body, 64 KiB bodies, 200 connections,
    /// 10 s of grace at shutdown.
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

/// Finishes a service's router: a 404 and a 405 problem for what it does
/// not serve, every request's body read within [`Limits::body_timeout`]
/// (408) and [`Limits::max_body`] (413) before a handler runs, and a span
/// per request with OpenTelemetry's HTTP field names (`http.request.method`,
/// `url.path`, `http.response.status_code`).
pub fn protect<St: Clone + Send + Sync + 'static>(router: Router<St>, limits: Limits) -> Router<St> {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(limits, limit_body))
        .layer(middleware::from_fn(request_span))
}

/// Reads the whole body within the limits before any handler runs.
async fn limit_body(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_body as u64) {
        return too_large(limits).into_response();
    }
    let limited = http_body_util::Limited::new(body, limits.max_body);
    let read = tokio::time::timeout(limits.body_timeout, http_body_util::BodyExt::collect(limited)).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => return too_large(limits).into_response(),
        Ok(Err(error)) => {
            return Problem::bad_request(
                "unreadable body",
                format!("the request's body could not be read: {error}"),
            )
            .into_response();
        }
        Err(_) => {
            return Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "the body took too long",
                format!("send the request's body within {:?}", limits.body_timeout),
            )
            .into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn too_large(limits: Limits) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the body is too large",
        format!("a request's body may hold up to {} bytes", limits.max_body),
    )
}

/// A span per request, with OpenTelemetry's HTTP field names.
async fn request_span(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

type Closing = Box<dyn FnOnce() + Send>;

/// Serves a router within [`Limits`] until a signal, then shuts down
/// gracefully: no new connection is taken, the event streams it was told
/// of end, the requests in flight finish, the connections left after
/// [`Limits::shutdown_grace`] are closed, the runners it was given stop
/// at a checkpoint, and the background tasks it was given end.
///
/// ```no_run
/// # async fn run(router: axum::Router, runner: es_core::Runner, feed: es_axum::EventFeed<es_core::InMemoryStore>) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// es_axum::Server::new(es_axum::Limits::default())
///     .closing(feed)
///     .stopping(runner)
///     .serve(listener, router, es_axum::shutdown_signal())
///     .await
/// # }
/// ```
#[must_use = "a server does nothing until `serve` is awaited"]
pub struct Server {
    limits: Limits,
    closing: Vec<Closing>,
    runners: Vec<Runner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("limits", &self.limits)
            .field("closing", &self.closing.len())
            .field("runners", &self.runners)
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

impl Server {
    /// A server within `limits`.
    pub fn new(limits: Limits) -> Server {
        Server {
            limits,
            closing: Vec::new(),
            runners: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Ends `feed`'s event streams when the shutdown begins.
    pub fn closing<S: es_core::EventStore + Clone>(mut self, feed: crate::EventFeed<S>) -> Server {
        self.closing.push(Box::new(move || feed.close()));
        self
    }

    /// Ends `task` (a background job of the service: a sealer, say) once
    /// the requests have drained.
    pub fn aborting(mut self, task: tokio::task::JoinHandle<()>) -> Server {
        self.tasks.push(task);
        self
    }

    /// Stops `runner` at a checkpoint once the requests have drained.
    pub fn stopping(mut self, runner: Runner) -> Server {
        self.runners.push(runner);
        self
    }

    /// Serves `router` on `listener` until `signal` resolves, then shuts
    /// down as the type's docs say.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        router: Router,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Server {
            limits,
            closing: close_streams,
            runners,
            tasks,
        } = self;
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let (close, closing) = watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        let mut signal: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(signal);
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
        for close_stream in close_streams {
            close_stream();
        }
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
        stop_background(runners, tasks).await;
        Ok(())
    }

    /// Shuts down without serving: ends the event streams, stops the
    /// runners at a checkpoint and ends the background tasks.
    pub async fn stop(self) {
        for close_stream in self.closing {
            close_stream();
        }
        stop_background(self.runners, self.tasks).await;
    }
}

/// Stops the runners at a checkpoint and ends the background tasks.
async fn stop_background(runners: Vec<Runner>, tasks: Vec<tokio::task::JoinHandle<()>>) {
    for runner in runners {
        runner.stop().await;
    }
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM: the signal a service manager
/// or an orchestrator sends to stop a service.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
