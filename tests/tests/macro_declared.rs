//! Aggregates, events, commands and handlers declared by a `macro_rules!`
//! macro compile and work: the derives' generated names do not leak into,
//! or depend on, the macro's hygiene.

use es_core::prelude::*;
use serde::{Deserialize, Serialize};

macro_rules! counter_domain {
    ($agg:ident, $event:ident, $cmd:ident, $name:literal) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
        pub(crate) struct $event {
            pub(crate) by: u64,
        }

        #[derive(Debug, Clone, Serialize, Deserialize, Command)]
        #[command(aggregate = $agg)]
        pub(crate) struct $cmd {
            #[aggregate_id]
            pub(crate) id: String,
            pub(crate) by: u64,
        }

        #[derive(Debug, Clone, PartialEq, thiserror::Error)]
        #[error("never")]
        pub(crate) struct Never;

        #[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
        #[aggregate(name = $name, id = String, event = $event, error = Never, services = (), snapshot_every = 3)]
        pub(crate) struct $agg {
            pub(crate) total: u64,
        }

        #[es_core::handlers]
        impl $agg {
            #[handle]
            fn add(&self, cmd: $cmd, services: &()) -> Result<$event, Never> {
                let () = *services;
                Ok($event { by: cmd.by })
            }

            #[apply]
            fn added(&mut self, event: &$event) {
                self.total += event.by;
            }
        }

        #[derive(Debug, Clone, Query)]
        #[query(output = u64)]
        pub(crate) struct TotalOf {
            pub(crate) id: String,
        }

        #[derive(Debug, Default)]
        pub(crate) struct Totals {
            by_id: std::collections::HashMap<String, u64>,
        }

        #[es_core::handlers(read_model)]
        impl Totals {
            #[apply]
            fn added(&mut self, event: &$event, context: &EventContext<'_>) {
                *self.by_id.entry(context.aggregate_id.to_owned()).or_default() += event.by;
            }

            #[handle]
            fn total_of(&self, query: TotalOf) -> u64 {
                self.by_id.get(&query.id).copied().unwrap_or(0)
            }
        }
    };
}

counter_domain!(Counter, Added, Add, "counter");

#[tokio::test]
async fn a_domain_declared_by_a_macro_works() {
    let app = Dispatcher::new(es_core::InMemoryStore::new());
    for by in [1, 2, 3, 4] {
        app.dispatch(Add { id: "c".into(), by }).await.unwrap();
    }
    let counter: Counter = app.load("c".to_owned()).await.unwrap();
    assert_eq!(counter.total, 10);
    let totals = Projection::new("totals", Totals::default());
    totals.catch_up(app.store()).await.unwrap();
    assert_eq!(totals.query(TotalOf { id: "c".into() }), 10);
    es_core::testing::AggregateTest::<Counter>::given(vec![Added { by: 1 }])
        .when(Add { id: "c".into(), by: 2 })
        .then_expect(Added { by: 2 });
}
