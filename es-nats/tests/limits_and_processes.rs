//! What the server limits and what runs on the store: an event larger than
//! the server's `max_payload`, and a batch larger than its `max_batch_size`,
//! are refused whole, with the limit named; the transfer process manager
//! runs on NATS as on any store.

use es_core::store::{AppendRequest, EventStore, EventStoreExt, NewEvent};
use es_core::{AppendError, Dispatcher, EventId, ExpectedVersion, ProcessManager, StoreError, StreamId, Timestamp};
use examples::bank::{AccountId, BankAccount, Deposit, OpenAccount};
use examples::transfer::{RequestTransfer, Transfer, TransferProcess, TransferStatus};
use tests::nats as support;

fn request<'a>(stream: &'a StreamId, events: &'a [NewEvent<'a>], command_id: Option<&'a str>) -> AppendRequest<'a> {
    AppendRequest {
        stream,
        expected: ExpectedVersion::Any,
        events,
        metadata: b"",
        command_id,
        recorded_at: Timestamp::now(),
    }
}

fn blobs(blob: &[u8], n: usize) -> Vec<NewEvent<'_>> {
    (0..n)
        .map(|_| NewEvent {
            event_id: EventId::new(),
            name: "blob",
            schema_version: 1,
            payload: blob,
        })
        .collect()
}

/// Each event is one message: an event larger than the server's
/// `max_payload` is refused before anything is sent, with the limit named;
/// a batch larger than one message is stored whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_over_the_servers_max_payload_is_refused_and_a_large_batch_is_whole() {
    let Some(store) = support::store().await else {
        return;
    };
    let stream = StreamId::new("big", "1");
    // The test server takes 8 MiB per message.
    let huge = vec![7; 9 << 20];
    let small = vec![1; 10];
    let mut events = blobs(&small, 2);
    events.extend(blobs(&huge, 1));
    match store.append(request(&stream, &events, None)).await {
        Err(AppendError::Store(StoreError::Invalid { detail, .. })) => {
            assert!(
                detail.contains("max_payload") && detail.contains("8388608") && detail.contains("event 3"),
                "{detail}"
            );
        }
        other => panic!("an oversized event must be refused, got {other:?}"),
    }
    assert_eq!(store.stream_version(&stream).await.unwrap(), 0);
    assert_eq!(store.last_position().await.unwrap(), 0);
    // Three events of 3 MiB: 9 MiB in one atomic batch, read back whole.
    let large = vec![3; 3 << 20];
    let events = blobs(&large, 3);
    store
        .append(request(&stream, &events, None))
        .await
        .expect("a 9 MiB batch");
    let read = store.read_stream_vec(&stream, 1).await.unwrap();
    assert_eq!(read.len(), 3);
    assert!(read.iter().all(|e| e.payload.len() == 3 << 20));
}

/// A batch is one atomic publish of at most 1,000 messages (the server's
/// `max_batch_size`): 499 events with a command id fit, 500 are refused
/// whole with the limit named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_servers_max_batch_size_is_refused_whole() {
    let Some(store) = support::store().await else {
        return;
    };
    let stream = StreamId::new("many", "1");
    let payload = b"{}".to_vec();
    let too_many = blobs(&payload, 500);
    match store.append(request(&stream, &too_many, Some("import-1"))).await {
        Err(AppendError::Store(StoreError::Invalid { detail, .. })) => {
            assert!(
                detail.contains("max_batch_size") && detail.contains("1000") && detail.contains("499"),
                "{detail}"
            );
        }
        other => panic!("a batch over the limit must be refused, got {other:?}"),
    }
    assert_eq!(store.stream_version(&stream).await.unwrap(), 0);
    assert!(store.find_command(&stream, "import-1").await.unwrap().is_none());
    let most = blobs(&payload, 499);
    store
        .append(request(&stream, &most, Some("import-1")))
        .await
        .expect("499 events and a command id");
    assert_eq!(store.stream_version(&stream).await.unwrap(), 499);
    assert_eq!(store.events_after(0).await.unwrap(), 499);
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
