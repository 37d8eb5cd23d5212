//! The read side and the dispatcher on NATS: a read model in one
//! connection follows commits made through another, woken by the server
//! (its poll is a minute), and command ids hold across connections.

use tests::nats as support;

use std::time::Duration;

use es_core::{Dispatcher, Metadata, Projection};
use examples::bank::{AccountId, BankAccount, BankCommand, Deposit, OpenAccount, Withdraw};
use examples::views::{BalanceOf, Balances};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_follows_another_connections_commits_woken_by_the_server() {
    let Some((writer, reader)) = support::two_connections().await else {
        return;
    };
    let balances = Projection::new("balances", Balances::default());
    let runner = balances.spawn(reader.clone(), Duration::from_secs(60));
    let app = Dispatcher::new(writer.clone());
    app.dispatch(BankCommand::Open(OpenAccount {
        account: AccountId::new("ada"),
        owner: "Ada".into(),
    }))
    .await
    .expect("open");
    let mut last = 0;
    for amount in [5, 7, 11] {
        let committed = app
            .dispatch(BankCommand::Deposit(Deposit {
                account: AccountId::new("ada"),
                amount,
            }))
            .await
            .expect("deposit");
        last = committed.position.expect("a position");
    }
    runner
        .wait_for(last, Duration::from_secs(10))
        .await
        .expect("woken by the server");
    assert_eq!(balances.query(BalanceOf { account: "ada".into() }), Some(23));

    // A refused command writes nothing; the read model's state stays.
    let refused = app
        .dispatch(BankCommand::Withdraw(Withdraw {
            account: AccountId::new("ada"),
            amount: 1_000,
        }))
        .await;
    assert!(refused.is_err());
    runner.stop().await;

    // The same command id through the other connection's dispatcher is the
    // first outcome, not a second deposit.
    let other = Dispatcher::new(reader);
    let mut metadata = Metadata::new();
    metadata.command_id = Some("dep-42".into());
    let deposit = || {
        BankCommand::Deposit(Deposit {
            account: AccountId::new("ada"),
            amount: 42,
        })
    };
    let first = app.dispatch_with(deposit(), metadata.clone()).await.expect("deposit");
    let again = other
        .dispatch_with(deposit(), metadata)
        .await
        .expect("the same deposit");
    assert!(again.deduplicated && !first.deduplicated);
    assert_eq!(again.version, first.version);
    let account: BankAccount = other.load(AccountId::new("ada")).await.expect("load");
    assert_eq!(account.balance, 23 + 42);
    let rebuilt = Projection::new("rebuilt", Balances::default());
    rebuilt.catch_up(&writer).await.expect("catch up");
    assert_eq!(rebuilt.query(BalanceOf { account: "ada".into() }), Some(65));
}
