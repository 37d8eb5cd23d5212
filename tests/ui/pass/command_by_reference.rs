//! A handler may take its command by reference, and then the command need
//! not be `Clone`; one taking it by value gets a copy (and needs `Clone`).
//! Both are decided again after a version conflict.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Named {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Added {
    pub by: u64,
}

#[derive(Debug, Clone, PartialEq, Event)]
pub enum TallyEvent {
    Named(Named),
    Added(Added),
}

#[derive(Debug, thiserror::Error)]
#[error("zero")]
pub struct Zero;

/// Not `Clone`: its handler borrows it.
#[derive(Debug, Command)]
#[command(aggregate = Tally)]
pub struct Add {
    #[aggregate_id]
    pub tally: String,
    pub by: u64,
}

/// `Clone`: its handler takes it by value and moves the name out.
#[derive(Debug, Clone, Command)]
#[command(aggregate = Tally)]
pub struct Name {
    #[aggregate_id]
    pub tally: String,
    pub name: String,
}

#[derive(Debug, Default, Clone, Aggregate)]
#[aggregate(name = "tally", id = String, event = TallyEvent, error = Zero)]
pub struct Tally {
    name: String,
    total: u64,
}

#[es_core::handlers]
impl Tally {
    #[handle]
    fn add(&self, cmd: &Add) -> Result<Added, Zero> {
        if cmd.by == 0 {
            return Err(Zero);
        }
        Ok(Added { by: cmd.by })
    }

    #[handle]
    fn name(&self, cmd: Name) -> Result<Named, Zero> {
        Ok(Named { name: cmd.name })
    }

    #[apply]
    fn named(&mut self, e: &Named) {
        self.name.clone_from(&e.name);
    }

    #[apply]
    fn added(&mut self, e: &Added) {
        self.total += e.by;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let app = Dispatcher::new(InMemoryStore::new());
    app.dispatch(Name { tally: "t".into(), name: "votes".into() }).await.unwrap();
    app.dispatch(Add { tally: "t".into(), by: 2 }).await.unwrap();
    app.dispatch(Add { tally: "t".into(), by: 3 }).await.unwrap();
    assert!(app.dispatch(Add { tally: "t".into(), by: 0 }).await.is_err());
    let tally = app.load::<Tally>("t").await.unwrap();
    assert_eq!((tally.name.as_str(), tally.total), ("votes", 5));
    AggregateTest::<Tally>::given(Added { by: 1 })
        .when(Add { tally: "t".into(), by: 4 })
        .then_expect(Added { by: 4 });
}
