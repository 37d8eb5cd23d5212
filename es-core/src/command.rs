//! Commands: requests to change one aggregate, and enums of them.

use std::future::Future;

use crate::aggregate::{Aggregate, Handle};
use crate::codec::Codec;
use crate::dispatcher::{AnyCommitted, Committed, Dispatcher};
use crate::envelope::Metadata;
use crate::error::DispatchError;
use crate::store::EventStore;

/// A request to change one aggregate: `Self::Aggregate`, at the id in the
/// command's `#[aggregate_id]` field.
///
/// Derive it with `#[derive(Command)]` and `#[command(aggregate = A)]`. The
/// bound `Aggregate: Handle<Self>` makes a command without a handler a
/// compile error at the command's definition. Commands are cloned when a
/// version conflict makes the dispatcher decide them again.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a command",
    label = "`{Self}` does not implement `Command`",
    note = "add `#[derive(Command)]` and `#[command(aggregate = ..)]` to `{Self}`, and mark its id field `#[aggregate_id]`"
)]
pub trait Command: Sized + Send + Sync + 'static {
    /// The command's name in logs and errors (its type name).
    const NAME: &'static str;

    /// The aggregate that decides it.
    type Aggregate: Handle<Self>;

    /// The id of the aggregate instance it targets.
    fn aggregate_id(&self) -> &<Self::Aggregate as Aggregate>::Id;
}

/// Anything [`Dispatcher::dispatch`] accepts: every [`Command`], and enums of
/// commands of different aggregates (`#[derive(Command)]` on an enum), which
/// route each variant to its aggregate.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be dispatched",
    label = "not a command",
    note = "derive `Command` on `{Self}`: on a struct with `#[command(aggregate = ..)]`, or on an enum whose variants each hold one command"
)]
pub trait Dispatchable: Sized + Send + 'static {
    /// What a successful dispatch returns: [`Committed`] for one command,
    /// [`AnyCommitted`] for a command enum.
    type Output: Into<AnyCommitted> + Send;

    /// The handler's error type.
    type Rejection: std::error::Error + Send + Sync + 'static;

    /// Dispatches `self` through `dispatcher`.
    fn dispatch_on<S: EventStore, C: Codec>(
        self,
        dispatcher: &Dispatcher<S, C>,
        metadata: Metadata,
    ) -> impl Future<Output = Result<Self::Output, DispatchError<Self::Rejection>>> + Send + '_;
}

#[diagnostic::do_not_recommend]
impl<T: Command> Dispatchable for T {
    type Output = Committed<T::Aggregate>;
    type Rejection = <T::Aggregate as Aggregate>::Error;

    #[inline]
    fn dispatch_on<S: EventStore, C: Codec>(
        self,
        dispatcher: &Dispatcher<S, C>,
        metadata: Metadata,
    ) -> impl Future<Output = Result<Self::Output, DispatchError<Self::Rejection>>> + Send + '_ {
        dispatcher.execute(self, metadata)
    }
}
