//! Transfers between accounts: a `Transfer` aggregate records the request
//! and its outcome; the `TransferProcess` moves the money by sending
//! commands to the accounts: debit the payer, credit the payee, and refund
//! the payer when the payee refuses.

use es_core::prelude::*;
use serde::{Deserialize, Serialize};

use crate::bank::{
    AccountId, CreditForTransfer, DebitForTransfer, RefundTransfer, TransferCreditRefused, TransferCredited,
    TransferDebitRefused, TransferDebited, TransferRefunded,
};

/// A transfer was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "transfer.requested")]
pub struct TransferRequested {
    /// The paying account.
    pub from: AccountId,
    /// The receiving account.
    pub to: AccountId,
    /// In cents.
    pub amount: u64,
}

/// The money arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "transfer.completed")]
pub struct TransferCompleted {}

/// The transfer did not happen (any debited money was refunded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "transfer.failed")]
pub struct TransferFailed {
    /// Why.
    pub reason: String,
}

/// Everything that can happen to a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Event)]
pub enum TransferEvent {
    /// See [`TransferRequested`].
    Requested(TransferRequested),
    /// See [`TransferCompleted`].
    Completed(TransferCompleted),
    /// See [`TransferFailed`].
    Failed(TransferFailed),
}

/// Move money from one account to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = Transfer)]
pub struct RequestTransfer {
    /// The transfer's id.
    #[aggregate_id]
    pub transfer: String,
    /// The paying account.
    pub from: AccountId,
    /// The receiving account.
    pub to: AccountId,
    /// In cents.
    pub amount: u64,
}

/// Record that the money arrived (sent by the process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = Transfer)]
pub struct CompleteTransfer {
    /// The transfer.
    #[aggregate_id]
    pub transfer: String,
}

/// Record that the transfer failed (sent by the process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = Transfer)]
pub struct FailTransfer {
    /// The transfer.
    #[aggregate_id]
    pub transfer: String,
    /// Why.
    pub reason: String,
}

/// Why a transfer request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The id is taken.
    #[error("transfer `{0}` exists already")]
    Exists(String),
    /// Nothing to move.
    #[error("the amount must be more than zero")]
    ZeroAmount,
    /// From an account to itself.
    #[error("a transfer needs two different accounts")]
    SameAccount,
    /// Completing or failing what is not pending.
    #[error("the transfer is not pending")]
    NotPending,
}

/// Where a transfer stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum TransferStatus {
    /// Not requested.
    #[default]
    None,
    /// Money on its way.
    Pending,
    /// Arrived.
    Completed,
    /// Did not happen.
    Failed,
}

/// A transfer's state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Aggregate)]
#[aggregate(name = "transfer", id = String, event = TransferEvent, error = TransferError)]
pub struct Transfer {
    /// Where it stands.
    pub status: TransferStatus,
    /// In cents.
    pub amount: u64,
    /// Why it failed.
    pub reason: Option<String>,
}

#[es_core::handlers]
impl Transfer {
    #[handle]
    fn request(&self, cmd: RequestTransfer) -> Result<TransferRequested, TransferError> {
        if self.status != TransferStatus::None {
            return Err(TransferError::Exists(cmd.transfer));
        }
        if cmd.amount == 0 {
            return Err(TransferError::ZeroAmount);
        }
        if cmd.from == cmd.to {
            return Err(TransferError::SameAccount);
        }
        Ok(TransferRequested {
            from: cmd.from,
            to: cmd.to,
            amount: cmd.amount,
        })
    }

    #[handle]
    fn complete(&self, _: CompleteTransfer) -> Result<TransferCompleted, TransferError> {
        match self.status {
            TransferStatus::Pending => Ok(TransferCompleted {}),
            _ => Err(TransferError::NotPending),
        }
    }

    #[handle]
    fn fail(&self, cmd: FailTransfer) -> Result<TransferFailed, TransferError> {
        match self.status {
            TransferStatus::Pending => Ok(TransferFailed { reason: cmd.reason }),
            _ => Err(TransferError::NotPending),
        }
    }

    #[apply]
    fn requested(&mut self, e: &TransferRequested) {
        self.status = TransferStatus::Pending;
        self.amount = e.amount;
    }

    #[apply]
    fn completed(&mut self, _: &TransferCompleted) {
        self.status = TransferStatus::Completed;
    }

    #[apply]
    fn failed(&mut self, e: &TransferFailed) {
        self.status = TransferStatus::Failed;
        self.reason = Some(e.reason.clone());
    }
}

/// The commands the transfer process sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
pub enum TransferStep {
    /// Take the money from the payer.
    Debit(DebitForTransfer),
    /// Give it to the payee.
    Credit(CreditForTransfer),
    /// Give it back to the payer.
    Refund(RefundTransfer),
    /// Record the success.
    Complete(CompleteTransfer),
    /// Record the failure.
    Fail(FailTransfer),
}

/// Moves a transfer's money, one step per event. It remembers nothing: each
/// event carries what the next step needs, and the accounts record their
/// refusals as events rather than rejecting the process's commands.
#[derive(Debug, Default, Clone, Copy)]
pub struct TransferProcess;

#[es_core::handlers(process, command = TransferStep)]
impl TransferProcess {
    #[apply]
    fn requested(&self, e: &TransferRequested, ctx: &EventContext<'_>) -> Option<DebitForTransfer> {
        Some(DebitForTransfer {
            account: e.from.clone(),
            transfer: ctx.aggregate_id.to_owned(),
            to: e.to.clone(),
            amount: e.amount,
        })
    }

    #[apply]
    fn debited(&self, e: &TransferDebited, ctx: &EventContext<'_>) -> Option<CreditForTransfer> {
        Some(CreditForTransfer {
            account: e.to.clone(),
            transfer: e.transfer.clone(),
            from: AccountId::new(ctx.aggregate_id),
            amount: e.amount,
        })
    }

    #[apply]
    fn debit_refused(&self, e: &TransferDebitRefused) -> Option<FailTransfer> {
        Some(FailTransfer {
            transfer: e.transfer.clone(),
            reason: format!("the payer refused: {}", e.reason),
        })
    }

    #[apply]
    fn credited(&self, e: &TransferCredited) -> Option<CompleteTransfer> {
        Some(CompleteTransfer {
            transfer: e.transfer.clone(),
        })
    }

    #[apply]
    fn credit_refused(&self, e: &TransferCreditRefused) -> Option<RefundTransfer> {
        Some(RefundTransfer {
            account: e.from.clone(),
            transfer: e.transfer.clone(),
            amount: e.amount,
        })
    }

    #[apply]
    fn refunded(&self, e: &TransferRefunded) -> Option<FailTransfer> {
        Some(FailTransfer {
            transfer: e.transfer.clone(),
            reason: "the payee refused; the money went back".to_owned(),
        })
    }
}
