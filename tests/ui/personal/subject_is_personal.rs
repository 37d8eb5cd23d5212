//! A personal field used as the subject of another.
use es_core::personal::Personal;
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct GuestRegistered {
    pub guest_id: String,
    #[personal(subject = guest_id)]
    pub email: Personal<String>,
    #[personal(subject = email)]
    pub name: Personal<String>,
}

fn main() {}
