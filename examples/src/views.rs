//! The bank's read side: the list of balances and each account's history,
//! kept in memory from the global log, and the queries they answer.

use std::collections::BTreeMap;

use es_core::Timestamp;
use es_core::prelude::*;

use crate::bank::{
    AccountClosed, AccountEvent, AccountOpened, MoneyDeposited, MoneyWithdrawn, TransferCredited, TransferDebited,
    TransferRefunded,
};

/// One account in the list of balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    /// The owner.
    pub owner: String,
    /// In cents.
    pub balance: u64,
    /// Not closed.
    pub open: bool,
}

/// Every account's balance.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Balances {
    rows: BTreeMap<String, BalanceRow>,
}

/// The balance of one account, if it exists.
#[derive(Debug, Clone, Query)]
#[query(output = Option<u64>)]
pub struct BalanceOf {
    /// The account.
    pub account: String,
}

/// Every account, by id.
#[derive(Debug, Clone, Query)]
#[query(output = Vec<(String, BalanceRow)>)]
pub struct AllBalances;

/// The money in all accounts together (in cents; more than one account can
/// hold, hence `u128`).
#[derive(Debug, Clone, Query)]
#[query(output = u128)]
pub struct TotalHeld;

#[es_core::handlers(read_model)]
impl Balances {
    /// One handler for every account event: the enum routes them all here.
    #[apply]
    fn account(&mut self, e: &AccountEvent, ctx: &EventContext<'_>) {
        let id = ctx.aggregate_id.to_owned();
        if let AccountEvent::Opened(AccountOpened { owner }) = e {
            self.rows.insert(
                id,
                BalanceRow {
                    owner: owner.clone(),
                    balance: 0,
                    open: true,
                },
            );
            return;
        }
        let Some(row) = self.rows.get_mut(&id) else { return };
        match e {
            AccountEvent::Deposited(d) => row.balance += d.amount,
            AccountEvent::Withdrawn(w) => row.balance -= w.amount,
            AccountEvent::Closed(_) => row.open = false,
            AccountEvent::TransferDebited(t) => row.balance -= t.amount,
            AccountEvent::TransferCredited(t) => row.balance += t.amount,
            AccountEvent::TransferRefunded(t) => row.balance += t.amount,
            AccountEvent::Opened(_)
            | AccountEvent::TransferDebitRefused(_)
            | AccountEvent::TransferCreditRefused(_) => {}
        }
    }

    #[handle]
    fn balance_of(&self, q: BalanceOf) -> Option<u64> {
        self.rows.get(&q.account).map(|r| r.balance)
    }

    #[handle]
    fn all(&self, _: AllBalances) -> Vec<(String, BalanceRow)> {
        self.rows.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    #[handle]
    fn total(&self, _: TotalHeld) -> u128 {
        self.rows.values().map(|r| u128::from(r.balance)).sum()
    }
}

/// One line of an account's statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine {
    /// The event's version in the account's stream.
    pub version: u64,
    /// When.
    pub at: Timestamp,
    /// What, in words.
    pub what: String,
    /// The change, in cents.
    pub change: i64,
}

/// Each account's statement.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct History {
    lines: BTreeMap<String, Vec<HistoryLine>>,
}

/// An account's statement, oldest first.
#[derive(Debug, Clone, Query)]
#[query(output = Vec<HistoryLine>)]
pub struct HistoryOf {
    /// The account.
    pub account: String,
}

impl History {
    fn line(&mut self, ctx: &EventContext<'_>, what: String, change: i64) {
        self.lines
            .entry(ctx.aggregate_id.to_owned())
            .or_default()
            .push(HistoryLine {
                version: ctx.version,
                at: ctx.recorded_at,
                what,
                change,
            });
    }
}

/// One handler per event it cares about; the others (refusals) are skipped
/// without being decoded.
#[es_core::handlers(read_model)]
impl History {
    #[apply]
    fn opened(&mut self, e: &AccountOpened, ctx: &EventContext<'_>) {
        self.line(ctx, format!("opened for {}", e.owner), 0);
    }

    #[apply]
    fn deposited(&mut self, e: &MoneyDeposited, ctx: &EventContext<'_>) {
        self.line(ctx, "deposit".into(), e.amount as i64);
    }

    #[apply]
    fn withdrawn(&mut self, e: &MoneyWithdrawn, ctx: &EventContext<'_>) {
        self.line(ctx, "withdrawal".into(), -(e.amount as i64));
    }

    #[apply]
    fn closed(&mut self, _: &AccountClosed, ctx: &EventContext<'_>) {
        self.line(ctx, "closed".into(), 0);
    }

    #[apply]
    fn debited(&mut self, e: &TransferDebited, ctx: &EventContext<'_>) {
        self.line(ctx, format!("transfer {} to {}", e.transfer, e.to), -(e.amount as i64));
    }

    #[apply]
    fn credited(&mut self, e: &TransferCredited, ctx: &EventContext<'_>) {
        self.line(ctx, format!("transfer {} from {}", e.transfer, e.from), e.amount as i64);
    }

    #[apply]
    fn refunded(&mut self, e: &TransferRefunded, ctx: &EventContext<'_>) {
        self.line(ctx, format!("refund of transfer {}", e.transfer), e.amount as i64);
    }

    #[handle]
    fn history_of(&self, q: HistoryOf) -> Vec<HistoryLine> {
        self.lines.get(&q.account).cloned().unwrap_or_default()
    }
}
