//! Properties: codecs round-trip any event; any sequence of commands through
//! any mix of dispatchers (cached, uncached, racing) ends in the state a
//! plain fold of the same decisions gives, and a reload rebuilds it exactly.

use es_core::prelude::*;
use es_core::{Binary, Json};
use examples::bank::{
    AccountClosed, AccountEvent, AccountId, AccountOpened, BankAccount, CloseAccount, Deposit, MoneyDeposited,
    MoneyWithdrawn, OpenAccount, Withdraw,
};
use proptest::prelude::*;

fn any_event() -> impl Strategy<Value = AccountEvent> {
    prop_oneof![
        ".*".prop_map(|owner| AccountEvent::from(AccountOpened { owner })),
        any::<u64>().prop_map(|amount| MoneyDeposited { amount }.into()),
        any::<u64>().prop_map(|amount| MoneyWithdrawn { amount }.into()),
        Just(AccountClosed {}.into()),
    ]
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource(
            "regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]
    #[test]
    fn every_event_round_trips_through_both_codecs(event in any_event()) {
        let json = event.encode(&Json).unwrap();
        prop_assert_eq!(&AccountEvent::decode(&Json, event.name(), event.version(), &json).unwrap(), &event);
        let bin = event.encode(&Binary).unwrap();
        prop_assert_eq!(&AccountEvent::decode(&Binary, event.name(), event.version(), &bin).unwrap(), &event);
    }
}

#[derive(Debug, Clone)]
enum Cmd {
    Open(u8),
    Deposit(u8, u64),
    Withdraw(u8, u64),
    Close(u8),
}

fn any_cmd() -> impl Strategy<Value = (Cmd, u8)> {
    let account = 0u8..3;
    let cmd = prop_oneof![
        account.clone().prop_map(Cmd::Open),
        (account.clone(), 0u64..50).prop_map(|(a, n)| Cmd::Deposit(a, n)),
        (account.clone(), 0u64..50).prop_map(|(a, n)| Cmd::Withdraw(a, n)),
        account.prop_map(Cmd::Close),
    ];
    (cmd, 0u8..3)
}

fn id(a: u8) -> AccountId {
    AccountId::new(format!("p{a}"))
}

/// The same decision as the dispatcher, without it: `handle` then `apply`.
fn decide_directly(model: &mut [BankAccount; 3], cmd: &Cmd) -> bool {
    let (a, result) = match cmd {
        Cmd::Open(a) => (
            *a,
            model[*a as usize].handle(
                &OpenAccount {
                    account: id(*a),
                    owner: "o".into(),
                },
                &(),
            ),
        ),
        Cmd::Deposit(a, n) => (
            *a,
            model[*a as usize].handle(
                &Deposit {
                    account: id(*a),
                    amount: *n,
                },
                &(),
            ),
        ),
        Cmd::Withdraw(a, n) => (
            *a,
            model[*a as usize].handle(
                &Withdraw {
                    account: id(*a),
                    amount: *n,
                },
                &(),
            ),
        ),
        Cmd::Close(a) => (*a, model[*a as usize].handle(&CloseAccount { account: id(*a) }, &())),
    };
    match result {
        Ok(events) => {
            for e in &events {
                model[a as usize].apply(e);
            }
            true
        }
        Err(_) => false,
    }
}

proptest! {
    #![proptest_config(config(64))]
    #[test]
    fn dispatching_matches_a_plain_fold(cmds in prop::collection::vec(any_cmd(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async move {
            let store = InMemoryStore::new();
            // A cached one, one that always reloads, and one with room for a
            // single account: each sees the others' writes as conflicts.
            let dispatchers = [
                Dispatcher::new(store.clone()),
                Dispatcher::builder(store.clone()).cache_capacity(0).build(),
                Dispatcher::builder(store.clone()).cache_capacity(1).build(),
            ];
            let mut model: [BankAccount; 3] = Default::default();
            for (cmd, via) in &cmds {
                let app = &dispatchers[*via as usize];
                let accepted = match cmd.clone() {
                    Cmd::Open(a) => app.dispatch(OpenAccount { account: id(a), owner: "o".into() }).await.map(|_| ()),
                    Cmd::Deposit(a, n) => app.dispatch(Deposit { account: id(a), amount: n }).await.map(|_| ()),
                    Cmd::Withdraw(a, n) => app.dispatch(Withdraw { account: id(a), amount: n }).await.map(|_| ()),
                    Cmd::Close(a) => app.dispatch(CloseAccount { account: id(a) }).await.map(|_| ()),
                };
                let expected = decide_directly(&mut model, cmd);
                assert_eq!(accepted.is_ok(), expected, "{cmd:?} via {via}: {accepted:?}");
                if let Err(e) = accepted {
                    assert!(matches!(e, DispatchError::Rejected { .. }), "{e:?}");
                }
            }
            for a in 0..3u8 {
                let fresh = Dispatcher::new(store.clone());
                let reloaded: BankAccount = fresh.load(&id(a)).await.unwrap();
                assert_eq!(reloaded, model[a as usize]);
                for app in &dispatchers {
                    assert_eq!(app.load::<BankAccount>(&id(a)).await.unwrap(), model[a as usize]);
                }
            }
        });
    }
}

mod upcasting {
    use es_core::Codec;
    use examples::bank::{MoneyWithdrawnV1, MoneyWithdrawnV2, MoneyWithdrawnV3};

    use super::*;

    /// An older `account.withdrawn`, as one of its releases stored it.
    #[derive(Debug, Clone)]
    enum Older {
        V1(MoneyWithdrawnV1),
        V2(MoneyWithdrawnV2),
        V3(MoneyWithdrawnV3),
    }

    impl Older {
        fn stored<C: Codec>(&self, codec: &C) -> (u32, Vec<u8>) {
            match self {
                Older::V1(v) => (1, v.encode(codec).unwrap()),
                Older::V2(v) => (2, v.encode(codec).unwrap()),
                Older::V3(v) => (3, v.encode(codec).unwrap()),
            }
        }
    }

    fn any_older_withdrawal() -> impl Strategy<Value = Older> {
        prop_oneof![
            any::<u64>().prop_map(|amount| Older::V1(MoneyWithdrawnV1 { amount })),
            (any::<u64>(), any::<u64>()).prop_map(|(amount, fee)| Older::V2(MoneyWithdrawnV2 { amount, fee })),
            (any::<u64>(), any::<u64>()).prop_map(|(net, fee)| Older::V3(MoneyWithdrawnV3 { net, fee })),
        ]
    }

    /// Upcast, then encoded at the current version and decoded again: the
    /// same events; and the struct's own reading agrees with the enum's.
    fn stable<C: Codec>(codec: &C, older: &Older) -> Result<(), TestCaseError> {
        let (version, payload) = older.stored(codec);
        let mut upcast = Vec::new();
        AccountEvent::decode_each(codec, "account.withdrawn", version, &payload, |e| upcast.push(e)).unwrap();
        prop_assert!(!upcast.is_empty() && upcast.len() <= 2);
        for event in &upcast {
            prop_assert_eq!(event.version(), 4);
            let bytes = event.encode(codec).unwrap();
            let back = AccountEvent::decode(codec, event.name(), event.version(), &bytes).unwrap();
            prop_assert_eq!(&back, event);
        }
        let mut again = Vec::new();
        MoneyWithdrawn::decode_each(codec, "account.withdrawn", version, &payload, |e| {
            again.push(AccountEvent::from(e))
        })
        .unwrap();
        prop_assert_eq!(again, upcast);
        Ok(())
    }

    proptest! {
        #![proptest_config(config(256))]
        #[test]
        fn upcasting_then_encoding_at_the_current_version_is_stable(older in any_older_withdrawal()) {
            stable(&Json, &older)?;
            stable(&Binary, &older)?;
        }
    }
}
