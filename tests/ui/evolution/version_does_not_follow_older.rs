//! Two older versions are listed, but the current one says version 2.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 1, next = WithdrawnV2)]
pub struct WithdrawnV1 { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 2, next = Withdrawn)]
pub struct WithdrawnV2 { pub amount: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 2, older = [WithdrawnV1, WithdrawnV2])]
pub struct Withdrawn { pub amount: u64 }

impl From<WithdrawnV1> for WithdrawnV2 { fn from(v: WithdrawnV1) -> Self { WithdrawnV2 { amount: v.amount } } }
impl From<WithdrawnV2> for Withdrawn { fn from(v: WithdrawnV2) -> Self { Withdrawn { amount: v.amount } } }

fn main() {}
