//! The guarantees the README states, each attacked the way a hostile user or
//! a failing machine would, run against every store by
//! `tests/tests/guarantees.rs`.

use es_core::store::{AppendRequest, NewEvent};
use es_core::{DispatchError, Dispatcher, EventId, EventStore, ExpectedVersion, Metadata, StreamId, Timestamp};
use examples::bank::{AccountId, BankAccount, Deposit, OpenAccount, Withdraw};
use examples::transfer::{RequestTransfer, Transfer};

fn open(id: &str, owner: &str) -> OpenAccount {
    OpenAccount {
        account: AccountId::new(id),
        owner: owner.into(),
    }
}

/// A command id identifies a command within its stream: another tenant
/// reusing it on another stream, of the same aggregate type or another, gets
/// its own command committed, never the first one's events.
pub async fn command_ids_are_scoped_to_their_stream<S: EventStore + Clone>(store: S) {
    let app = Dispatcher::new(store.clone());
    let id = || Metadata::new().command_id("req-1");
    let a = app.dispatch_with(open("a-acct", "Tenant A"), id()).await.unwrap();
    assert!(!a.deduplicated);

    let b = app.dispatch_with(open("b-acct", "Tenant B"), id()).await.unwrap();
    assert!(
        !b.deduplicated,
        "tenant B's command was answered with tenant A's outcome"
    );
    assert_eq!(b.stream, StreamId::new("bank_account", "b-acct"));
    assert_eq!(b.version, 1);
    let owners: Vec<_> = b.payloads().map(|e| format!("{e:?}")).collect();
    assert_eq!(owners, [r#"Opened(AccountOpened { owner: "Tenant B" })"#]);

    // On another aggregate type: committed, not a decode error naming A's stream.
    let t = app
        .dispatch_with(
            RequestTransfer {
                transfer: "t-1".into(),
                from: AccountId::new("a-acct"),
                to: AccountId::new("b-acct"),
                amount: 1,
            },
            id(),
        )
        .await
        .unwrap();
    assert!(!t.deduplicated);
    assert_eq!(t.stream, StreamId::new("transfer", "t-1"));

    // The same command under the same id on the same stream: the earlier
    // outcome.
    let again = app.dispatch_with(open("a-acct", "Tenant A"), id()).await.unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.stream, a.stream);
    assert_eq!(again.version, 1);
    assert_eq!(again.payloads().collect::<Vec<_>>(), a.payloads().collect::<Vec<_>>());

    // Every command took effect on its own stream, as a fresh load shows.
    let fresh = Dispatcher::new(store.clone());
    let b_state: BankAccount = fresh.load(&AccountId::new("b-acct")).await.unwrap();
    assert_eq!((b_state.owner.as_str(), b_state.open), ("Tenant B", true));
    let a_state: BankAccount = fresh.load(&AccountId::new("a-acct")).await.unwrap();
    assert_eq!(a_state.owner, "Tenant A");
    let transfer: Transfer = fresh.load("t-1").await.unwrap();
    assert_eq!(transfer.amount, 1);
    for stream in [&a.stream, &b.stream, &t.stream] {
        assert_eq!(store.stream_version(stream).await.unwrap(), 1, "{stream}");
    }
}

/// A command id names one command on its stream: a command of another type
/// reusing it is refused with an error naming both, and writes nothing; the
/// same command sent again gets the earlier outcome. Also when the two race
/// (then the store, not the dispatcher's lookup, finds the id taken), for
/// imports, and for batches stored without the command's name (taken as the
/// same command, as before names were recorded).
pub async fn a_command_id_reused_by_another_command_is_refused<S: EventStore + Clone>(store: S) {
    let app = Dispatcher::new(store.clone());
    let acct = AccountId::new("reused");
    let stream = StreamId::new("bank_account", "reused");
    let id = |k: &str| Metadata::new().command_id(k);
    app.dispatch_with(open("reused", "Ada"), id("req-1")).await.unwrap();
    let deposit = |amount| Deposit {
        account: acct.clone(),
        amount,
    };
    match app.dispatch_with(deposit(50), id("req-1")).await {
        Err(DispatchError::CommandIdReused {
            command,
            stream: at,
            command_id,
            earlier,
        }) => {
            assert_eq!(
                (command, earlier.as_str(), command_id.as_str()),
                ("Deposit", "OpenAccount", "req-1")
            );
            assert_eq!(at, stream);
        }
        other => panic!("a deposit reusing the open's command id: {other:?}"),
    }
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        1,
        "the refused deposit wrote nothing"
    );
    let again = app.dispatch_with(open("reused", "Ada"), id("req-1")).await.unwrap();
    assert!(again.deduplicated);

    // Racing: deposits and withdrawals under one id, from two dispatchers
    // (so neither answers from its own lookup alone). One commits; the
    // others of its type get its outcome, the others of the other type are
    // refused; one event is stored.
    app.dispatch(deposit(1_000)).await.unwrap();
    let other = Dispatcher::new(store.clone());
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (app, acct) = (if i % 2 == 0 { app.clone() } else { other.clone() }, acct.clone());
            tokio::spawn(async move {
                let outcome = if i % 4 < 2 {
                    app.dispatch_with(
                        Deposit {
                            account: acct,
                            amount: 10,
                        },
                        Metadata::new().command_id("race"),
                    )
                    .await
                    .map(|c| (c.deduplicated, "Deposit"))
                } else {
                    app.dispatch_with(
                        Withdraw {
                            account: acct,
                            amount: 10,
                        },
                        Metadata::new().command_id("race"),
                    )
                    .await
                    .map(|c| (c.deduplicated, "Withdraw"))
                };
                match outcome {
                    Ok((deduplicated, name)) => Ok((deduplicated, name)),
                    Err(DispatchError::CommandIdReused { command, earlier, .. }) => Err((command, earlier)),
                    Err(e) => panic!("racing on one command id: {e}"),
                }
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let winners: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .filter(|(d, _)| !*d)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = winners[0].1;
    for outcome in &outcomes {
        match outcome {
            Ok((_, name)) => assert_eq!(*name, winner, "{outcomes:?}"),
            Err((command, earlier)) => {
                assert_ne!(*command, winner, "{outcomes:?}");
                assert_eq!(earlier, winner, "{outcomes:?}");
            }
        }
    }
    assert_eq!(store.stream_version(&stream).await.unwrap(), 3);
    let state: BankAccount = Dispatcher::new(store.clone()).load(&acct).await.unwrap();
    assert_eq!(state.balance, if winner == "Deposit" { 1_010 } else { 990 });

    // An import's id is the import's: a command reusing it is refused.
    app.append_events::<BankAccount>(
        AccountId::new("imported"),
        examples::bank::AccountOpened { owner: "Old".into() },
        id("import-1"),
    )
    .await
    .unwrap();
    let refused = app
        .dispatch_with(
            Deposit {
                account: AccountId::new("imported"),
                amount: 5,
            },
            id("import-1"),
        )
        .await;
    assert!(
        matches!(&refused, Err(DispatchError::CommandIdReused { earlier, .. }) if earlier == "append_events"),
        "{refused:?}"
    );

    // A batch stored with the id but without a name is taken as the same
    // command.
    let legacy = StreamId::new("bank_account", "legacy");
    store
        .append(AppendRequest {
            stream: &legacy,
            expected: ExpectedVersion::NoStream,
            events: &[NewEvent {
                event_id: EventId::new(),
                name: "account.opened",
                schema_version: 1,
                payload: br#"{"owner":"Old"}"#,
            }],
            metadata: br#"{"command_id":"old-1"}"#,
            command_id: Some("old-1"),
            recorded_at: Timestamp::now(),
        })
        .await
        .unwrap();
    let answered = app
        .dispatch_with(
            Deposit {
                account: AccountId::new("legacy"),
                amount: 5,
            },
            id("old-1"),
        )
        .await
        .unwrap();
    assert!(answered.deduplicated);
    assert_eq!(store.stream_version(&legacy).await.unwrap(), 1);
}

/// An event that cannot be applied is never stored: a deposit that would
/// overflow the balance is refused, and a handler that panics commits
/// nothing and leaves the aggregate usable.
pub async fn an_event_that_cannot_be_applied_is_never_stored<S: EventStore + Clone>(store: S) {
    let app = Dispatcher::new(store.clone());
    let acct = AccountId::new("rich");
    app.dispatch(open("rich", "Midas")).await.unwrap();
    app.dispatch(Deposit {
        account: acct.clone(),
        amount: u64::MAX - 1,
    })
    .await
    .unwrap();
    let refused = app
        .dispatch(Deposit {
            account: acct.clone(),
            amount: 2,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(refused, DispatchError::Rejected { .. }),
        "an overflowing deposit must be refused, got {refused}"
    );
    let stream = StreamId::new("bank_account", "rich");
    assert_eq!(store.stream_version(&stream).await.unwrap(), 2);
    let state: BankAccount = Dispatcher::new(store.clone()).load(&acct).await.unwrap();
    assert_eq!(state.balance, u64::MAX - 1);
}

/// A domain whose handlers panic on request: `Poke { panic_in: Decide }`
/// panics while deciding, `Poke { panic_in: Apply }` decides an event whose
/// `apply` panics.
pub mod fragile {
    use es_core::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Where a poke panics.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub enum PanicIn {
        /// Nowhere.
        Nowhere,
        /// In `#[handle]`.
        Decide,
        /// In `#[apply]` of the decided event.
        Apply,
    }

    /// Something happened.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
    #[event(name = "fragile.poked")]
    pub struct Poked {
        /// Whether applying it panics.
        pub explode: bool,
    }

    /// The events.
    #[derive(Debug, Clone, PartialEq, Eq, Event)]
    pub enum FragileEvent {
        /// See [`Poked`].
        Poked(Poked),
    }

    /// Poke it.
    #[derive(Debug, Clone, Command)]
    #[command(aggregate = Fragile)]
    pub struct Poke {
        /// Which.
        #[aggregate_id]
        pub id: String,
        /// Where to panic.
        pub panic_in: PanicIn,
    }

    /// Never returned.
    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    pub struct Never;

    /// Counts pokes.
    #[derive(Debug, Default, Clone, Aggregate)]
    #[aggregate(name = "fragile", id = String, event = FragileEvent, error = Never)]
    pub struct Fragile {
        /// Pokes applied.
        pub pokes: u64,
    }

    #[es_core::handlers]
    impl Fragile {
        #[handle]
        fn poke(&self, cmd: Poke) -> Result<Poked, Never> {
            assert!(cmd.panic_in != PanicIn::Decide, "deciding panicked on purpose");
            Ok(Poked {
                explode: cmd.panic_in == PanicIn::Apply,
            })
        }

        #[apply]
        fn poked(&mut self, e: &Poked) {
            self.pokes += 1;
            assert!(!e.explode, "applying panicked on purpose");
        }
    }
}

/// A panic in a handler (deciding, or applying what was decided) commits
/// nothing, names the aggregate, stream and command, and the next command
/// on the same aggregate works on the stored state.
pub async fn a_panicking_handler_commits_nothing<S: EventStore + Clone>(store: S) {
    use fragile::{Fragile, PanicIn, Poke};
    let app = Dispatcher::new(store.clone());
    let poke = |panic_in| Poke {
        id: "f".into(),
        panic_in,
    };
    app.dispatch(poke(PanicIn::Nowhere)).await.unwrap();
    let mut stored = 1;
    for panic_in in [PanicIn::Decide, PanicIn::Apply] {
        let err = app.dispatch(poke(panic_in)).await.unwrap_err();
        match &err {
            DispatchError::Panicked {
                aggregate,
                stream,
                command,
                message,
            } => {
                assert_eq!((*aggregate, *command), ("fragile", "Poke"));
                assert_eq!(stream, &StreamId::new("fragile", "f"));
                assert!(message.contains("panicked on purpose"), "{message}");
            }
            other => panic!("expected a panic to be reported, got {other}"),
        }
        assert!(err.to_string().contains("fragile/f"), "{err}");
        assert_eq!(
            store.stream_version(&StreamId::new("fragile", "f")).await.unwrap(),
            stored
        );
        // The cached state was dropped: the next command starts from the store.
        let next = app.dispatch(poke(PanicIn::Nowhere)).await.unwrap();
        stored += 1;
        assert_eq!(next.version, stored);
        let state: Fragile = app.load("f").await.unwrap();
        assert_eq!(state.pokes, stored);
    }
    assert_eq!(store.stream_version(&StreamId::new("fragile", "f")).await.unwrap(), 3);
}

/// A command id reused by a command of the same type with other content (an
/// `Idempotency-Key` sent again with another body) is refused, not answered
/// with the first command's outcome; the same command sent again still is.
/// Racing: twenty deposits under one id from two dispatchers, ten of 5 and
/// ten of 500: one is stored, those like it are answered with its outcome,
/// the others are refused.
pub async fn a_command_id_reused_with_other_content_is_refused<S: EventStore + Clone>(store: S) {
    let app = Dispatcher::new(store.clone());
    let acct = AccountId::new("content");
    let stream = StreamId::new("bank_account", "content");
    app.dispatch(open("content", "Ada")).await.unwrap();
    let deposit = |amount| Deposit {
        account: acct.clone(),
        amount,
    };
    let key = |k: &str| Metadata::new().command_id(k);
    let first = app.dispatch_with(deposit(5), key("key-1")).await.unwrap();
    assert!(!first.deduplicated);
    match app.dispatch_with(deposit(500), key("key-1")).await {
        Err(error @ DispatchError::CommandIdReused { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("another `Deposit` with other content") && text.contains("`key-1`"),
                "{text}"
            );
        }
        other => panic!("a deposit of 500 under the key of a deposit of 5: {other:?}"),
    }
    let again = app.dispatch_with(deposit(5), key("key-1")).await.unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.version, first.version);
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        2,
        "the refused deposit wrote nothing"
    );

    let other = Dispatcher::new(store.clone());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let app = if i % 2 == 0 { app.clone() } else { other.clone() };
            let amount = if i % 4 < 2 { 5 } else { 500 };
            let command = deposit(amount);
            tokio::spawn(async move {
                match app.dispatch_with(command, Metadata::new().command_id("race")).await {
                    Ok(c) => (amount, Ok(c.deduplicated)),
                    Err(DispatchError::CommandIdReused { .. }) => (amount, Err(())),
                    Err(e) => panic!("racing on one key: {e}"),
                }
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let stored: Vec<u64> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Ok(false)))
        .map(|(a, _)| *a)
        .collect();
    assert_eq!(stored.len(), 1, "{outcomes:?}");
    let winner = stored[0];
    for (amount, outcome) in &outcomes {
        assert_eq!(outcome.is_ok(), *amount == winner, "{outcomes:?}");
    }
    assert_eq!(store.stream_version(&stream).await.unwrap(), 3);
    let state: BankAccount = Dispatcher::new(store.clone()).load(&acct).await.unwrap();
    assert_eq!(state.balance, 5 + winner);
}
