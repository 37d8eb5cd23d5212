//! The subject is a field of a type that cannot be an id.
use es_core::personal::Personal;
use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Measured {
    pub weight: f64,
    #[personal(subject = weight)]
    pub email: Personal<String>,
}

fn main() {}
