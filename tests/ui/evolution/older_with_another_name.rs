//! An older version listed under another event's name.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "account.debited", version = 1, next = Withdrawn)]
pub struct WithdrawnV1 { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "account.withdrawn", version = 2, older = [WithdrawnV1])]
pub struct Withdrawn { pub amount: u64 }

impl From<WithdrawnV1> for Withdrawn { fn from(v: WithdrawnV1) -> Self { Withdrawn { amount: v.amount } } }

fn main() {}
