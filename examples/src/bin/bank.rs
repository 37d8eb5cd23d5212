//! A bank's story: `cargo run -p examples --bin bank`.

use es_core::prelude::*;
use examples::bank::{AccountId, BankAccount, BankCommand, CloseAccount, Deposit, OpenAccount, Withdraw};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Dispatcher::new(InMemoryStore::new());
    let ada = AccountId::new("ada-001");

    println!("> open {ada} for Ada");
    show(
        app.dispatch(OpenAccount {
            account: ada.clone(),
            owner: "Ada".into(),
        })
        .await?,
    );
    println!("> deposit 100.00");
    show(
        app.dispatch(Deposit {
            account: ada.clone(),
            amount: 10_000,
        })
        .await?,
    );
    println!("> withdraw 30.00");
    show(
        app.dispatch(Withdraw {
            account: ada.clone(),
            amount: 3_000,
        })
        .await?,
    );
    println!("> withdraw 500.00");
    match app
        .dispatch(Withdraw {
            account: ada.clone(),
            amount: 50_000,
        })
        .await
    {
        Err(e) => println!("  rejected: {e}"),
        Ok(_) => unreachable!("the balance is 70.00"),
    }

    // Commands that arrive as JSON are routed to their aggregate by the
    // command enum.
    let json = r#"{"type": "deposit", "account": "ada-001", "amount": 250}"#;
    println!("> {json}");
    let routed: BankCommand = serde_json::from_str(json)?;
    let receipt = app.dispatch(routed).await?;
    println!(
        "  {} -> version {}, events {:?}",
        receipt.stream, receipt.version, receipt.events
    );

    println!("> close {ada}");
    match app.dispatch(CloseAccount { account: ada.clone() }).await {
        Err(e) => println!("  rejected: {e}"),
        Ok(_) => unreachable!("the account holds money"),
    }

    let account: BankAccount = app.load(&ada).await?;
    println!(
        "state: owner {}, balance {}.{:02}, open: {}",
        account.owner,
        account.balance / 100,
        account.balance % 100,
        account.open
    );
    Ok(())
}

fn show(committed: Committed<BankAccount>) {
    for e in &committed.events {
        println!("  event #{} at position {}: {:?}", e.version, e.position, e.payload);
    }
}
