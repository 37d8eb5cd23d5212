//! Each benchmark workload runs once on tiny input, and the framework and
//! the baseline agree on the result. No timing here: speed is measured by
//! `cargo bench -p benches` only.

use benches::baseline::{decode_binary, decode_json};
use benches::workloads::*;
use es_core::{Binary, Dispatcher, Json};
use examples::bank::{AccountId, BankAccount};

#[test]
fn folding_agrees() {
    let (framework, by_hand) = events(1_000);
    assert_eq!(fold_framework(&framework), fold_baseline(&by_hand));
    assert_eq!(
        fold_framework(&framework),
        (1..1_000u64).map(|i| i % 100 + 1).sum::<u64>()
    );
}

#[tokio::test]
async fn deposits_agree() {
    for accounts in [1, 7] {
        let app = opened_dispatcher(accounts).await;
        deposits_framework(&app, accounts, 50).await;
        let mut bank = opened_bank(accounts);
        deposits_baseline(&mut bank, accounts, 50);
        for i in 0..accounts {
            let ours = app.load::<BankAccount>(&AccountId(account(i))).await.unwrap();
            let theirs = bank.load(&account(i));
            assert_eq!(ours.balance, theirs.balance);
            assert!(ours.balance > 0);
        }
    }
}

#[tokio::test]
async fn cold_loads_agree() {
    let (store, stored) = stored_account(Json, 300).await;
    let app = Dispatcher::builder(store).cache_capacity(0).build();
    assert_eq!(
        cold_load_framework(&app).await,
        cold_load_baseline(&stored, decode_json)
    );
    let (store, stored) = stored_account(Binary, 300).await;
    let app = Dispatcher::builder(store).codec(Binary).cache_capacity(0).build();
    assert_eq!(
        cold_load_framework(&app).await,
        cold_load_baseline(&stored, decode_binary)
    );
}
