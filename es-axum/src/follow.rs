//! What reads the log and can be waited for: a projection or a runner.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use es_core::{Codec, Projection, ReadModel, Runner, WaitTimeout};

/// A read model, process manager or any subscription that follows the
/// log: where it is, and a way to wait until it has seen a position.
/// [`After::wait`](crate::After::wait) and [`Readiness`](crate::Readiness)
/// take one; es implements it for [`Projection`] and [`Runner`].
pub trait Follower: Send + Sync {
    /// Its name, as status and errors show it.
    fn name(&self) -> &str;

    /// The position of the last event it has seen.
    fn position(&self) -> u64;

    /// Waits until it has seen `position`, for at most `timeout`.
    fn wait_for(
        &self,
        position: u64,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<(), WaitTimeout>> + Send + '_>>;
}

impl<R: ReadModel, C: Codec> Follower for Projection<R, C> {
    fn name(&self) -> &str {
        Projection::name(self)
    }

    fn position(&self) -> u64 {
        Projection::position(self)
    }

    fn wait_for(
        &self,
        position: u64,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<(), WaitTimeout>> + Send + '_>> {
        Box::pin(Projection::wait_for(self, position, timeout))
    }
}

impl Follower for Runner {
    fn name(&self) -> &str {
        Runner::name(self)
    }

    fn position(&self) -> u64 {
        self.status().position
    }

    fn wait_for(
        &self,
        position: u64,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<(), WaitTimeout>> + Send + '_>> {
        Box::pin(Runner::wait_for(self, position, timeout))
    }
}

impl<F: Follower + ?Sized> Follower for Arc<F> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn position(&self) -> u64 {
        (**self).position()
    }

    fn wait_for(
        &self,
        position: u64,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<(), WaitTimeout>> + Send + '_>> {
        (**self).wait_for(position, timeout)
    }
}
