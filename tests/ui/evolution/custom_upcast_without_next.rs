//! `custom_upcast` on a struct that names no next version.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "withdrawn", version = 1, custom_upcast)]
pub struct WithdrawnV1 { pub amount: u64 }

fn main() {}
