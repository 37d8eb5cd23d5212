//! The same account domain as `bank_derived.rs`, every es-core impl written
//! by hand: the compile-time baseline (see `benches/compile_time.sh`), and
//! proof that nothing the macros generate is out of a user's reach.
#![allow(missing_docs, dead_code)]

use std::fmt;

use es_core::prelude::*;
use es_core::{
    AnyCommitted, AnyRejection, Apply, ApplyTo, Codec, CodecError, DispatchError, Dispatchable, EventDecodeError,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccountId(pub String);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountOpened {
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyDeposited {
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyWithdrawn {
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountClosed {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    Opened(AccountOpened),
    Deposited(MoneyDeposited),
    Withdrawn(MoneyWithdrawn),
    Closed(AccountClosed),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenAccount {
    pub account: AccountId,
    pub owner: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deposit {
    pub account: AccountId,
    pub amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Withdraw {
    pub account: AccountId,
    pub amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloseAccount {
    pub account: AccountId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BankCommand {
    Open(OpenAccount),
    Deposit(Deposit),
    Withdraw(Withdraw),
    Close(CloseAccount),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("already open")]
    AlreadyOpen,
    #[error("not open")]
    NotOpen,
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("not empty")]
    NotEmpty,
}

#[derive(Debug, Default, Clone)]
pub struct BankAccount {
    pub owner: String,
    pub balance: u64,
    pub open: bool,
}

impl BankAccount {
    fn open(&self, cmd: &OpenAccount) -> Result<AccountOpened, AccountError> {
        if self.open {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(AccountOpened {
            owner: cmd.owner.clone(),
        })
    }

    fn deposit(&self, cmd: &Deposit) -> Result<MoneyDeposited, AccountError> {
        if !self.open {
            return Err(AccountError::NotOpen);
        }
        Ok(MoneyDeposited { amount: cmd.amount })
    }

    fn withdraw(&self, cmd: &Withdraw) -> Result<MoneyWithdrawn, AccountError> {
        if cmd.amount > self.balance {
            return Err(AccountError::InsufficientFunds);
        }
        Ok(MoneyWithdrawn { amount: cmd.amount })
    }

    fn close(&self, _: &CloseAccount) -> Result<AccountClosed, AccountError> {
        if self.balance > 0 {
            return Err(AccountError::NotEmpty);
        }
        Ok(AccountClosed {})
    }

    fn opened(&mut self, e: &AccountOpened) {
        self.owner.clone_from(&e.owner);
        self.open = true;
    }

    fn deposited(&mut self, e: &MoneyDeposited) {
        self.balance += e.amount;
    }

    fn withdrawn(&mut self, e: &MoneyWithdrawn) {
        self.balance -= e.amount;
    }

    fn closed(&mut self, _: &AccountClosed) {
        self.open = false;
    }
}

macro_rules! event_struct {
    ($t:ty, $name:literal) => {
        impl Event for $t {
            const NAMES: &'static [&'static str] = &[$name];
            fn name(&self) -> &'static str {
                $name
            }
            fn version(&self) -> u32 {
                1
            }
            fn encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError> {
                codec.encode(self)
            }
            fn decode<C: Codec>(codec: &C, name: &str, _: u32, payload: &[u8]) -> Result<Self, EventDecodeError> {
                if name != $name {
                    return Err(EventDecodeError::UnknownName {
                        name: name.to_owned(),
                        type_name: stringify!($t),
                        known: Self::NAMES,
                    });
                }
                Ok(codec.decode(payload)?)
            }
        }
        impl IntoEvents<AccountEvent> for $t {
            fn into_events(self, out: &mut Vec<AccountEvent>) {
                out.push(self.into());
            }
        }
    };
}

event_struct!(AccountOpened, "account.opened");
event_struct!(MoneyDeposited, "account.deposited");
event_struct!(MoneyWithdrawn, "account.withdrawn");
event_struct!(AccountClosed, "account.closed");

impl From<AccountOpened> for AccountEvent {
    fn from(e: AccountOpened) -> Self {
        AccountEvent::Opened(e)
    }
}
impl From<MoneyDeposited> for AccountEvent {
    fn from(e: MoneyDeposited) -> Self {
        AccountEvent::Deposited(e)
    }
}
impl From<MoneyWithdrawn> for AccountEvent {
    fn from(e: MoneyWithdrawn) -> Self {
        AccountEvent::Withdrawn(e)
    }
}
impl From<AccountClosed> for AccountEvent {
    fn from(e: AccountClosed) -> Self {
        AccountEvent::Closed(e)
    }
}

impl Event for AccountEvent {
    const NAMES: &'static [&'static str] = &[
        "account.opened",
        "account.deposited",
        "account.withdrawn",
        "account.closed",
    ];
    fn name(&self) -> &'static str {
        match self {
            AccountEvent::Opened(e) => e.name(),
            AccountEvent::Deposited(e) => e.name(),
            AccountEvent::Withdrawn(e) => e.name(),
            AccountEvent::Closed(e) => e.name(),
        }
    }
    fn version(&self) -> u32 {
        1
    }
    fn encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError> {
        match self {
            AccountEvent::Opened(e) => e.encode(codec),
            AccountEvent::Deposited(e) => e.encode(codec),
            AccountEvent::Withdrawn(e) => e.encode(codec),
            AccountEvent::Closed(e) => e.encode(codec),
        }
    }
    fn decode<C: Codec>(codec: &C, name: &str, version: u32, payload: &[u8]) -> Result<Self, EventDecodeError> {
        match name {
            "account.opened" => AccountOpened::decode(codec, name, version, payload).map(Self::Opened),
            "account.deposited" => MoneyDeposited::decode(codec, name, version, payload).map(Self::Deposited),
            "account.withdrawn" => MoneyWithdrawn::decode(codec, name, version, payload).map(Self::Withdrawn),
            "account.closed" => AccountClosed::decode(codec, name, version, payload).map(Self::Closed),
            other => Err(EventDecodeError::UnknownName {
                name: other.to_owned(),
                type_name: "AccountEvent",
                known: Self::NAMES,
            }),
        }
    }
}

impl IntoEvents<AccountEvent> for AccountEvent {
    fn into_events(self, out: &mut Vec<AccountEvent>) {
        out.push(self);
    }
}

impl<T: Apply<AccountOpened> + Apply<MoneyDeposited> + Apply<MoneyWithdrawn> + Apply<AccountClosed>> ApplyTo<T>
    for AccountEvent
{
    fn apply_to(&self, target: &mut T) {
        match self {
            AccountEvent::Opened(e) => Apply::<AccountOpened>::apply(target, e),
            AccountEvent::Deposited(e) => Apply::<MoneyDeposited>::apply(target, e),
            AccountEvent::Withdrawn(e) => Apply::<MoneyWithdrawn>::apply(target, e),
            AccountEvent::Closed(e) => Apply::<AccountClosed>::apply(target, e),
        }
    }
}

impl Aggregate for BankAccount {
    const NAME: &'static str = "bank_account";
    type Id = AccountId;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();
    fn initial() -> Self {
        Self::default()
    }
    fn apply(&mut self, event: &AccountEvent) {
        event.apply_to(self)
    }
}

macro_rules! command {
    ($t:ty, $name:literal, $method:ident) => {
        impl Command for $t {
            const NAME: &'static str = $name;
            type Aggregate = BankAccount;
            fn aggregate_id(&self) -> &AccountId {
                &self.account
            }
        }
        impl Handle<$t> for BankAccount {
            fn handle(&self, command: &$t, _: &()) -> Result<Vec<AccountEvent>, AccountError> {
                Ok(vec![self.$method(command)?.into()])
            }
        }
    };
}

command!(OpenAccount, "OpenAccount", open);
command!(Deposit, "Deposit", deposit);
command!(Withdraw, "Withdraw", withdraw);
command!(CloseAccount, "CloseAccount", close);

impl Apply<AccountOpened> for BankAccount {
    fn apply(&mut self, e: &AccountOpened) {
        self.opened(e)
    }
}
impl Apply<MoneyDeposited> for BankAccount {
    fn apply(&mut self, e: &MoneyDeposited) {
        self.deposited(e)
    }
}
impl Apply<MoneyWithdrawn> for BankAccount {
    fn apply(&mut self, e: &MoneyWithdrawn) {
        self.withdrawn(e)
    }
}
impl Apply<AccountClosed> for BankAccount {
    fn apply(&mut self, e: &AccountClosed) {
        self.closed(e)
    }
}

impl Dispatchable for BankCommand {
    type Output = AnyCommitted;
    type Rejection = AnyRejection;
    async fn dispatch_on<S: EventStore, C: Codec>(
        self,
        d: &Dispatcher<S, C>,
        metadata: Metadata,
    ) -> Result<AnyCommitted, DispatchError> {
        match self {
            BankCommand::Open(c) => d
                .execute(c, metadata)
                .await
                .map(Into::into)
                .map_err(DispatchError::erased),
            BankCommand::Deposit(c) => d
                .execute(c, metadata)
                .await
                .map(Into::into)
                .map_err(DispatchError::erased),
            BankCommand::Withdraw(c) => d
                .execute(c, metadata)
                .await
                .map(Into::into)
                .map_err(DispatchError::erased),
            BankCommand::Close(c) => d
                .execute(c, metadata)
                .await
                .map(Into::into)
                .map_err(DispatchError::erased),
        }
    }
}

fn main() {
    let _ = Dispatcher::new(InMemoryStore::new());
}
