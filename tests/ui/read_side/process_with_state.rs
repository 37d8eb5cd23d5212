//! A process handler that takes `&mut self`.
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


#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, event = MoneyDeposited, error = Never)]
pub struct Till;

#[derive(Debug, Clone, Command)]
#[command(aggregate = Till)]
pub struct Ring {
    #[aggregate_id]
    pub till: String,
}

#[es_core::handlers]
impl Till {
    #[handle]
    fn ring(&self, _: Ring) -> Result<(), Never> {
        Ok(())
    }

    #[apply]
    fn deposited(&mut self, _: &MoneyDeposited) {}
}

#[derive(Debug, Clone, Command)]
pub enum Nothing {
    Ring(Ring),
}

pub struct Counter {
    seen: u64,
}

#[es_core::handlers(process, command = Nothing)]
impl Counter {
    #[apply]
    fn deposited(&mut self, e: &MoneyDeposited) -> Vec<Nothing> {
        self.seen += e.amount;
        Vec::new()
    }
}

fn main() {}
