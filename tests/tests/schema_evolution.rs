//! Events stored by earlier releases (`examples/fixtures/`), at every schema
//! version `account.withdrawn` has had, read through the upcast chain on
//! every store and with both codecs: by the aggregate, by a read model of
//! the aggregate's event enum and by one of the event struct itself.

use es_core::{Binary, Codec, Dispatcher, EventStore, Json, Projection};
use examples::bank::{AccountId, BankAccount, Withdraw};
use examples::views::{BalanceOf, Balances, History, HistoryOf};
use tests::fixtures::{Stored, account};

async fn replays_through_the_chain<S: EventStore + Clone, C: Codec>(store: S, codec: C, stored: Stored) {
    let fixture = account();
    fixture.store_into(&store, stored).await;
    let app = Dispatcher::builder(store.clone()).codec(codec.clone()).build();
    let id = AccountId::new(&fixture.stream);

    // The aggregate: every version upcast to today's, splits included.
    let account: BankAccount = app.load(&id).await.unwrap();
    assert_eq!((account.owner.as_str(), account.balance), ("Fixture", fixture.balance));

    // Read models: one over the event enum, one over the struct.
    let balances = Projection::new("balances", Balances::default()).codec(codec.clone());
    balances.catch_up(&store).await.unwrap();
    assert_eq!(
        balances.query(BalanceOf {
            account: fixture.stream.clone()
        }),
        Some(fixture.balance)
    );
    let history = Projection::new("history", History::default()).codec(codec.clone());
    history.catch_up(&store).await.unwrap();
    let lines = history.query(HistoryOf {
        account: fixture.stream.clone(),
    });
    let withdrawals: Vec<i64> = lines
        .iter()
        .filter(|l| l.what == "withdrawal")
        .map(|l| l.change)
        .collect();
    assert_eq!(withdrawals, [-1000, -2000, -500, -50, -700, -70, -300, -100]);
    assert_eq!(withdrawals.len(), fixture.withdrawals);
    // A split event's parts keep the stored event's version.
    let versions: Vec<u64> = lines.iter().map(|l| l.version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 5, 6, 6, 7, 8]);

    // The stream goes on: new events are written at the current version.
    let committed = app
        .dispatch(Withdraw {
            account: id.clone(),
            amount: 280,
        })
        .await
        .unwrap();
    assert_eq!(committed.version, 9);
    let fresh = Dispatcher::builder(store.clone()).codec(codec).build();
    assert_eq!(
        fresh.load::<BankAccount>(&id).await.unwrap().balance,
        fixture.balance - 280
    );
}

tests::on_every_store! {
    json => |store| replays_through_the_chain(store, Json, Stored::Json),
    postcard => |store| replays_through_the_chain(store, Binary, Stored::Postcard),
}
