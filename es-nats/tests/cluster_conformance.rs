//! The store conformance suite on a three-node JetStream cluster, every
//! stream with three replicas. One cluster per test process.

use tests::nats as support;

use std::sync::OnceLock;

use es_nats::NatsStore;

async fn store() -> Option<NatsStore> {
    static CLUSTER: OnceLock<Option<support::Cluster>> = OnceLock::new();
    let cluster = CLUSTER.get_or_init(support::cluster).as_ref()?;
    Some(cluster.store().await)
}

tests::conformance_tests!(store);
