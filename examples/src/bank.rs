//! A bank account: open, deposit, withdraw (never below zero), close.

use std::fmt;

use es_core::prelude::*;
use serde::{Deserialize, Serialize};

/// An account number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountId(pub String);

impl AccountId {
    /// An account id from text.
    pub fn new(id: impl Into<String>) -> Self {
        AccountId(id.into())
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The account was opened for `owner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.opened")]
pub struct AccountOpened {
    /// Who owns it.
    pub owner: String,
}

/// Money came in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.deposited")]
pub struct MoneyDeposited {
    /// In cents.
    pub amount: u64,
}

/// Money went out.
///
/// Its stored form changed three times; events of every version are still
/// in the stores, and each is read through the chain below (see
/// `tests/tests/schema_evolution.rs`):
///
/// 1. version 1, [`MoneyWithdrawnV1`] `{amount}`: the first release;
/// 2. version 2, [`MoneyWithdrawnV2`] `{amount, fee}`: a fee charged with
///    the withdrawal (a field added; version 1 had none);
/// 3. version 3, [`MoneyWithdrawnV3`] `{net, fee}`: `amount` renamed `net`;
/// 4. version 4, this struct `{amount}`: fees are withdrawals of their own,
///    so a version 3 withdrawal with a fee splits into two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(
    name = "account.withdrawn",
    version = 4,
    older = [MoneyWithdrawnV1, MoneyWithdrawnV2, MoneyWithdrawnV3]
)]
pub struct MoneyWithdrawn {
    /// In cents.
    pub amount: u64,
}

/// Version 1 of [`MoneyWithdrawn`], as the first release stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.withdrawn", version = 1, next = MoneyWithdrawnV2)]
pub struct MoneyWithdrawnV1 {
    /// In cents.
    pub amount: u64,
}

/// Version 2 of [`MoneyWithdrawn`]: a fee was charged with the withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.withdrawn", version = 2, next = MoneyWithdrawnV3)]
pub struct MoneyWithdrawnV2 {
    /// In cents, without the fee.
    pub amount: u64,
    /// In cents.
    pub fee: u64,
}

/// Version 3 of [`MoneyWithdrawn`]: `amount` renamed `net`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.withdrawn", version = 3, next = MoneyWithdrawn, custom_upcast)]
pub struct MoneyWithdrawnV3 {
    /// In cents, without the fee.
    pub net: u64,
    /// In cents.
    pub fee: u64,
}

/// Adding a field: there was no fee.
impl From<MoneyWithdrawnV1> for MoneyWithdrawnV2 {
    fn from(v1: MoneyWithdrawnV1) -> Self {
        MoneyWithdrawnV2 {
            amount: v1.amount,
            fee: 0,
        }
    }
}

/// Renaming a field.
impl From<MoneyWithdrawnV2> for MoneyWithdrawnV3 {
    fn from(v2: MoneyWithdrawnV2) -> Self {
        MoneyWithdrawnV3 {
            net: v2.amount,
            fee: v2.fee,
        }
    }
}

/// Splitting: the fee becomes a withdrawal of its own.
impl Upcast for MoneyWithdrawnV3 {
    type Next = MoneyWithdrawn;

    fn upcast(self, out: &mut Vec<MoneyWithdrawn>) {
        out.push(MoneyWithdrawn { amount: self.net });
        if self.fee > 0 {
            out.push(MoneyWithdrawn { amount: self.fee });
        }
    }
}

/// The account was closed; it accepts nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.closed")]
pub struct AccountClosed {}

/// Money left the account for a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.transfer_debited")]
pub struct TransferDebited {
    /// The transfer.
    pub transfer: String,
    /// Where the money goes.
    pub to: AccountId,
    /// In cents.
    pub amount: u64,
}

/// The account could not pay for a transfer; nothing moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.transfer_debit_refused")]
pub struct TransferDebitRefused {
    /// The transfer.
    pub transfer: String,
    /// Why.
    pub reason: String,
}

/// Money arrived from a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.transfer_credited")]
pub struct TransferCredited {
    /// The transfer.
    pub transfer: String,
    /// Where it came from.
    pub from: AccountId,
    /// In cents.
    pub amount: u64,
}

/// The account could not take a transfer's money; it must go back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.transfer_credit_refused")]
pub struct TransferCreditRefused {
    /// The transfer.
    pub transfer: String,
    /// Where the money came from, to refund it.
    pub from: AccountId,
    /// In cents.
    pub amount: u64,
    /// Why.
    pub reason: String,
}

/// A transfer's debited money came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.transfer_refunded")]
pub struct TransferRefunded {
    /// The transfer.
    pub transfer: String,
    /// In cents.
    pub amount: u64,
}

/// Everything that can happen to an account.
#[derive(Debug, Clone, PartialEq, Eq, Event)]
pub enum AccountEvent {
    /// See [`AccountOpened`].
    Opened(AccountOpened),
    /// See [`MoneyDeposited`].
    Deposited(MoneyDeposited),
    /// See [`MoneyWithdrawn`].
    Withdrawn(MoneyWithdrawn),
    /// See [`AccountClosed`].
    Closed(AccountClosed),
    /// See [`TransferDebited`].
    TransferDebited(TransferDebited),
    /// See [`TransferDebitRefused`].
    TransferDebitRefused(TransferDebitRefused),
    /// See [`TransferCredited`].
    TransferCredited(TransferCredited),
    /// See [`TransferCreditRefused`].
    TransferCreditRefused(TransferCreditRefused),
    /// See [`TransferRefunded`].
    TransferRefunded(TransferRefunded),
}

/// Open a new account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command, utoipa::ToSchema)]
#[command(aggregate = BankAccount)]
pub struct OpenAccount {
    /// The new account's number.
    #[aggregate_id]
    pub account: AccountId,
    /// Its owner.
    pub owner: String,
}

/// Put money in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command, utoipa::ToSchema)]
#[command(aggregate = BankAccount)]
pub struct Deposit {
    /// The account.
    #[aggregate_id]
    pub account: AccountId,
    /// In cents.
    pub amount: u64,
}

/// Take money out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command, utoipa::ToSchema)]
#[command(aggregate = BankAccount)]
pub struct Withdraw {
    /// The account.
    #[aggregate_id]
    pub account: AccountId,
    /// In cents.
    pub amount: u64,
}

/// Close the account; its balance must be zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command, utoipa::ToSchema)]
#[command(aggregate = BankAccount)]
pub struct CloseAccount {
    /// The account.
    #[aggregate_id]
    pub account: AccountId,
}

/// Pay out a transfer's amount (sent by the transfer process). Never
/// rejected: a refusal is recorded as [`TransferDebitRefused`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = BankAccount)]
pub struct DebitForTransfer {
    /// The paying account.
    #[aggregate_id]
    pub account: AccountId,
    /// The transfer.
    pub transfer: String,
    /// The receiving account.
    pub to: AccountId,
    /// In cents.
    pub amount: u64,
}

/// Take in a transfer's amount (sent by the transfer process). Never
/// rejected: a refusal is recorded as [`TransferCreditRefused`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = BankAccount)]
pub struct CreditForTransfer {
    /// The receiving account.
    #[aggregate_id]
    pub account: AccountId,
    /// The transfer.
    pub transfer: String,
    /// The paying account.
    pub from: AccountId,
    /// In cents.
    pub amount: u64,
}

/// Give back a transfer's debited amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = BankAccount)]
pub struct RefundTransfer {
    /// The account that paid.
    #[aggregate_id]
    pub account: AccountId,
    /// The transfer.
    pub transfer: String,
    /// In cents.
    pub amount: u64,
}

/// Any command for an account, as it arrives over HTTP or a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BankCommand {
    /// See [`OpenAccount`].
    Open(OpenAccount),
    /// See [`Deposit`].
    Deposit(Deposit),
    /// See [`Withdraw`].
    Withdraw(Withdraw),
    /// See [`CloseAccount`].
    Close(CloseAccount),
}

/// Why an account refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Opening an account that exists.
    #[error("the account is already open")]
    AlreadyOpen,
    /// Using an account that was never opened.
    #[error("the account is not open")]
    NotOpen,
    /// Using a closed account.
    #[error("the account is closed")]
    Closed,
    /// Depositing or withdrawing nothing.
    #[error("the amount must be more than zero")]
    ZeroAmount,
    /// Withdrawing more than the balance.
    #[error("insufficient funds: the balance is {balance}, {requested} was requested")]
    InsufficientFunds {
        /// The balance, in cents.
        balance: u64,
        /// The amount asked for, in cents.
        requested: u64,
    },
    /// Closing an account that still holds money.
    #[error("the balance is {0}; withdraw it before closing")]
    NotEmpty(u64),
    /// Putting in more than a balance can hold.
    #[error("the balance of {balance} cannot take {amount} more")]
    TooMuch {
        /// The balance, in cents.
        balance: u64,
        /// The amount that would not fit, in cents.
        amount: u64,
    },
}

/// The account's state, rebuilt from its events.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, Aggregate, utoipa::ToSchema)]
#[aggregate(name = "bank_account", id = AccountId, event = AccountEvent, error = AccountError)]
pub struct BankAccount {
    /// Who owns it.
    pub owner: String,
    /// In cents.
    pub balance: u64,
    /// Opened and not closed.
    pub open: bool,
    /// Closed for good.
    pub closed: bool,
}

impl BankAccount {
    /// Refuses an amount the balance cannot take: an event decided here is
    /// always one `apply` can add without overflowing.
    fn room_for(&self, amount: u64) -> Result<(), AccountError> {
        match self.balance.checked_add(amount) {
            Some(_) => Ok(()),
            None => Err(AccountError::TooMuch {
                balance: self.balance,
                amount,
            }),
        }
    }

    fn usable(&self) -> Result<(), AccountError> {
        if self.closed {
            Err(AccountError::Closed)
        } else if !self.open {
            Err(AccountError::NotOpen)
        } else {
            Ok(())
        }
    }
}

#[es_core::handlers]
impl BankAccount {
    #[handle]
    fn open(&self, cmd: OpenAccount) -> Result<AccountOpened, AccountError> {
        if self.open || self.closed {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(AccountOpened { owner: cmd.owner })
    }

    #[handle]
    fn deposit(&self, cmd: &Deposit) -> Result<MoneyDeposited, AccountError> {
        self.usable()?;
        if cmd.amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        self.room_for(cmd.amount)?;
        Ok(MoneyDeposited { amount: cmd.amount })
    }

    #[handle]
    fn withdraw(&self, cmd: &Withdraw) -> Result<MoneyWithdrawn, AccountError> {
        self.usable()?;
        if cmd.amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        if cmd.amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                requested: cmd.amount,
            });
        }
        Ok(MoneyWithdrawn { amount: cmd.amount })
    }

    #[handle]
    fn close(&self, _: &CloseAccount) -> Result<AccountClosed, AccountError> {
        self.usable()?;
        if self.balance > 0 {
            return Err(AccountError::NotEmpty(self.balance));
        }
        Ok(AccountClosed {})
    }

    #[apply]
    fn opened(&mut self, e: &AccountOpened) {
        self.owner.clone_from(&e.owner);
        self.open = true;
    }

    #[apply]
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.balance += e.amount;
    }

    #[apply]
    fn withdrawn(&mut self, e: &MoneyWithdrawn) {
        self.balance -= e.amount;
    }

    #[apply]
    fn closed(&mut self, _: &AccountClosed) {
        self.open = false;
        self.closed = true;
    }

    #[handle]
    fn debit_for_transfer(&self, cmd: DebitForTransfer) -> Result<AccountEvent, AccountError> {
        let refuse = |reason: String| {
            Ok(TransferDebitRefused {
                transfer: cmd.transfer.clone(),
                reason,
            }
            .into())
        };
        if let Err(e) = self.usable() {
            return refuse(e.to_string());
        }
        if cmd.amount > self.balance {
            return refuse(
                AccountError::InsufficientFunds {
                    balance: self.balance,
                    requested: cmd.amount,
                }
                .to_string(),
            );
        }
        Ok(TransferDebited {
            transfer: cmd.transfer,
            to: cmd.to,
            amount: cmd.amount,
        }
        .into())
    }

    #[handle]
    fn credit_for_transfer(&self, cmd: CreditForTransfer) -> Result<AccountEvent, AccountError> {
        if let Err(e) = self.usable().and_then(|()| self.room_for(cmd.amount)) {
            return Ok(TransferCreditRefused {
                transfer: cmd.transfer,
                from: cmd.from,
                amount: cmd.amount,
                reason: e.to_string(),
            }
            .into());
        }
        Ok(TransferCredited {
            transfer: cmd.transfer,
            from: cmd.from,
            amount: cmd.amount,
        }
        .into())
    }

    /// Money owed goes back even to a closed account: it is the owner's.
    #[handle]
    fn refund(&self, cmd: RefundTransfer) -> Result<TransferRefunded, AccountError> {
        self.room_for(cmd.amount)?;
        Ok(TransferRefunded {
            transfer: cmd.transfer,
            amount: cmd.amount,
        })
    }

    #[apply]
    fn transfer_debited(&mut self, e: &TransferDebited) {
        self.balance -= e.amount;
    }

    #[apply]
    fn transfer_debit_refused(&mut self, _: &TransferDebitRefused) {}

    #[apply]
    fn transfer_credited(&mut self, e: &TransferCredited) {
        self.balance += e.amount;
    }

    #[apply]
    fn transfer_credit_refused(&mut self, _: &TransferCreditRefused) {}

    #[apply]
    fn transfer_refunded(&mut self, e: &TransferRefunded) {
        self.balance += e.amount;
    }
}

#[cfg(test)]
mod tests {
    use es_core::testing::AggregateTest;

    use super::*;

    fn id() -> AccountId {
        AccountId::new("acc-1")
    }

    fn opened() -> AccountOpened {
        AccountOpened { owner: "Ada".into() }
    }

    #[test]
    fn opening_twice_is_refused() {
        AggregateTest::<BankAccount>::given(opened())
            .when(OpenAccount {
                account: id(),
                owner: "Bob".into(),
            })
            .then_error(AccountError::AlreadyOpen);
    }

    #[test]
    fn deposits_add_up() {
        let state = AggregateTest::<BankAccount>::given((opened(), MoneyDeposited { amount: 30 }))
            .when(Deposit {
                account: id(),
                amount: 12,
            })
            .then_expect(MoneyDeposited { amount: 12 });
        assert_eq!(state.balance, 42);
    }

    #[test]
    fn withdrawing_more_than_the_balance_is_refused() {
        AggregateTest::<BankAccount>::given((opened(), MoneyDeposited { amount: 30 }))
            .when(Withdraw {
                account: id(),
                amount: 31,
            })
            .then_error(AccountError::InsufficientFunds {
                balance: 30,
                requested: 31,
            });
    }

    #[test]
    fn a_closed_account_takes_nothing() {
        AggregateTest::<BankAccount>::given((opened(), AccountClosed {}))
            .when(Deposit {
                account: id(),
                amount: 1,
            })
            .then_error(AccountError::Closed);
    }

    #[test]
    fn closing_needs_an_empty_account() {
        AggregateTest::<BankAccount>::given((opened(), MoneyDeposited { amount: 5 }))
            .when(CloseAccount { account: id() })
            .then_error(AccountError::NotEmpty(5));
        AggregateTest::<BankAccount>::given(opened())
            .when(CloseAccount { account: id() })
            .then_expect(AccountClosed {});
    }
}
