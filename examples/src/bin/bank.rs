//! A bank's story on a SQLite file: `cargo run -p examples --bin bank`.
//!
//! The first run creates `bank.db` (or the path in `BANK_DB`) and opens an
//! account; every later run continues from what the earlier ones stored.

use es_core::prelude::*;
use es_sqlite::SqliteStore;
use examples::bank::{AccountId, BankAccount, BankCommand, CloseAccount, Deposit, OpenAccount, Withdraw};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("BANK_DB").unwrap_or_else(|_| "bank.db".to_owned());
    let store = SqliteStore::open(&path).await?;
    let app = Dispatcher::new(store);
    let ada = AccountId::new("ada-001");

    let before: BankAccount = app.load(&ada).await?;
    if before.open {
        let (_, version) = app.load_at_version::<BankAccount>(&ada, u64::MAX).await?;
        println!(
            "{path}: resuming; {ada} was stored by an earlier run: owner {}, balance {}, {version} events",
            before.owner,
            money(before.balance)
        );
    } else {
        println!("{path}: a new store");
        println!("> open {ada} for Ada");
        show(
            app.dispatch(OpenAccount {
                account: ada.clone(),
                owner: "Ada".into(),
            })
            .await?,
        );
    }

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
    println!("> withdraw 5,000.00");
    match app
        .dispatch(Withdraw {
            account: ada.clone(),
            amount: 500_000,
        })
        .await
    {
        Err(e) => println!("  rejected: {e}"),
        Ok(_) => println!("  accepted: the account holds that much after many runs"),
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
        "state: owner {}, balance {}, open: {}",
        account.owner,
        money(account.balance),
        account.open
    );
    println!("run me again: the next run continues from {path}");
    Ok(())
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn show(committed: Committed<BankAccount>) {
    for e in &committed.events {
        println!("  event #{} at position {}: {:?}", e.version, e.position, e.payload);
    }
}
