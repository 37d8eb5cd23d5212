//! A generic aggregate whose type parameter has no bounds: one error, naming the bounds it needs (the generated impls are written as if it had them, so its handlers and commands add none).
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "guest.checked_in")]
pub struct CheckedIn { pub room: u32 }

#[derive(Debug, Clone, PartialEq, Event)]
pub enum GuestEvent { CheckedIn(CheckedIn) }

#[derive(Debug, Clone, Command)]
#[command(aggregate = Guest<u8>)]
pub struct CheckIn { #[aggregate_id] pub guest: String, pub room: u32 }

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "guest", id = String, event = GuestEvent, error = Never)]
pub struct Guest<T> { room: u32, tag: std::marker::PhantomData<T> }

#[es_core::handlers]
impl<T> Guest<T> {
    #[handle]
    fn check_in(&self, cmd: CheckIn) -> Result<CheckedIn, Never> { Ok(CheckedIn { room: cmd.room }) }

    #[apply]
    fn checked_in(&mut self, e: &CheckedIn) { self.room = e.room }
}

fn main() {}
