//! Version 2 upcasts to another event, not to the current version.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 1, next = WithdrawnV2)]
pub struct WithdrawnV1 { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 2, next = Deposited)]
pub struct WithdrawnV2 { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 3, older = [WithdrawnV1, WithdrawnV2])]
pub struct Withdrawn { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Deposited { pub amount: u64 }

impl From<WithdrawnV1> for WithdrawnV2 { fn from(v: WithdrawnV1) -> Self { WithdrawnV2 { amount: v.amount } } }
impl From<WithdrawnV2> for Deposited { fn from(v: WithdrawnV2) -> Self { Deposited { amount: v.amount } } }

fn main() {}
