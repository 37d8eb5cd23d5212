//! Example domains for es, used by the runnable examples, the tests and the
//! benchmarks.

pub mod bank;
pub mod cart;
pub mod hotel;
pub mod service;
pub mod transfer;
pub mod views;
