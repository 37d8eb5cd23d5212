//! An older version names its next one, but nothing converts it.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 1, next = Withdrawn)]
pub struct WithdrawnV1 { pub sum: u64 }

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 2, older = [WithdrawnV1])]
pub struct Withdrawn { pub amount: u64 }

fn main() {}
