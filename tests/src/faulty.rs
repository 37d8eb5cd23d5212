//! Read models and processes that fail on purpose, to attack the
//! subscription engine's guarantees.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use es_core::EventContext;
use examples::bank::{AccountOpened, Deposit, MoneyDeposited};

/// Makes a handler panic on deposits of one amount, a number of times.
#[derive(Debug, Clone, Default)]
pub struct Poison {
    amount: u64,
    left: Arc<AtomicU32>,
}

impl Poison {
    /// Panics on deposits of `amount`, the first `times` times.
    pub fn on(amount: u64, times: u32) -> Self {
        Poison {
            amount,
            left: Arc::new(AtomicU32::new(times)),
        }
    }

    /// How many panics are left.
    pub fn left(&self) -> u32 {
        self.left.load(Ordering::SeqCst)
    }

    /// Panics if `amount` is poisoned and panics are left.
    pub fn strike(&self, amount: u64) {
        if amount == self.amount
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            panic!("poisoned deposit of {amount}");
        }
    }
}

/// Counts deposits in memory; panics on a poisoned one.
#[derive(Debug, Default)]
pub struct Tally {
    /// Deposits applied.
    pub deposits: u64,
    /// Their sum.
    pub sum: u64,
    /// When to panic.
    pub poison: Poison,
}

#[es_core::handlers(read_model)]
impl Tally {
    #[apply]
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.poison.strike(e.amount);
        self.deposits += 1;
        self.sum += e.amount;
    }
}

/// Greets every new account with a deposit of `amount`: 0 is refused by
/// the account (`ZeroAmount`).
#[derive(Debug, Default)]
pub struct Welcome {
    /// What to deposit.
    pub amount: u64,
}

#[es_core::handlers(process, command = Deposit)]
impl Welcome {
    #[apply]
    fn opened(&self, _: &AccountOpened, ctx: &EventContext<'_>) -> Option<Deposit> {
        Some(Deposit {
            account: examples::bank::AccountId::new(ctx.aggregate_id),
            amount: self.amount,
        })
    }
}
