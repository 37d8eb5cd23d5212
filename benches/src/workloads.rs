//! The benchmark workloads, through the framework and by hand. Each pair
//! returns comparable results so the smoke test can check they agree.

use es_core::store::{AppendRequest, NewEvent};
use es_core::{Aggregate, Codec, Dispatcher, EventId, EventStore, ExpectedVersion, InMemoryStore, StreamId, Timestamp};
use examples::bank::{AccountEvent, AccountId, AccountOpened, BankAccount, Deposit, MoneyDeposited, OpenAccount};

use crate::baseline::{self, Bank};

/// `n` events for one account: opened, then deposits of 1..
pub fn events(n: usize) -> (Vec<AccountEvent>, Vec<baseline::Event>) {
    let mut framework = Vec::with_capacity(n);
    let mut by_hand = Vec::with_capacity(n);
    for i in 0..n {
        if i == 0 {
            framework.push(AccountOpened { owner: "ada".into() }.into());
            by_hand.push(baseline::Event::Opened(AccountOpened { owner: "ada".into() }));
        } else {
            let amount = (i % 100) as u64 + 1;
            framework.push(MoneyDeposited { amount }.into());
            by_hand.push(baseline::Event::Deposited(MoneyDeposited { amount }));
        }
    }
    (framework, by_hand)
}

/// Folds events through `Aggregate::apply` (the generated dispatch).
pub fn fold_framework(events: &[AccountEvent]) -> u64 {
    let mut state = BankAccount::default();
    for e in events {
        state.apply(e);
    }
    state.balance
}

/// Folds events through a hand-written `match`.
pub fn fold_baseline(events: &[baseline::Event]) -> u64 {
    let mut state = baseline::Account::default();
    for e in events {
        state.apply(e);
    }
    state.balance
}

/// Folds the framework's own events through a hand-written `match` on
/// the bank's `AccountEvent` (the same values, so the same memory read):
/// what the generated dispatch costs, apart from the size of the enum.
pub fn fold_by_hand_same_events(events: &[AccountEvent]) -> u64 {
    let mut state = BankAccount::default();
    for e in events {
        match e {
            AccountEvent::Opened(o) => {
                state.owner.clone_from(&o.owner);
                state.open = true;
            }
            AccountEvent::Deposited(d) => state.balance += d.amount,
            AccountEvent::Withdrawn(w) => state.balance -= w.amount,
            AccountEvent::Closed(_) => {
                state.open = false;
                state.closed = true;
            }
            AccountEvent::TransferDebited(t) => state.balance -= t.amount,
            AccountEvent::TransferCredited(t) => state.balance += t.amount,
            AccountEvent::TransferRefunded(t) => state.balance += t.amount,
            AccountEvent::TransferDebitRefused(_) | AccountEvent::TransferCreditRefused(_) => {}
        }
    }
    state.balance
}

/// The id of account `i`.
pub fn account(i: usize) -> String {
    format!("acc-{i:05}")
}

/// A dispatcher over a fresh in-memory store with `accounts` open accounts.
pub async fn opened_dispatcher(accounts: usize) -> Dispatcher<InMemoryStore> {
    let app = Dispatcher::new(InMemoryStore::new());
    for i in 0..accounts {
        app.dispatch(OpenAccount {
            account: AccountId(account(i)),
            owner: "ada".into(),
        })
        .await
        .expect("opens");
    }
    app
}

/// A hand-written bank with `accounts` open accounts.
pub fn opened_bank(accounts: usize) -> Bank {
    let mut bank = Bank::default();
    for i in 0..accounts {
        bank.handle(&baseline::Command::Open {
            account: account(i),
            owner: "ada".into(),
        })
        .expect("opens");
    }
    bank
}

/// `commands` deposits of 1, round-robin over `accounts` accounts.
pub async fn deposits_framework(app: &Dispatcher<InMemoryStore>, accounts: usize, commands: usize) {
    let ids: Vec<AccountId> = (0..accounts).map(|i| AccountId(account(i))).collect();
    for i in 0..commands {
        app.dispatch(Deposit {
            account: ids[i % accounts].clone(),
            amount: 1,
        })
        .await
        .expect("deposits");
    }
}

/// The same deposits, by hand.
pub fn deposits_baseline(bank: &mut Bank, accounts: usize, commands: usize) {
    let ids: Vec<String> = (0..accounts).map(account).collect();
    for i in 0..commands {
        bank.handle(&baseline::Command::Deposit {
            account: ids[i % accounts].clone(),
            amount: 1,
        })
        .expect("deposits");
    }
}

/// A store holding one account of `n` events encoded with `codec`.
pub async fn stored_account<C: Codec>(codec: C, n: usize) -> InMemoryStore {
    use es_core::store::{AppendRequest, NewEvent};
    use es_core::{Event, EventId, EventStore, ExpectedVersion, StreamId, Timestamp};
    let store = InMemoryStore::new();
    let stream = StreamId::new(BankAccount::NAME, account(0));
    let (events, _) = events(n);
    for chunk in events.chunks(1_000) {
        let version = store.stream_version(&stream).await.expect("version");
        let payloads: Vec<Vec<u8>> = chunk.iter().map(|e| e.encode(&codec).expect("encodes")).collect();
        let batch: Vec<NewEvent<'_>> = chunk
            .iter()
            .zip(&payloads)
            .map(|(e, payload)| NewEvent {
                event_id: EventId::new(),
                name: e.name(),
                schema_version: e.version(),
                payload,
            })
            .collect();
        store
            .append(AppendRequest {
                stream: &stream,
                expected: ExpectedVersion::Exact(version),
                events: &batch,
                metadata: b"",
                command_id: None,
                recorded_at: Timestamp::now(),
            })
            .await
            .expect("appends");
    }
    store
}

/// A cold load through the dispatcher (no cache: every event is decoded and
/// applied).
pub async fn cold_load_framework<C: Codec>(app: &Dispatcher<InMemoryStore, C>) -> u64 {
    app.load::<BankAccount>(&AccountId(account(0)))
        .await
        .expect("loads")
        .balance
}

/// The baseline of a cold load, on the bytes where the store keeps them:
/// read the stream through the same narrow read a load makes and, by hand,
/// decode each event with the same codec and
/// fold it with a `match` (no name routing, no version checks, no cache).
pub async fn cold_load_baseline(store: &InMemoryStore, decode: fn(&str, &[u8]) -> baseline::Event) -> u64 {
    use es_core::EventStore;
    use es_core::store::{ContextFields, RecordedEvent};
    let stream = es_core::StreamId::new(BankAccount::NAME, account(0));
    let mut state = baseline::Account::default();
    store
        .read_stream(&stream, 1, ContextFields::LOAD, |e: &RecordedEvent<'_>| {
            state.apply(&decode(e.name, e.payload));
            std::ops::ControlFlow::Continue(())
        })
        .await
        .expect("reads");
    state.balance
}

/// An account of `n` events: opened, one large deposit, then withdrawals of
/// one cent, stored at their current version (4) or, with `behind`, at the
/// version before it (3, `{net, fee}` with no fee: one upcast each).
pub async fn stored_withdrawals<C: Codec>(codec: C, n: usize, behind: bool) -> InMemoryStore {
    use es_core::Event;
    use examples::bank::{MoneyWithdrawn, MoneyWithdrawnV3};
    let store = InMemoryStore::new();
    let stream = StreamId::new(BankAccount::NAME, account(0));
    let encoded: Vec<(&'static str, u32, Vec<u8>)> = (0..n)
        .map(|i| {
            let event: AccountEvent = match i {
                0 => AccountOpened { owner: "ada".into() }.into(),
                1 => MoneyDeposited { amount: n as u64 }.into(),
                _ => MoneyWithdrawn { amount: 1 }.into(),
            };
            if behind && i > 1 {
                let older = MoneyWithdrawnV3 { net: 1, fee: 0 };
                (older.name(), older.version(), older.encode(&codec).expect("encodes"))
            } else {
                (event.name(), event.version(), event.encode(&codec).expect("encodes"))
            }
        })
        .collect();
    append_encoded(&store, &stream, &encoded).await;
    store
}

/// Appends encoded events (name, schema version, payload) to `stream` in
/// batches of 400, each at the stream's version.
pub async fn append_encoded<S: EventStore>(store: &S, stream: &StreamId, encoded: &[(&'static str, u32, Vec<u8>)]) {
    // 400 events an append: within every store's limit (NATS: 499 with a
    // command id, each event and its id record one message of a batch).
    for chunk in encoded.chunks(400) {
        let version = store.stream_version(stream).await.expect("version");
        let batch = chunk
            .iter()
            .map(|(name, schema_version, payload)| NewEvent {
                event_id: EventId::new(),
                name,
                schema_version: *schema_version,
                payload,
            })
            .collect::<Vec<_>>();
        store
            .append(AppendRequest {
                stream,
                expected: ExpectedVersion::Exact(version),
                events: &batch,
                metadata: b"",
                command_id: None,
                recorded_at: Timestamp::now(),
            })
            .await
            .expect("append");
    }
}
