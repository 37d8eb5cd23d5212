//! Spawned runners: supervision, retries with backoff, ownership, status.

use std::time::Duration;

use tokio::sync::watch;

use super::{Sink, Step, SubscriptionError, catch_panic_async, run_pages};
use crate::store::EventStore;

/// How a spawned runner waits and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// The longest a following runner waits for new events without being
    /// woken (stores without notifications are polled this often), and how
    /// often a standby runner asks for ownership.
    pub poll: Duration,
    /// The wait before the first retry after a failure; it doubles with each
    /// failure in a row, with jitter.
    pub retry_min: Duration,
    /// The longest wait between retries.
    pub retry_max: Duration,
    /// How long a following runner waits after a store's notification
    /// before it reads, so commits that land together are read as one page
    /// (under a stream of commits, one read per commit would compete with
    /// the writers). Zero reads at once. It is the least lag a spawned read
    /// model shows; inline projections do not wait.
    pub coalesce: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            poll: Duration::from_millis(500),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            coalesce: Duration::from_millis(1),
        }
    }
}

/// The defaults, polling every `poll`: what `spawn` takes as its options
/// when given just a `Duration`.
impl From<Duration> for RunOptions {
    fn from(poll: Duration) -> Self {
        RunOptions::polling(poll)
    }
}

impl RunOptions {
    /// The defaults, polling every `poll`.
    pub fn polling(poll: Duration) -> Self {
        RunOptions {
            poll,
            ..RunOptions::default()
        }
    }

    /// The wait before retry number `failures` (1 for the first): the
    /// exponential delay with "equal jitter" (between half and all of it),
    /// so runners that failed together do not retry together.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .retry_min
            .saturating_mul(1u32.checked_shl(failures.saturating_sub(1).min(31)).unwrap_or(u32::MAX));
        let delay = doubled.min(self.retry_max).max(self.retry_min.min(self.retry_max));
        let half = delay / 2;
        let jitter = half.mul_f64((crate::util::random_u64() >> 11) as f64 / (1u64 << 53) as f64);
        half + jitter
    }
}

/// What a runner is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Spawned, not yet working.
    Starting,
    /// Another runner owns the subscription; this one asks again every poll.
    Standby,
    /// Reading and applying pages.
    CatchingUp,
    /// At the end of the log, waiting for new events.
    Following,
    /// A failure happened; waiting before the next attempt.
    Retrying,
    /// Stopped by a failure that retrying cannot mend (see
    /// [`Status::last_error`]).
    Failed,
    /// Stopped on request.
    Stopped,
}

/// A runner's state, position, lag and last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// What it is doing.
    pub state: RunState,
    /// The position of the last event it applied or skipped.
    pub position: u64,
    /// How many events it is behind the end of the log, as last counted
    /// ([`EventStore::events_after`] when a catch-up starts, less what it
    /// has read since; 0 once it reached the end): events, not positions,
    /// which may leave gaps.
    pub lag: u64,
    /// Entries of the log it skipped because they were not events of the
    /// store ([`FOREIGN`](crate::store::FOREIGN): a message another client published on a NATS
    /// store's subjects), since it was spawned.
    pub skipped: u64,
    /// Failures in a row (0 once a catch-up succeeds).
    pub failures: u32,
    /// The last failure, kept after recovering until the next one.
    pub last_error: Option<String>,
}

/// Waiting for a subscription ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{subscription}` did not reach position {position} in time (it is at {reached})")]
pub struct WaitTimeout {
    /// The subscription's name.
    pub subscription: String,
    /// The position waited for.
    pub position: u64,
    /// Where it was when the time ran out.
    pub reached: u64,
}

/// A subscription running in a background task: see [`spawn`].
#[derive(Debug)]
pub struct Runner {
    name: String,
    stop: watch::Sender<bool>,
    status: watch::Receiver<Status>,
    task: tokio::task::JoinHandle<()>,
}

impl Runner {
    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the runner is doing, where it is and its last error. A runner
    /// whose task ended without stopping is reported
    /// [`Failed`](RunState::Failed), never silently idle.
    pub fn status(&self) -> Status {
        let mut status = self.status.borrow().clone();
        if self.task.is_finished() && !matches!(status.state, RunState::Stopped | RunState::Failed) {
            status.state = RunState::Failed;
            status
                .last_error
                .get_or_insert_with(|| "the runner's task ended".to_owned());
        }
        status
    }

    /// Waits until the runner has applied (or skipped) `position`, for at
    /// most `timeout`: read-your-writes for a command's
    /// [`position`](crate::Committed::position).
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), WaitTimeout> {
        let mut watching = self.status.clone();
        let reached = tokio::time::timeout(timeout, watching.wait_for(|s| s.position >= position)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(WaitTimeout {
                subscription: self.name.clone(),
                position,
                reached: self.status.borrow().position,
            }),
        }
    }

    /// Asks the runner to stop after the page it is working on, and waits
    /// until it has (and given up ownership).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops the runner at once, wherever it is (as a crash would).
    pub fn abort(self) {
        self.task.abort();
    }
}

/// Runs `sink` over `store` in a background task until stopped: claims
/// ownership ([`Sink::acquire`]), catches up, then follows the log, woken
/// by the store's notifications or every `options.poll`. A failure (an
/// error or a panic) is logged, shown in the [`Status`], and retried after
/// a jittered backoff; losing ownership makes it stand by.
pub fn spawn<S, K>(store: S, sink: K, options: RunOptions) -> Runner
where
    S: EventStore + Clone,
    K: Sink + 'static,
{
    let name = sink.name().to_owned();
    let (stop, stopped) = watch::channel(false);
    let (report, status) = watch::channel(Status {
        state: RunState::Starting,
        position: 0,
        lag: 0,
        skipped: 0,
        failures: 0,
        last_error: None,
    });
    let task = tokio::spawn(supervise(store, sink, options, report, stopped));
    Runner {
        name,
        stop,
        status,
        task,
    }
}

async fn supervise<S: EventStore, K: Sink>(
    store: S,
    mut sink: K,
    options: RunOptions,
    report: watch::Sender<Status>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut woken = store.notifications();
    let set = |f: &dyn Fn(&mut Status)| report.send_modify(|s| f(s));
    // Whether a notification woke the runner: it was following, so the
    // next catch-up is short and need not ask the store for its head.
    let mut notified = false;
    loop {
        if *stopped.borrow() {
            break;
        }
        let count_lag = !std::mem::take(&mut notified);
        let wait = match catch_panic_async(sink.acquire()).await {
            Ok(Ok(true)) => {
                match catch_panic_async(follow_once(&store, &mut sink, &report, &stopped, count_lag)).await {
                    Ok(Ok(())) => Wait::Woken,
                    Ok(Err(SubscriptionError::Fenced { subscription, detail })) => {
                        tracing::warn!(subscription, detail, "lost ownership; standing by");
                        sink.release().await;
                        set(&|s| {
                            s.state = RunState::Standby;
                            s.last_error = Some(format!("lost ownership: {detail}"));
                        });
                        Wait::Poll
                    }
                    Ok(Err(error)) if !error.is_retryable() => {
                        tracing::error!(subscription = sink.name(), %error, "the subscription stopped");
                        let message = error.to_string();
                        set(&|s| {
                            s.state = RunState::Failed;
                            s.last_error = Some(message.clone());
                        });
                        break;
                    }
                    Ok(Err(error)) => failed(&sink, &report, &options, error.to_string()),
                    Err(message) => failed(&sink, &report, &options, format!("panicked: {message}")),
                }
            }
            Ok(Ok(false)) => {
                set(&|s| s.state = RunState::Standby);
                Wait::Poll
            }
            Ok(Err(error)) => failed(&sink, &report, &options, error.to_string()),
            Err(message) => failed(&sink, &report, &options, format!("panicked: {message}")),
        };
        if let Wait::Backoff(_) = wait {
            // What the failed catch-up did commit shows in the status.
            if let Ok(Ok(position)) = catch_panic_async(sink.checkpoint()).await {
                set(&|s| s.position = position);
            }
        }
        let pause = async {
            match wait {
                Wait::Woken => match &mut woken {
                    Some(rx) => match tokio::time::timeout(options.poll, rx.changed()).await {
                        Ok(Ok(())) => {
                            if !options.coalesce.is_zero() {
                                tokio::time::sleep(options.coalesce).await;
                            }
                            true
                        }
                        _ => false,
                    },
                    None => {
                        tokio::time::sleep(options.poll).await;
                        false
                    }
                },
                Wait::Poll => {
                    tokio::time::sleep(options.poll).await;
                    false
                }
                Wait::Backoff(delay) => {
                    tokio::time::sleep(delay).await;
                    false
                }
            }
        };
        tokio::select! {
            _ = stopped.changed() => break,
            woke = pause => notified = woke,
        }
    }
    sink.release().await;
    report.send_modify(|s| {
        if s.state != RunState::Failed {
            s.state = RunState::Stopped;
        }
    });
}

enum Wait {
    Woken,
    Poll,
    Backoff(Duration),
}

/// One catch-up of a runner that owns the subscription, reporting progress.
/// It counts the events ahead of it (for the status's lag) unless a
/// notification woke it from following: then the catch-up is short, and it
/// ends at the end of the log.
async fn follow_once<S: EventStore, K: Sink>(
    store: &S,
    sink: &mut K,
    report: &watch::Sender<Status>,
    stopped: &watch::Receiver<bool>,
    count_lag: bool,
) -> Result<(), SubscriptionError> {
    report.send_modify(|s| s.state = RunState::CatchingUp);
    let name = if crate::metrics::ENABLED {
        sink.name().to_owned()
    } else {
        String::new()
    };
    let mut progress = |step: Step| {
        report.send_modify(|s| {
            match step {
                Step::Lag(lag) => s.lag = lag,
                Step::Page {
                    position,
                    events,
                    skipped,
                } => {
                    s.position = position;
                    s.lag = s.lag.saturating_sub(events);
                    s.skipped += skipped;
                    crate::metrics::skipped(&name, skipped);
                }
            }
            crate::metrics::subscription(&name, s.position, s.lag);
        })
    };
    let (position, at_end) = run_pages(store, sink, count_lag, &mut progress, &|| *stopped.borrow()).await?;
    report.send_modify(|s| {
        s.state = RunState::Following;
        s.position = position;
        if at_end {
            s.lag = 0;
        }
        s.failures = 0;
        crate::metrics::subscription(&name, s.position, s.lag);
    });
    Ok(())
}

fn failed<K: Sink>(sink: &K, report: &watch::Sender<Status>, options: &RunOptions, error: String) -> Wait {
    let mut failures = 0;
    report.send_modify(|s| {
        s.failures = s.failures.saturating_add(1);
        failures = s.failures;
        s.state = RunState::Retrying;
        s.last_error = Some(error.clone());
    });
    let delay = options.backoff(failures);
    tracing::error!(subscription = sink.name(), %error, failures, retry_in = ?delay, "the subscription failed; retrying");
    Wait::Backoff(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter() {
        let options = RunOptions {
            poll: Duration::from_millis(10),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
            coalesce: Duration::ZERO,
        };
        for (failures, full) in [(1, 100), (2, 200), (3, 400), (5, 1600), (6, 2000), (40, 2000)] {
            for _ in 0..50 {
                let d = options.backoff(failures).as_millis() as u64;
                assert!(
                    d >= full / 2 && d <= full,
                    "failure {failures}: {d} ms not in {}..={full}",
                    full / 2
                );
            }
        }
    }

    #[tokio::test]
    async fn a_panic_in_a_future_becomes_its_message() {
        let ok = catch_panic_async(async { 7 }).await;
        assert_eq!(ok, Ok(7));
        let failed = catch_panic_async(async {
            tokio::task::yield_now().await;
            panic!("boom {}", 42);
        })
        .await;
        assert_eq!(failed, Err("boom 42".to_owned()));
    }
}
