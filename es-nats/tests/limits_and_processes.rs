//! What the server limits and what runs on the store: a batch larger than
//! the server's `max_payload` is refused whole, with the limit named; the
//! transfer process manager runs on NATS as on any store.

use es_core::store::{AppendRequest, EventStore, NewEvent};
use es_core::{AppendError, Dispatcher, EventId, ExpectedVersion, ProcessManager, StoreError, StreamId, Timestamp};
use examples::bank::{AccountId, BankAccount, Deposit, OpenAccount};
use examples::transfer::{RequestTransfer, Transfer, TransferProcess, TransferStatus};
use tests::nats as support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_servers_max_payload_is_refused_whole() {
    let Some(store) = support::store().await else {
        return;
    };
    let stream = StreamId::new("big", "1");
    // The test server takes 8 MiB; three events of 3 MiB are too many.
    let blob = vec![7; 3 << 20];
    let events: Vec<NewEvent<'_>> = (0..3)
        .map(|_| NewEvent {
            event_id: EventId::new(),
            name: "blob",
            schema_version: 1,
            payload: &blob,
        })
        .collect();
    let outcome = store
        .append(AppendRequest {
            stream: &stream,
            expected: ExpectedVersion::NoStream,
            events: &events,
            metadata: b"",
            command_id: None,
            recorded_at: Timestamp::now(),
        })
        .await;
    match outcome {
        Err(AppendError::Store(StoreError::Invalid { detail, .. })) => {
            assert!(detail.contains("max_payload") && detail.contains("8388608"), "{detail}");
        }
        other => panic!("an oversized batch must be refused, got {other:?}"),
    }
    assert_eq!(store.stream_version(&stream).await.unwrap(), 0);
    assert_eq!(store.last_position().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transfer_process_runs_on_nats() {
    let Some(store) = support::store().await else {
        return;
    };
    let app = Dispatcher::new(store);
    for (account, amount) in [("ada", 5_000), ("bob", 0)] {
        app.dispatch(OpenAccount {
            account: AccountId::new(account),
            owner: account.to_uppercase(),
        })
        .await
        .expect("open");
        if amount > 0 {
            app.dispatch(Deposit {
                account: AccountId::new(account),
                amount,
            })
            .await
            .expect("deposit");
        }
    }
    app.dispatch(RequestTransfer {
        transfer: "t-1".into(),
        from: AccountId::new("ada"),
        to: AccountId::new("bob"),
        amount: 1_200,
    })
    .await
    .expect("request");
    let transfers = ProcessManager::new("transfers", TransferProcess);
    transfers.settle(&app).await.expect("settle");
    let transfer: Transfer = app.load("t-1").await.expect("load");
    assert_eq!(transfer.status, TransferStatus::Completed);
    let ada: BankAccount = app.load(AccountId::new("ada")).await.expect("ada");
    let bob: BankAccount = app.load(AccountId::new("bob")).await.expect("bob");
    assert_eq!((ada.balance, bob.balance), (3_800, 1_200));
    // Settled means idle: running again reacts to nothing new.
    let position = transfers.settle(&app).await.expect("settle again");
    assert_eq!(transfers.settle(&app).await.expect("and again"), position);
}

/// The dispatcher's command-id guarantees hold on NATS as on the other
/// stores: an id reaches no other stream, and an id reused by another
/// command on its stream is refused (also when two race to the server's
/// de-duplication).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_ids_on_nats() {
    let Some(store) = support::store().await else {
        return;
    };
    tests::guarantees::command_ids_are_scoped_to_their_stream(store.clone()).await;
    tests::guarantees::a_command_id_reused_by_another_command_is_refused(store).await;
}
