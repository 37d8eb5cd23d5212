//! The hand-written bank: a plain enum, a `match`, and a
//! `HashMap<String, Vec<Event>>`. Load the stream, fold, decide, push.

use std::collections::HashMap;

use examples::bank::{AccountOpened, MoneyDeposited, MoneyWithdrawn};
use serde::{Deserialize, Serialize};

/// The bank's events, by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// Opened for an owner.
    Opened(AccountOpened),
    /// Money in.
    Deposited(MoneyDeposited),
    /// Money out.
    Withdrawn(MoneyWithdrawn),
}

/// The bank's commands, by hand.
#[derive(Debug, Clone)]
pub enum Command {
    /// Open an account.
    Open {
        /// Its id.
        account: String,
        /// Its owner.
        owner: String,
    },
    /// Deposit.
    Deposit {
        /// The account.
        account: String,
        /// In cents.
        amount: u64,
    },
    /// Withdraw.
    Withdraw {
        /// The account.
        account: String,
        /// In cents.
        amount: u64,
    },
}

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Already open.
    AlreadyOpen,
    /// Not open.
    NotOpen,
    /// Amount zero.
    ZeroAmount,
    /// Not enough money.
    InsufficientFunds,
}

/// An account's state: the same fields as the framework's `BankAccount`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Account {
    /// Who owns it.
    pub owner: String,
    /// In cents.
    pub balance: u64,
    /// Open.
    pub open: bool,
}

impl Account {
    /// Evolves on one event.
    #[inline]
    pub fn apply(&mut self, e: &Event) {
        match e {
            Event::Opened(o) => {
                self.owner.clone_from(&o.owner);
                self.open = true;
            }
            Event::Deposited(d) => self.balance += d.amount,
            Event::Withdrawn(w) => self.balance -= w.amount,
        }
    }

    /// Decides one command.
    pub fn decide(&self, cmd: &Command) -> Result<Event, Error> {
        match cmd {
            Command::Open { owner, .. } => {
                if self.open {
                    Err(Error::AlreadyOpen)
                } else {
                    Ok(Event::Opened(AccountOpened { owner: owner.clone() }))
                }
            }
            Command::Deposit { amount, .. } => {
                if !self.open {
                    Err(Error::NotOpen)
                } else if *amount == 0 {
                    Err(Error::ZeroAmount)
                } else {
                    Ok(Event::Deposited(MoneyDeposited { amount: *amount }))
                }
            }
            Command::Withdraw { amount, .. } => {
                if !self.open {
                    Err(Error::NotOpen)
                } else if *amount > self.balance {
                    Err(Error::InsufficientFunds)
                } else {
                    Ok(Event::Withdrawn(MoneyWithdrawn { amount: *amount }))
                }
            }
        }
    }
}

/// The whole bank: one vector of events per account.
#[derive(Debug, Default)]
pub struct Bank {
    streams: HashMap<String, Vec<Event>>,
}

impl Bank {
    /// Loads the account, folds its events, decides, pushes the event.
    pub fn handle(&mut self, cmd: &Command) -> Result<(), Error> {
        let account = match cmd {
            Command::Open { account, .. } | Command::Deposit { account, .. } | Command::Withdraw { account, .. } => {
                account
            }
        };
        let stream = match self.streams.get_mut(account) {
            Some(s) => s,
            None => self.streams.entry(account.clone()).or_default(),
        };
        let mut state = Account::default();
        for e in stream.iter() {
            state.apply(e);
        }
        let event = state.decide(cmd)?;
        stream.push(event);
        Ok(())
    }

    /// The current state of an account.
    pub fn load(&self, account: &str) -> Account {
        let mut state = Account::default();
        for e in self.streams.get(account).into_iter().flatten() {
            state.apply(e);
        }
        state
    }
}

/// Decodes one stored bank event with serde_json.
pub fn decode_json(name: &str, bytes: &[u8]) -> Event {
    match name {
        "account.opened" => Event::Opened(serde_json::from_slice(bytes).expect("stored")),
        "account.deposited" => Event::Deposited(serde_json::from_slice(bytes).expect("stored")),
        "account.withdrawn" => Event::Withdrawn(serde_json::from_slice(bytes).expect("stored")),
        other => panic!("unknown event {other}"),
    }
}

/// Decodes one stored bank event with postcard.
pub fn decode_binary(name: &str, bytes: &[u8]) -> Event {
    match name {
        "account.opened" => Event::Opened(postcard::from_bytes(bytes).expect("stored")),
        "account.deposited" => Event::Deposited(postcard::from_bytes(bytes).expect("stored")),
        "account.withdrawn" => Event::Withdrawn(postcard::from_bytes(bytes).expect("stored")),
        other => panic!("unknown event {other}"),
    }
}
