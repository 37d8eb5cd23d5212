//! A field marked personal whose type cannot be forgotten.
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct GuestRegistered {
    pub guest_id: String,
    #[personal(subject = guest_id)]
    pub email: String,
}

fn main() {}
