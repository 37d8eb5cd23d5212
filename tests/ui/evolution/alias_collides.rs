//! A renamed event keeps an alias that another event of the enum uses.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "account.credited", aliases = ["account.deposited"])]
pub struct Credited { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "account.deposited")]
pub struct Deposited { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Event)]
pub enum AccountEvent {
    Credited(Credited),
    Deposited(Deposited),
}

fn main() {}
