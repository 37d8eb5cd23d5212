//! The store conformance suite on NATS JetStream.

use tests::nats as support;

tests::conformance_tests!(support::store);
