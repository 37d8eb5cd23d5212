//! The read side's fixtures on the bank: the balances read model given
//! account events, and the transfer process given a transfer's events.

use es_core::testing::{ProcessTest, ReadModelTest};
use examples::bank::{
    AccountClosed, AccountId, AccountOpened, BankAccount, CreditForTransfer, DebitForTransfer, MoneyDeposited,
    MoneyWithdrawn, TransferDebited,
};
use examples::transfer::{Transfer, TransferProcess, TransferRequested, TransferStep};
use examples::views::{BalanceOf, Balances, TotalHeld};

fn account(id: &str) -> AccountId {
    AccountId::new(id)
}

/// Ada pays Bob 70.
fn requested() -> TransferRequested {
    TransferRequested {
        from: account("ada"),
        to: account("bob"),
        amount: 70,
    }
}

#[test]
fn balances_follow_deposits_withdrawals_and_closing() {
    ReadModelTest::new(Balances::default())
        .given::<BankAccount>(
            &account("ada"),
            (
                AccountOpened { owner: "Ada".into() },
                MoneyDeposited { amount: 500 },
                MoneyWithdrawn { amount: 120 },
            ),
        )
        .given::<BankAccount>(&account("bob"), AccountOpened { owner: "Bob".into() })
        .given::<BankAccount>(&account("bob"), MoneyDeposited { amount: 30 })
        .then_answer(BalanceOf { account: "ada".into() }, Some(380))
        .then_answer(BalanceOf { account: "bob".into() }, Some(30))
        .then_answer(BalanceOf { account: "cy".into() }, None)
        .then_answer(TotalHeld, 410)
        .given::<BankAccount>(&account("bob"), (MoneyWithdrawn { amount: 30 }, AccountClosed {}))
        .then_answer(TotalHeld, 380);
}

#[test]
fn the_transfer_process_debits_then_credits() {
    ProcessTest::new(TransferProcess)
        .given::<Transfer>(&"t1".to_owned(), requested())
        .then_commands([TransferStep::Debit(DebitForTransfer {
            account: account("ada"),
            transfer: "t1".into(),
            to: account("bob"),
            amount: 70,
        })])
        .given::<BankAccount>(
            &account("ada"),
            TransferDebited {
                transfer: "t1".into(),
                to: account("bob"),
                amount: 70,
            },
        )
        .then_commands([TransferStep::Credit(CreditForTransfer {
            account: account("bob"),
            transfer: "t1".into(),
            from: account("ada"),
            amount: 70,
        })]);
}

/// A failed expectation shows a diff of the two answers, not two dumps.
#[test]
fn a_wrong_expectation_shows_a_diff() {
    let failed = std::panic::catch_unwind(|| {
        ProcessTest::new(TransferProcess)
            .given::<Transfer>(&"t2".to_owned(), requested())
            .then_commands([TransferStep::Debit(DebitForTransfer {
                account: account("ada"),
                transfer: "t2".into(),
                to: account("bob"),
                amount: 71,
            })]);
    })
    .expect_err("the expectation is wrong");
    let message = failed
        .downcast_ref::<String>()
        .expect("a formatted panic message")
        .clone();
    assert!(
        message.contains("the process sent other commands than expected"),
        "{message}"
    );
    assert!(message.contains("--- expected\n+++ actual\n"), "{message}");
    assert!(message.contains("\n-            amount: 71,\n"), "{message}");
    assert!(message.contains("\n+            amount: 70,\n"), "{message}");
    // Lines both have are shown once, unmarked.
    assert_eq!(message.matches("transfer: \"t2\"").count(), 1, "{message}");
    assert!(message.contains("fixtures.rs"), "names the test's line: {message}");
}
