//! The event enum holds an older version instead of the current one.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 1, next = Withdrawn)]
pub struct WithdrawnV1 { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 2, older = [WithdrawnV1])]
pub struct Withdrawn { pub amount: u64 }

impl From<WithdrawnV1> for Withdrawn { fn from(v: WithdrawnV1) -> Self { Withdrawn { amount: v.amount } } }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Opened { pub owner: String }

#[derive(Debug, Clone, PartialEq, Event)]
pub enum AccountEvent {
    Opened(Opened),
    Withdrawn(WithdrawnV1),
}

fn main() {}
