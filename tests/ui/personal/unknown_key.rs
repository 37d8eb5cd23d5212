//! A key `#[personal]` does not know.
use es_core::personal::Personal;
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct GuestRegistered {
    pub guest_id: String,
    #[personal(owner = guest_id)]
    pub email: Personal<String>,
}

fn main() {}
