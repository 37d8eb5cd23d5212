//! Shared code of the cross-crate test suites.
