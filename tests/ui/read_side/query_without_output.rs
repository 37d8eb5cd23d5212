//! A query without `#[query(output = ..)]`.
use es_core::prelude::*;

#[derive(Debug, Clone, Query)]
pub struct Total;

fn main() {}
