//! The current version lists versions 1 and 3: version 2 is missing.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 1, next = WithdrawnV3)]
pub struct WithdrawnV1 { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 3, next = Withdrawn)]
pub struct WithdrawnV3 { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 3, older = [WithdrawnV1, WithdrawnV3])]
pub struct Withdrawn { pub amount: u64 }

impl From<WithdrawnV1> for WithdrawnV3 { fn from(v: WithdrawnV1) -> Self { WithdrawnV3 { amount: v.amount } } }
impl From<WithdrawnV3> for Withdrawn { fn from(v: WithdrawnV3) -> Self { Withdrawn { amount: v.amount } } }

fn main() {}
