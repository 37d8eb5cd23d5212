//! Services, snapshots and every handler return shape.
use es_core::prelude::*;
use es_core::testing::AggregateTest;
use serde::{Deserialize, Serialize};

pub struct Clock(pub u64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Ticked {
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(version = 3)]
pub struct Noted(pub String);

#[derive(Debug, Clone, PartialEq, Event)]
pub enum LogEvent {
    Ticked(Ticked),
    Noted(Noted),
}

#[derive(Debug, Clone, Command)]
#[command(aggregate = Log)]
pub struct Tick {
    #[aggregate_id]
    pub id: u32,
    pub times: usize,
}

#[derive(Debug, Clone, Command)]
#[command(aggregate = Log)]
pub struct Note {
    #[aggregate_id]
    pub id: u32,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Command)]
#[command(aggregate = Log)]
pub struct Both {
    #[aggregate_id]
    pub id: u32,
}

#[derive(Debug, Clone, Command)]
#[command(aggregate = Log)]
pub struct Nothing {
    #[aggregate_id]
    pub id: u32,
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("never")]
pub struct Never;

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(id = u32, event = LogEvent, error = Never, services = Clock, snapshot_every = 100, snapshot_version = 2)]
pub struct Log {
    pub ticks: Vec<u64>,
    pub notes: Vec<String>,
}

#[es_core::handlers]
impl Log {
    #[handle]
    fn tick(&self, cmd: Tick, clock: &Clock) -> Result<Vec<Ticked>, Never> {
        Ok((0..cmd.times).map(|i| Ticked { at: clock.0 + i as u64 }).collect())
    }

    #[handle]
    fn note(&self, cmd: Note) -> Result<Option<Noted>, Never> {
        Ok(cmd.text.map(Noted))
    }

    #[handle]
    fn both(&self, _: Both, clock: &Clock) -> Result<(Ticked, Noted), Never> {
        Ok((Ticked { at: clock.0 }, Noted("both".into())))
    }

    #[handle]
    fn nothing(&self, _: Nothing) -> Result<(), Never> {
        Ok(())
    }

    #[apply]
    fn ticked(&mut self, e: &Ticked) {
        self.ticks.push(e.at);
    }

    #[apply]
    fn noted(&mut self, e: &Noted) {
        self.notes.push(e.0.clone());
    }
}

fn main() {
    assert_eq!(<Log as Aggregate>::SNAPSHOT_EVERY, 100);
    assert_eq!(<Log as Aggregate>::SNAPSHOT_VERSION, 2);
    assert_eq!(LogEvent::Noted(Noted("x".into())).version(), 3);
    let t = || AggregateTest::<Log>::given_nothing().services(Clock(10));
    t().when(Tick { id: 1, times: 2 }).then_expect(vec![Ticked { at: 10 }, Ticked { at: 11 }]);
    t().when(Note { id: 1, text: None }).then_expect(());
    t().when(Both { id: 1 }).then_expect((Ticked { at: 10 }, Noted("both".into())));
    t().when(Nothing { id: 1 }).then_expect(());
}
