//! The store conformance suite on NATS JetStream.

mod support;

tests::conformance_tests!(support::store);
