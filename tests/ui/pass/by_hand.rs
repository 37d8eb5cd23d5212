//! Hand-written `Apply` and `Handle` impls work like generated ones.
use es_core::Apply;
use es_core::prelude::*;
use es_core::testing::AggregateTest;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Incremented {
    pub by: u32,
}

#[derive(Debug, Clone, Command)]
#[command(aggregate = Counter)]
pub struct Increment(#[aggregate_id] pub u64, pub u32);

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("too big")]
pub struct TooBig;

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = u64, event = Incremented, error = TooBig)]
pub struct Counter {
    pub n: u32,
}

impl Apply<Incremented> for Counter {
    fn apply(&mut self, e: &Incremented) {
        self.n += e.by;
    }
}

impl Handle<Increment> for Counter {
    fn handle(&self, cmd: &Increment, _: &()) -> Result<Vec<Incremented>, TooBig> {
        if cmd.1 > 10 {
            return Err(TooBig);
        }
        Ok(vec![Incremented { by: cmd.1 }])
    }
}

fn main() {
    assert_eq!(<Counter as Aggregate>::NAME, "Counter");
    assert_eq!(Increment(4, 1).aggregate_id(), &4);
    let state = AggregateTest::<Counter>::given(Incremented { by: 2 })
        .when(Increment(1, 3))
        .then_expect(Incremented { by: 3 });
    assert_eq!(state.n, 5);
    AggregateTest::<Counter>::given_nothing().when(Increment(1, 11)).then_error(TooBig);
}
