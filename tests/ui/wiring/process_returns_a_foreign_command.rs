//! A process `#[apply]` returns a command that is not a variant of its `command =` enum.
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

#[derive(Debug, Clone, Command)]
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

    #[handle]
    fn open(&self, cmd: Open) -> Result<Opened, AccountError> {
        Ok(Opened { owner: cmd.account })
    }

    #[apply]
    fn opened(&mut self, _: &Opened) {}

    #[apply]
    fn deposited(&mut self, e: &Deposited) { self.balance += e.amount }
}

#[derive(Debug, Clone, Command)]
#[command(aggregate = Account)]
pub struct Open { #[aggregate_id] pub account: String }

#[derive(Debug, Clone, Command)]
pub enum Step {
    Deposit(Deposit),
}

pub struct Welcome;

#[es_core::handlers(process, command = Step)]
impl Welcome {
    #[apply]
    fn opened(&self, _: &Opened, ctx: &EventContext<'_>) -> Option<Open> {
        Some(Open { account: ctx.aggregate_id.to_owned() })
    }
}

fn main() {}
