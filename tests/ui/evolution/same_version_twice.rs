//! Two structs claim version 1 of one event.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 1, next = WithdrawnV1b)]
pub struct WithdrawnV1 { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 1, next = Withdrawn)]
pub struct WithdrawnV1b { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 3, older = [WithdrawnV1, WithdrawnV1b])]
pub struct Withdrawn { pub amount: u64 }

impl From<WithdrawnV1> for WithdrawnV1b { fn from(v: WithdrawnV1) -> Self { WithdrawnV1b { amount: v.amount } } }
impl From<WithdrawnV1b> for Withdrawn { fn from(v: WithdrawnV1b) -> Self { Withdrawn { amount: v.amount } } }

fn main() {}
