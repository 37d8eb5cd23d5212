//! Generic events, event enums, commands and aggregates.
use std::fmt::{Debug, Display};
use std::hash::Hash;

use es_core::prelude::*;
use es_core::testing::AggregateTest;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub trait Unit: Debug + Clone + PartialEq + Default + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl Unit for u32 {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[serde(bound = "")]
#[event(name = "tally.added")]
pub struct Added<U: Unit> {
    pub by: U,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "tally.reset")]
pub struct Reset;

#[derive(Debug, Clone, PartialEq, Event)]
pub enum TallyEvent<U: Unit> {
    Added(Added<U>),
    Reset(Reset),
}

#[derive(Debug, Clone, Command)]
#[command(aggregate = Tally<U, K>)]
pub struct Add<U: Unit, K: Clone + Eq + Hash + Display + Debug + Default + Send + Sync + 'static> {
    #[aggregate_id]
    pub key: K,
    pub by: U,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "tally", id = K, event = TallyEvent<U>, error = Never)]
pub struct Tally<U: Unit, K: Clone + Eq + Hash + Display + Debug + Default + Send + Sync + 'static> {
    pub last: U,
    pub count: usize,
    key: std::marker::PhantomData<K>,
}

#[es_core::handlers]
impl<U: Unit, K: Clone + Eq + Hash + Display + Debug + Default + Send + Sync + 'static> Tally<U, K> {
    #[handle]
    fn add(&self, cmd: Add<U, K>) -> Result<Added<U>, Never> {
        Ok(Added { by: cmd.by })
    }

    #[apply]
    fn added(&mut self, e: &Added<U>) {
        self.last = e.by.clone();
        self.count += 1;
    }

    #[apply]
    fn reset(&mut self, _: &Reset) {
        self.count = 0;
    }
}

fn main() {
    assert_eq!(<TallyEvent<u32> as Event>::NAMES, &["tally.added", "tally.reset"]);
    let state = AggregateTest::<Tally<u32, String>>::given((Added { by: 1u32 }, Reset))
        .when(Add { key: "k".to_owned(), by: 7u32 })
        .then_expect(Added { by: 7u32 });
    assert_eq!((state.last, state.count), (7, 1));
}
