//! Workloads for the benchmarks, each in two versions: through the
//! framework, and hand-written with no framework at all. The bench targets
//! time both in the same run; the smoke test in `tests/smoke.rs` runs each
//! once on tiny input so they never rot.

pub mod baseline;
pub mod nats;
pub mod partitions;
pub mod projections;
pub mod sql;
pub mod stores;
pub mod workloads;
