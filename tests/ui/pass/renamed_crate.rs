//! `crate = ".."` points generated code at a renamed es-core.
use serde::{Deserialize, Serialize};

mod framework {
    pub use es_core::*;
}

use framework::{Command as _, Event as _};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, framework::Event)]
#[event(crate = "framework", name = "pinged")]
pub struct Pinged;

#[derive(Debug, Clone, PartialEq, framework::Event)]
#[event(crate = "framework")]
pub enum PingEvent {
    Pinged(Pinged),
}

#[derive(Debug, Clone, framework::Command)]
#[command(crate = "framework", aggregate = Pinger)]
pub struct Ping {
    #[aggregate_id]
    pub id: String,
}

#[derive(Debug, Clone, framework::Command)]
#[command(crate = "framework")]
pub enum AnyCommand {
    Ping(Ping),
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[derive(Debug, Default, framework::Aggregate)]
#[aggregate(crate = "framework", id = String, event = PingEvent, error = Never)]
pub struct Pinger {
    pings: u32,
}

#[framework::handlers(crate = "framework")]
impl Pinger {
    #[handle]
    fn ping(&self, _: Ping) -> Result<Pinged, Never> {
        Ok(Pinged)
    }

    #[apply]
    fn pinged(&mut self, _: &Pinged) {
        self.pings += 1;
    }
}

fn main() {
    assert_eq!(PingEvent::Pinged(Pinged).name(), "pinged");
    assert_eq!(Ping { id: "x".into() }.aggregate_id(), "x");
    let _ = AnyCommand::from(Ping { id: "x".into() });
}
