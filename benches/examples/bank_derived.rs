//! The bank's account domain written with the derives, to time its
//! compilation against `bank_by_hand.rs` (see `benches/compile_time.sh`).
#![allow(missing_docs, dead_code)]

use std::fmt;

use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccountId(pub String);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.opened")]
pub struct AccountOpened {
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.deposited")]
pub struct MoneyDeposited {
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.withdrawn")]
pub struct MoneyWithdrawn {
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "account.closed")]
pub struct AccountClosed {}

#[derive(Debug, Clone, PartialEq, Eq, Event)]
pub enum AccountEvent {
    Opened(AccountOpened),
    Deposited(MoneyDeposited),
    Withdrawn(MoneyWithdrawn),
    Closed(AccountClosed),
}

#[derive(Debug, Clone, Serialize, Deserialize, Command)]
#[command(aggregate = BankAccount)]
pub struct OpenAccount {
    #[aggregate_id]
    pub account: AccountId,
    pub owner: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Command)]
#[command(aggregate = BankAccount)]
pub struct Deposit {
    #[aggregate_id]
    pub account: AccountId,
    pub amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Command)]
#[command(aggregate = BankAccount)]
pub struct Withdraw {
    #[aggregate_id]
    pub account: AccountId,
    pub amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Command)]
#[command(aggregate = BankAccount)]
pub struct CloseAccount {
    #[aggregate_id]
    pub account: AccountId,
}

#[derive(Debug, Clone, Serialize, Deserialize, Command)]
pub enum BankCommand {
    Open(OpenAccount),
    Deposit(Deposit),
    Withdraw(Withdraw),
    Close(CloseAccount),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("already open")]
    AlreadyOpen,
    #[error("not open")]
    NotOpen,
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("not empty")]
    NotEmpty,
}

#[derive(Debug, Default, Clone, Aggregate)]
#[aggregate(name = "bank_account", id = AccountId, event = AccountEvent, error = AccountError)]
pub struct BankAccount {
    pub owner: String,
    pub balance: u64,
    pub open: bool,
}

#[es_core::handlers]
impl BankAccount {
    #[handle]
    fn open(&self, cmd: OpenAccount) -> Result<AccountOpened, AccountError> {
        if self.open {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(AccountOpened { owner: cmd.owner })
    }

    #[handle]
    fn deposit(&self, cmd: Deposit) -> Result<MoneyDeposited, AccountError> {
        if !self.open {
            return Err(AccountError::NotOpen);
        }
        Ok(MoneyDeposited { amount: cmd.amount })
    }

    #[handle]
    fn withdraw(&self, cmd: Withdraw) -> Result<MoneyWithdrawn, AccountError> {
        if cmd.amount > self.balance {
            return Err(AccountError::InsufficientFunds);
        }
        Ok(MoneyWithdrawn { amount: cmd.amount })
    }

    #[handle]
    fn close(&self, _: CloseAccount) -> Result<AccountClosed, AccountError> {
        if self.balance > 0 {
            return Err(AccountError::NotEmpty);
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
    }
}

fn main() {
    let _ = Dispatcher::new(InMemoryStore::new());
}
