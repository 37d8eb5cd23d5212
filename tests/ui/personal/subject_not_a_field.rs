//! The subject names a field the event does not have.
use es_core::personal::Personal;
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct GuestRegistered {
    pub guest_id: String,
    #[personal(subject = gust_id)]
    pub email: Personal<String>,
}

fn main() {}
