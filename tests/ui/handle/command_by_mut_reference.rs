//! A `#[handle]` handler takes the command by mutable reference.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct AccountOpened {
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct MoneyDeposited {
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct MoneyWithdrawn {
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Event)]
pub enum AccountEvent {
    Opened(AccountOpened),
    Deposited(MoneyDeposited),
    Withdrawn(MoneyWithdrawn),
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("insufficient funds")]
    InsufficientFunds,
}

#[derive(Debug, Clone, Command)]
#[command(aggregate = BankAccount)]
pub struct Deposit {
    #[aggregate_id]
    pub account: String,
    pub amount: u64,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "bank_account", id = String, event = AccountEvent, error = AccountError)]
pub struct BankAccount {
    balance: u64,
}

#[es_core::handlers]
impl BankAccount {
    #[handle]
    fn deposit(&self, cmd: &mut Deposit) -> Result<MoneyDeposited, AccountError> {
        Ok(MoneyDeposited { amount: cmd.amount })
    }

    #[apply]
    fn opened(&mut self, _: &AccountOpened) {}

    #[apply]
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.balance += e.amount;
    }

    #[apply]
    fn withdrawn(&mut self, e: &MoneyWithdrawn) {
        self.balance -= e.amount;
    }
}

fn main() {}
