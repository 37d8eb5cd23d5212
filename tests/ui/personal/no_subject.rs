//! A personal field that does not say whose data it is.
use es_core::personal::Personal;
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct GuestRegistered {
    pub guest_id: String,
    #[personal]
    pub email: Personal<String>,
}

fn main() {}
