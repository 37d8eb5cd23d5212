//! A process that does not say what it sends.
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

pub struct Notifier;

#[es_core::handlers(process)]
impl Notifier {
    #[apply]
    fn deposited(&self, e: &MoneyDeposited) -> Option<Total> {
        let _ = e;
        None
    }
}

fn main() {}
