//! Read models in memory and in a database, queries and a process.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};
use std::future::Future;

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

/// A database read model whose handler needs no context: the context
/// argument is optional before the transaction too.
pub struct Rows;

#[es_core::handlers(read_model)]
impl Rows {
    #[apply]
    fn deposited(&self, e: &MoneyDeposited, tx: &mut Vec<u64>) -> Result<(), Failure> {
        tx.push(e.amount);
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

    let payload = serde_json::to_vec(&MoneyDeposited { amount: 7 }).unwrap();
    let recorded = es_core::store::RecordedEvent {
        event_id: es_core::EventId::new(),
        aggregate_type: "till",
        aggregate_id: "t1",
        version: 1,
        position: 1,
        name: "MoneyDeposited",
        schema_version: 1,
        payload: &payload,
        metadata: &[],
        recorded_at: Timestamp::now(),
        link: es_core::store::Link::GENESIS,
    };
    let mut rows = Vec::new();
    {
        let applied = es_core::ReadModelIn::apply_recorded_in(&Rows, &es_core::Json, &recorded, &mut rows);
        let mut applied = std::pin::pin!(applied);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(matches!(applied.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(true))));
    }
    assert_eq!(rows, vec![7]);
}
