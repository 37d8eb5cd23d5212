//! A `Personal<T>` field the derive was not told about.
use es_core::personal::Personal;
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct GuestRegistered {
    pub guest_id: String,
    pub email: Personal<String>,
}

fn main() {}
