//! What the derives generate, observed from outside: stored names and
//! versions, encoding, routing between an enum and its payloads, and the
//! shapes a handler may return.

use es_core::prelude::*;
use es_core::{Binary, Codec, EventDecodeError, Json, events_of};
use examples::bank::{
    AccountClosed, AccountEvent, AccountId, AccountOpened, BankAccount, Deposit, MoneyDeposited, MoneyWithdrawn,
    OpenAccount,
};
use serde::{Deserialize, Serialize};

/// Version 2 of an event, stored under its own name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "renamed.in.rust", version = 2)]
pub struct SomeRustName {
    /// Added in version 2; version 1 events decode with the default.
    #[serde(default)]
    pub added: u32,
}

#[test]
fn event_structs_know_their_stored_name_and_version() {
    assert_eq!(<MoneyDeposited as Event>::NAMES, &["account.deposited"]);
    assert_eq!(MoneyDeposited { amount: 1 }.name(), "account.deposited");
    assert_eq!(MoneyDeposited { amount: 1 }.version(), 1);
    assert_eq!(<SomeRustName as Event>::NAMES, &["renamed.in.rust"]);
    assert_eq!(SomeRustName { added: 0 }.version(), 2);
}

#[test]
fn event_structs_encode_without_their_name_and_decode_older_versions() {
    let bytes = SomeRustName { added: 3 }.encode(&Json).unwrap();
    assert_eq!(bytes, br#"{"added":3}"#);
    let v1 = SomeRustName::decode(&Json, "renamed.in.rust", 1, b"{}").unwrap();
    assert_eq!(v1, SomeRustName { added: 0 });
    match SomeRustName::decode(&Json, "renamed.in.rust", 3, b"{}") {
        Err(EventDecodeError::NewerVersion {
            name,
            stored,
            supported,
        }) => assert_eq!((name, stored, supported), ("renamed.in.rust", 3, 2)),
        other => panic!("expected a newer-version error, got {other:?}"),
    }
    // Versions start at 1: a stored 0 is corrupt, not an older version.
    for decoded in [
        SomeRustName::decode(&Json, "renamed.in.rust", 0, b"{}"),
        MoneyDeposited::decode(&Json, "account.deposited", 0, br#"{"amount":1}"#).map(|_| SomeRustName { added: 0 }),
    ] {
        match decoded {
            Err(EventDecodeError::UnknownVersion { stored, .. }) => assert_eq!(stored, 0),
            other => panic!("a stored version 0 must be refused, got {other:?}"),
        }
    }
    match SomeRustName::decode(&Json, "SomeRustName", 2, b"{}") {
        Err(EventDecodeError::UnknownName { name, known, .. }) => {
            assert_eq!((name.as_str(), known), ("SomeRustName", &["renamed.in.rust"][..]))
        }
        other => panic!("expected an unknown-name error, got {other:?}"),
    }
}

#[test]
fn an_event_enum_routes_names_to_variants() {
    assert_eq!(
        &<AccountEvent as Event>::NAMES[..4],
        &[
            "account.opened",
            "account.deposited",
            "account.withdrawn",
            "account.closed"
        ]
    );
    assert_eq!(<AccountEvent as Event>::NAMES.len(), 9);
    let e = AccountEvent::from(MoneyWithdrawn { amount: 4 });
    assert_eq!((e.name(), e.version()), ("account.withdrawn", 4));
    for codec_bytes in [e.encode(&Json).unwrap(), e.encode(&Binary).unwrap()] {
        assert!(!codec_bytes.is_empty());
    }
    let bytes = e.encode(&Json).unwrap();
    assert_eq!(AccountEvent::decode(&Json, "account.withdrawn", 4, &bytes).unwrap(), e);
    // Version 1 stored the same shape; it comes up the chain unchanged.
    assert_eq!(AccountEvent::decode(&Json, "account.withdrawn", 1, &bytes).unwrap(), e);
    assert!(AccountEvent::knows("account.closed"));
    assert!(!AccountEvent::knows("account.reopened"));
    let err = AccountEvent::decode(&Json, "account.reopened", 1, b"{}").unwrap_err();
    assert!(
        err.to_string().starts_with(
            "`examples::bank::AccountEvent` has no event named `account.reopened` (known names: [\"account.opened\", \"account.deposited\", "
        ),
        "{err}"
    );
    assert_eq!(MoneyWithdrawn::try_from(e.clone()), Ok(MoneyWithdrawn { amount: 4 }));
    assert_eq!(AccountClosed::try_from(e.clone()), Err(e));
}

/// Loading goes through the derive's `apply_stored`, which decodes straight
/// into a payload; it must fold exactly as decoding the enum and applying it,
/// and fail with the same error.
#[test]
fn applying_stored_bytes_matches_decoding_the_enum_and_applying_it() {
    let events: Vec<AccountEvent> = vec![
        AccountOpened { owner: "ada".into() }.into(),
        MoneyDeposited { amount: 70 }.into(),
        MoneyWithdrawn { amount: 20 }.into(),
        AccountClosed {}.into(),
    ];
    fn check<C: Codec>(codec: &C, events: &[AccountEvent]) {
        let (mut fast, mut slow) = (BankAccount::default(), BankAccount::default());
        for e in events {
            let bytes = e.encode(codec).unwrap();
            fast.apply_stored(codec, e.name(), e.version(), &bytes).unwrap();
            slow.apply(&AccountEvent::decode(codec, e.name(), e.version(), &bytes).unwrap());
            assert_eq!(fast, slow, "after {}", e.name());
        }
        assert_eq!((fast.balance, fast.closed), (50, true));
        let before = fast.clone();
        for (name, version, bytes) in [
            ("account.reopened", 1, &b"{}"[..]),
            ("account.deposited", 2, &b"{}"[..]),
            ("account.deposited", 1, &b"\xff\xff"[..]),
        ] {
            let fast_err = fast.apply_stored(codec, name, version, bytes).unwrap_err();
            let slow_err = AccountEvent::decode(codec, name, version, bytes).unwrap_err();
            assert_eq!(fast_err.to_string(), slow_err.to_string());
            assert_eq!(fast, before, "a failed decode leaves the state alone");
        }
    }
    check(&Json, &events);
    check(&Binary, &events);
}

#[test]
fn binary_codec_round_trips_every_event() {
    let events = vec![
        AccountEvent::from(AccountOpened {
            owner: "Zoë 🐝".into()
        }),
        MoneyDeposited { amount: u64::MAX }.into(),
        MoneyWithdrawn { amount: 0 }.into(),
        AccountClosed {}.into(),
    ];
    for e in events {
        let bytes = e.encode(&Binary).unwrap();
        assert_eq!(AccountEvent::decode(&Binary, e.name(), e.version(), &bytes).unwrap(), e);
        assert_eq!(Binary.decode::<u8>(&[7]).unwrap(), 7);
    }
}

#[test]
fn handlers_may_return_every_shape() {
    let one: Vec<AccountEvent> = events_of(MoneyDeposited { amount: 1 });
    assert_eq!(one.len(), 1);
    let none: Vec<AccountEvent> = events_of(Option::<MoneyDeposited>::None);
    assert!(none.is_empty());
    let tuple: Vec<AccountEvent> = events_of((MoneyDeposited { amount: 1 }, Some(AccountClosed {}), ()));
    assert_eq!(
        tuple,
        [
            AccountEvent::from(MoneyDeposited { amount: 1 }),
            AccountEvent::from(AccountClosed {})
        ]
    );
    let many: Vec<AccountEvent> = events_of(vec![[MoneyWithdrawn { amount: 1 }, MoneyWithdrawn { amount: 2 }]]);
    assert_eq!(many.len(), 2);
}

#[test]
fn commands_know_their_aggregate_and_id() {
    let cmd = Deposit {
        account: AccountId::new("x"),
        amount: 1,
    };
    assert_eq!(cmd.aggregate_id(), &AccountId::new("x"));
    assert_eq!(<Deposit as Command>::NAME, "Deposit");
    assert_eq!(<<OpenAccount as Command>::Aggregate as Aggregate>::NAME, "bank_account");
}

mod renamed {
    use es_core::prelude::*;
    use es_core::{Binary, Json};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    #[event(name = "ledger.credited", aliases = ["ledger.deposited", "money.in"])]
    pub(crate) struct Credited {
        pub(crate) cents: u64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    #[event(name = "ledger.debited")]
    pub(crate) struct Debited {
        pub(crate) cents: u64,
    }

    #[derive(Debug, Clone, PartialEq, Event)]
    pub(crate) enum LedgerEvent {
        Credited(Credited),
        Debited(Debited),
    }

    #[test]
    fn an_event_decodes_under_its_old_names_and_writes_its_new_one() {
        let e = Credited { cents: 5 };
        assert_eq!(e.name(), "ledger.credited");
        assert_eq!(
            <Credited as Event>::NAMES,
            ["ledger.credited", "ledger.deposited", "money.in"]
        );
        assert_eq!(
            <LedgerEvent as Event>::NAMES,
            ["ledger.credited", "ledger.deposited", "money.in", "ledger.debited"]
        );
        for name in ["ledger.credited", "ledger.deposited", "money.in"] {
            for bytes in [e.encode(&Json).unwrap(), e.encode(&Binary).unwrap()] {
                let codec_json = std::str::from_utf8(&bytes).is_ok_and(|t| t.starts_with('{'));
                let back = if codec_json {
                    LedgerEvent::decode(&Json, name, 1, &bytes).unwrap()
                } else {
                    LedgerEvent::decode(&Binary, name, 1, &bytes).unwrap()
                };
                assert_eq!(back, LedgerEvent::Credited(e.clone()), "{name}");
                assert_eq!(back.name(), "ledger.credited");
            }
            assert!(LedgerEvent::knows(name));
        }
        assert!(!LedgerEvent::knows("ledger.refunded"));
    }
}
