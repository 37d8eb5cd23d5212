//! `readmodel` instead of `read_model`.
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

#[es_core::handlers(readmodel)]
impl Totals {
    #[apply]
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.total += e.amount;
    }
}

fn main() {}
