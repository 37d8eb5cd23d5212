//! A command that is not `Clone`.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Opened { pub owner: String }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Deposited { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Event)]
pub enum AccountEvent {
    Opened(Opened),
    Deposited(Deposited),
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("closed")]
    Closed,
}

#[derive(Debug, Command)]
#[command(aggregate = Account)]
pub struct Deposit { #[aggregate_id] pub account: String, pub amount: u64 }

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "account", id = String, event = AccountEvent, error = AccountError)]
pub struct Account { balance: u64 }

#[es_core::handlers]
impl Account {
    #[handle]
    fn deposit(&self, cmd: Deposit) -> Result<Deposited, AccountError> {
        Ok(Deposited { amount: cmd.amount })
    }

    #[apply]
    fn opened(&mut self, _: &Opened) {}

    #[apply]
    fn deposited(&mut self, e: &Deposited) { self.balance += e.amount }
}

fn main() {}
