//! SQLite event store (work in progress).
