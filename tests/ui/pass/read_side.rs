//! Read models in memory and in a database, queries and a process.
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

pub struct Tx;

#[derive(Debug)]
pub struct Failure;

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failure")
    }
}

impl std::error::Error for Failure {}

#[es_core::handlers(read_model)]
impl Totals {
    #[apply]
    fn deposited(&mut self, e: &MoneyDeposited, ctx: &EventContext<'_>) {
        self.total += e.amount + ctx.version * 0;
    }

    #[handle]
    fn total(&self, _: Total) -> u64 {
        self.total
    }

    #[handle]
    fn names(&self, _: Names) -> Vec<String> {
        vec![self.total.to_string()]
    }
}

pub struct Stored;

#[es_core::handlers(read_model)]
impl Stored {
    #[apply]
    async fn deposited(&self, e: &MoneyDeposited, ctx: &EventContext<'_>, tx: &mut Tx) -> Result<(), Failure> {
        let _ = (e, ctx, tx);
        Ok(())
    }
}

pub struct Echo;

#[es_core::handlers(process, command = Nothing)]
impl Echo {
    #[apply]
    fn deposited(&self, e: &MoneyDeposited) -> Vec<Nothing> {
        let _ = e;
        Vec::new()
    }
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

fn main() {
    let totals = Projection::new("totals", Totals::default());
    assert_eq!(totals.query(Total), 0);
    assert_eq!(totals.query(Names), vec!["0".to_owned()]);
    assert!(<Totals as es_core::ReadModel>::handles("MoneyDeposited"));
    assert!(!<Totals as es_core::ReadModel>::handles("Other"));
    assert!(<Stored as es_core::ReadModelIn<Tx>>::handles("MoneyDeposited"));
    assert!(<Echo as es_core::Process>::handles("MoneyDeposited"));
}
