//! An in-memory read model's `#[apply]` that takes `&self`.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct MoneyDeposited {
    pub amount: u64,
}

#[derive(Debug, Clone, Query)]
#[query(output = u64)]
pub struct Total;

#[derive(Debug, Clone, Query)]
#[query(output = Vec<String>)]
pub struct Names;

#[derive(Debug, Default)]
pub struct Totals {
    total: u64,
}

#[es_core::handlers(read_model)]
impl Totals {
    #[apply]
    fn deposited(&self, e: &MoneyDeposited) {
        let _ = e;
    }
}

fn main() {}
