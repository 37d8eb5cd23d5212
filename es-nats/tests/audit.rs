//! The audit trail on NATS, attacked through JetStream itself. The event
//! stream denies deletes, and the server refuses to lift that: what is left
//! to an attacker with the API is publishing (a changed copy of an event,
//! or a whole new stream of rewritten events).

use std::ops::ControlFlow;

use es_core::audit::{self, Problem, VerifyOptions};
use es_core::store::{AppendRequest, ContextFields, EventStoreExt, ExpectedVersion, NewEvent, RecordedEvent};
use es_core::{Dispatcher, EventStore};
use es_nats::{NatsOptions, NatsStore};

async fn jetstream() -> async_nats::jetstream::Context {
    let client = async_nats::connect(tests::nats::url().unwrap()).await.unwrap();
    async_nats::jetstream::new(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_store_verifies_and_proves() {
    let Some(store) = tests::nats::store().await else {
        return;
    };
    let filled = tests::audit::fill(&store).await;
    let report = tests::audit::check(&store, &filled, true).await;
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.events, filled.log.len() as u64);
    let target = filled.event("c", 3);
    let proof = audit::prove(&store, target.position, None).await.unwrap();
    assert_eq!(
        audit::check_proof(&proof, &filled.key.public_key()).unwrap(),
        target.link
    );
}

/// JetStream refuses to delete an event, and to lift the stream's denial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_refuses_to_delete_an_event() {
    let Some(store) = tests::nats::store().await else {
        return;
    };
    let filled = tests::audit::fill(&store).await;
    let js = jetstream().await;
    let name = format!("{}_events", store.prefix());
    let mut stream = js.get_stream(&name).await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.deny_delete = false;
    let refused = js.update_stream(config).await.unwrap_err().to_string();
    assert!(refused.contains("can not cancel deny message deletes"), "{refused}");
    let refused = stream
        .delete_message(filled.event("b", 2).position)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("not permitted"), "{refused}");
    let report = tests::audit::check(&store, &filled, true).await;
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// A changed copy of a sealed event published on its stream's subject (the
/// deposit of 1.00 made 9.99): it lands at the log's end, out of its
/// stream's order, and is named there; a dispatcher refuses the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republished_changed_copy_is_named() {
    let Some(store) = tests::nats::store().await else {
        return;
    };
    let filled = tests::audit::fill(&store).await;
    let target = filled.event("b", 2);
    let js = jetstream().await;
    let stream = js.get_stream(format!("{}_events", store.prefix())).await.unwrap();
    let original = stream.get_raw_message(target.position).await.unwrap();
    // The payload is the message's tail: change it in place.
    let mut bytes = original.payload.to_vec();
    let at = bytes.len() - target.payload.len();
    let forged = String::from_utf8(target.payload.clone()).unwrap().replace("100", "999");
    bytes.truncate(at);
    bytes.extend_from_slice(forged.as_bytes());
    let ack = js
        .publish(original.subject.to_string(), bytes.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let report = tests::audit::check(&store, &filled, true).await;
    assert_eq!(
        report.problems,
        vec![Problem::Missing {
            stream: target.stream.clone(),
            expected: 5,
            found: 2,
            position: ack.sequence,
        }]
    );
    let reopened = NatsStore::connect_with(
        &tests::nats::url().unwrap(),
        NatsOptions {
            prefix: store.prefix().to_owned(),
            ..NatsOptions::default()
        },
    )
    .await
    .unwrap();
    let err = Dispatcher::builder(reopened)
        .verify_chains(true)
        .build()
        .load::<examples::bank::BankAccount>(examples::bank::AccountId("b".to_owned()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("bank_account/b"), "{err}");
}

/// The whole store published again into a new stream with one early event
/// changed and the seals left out (every chain recomputed by the store
/// itself): nothing in it is inconsistent; the exported head catches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_rewritten_into_a_new_stream_is_caught_by_the_head() {
    let Some(store) = tests::nats::store().await else {
        return;
    };
    let filled = tests::audit::fill(&store).await;
    let Some(copy) = tests::nats::store().await else { return };
    let target = filled.event("a", 1).clone();
    let mut new_position = 0;
    for e in store.read_all_vec(0, 10_000).await.unwrap() {
        if e.stream == audit::seal_stream() {
            continue;
        }
        let payload = match e.position == target.position {
            true => String::from_utf8(e.payload.clone())
                .unwrap()
                .replace("owner a", "mallory")
                .into_bytes(),
            false => e.payload.clone(),
        };
        let appended = copy
            .append(AppendRequest {
                stream: &e.stream,
                expected: ExpectedVersion::Exact(e.version - 1),
                events: &[NewEvent {
                    event_id: e.event_id,
                    name: &e.name,
                    schema_version: e.schema_version,
                    payload: &payload,
                }],
                metadata: &e.metadata,
                command_id: None,
                recorded_at: e.recorded_at,
            })
            .await
            .unwrap();
        if e.position == target.position {
            let es_core::store::AppendOutcome::Appended(a) = appended else {
                panic!()
            };
            new_position = a.positions.last().unwrap();
        }
    }
    let blind = audit::verify(&copy, &VerifyOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert!(blind.is_clean() && blind.seals == 0, "{:?}", blind.problems);
    let report = tests::audit::check(&copy, &filled, true).await;
    match &report.problems[..] {
        [Problem::HeadMismatch { first, last, .. }] => {
            assert!((*first..=*last).contains(&new_position), "{:?}", report.problems)
        }
        other => panic!("{other:?}"),
    }
    // Links read back through a narrow read are the stored ones.
    let mut links = Vec::new();
    copy.read_all(0, 100, ContextFields::LINK, |e: &RecordedEvent<'_>| {
        links.push(e.link);
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(links.len() as u64, blind.events);
}
