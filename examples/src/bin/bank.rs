//! A bank's story on a SQLite file: `cargo run -p examples --bin bank`.
//!
//! The first run creates `bank.db` (or the path in `BANK_DB`) and opens the
//! accounts; every later run continues from what the earlier ones stored.
//! With `NATS_URL` set (`NATS_URL=nats://127.0.0.1:4222`) the story runs on
//! NATS JetStream instead (prefix `bank`).
//! Each run makes deposits and withdrawals, two transfers run by the
//! transfer process (one completes; the other is refused by a closed
//! account and refunded), and answers queries from two read models.

use std::time::Duration;

use es_core::prelude::*;
use es_core::{ProcessManager, Projection};
use es_sqlite::SqliteStore;
use examples::bank::{AccountId, BankAccount, BankCommand, CloseAccount, Deposit, OpenAccount, Withdraw};
use examples::transfer::{RequestTransfer, Transfer, TransferProcess};
use examples::views::{AllBalances, BalanceOf, Balances, History, HistoryOf, TotalHeld};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _telemetry = examples::init_tracing();
    if let Ok(url) = std::env::var("NATS_URL") {
        #[cfg(feature = "nats")]
        {
            let options = es_nats::NatsOptions {
                prefix: "bank".to_owned(),
                ..Default::default()
            };
            let place = format!("NATS JetStream at {url}");
            return story(es_nats::NatsStore::connect_with(&url, options).await?, &place).await;
        }
        #[cfg(not(feature = "nats"))]
        return Err(
            format!("NATS_URL is set ({url}), but this build has no NATS store: build with `--features nats`").into(),
        );
    }
    let path = std::env::var("BANK_DB").unwrap_or_else(|_| "bank.db".to_owned());
    story(SqliteStore::open(&path).await?, &path).await
}

/// The story on `store`, which `path` names for people.
async fn story<S: EventStore + Clone>(store: S, path: &str) -> Result<(), Box<dyn std::error::Error>> {
    // Read models live in memory: rebuilt from the file at start, then
    // updated by the dispatcher right after each commit.
    let balances = Projection::new("balances", Balances::default());
    let history = Projection::new("history", History::default());
    balances.catch_up(&store).await?;
    history.catch_up(&store).await?;
    let app = Dispatcher::builder(store.clone())
        .inline(balances.clone())
        .inline(history.clone())
        .build();
    let transfers = ProcessManager::new("transfers", TransferProcess);

    let ada = AccountId::new("ada-001");
    let bob = AccountId::new("bob-002");
    let eve = AccountId::new("eve-003");
    let before: BankAccount = app.load(&ada).await?;
    if before.open {
        println!(
            "{path}: resuming; the log is at position {} after earlier runs; {ada} holds {}",
            store.last_position().await?,
            money(before.balance)
        );
    } else {
        println!("{path}: a new store");
        for (id, owner) in [(&ada, "Ada"), (&bob, "Bob"), (&eve, "Eve")] {
            println!("> open {id} for {owner}");
            show(
                app.dispatch(OpenAccount {
                    account: id.clone(),
                    owner: owner.into(),
                })
                .await?,
            );
        }
        println!("> close {eve}");
        show(app.dispatch(CloseAccount { account: eve.clone() }).await?);
    }

    println!("> deposit 100.00 into {ada}");
    show(
        app.dispatch(Deposit {
            account: ada.clone(),
            amount: 10_000,
        })
        .await?,
    );
    println!("> withdraw 30.00 from {ada}");
    show(
        app.dispatch(Withdraw {
            account: ada.clone(),
            amount: 3_000,
        })
        .await?,
    );
    println!("> withdraw 5,000.00 from {ada}");
    match app
        .dispatch(Withdraw {
            account: ada.clone(),
            amount: 500_000,
        })
        .await
    {
        Err(e) => println!("  rejected: {e}"),
        Ok(_) => println!("  accepted: many runs have filled the account"),
    }
    // Commands that arrive as JSON are routed by the command enum.
    let json = r#"{"type": "deposit", "account": "bob-002", "amount": 250}"#;
    println!("> {json}");
    let committed = app.dispatch(serde_json::from_str::<BankCommand>(json)?).await?;
    println!(
        "  {} -> version {}, events {:?}",
        committed.stream, committed.version, committed.events
    );

    // Two transfers, each run by the transfer process: debit, credit (or
    // refund), then the outcome.
    let run = store.last_position().await?;
    for (to, amount) in [(&bob, 2_500), (&eve, 1_000)] {
        let id = format!("t{run}-{to}");
        println!("> transfer {} from {ada} to {to} ({id})", money(amount));
        app.dispatch(RequestTransfer {
            transfer: id.clone(),
            from: ada.clone(),
            to: to.clone(),
            amount,
        })
        .await?;
        // Let the process react until the transfer settles.
        transfers.settle(&app).await?;
        let transfer: Transfer = app.load(&id).await?;
        match &transfer.reason {
            None => println!("  {:?}", transfer.status),
            Some(reason) => println!("  {:?}: {reason}", transfer.status),
        }
    }

    // Queries, answered from the read models; the projections have seen
    // every commit already (read your writes, for inline projections).
    let last = store.last_position().await?;
    balances.wait_for(last, Duration::from_secs(1)).await?;
    println!("balances (read model at position {}):", balances.position());
    for (id, row) in balances.query(AllBalances) {
        println!(
            "  {id:8} {:6} {:>10}{}",
            row.owner,
            money(row.balance),
            if row.open { "" } else { "  (closed)" }
        );
    }
    println!("  total held: {}", money(balances.query(TotalHeld)));
    println!(
        "{ada}'s balance by query: {:?}",
        balances
            .query(BalanceOf {
                account: ada.to_string()
            })
            .map(money)
    );
    let lines = history.query(HistoryOf {
        account: ada.to_string(),
    });
    println!("{ada}'s last statement lines (of {}):", lines.len());
    for line in lines.iter().rev().take(5).rev() {
        println!("  #{:<3} {:>9}  {}", line.version, signed(line.change), line.what);
    }
    println!("run me again: the next run continues from {path}");
    Ok(())
}

fn money(cents: impl Into<u128>) -> String {
    let cents: u128 = cents.into();
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn signed(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "+" };
    format!("{sign}{}", money(cents.unsigned_abs()))
}

fn show(committed: Committed<BankAccount>) {
    for e in committed.events() {
        println!("  event #{} at position {}: {:?}", e.version, e.position, e.payload);
    }
}
