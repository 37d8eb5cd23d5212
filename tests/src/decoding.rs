//! A stored event that no longer decodes, on any store: the error names
//! the stream, the version, the event name and the stored schema version,
//! and other streams load as before.

use es_core::store::{AppendRequest, NewEvent};
use es_core::{DispatchError, Dispatcher, EventId, EventStore, ExpectedVersion, LoadError, StreamId, Timestamp};
use examples::bank::{AccountId, BankAccount, Deposit, OpenAccount};

async fn raw<S: EventStore>(store: &S, stream: &StreamId, name: &'static str, schema_version: u32, payload: &str) {
    store
        .append(AppendRequest {
            stream,
            expected: ExpectedVersion::Any,
            events: &[NewEvent {
                event_id: EventId::new(),
                name,
                schema_version,
                payload: payload.as_bytes(),
            }],
            metadata: b"",
            command_id: None,
            recorded_at: Timestamp::now(),
        })
        .await
        .expect("append a raw event");
}

/// Stores a good account and a broken one, and checks both.
pub async fn check_undecodable_row<S: EventStore + Clone>(store: S) {
    let app = Dispatcher::new(store.clone());
    let good = AccountId::new("good");
    app.dispatch(OpenAccount {
        account: good.clone(),
        owner: "Ada".into(),
    })
    .await
    .unwrap();
    let broken = StreamId::new("bank_account", "broken");
    raw(&store, &broken, "account.opened", 1, r#"{"owner":"Bob"}"#).await;
    raw(&store, &broken, "account.deposited", 1, r#"{"amount":5}"#).await;
    raw(&store, &broken, "account.deposited", 1, r#"{"amount":"five"}"#).await;

    let err = app.load::<BankAccount>(&AccountId::new("broken")).await.unwrap_err();
    let LoadError::Decode(d) = &err else {
        panic!("expected a decode error, got {err:?}")
    };
    assert_eq!(d.stream, broken);
    assert_eq!(d.stream_version, 3);
    assert_eq!(d.event_name, "account.deposited");
    assert_eq!(d.schema_version, 1);
    let text = err.to_string();
    assert!(
        text.starts_with(
            "cannot decode event `account.deposited` (schema version 1) at version 3 of stream `bank_account/broken`: json codec could not decode `examples::bank::MoneyDeposited`"
        ),
        "{text}"
    );
    // Commands to the broken stream fail the same way and write nothing...
    let before = store.stream_version(&broken).await.unwrap();
    let refused = app
        .dispatch(Deposit {
            account: AccountId::new("broken"),
            amount: 1,
        })
        .await;
    assert!(matches!(refused, Err(DispatchError::Decode(_))), "{refused:?}");
    assert_eq!(store.stream_version(&broken).await.unwrap(), before);
    // ...and the other streams work.
    app.dispatch(Deposit {
        account: good.clone(),
        amount: 3,
    })
    .await
    .unwrap();
    assert_eq!(
        Dispatcher::new(store).load::<BankAccount>(&good).await.unwrap().balance,
        3
    );
}

/// A stream one of whose rows was edited to a version below 1 (here the
/// third event, now at -7): loading it is an error naming the stream and
/// the row, not a shorter history; the next command appends nothing over
/// the gap. `corrupt` edits the row in the store's own table.
pub async fn check_negative_version<S: EventStore + Clone>(store: S, corrupt: impl AsyncFnOnce(&S)) {
    let app = Dispatcher::builder(store.clone()).cache_capacity(0).build();
    let account = AccountId::new("edited");
    app.dispatch(OpenAccount {
        account: account.clone(),
        owner: "Ed".into(),
    })
    .await
    .unwrap();
    for amount in [5, 7] {
        app.dispatch(Deposit {
            account: account.clone(),
            amount,
        })
        .await
        .unwrap();
    }
    corrupt(&store).await;
    let stream = StreamId::new("bank_account", "edited");
    match app.load::<BankAccount>(account.clone()).await {
        Err(LoadError::Store(es_core::StoreError::Corrupt { detail, .. })) => {
            assert!(detail.contains("bank_account") && detail.contains("-7"), "{detail}");
        }
        other => panic!("a row at version -7 must fail the load, got {other:?}"),
    }
    let refused = app
        .dispatch(Deposit {
            account: account.clone(),
            amount: 1,
        })
        .await;
    assert!(
        matches!(&refused, Err(DispatchError::Store(es_core::StoreError::Corrupt { .. }))),
        "{refused:?}"
    );
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        2,
        "nothing was appended over the gap"
    );
}
