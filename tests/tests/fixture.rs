//! The given/when/then fixture fails loudly, saying what differed.

use std::sync::atomic::{AtomicU64, Ordering};

use es_core::prelude::*;
use es_core::testing::AggregateTest;
use examples::bank::{AccountError, AccountOpened, BankAccount, Deposit, MoneyDeposited, Withdraw};
use serde::{Deserialize, Serialize};

fn deposit(amount: u64) -> Deposit {
    Deposit {
        account: examples::bank::AccountId::new("a"),
        amount,
    }
}

fn opened() -> AccountOpened {
    AccountOpened { owner: "o".into() }
}

#[test]
#[should_panic(expected = "`bank_account` produced other events than expected")]
fn other_events_than_expected_fail() {
    AggregateTest::<BankAccount>::given(opened())
        .when(deposit(5))
        .then_expect(MoneyDeposited { amount: 6 });
}

#[test]
#[should_panic(expected = "`bank_account` rejected the command with NotOpen")]
fn a_rejection_where_events_were_expected_fails() {
    AggregateTest::<BankAccount>::given_nothing()
        .when(deposit(5))
        .then_expect(MoneyDeposited { amount: 5 });
}

#[test]
#[should_panic(expected = "`bank_account` accepted the command")]
fn events_where_a_rejection_was_expected_fail() {
    AggregateTest::<BankAccount>::given(opened())
        .when(deposit(5))
        .then_error(AccountError::ZeroAmount);
}

#[test]
#[should_panic(expected = "rejected the command with another error")]
fn another_error_fails() {
    AggregateTest::<BankAccount>::given(opened())
        .when(Withdraw {
            account: examples::bank::AccountId::new("a"),
            amount: 1,
        })
        .then_error(AccountError::ZeroAmount);
}

#[test]
fn then_error_matches_takes_a_predicate() {
    AggregateTest::<BankAccount>::given(opened())
        .when(Withdraw {
            account: examples::bank::AccountId::new("a"),
            amount: 1,
        })
        .then_error_matches(|e| matches!(e, AccountError::InsufficientFunds { requested: 1, .. }));
}

/// An event with a field serde skips: it does not survive being stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct Noted {
    /// Lost in storage.
    #[serde(skip)]
    pub text: String,
}

/// Applies its events in a way that depends on a global counter.
#[derive(Debug, Default, Aggregate)]
#[aggregate(id = u32, event = Noted, error = Never)]
pub struct Flaky {
    seen: u64,
}

/// Never happens.
#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// Notes something.
#[derive(Debug, Clone, Command)]
#[command(aggregate = Flaky)]
pub struct Note(#[aggregate_id] pub u32, pub String);

static CALLS: AtomicU64 = AtomicU64::new(0);

#[es_core::handlers]
impl Flaky {
    #[handle]
    fn note(&self, cmd: Note) -> Result<Noted, Never> {
        Ok(Noted { text: cmd.1 })
    }

    #[apply]
    fn noted(&mut self, _: &Noted) {
        self.seen = CALLS.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
#[should_panic(expected = "event `Noted` changes in an encode/decode round trip")]
fn an_event_that_does_not_survive_storage_fails() {
    AggregateTest::<Flaky>::given_nothing()
        .when(Note(1, "lost".into()))
        .then_expect(Noted { text: "lost".into() });
}

#[test]
#[should_panic(expected = "`Flaky` is not rebuilt faithfully")]
fn state_that_a_replay_does_not_rebuild_fails() {
    AggregateTest::<Flaky>::given_nothing()
        .when(Note(1, String::new()))
        .then_expect(Noted { text: String::new() });
}
