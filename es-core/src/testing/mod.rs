//! Given / when / then tests: [`AggregateTest`] for aggregates,
//! [`ReadModelTest`] for read models, [`ProcessTest`] for process
//! managers. A failed expectation shows a diff of what was expected and
//! what came.
//!
//! ```
//! # use es_core::prelude::*;
//! # use es_core::testing::AggregateTest;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! # pub struct Opened;
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! # pub struct Deposited { amount: u64 }
//! # #[derive(Debug, Clone, PartialEq, Event)]
//! # pub enum AccountEvent { Opened(Opened), Deposited(Deposited) }
//! # #[derive(Debug, Clone, Command)]
//! # #[command(aggregate = Account)]
//! # pub struct Deposit { #[aggregate_id] id: String, amount: u64 }
//! # #[derive(Debug, PartialEq, thiserror::Error)]
//! # pub enum AccountError { #[error("closed")] Closed }
//! # #[derive(Debug, Default, Aggregate)]
//! # #[aggregate(id = String, event = AccountEvent, error = AccountError)]
//! # pub struct Account { open: bool, balance: u64 }
//! # #[es_core::handlers]
//! # impl Account {
//! #     #[handle]
//! #     fn deposit(&self, cmd: Deposit) -> Result<Deposited, AccountError> {
//! #         if !self.open { return Err(AccountError::Closed) }
//! #         Ok(Deposited { amount: cmd.amount })
//! #     }
//! #     #[apply] fn opened(&mut self, _: &Opened) { self.open = true }
//! #     #[apply] fn deposited(&mut self, e: &Deposited) { self.balance += e.amount }
//! # }
//! let deposit = Deposit { id: "a".into(), amount: 5 };
//! AggregateTest::<Account>::given(Opened)
//!     .when(deposit.clone())
//!     .then_expect(Deposited { amount: 5 });
//! AggregateTest::<Account>::given_nothing()
//!     .when(deposit)
//!     .then_error(AccountError::Closed);
//! ```
//!
//! Every run also checks that each given and produced event survives an
//! encode/decode round trip through the codec, and that replaying the stored
//! form of the given and produced events from scratch, as a later load does,
//! gives the same state as applying the produced events to the given state
//! (compared by `Debug` output, so the aggregate derives `Debug`).

use std::fmt::Debug;
use std::panic::Location;

mod diff;
mod read_side;

use self::diff::diff;
pub use self::read_side::{ProcessTest, ReadModelTest};
use crate::aggregate::{Aggregate, Handle};
use crate::codec::{Codec, Json};
use crate::event::{Event, IntoEvents};

/// A given/when/then test of one aggregate.
pub struct AggregateTest<A: Aggregate, C: Codec = Json> {
    given: Vec<A::Event>,
    services: Option<A::Services>,
    codec: C,
}

impl<A: Aggregate> AggregateTest<A, Json> {
    /// Starts from the state after `events` (one event, a tuple, a `Vec`, ...).
    pub fn given(events: impl IntoEvents<A::Event>) -> Self {
        let mut given = Vec::new();
        events.into_events(&mut given);
        AggregateTest {
            given,
            services: None,
            codec: Json,
        }
    }

    /// Starts from the default state.
    pub fn given_nothing() -> Self {
        Self::given(())
    }
}

impl<A: Aggregate, C: Codec> AggregateTest<A, C> {
    /// Gives the handlers these services (required when `A::Services` is not `()`).
    pub fn services(mut self, services: A::Services) -> Self {
        self.services = Some(services);
        self
    }

    /// Checks round trips with `codec` instead of JSON.
    pub fn codec<C2: Codec>(self, codec: C2) -> AggregateTest<A, C2> {
        AggregateTest {
            given: self.given,
            services: self.services,
            codec,
        }
    }

    /// Decides `command` against the given state.
    #[track_caller]
    pub fn when<Cmd>(self, command: Cmd) -> Outcome<A, C>
    where
        A: Handle<Cmd>,
    {
        let mut state = A::initial();
        for event in &self.given {
            state.apply(event);
        }
        let result = {
            let unit = &();
            let services = match (unit as &dyn std::any::Any).downcast_ref::<A::Services>() {
                Some(unit) => unit,
                None => self.services.as_ref().unwrap_or_else(|| {
                    panic!(
                        "aggregate `{}` needs services of type `{}`; call `.services(..)`",
                        A::NAME,
                        std::any::type_name::<A::Services>()
                    )
                }),
            };
            state.handle(&command, services)
        };
        Outcome {
            given: self.given,
            state,
            result,
            codec: self.codec,
        }
    }
}

/// The result of [`AggregateTest::when`], to assert on.
pub struct Outcome<A: Aggregate, C: Codec = Json> {
    given: Vec<A::Event>,
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
    codec: C,
}

impl<A: Aggregate, C: Codec> Outcome<A, C>
where
    A: Debug,
    A::Event: PartialEq + Debug,
    A::Error: Debug,
{
    /// Asserts the command produced exactly `expected`, in order, and returns
    /// the state after applying them.
    #[track_caller]
    pub fn then_expect(self, expected: impl IntoEvents<A::Event>) -> A {
        let mut want = Vec::new();
        expected.into_events(&mut want);
        let caller = Location::caller();
        let produced = match self.result {
            Ok(events) => events,
            Err(error) => panic!(
                "{caller}: `{}` rejected the command with {error:?}\n expected events: {want:#?}",
                A::NAME
            ),
        };
        assert!(
            produced == want,
            "{caller}: `{}` produced other events than expected\n{}",
            A::NAME,
            diff(&want, &produced)
        );
        check_snapshot_shape::<A>(caller);
        let decoded = check_round_trips::<A, C>(&self.codec, self.given.iter().chain(&produced), caller);
        check_replay(self.state, &produced, decoded, caller)
    }

    /// Asserts the command was rejected with an error equal to `expected`.
    #[track_caller]
    pub fn then_error(self, expected: A::Error)
    where
        A::Error: PartialEq,
    {
        let caller = Location::caller();
        check_snapshot_shape::<A>(caller);
        check_round_trips::<A, C>(&self.codec, self.given.iter(), caller);
        match self.result {
            Err(error) => assert!(
                error == expected,
                "{caller}: `{}` rejected the command with another error\n{}",
                A::NAME,
                diff(&expected, &error)
            ),
            Ok(events) => panic!(
                "{caller}: `{}` accepted the command, producing {events:#?}\n expected the error {expected:?}",
                A::NAME
            ),
        }
    }

    /// Asserts the command was rejected with an error for which `check` holds.
    #[track_caller]
    pub fn then_error_matches(self, check: impl FnOnce(&A::Error) -> bool) {
        let caller = Location::caller();
        check_snapshot_shape::<A>(caller);
        check_round_trips::<A, C>(&self.codec, self.given.iter(), caller);
        match self.result {
            Err(error) => assert!(
                check(&error),
                "{caller}: `{}` rejected the command with an unexpected error: {error:?}",
                A::NAME
            ),
            Ok(events) => panic!(
                "{caller}: `{}` accepted the command, producing {events:#?}, but an error was expected",
                A::NAME
            ),
        }
    }

    /// Returns the produced events, or panics with the error.
    #[track_caller]
    pub fn events(self) -> Vec<A::Event> {
        let caller = Location::caller();
        match self.result {
            Ok(events) => {
                check_snapshot_shape::<A>(caller);
                let decoded = check_round_trips::<A, C>(&self.codec, self.given.iter().chain(&events), caller);
                check_replay(self.state, &events, decoded, caller);
                events
            }
            Err(error) => panic!("{caller}: `{}` rejected the command with {error:?}", A::NAME),
        }
    }
}

/// An aggregate with snapshots whose state's shape cannot be traced, and
/// that did not say so, fails its tests: its snapshots are off.
#[track_caller]
fn check_snapshot_shape<A: Aggregate>(caller: &Location<'_>) {
    assert!(
        A::snapshot_fingerprint() != crate::aggregate::UNTRACED_SHAPE,
        "{caller}: `{}` takes snapshots, but its state's shape cannot be traced, so they are off (a snapshot of \
         another shape could be loaded unnoticed). Make its `Deserialize` accept the tracer's samples, or write \
         `#[aggregate(snapshot_untraced)]` and bump `snapshot_version` whenever the state changes",
        A::NAME
    );
}

/// Each event must come back equal from its stored form; returns the
/// decoded events.
#[track_caller]
fn check_round_trips<'e, A: Aggregate, C: Codec>(
    codec: &C,
    events: impl Iterator<Item = &'e A::Event>,
    caller: &Location<'_>,
) -> Vec<A::Event>
where
    A::Event: PartialEq + Debug,
{
    let mut decoded = Vec::new();
    for event in events {
        let name = event.name();
        let bytes = event
            .encode(codec)
            .unwrap_or_else(|e| panic!("{caller}: event `{name}` does not encode: {e}\n event: {event:?}"));
        let back = A::Event::decode(codec, name, event.version(), &bytes).unwrap_or_else(|e| {
            panic!(
                "{caller}: event `{name}` does not decode from what it encodes to: {e}\n event: {event:?}\n stored: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert!(
            &back == event,
            "{caller}: event `{name}` changes in an encode/decode round trip\n before: {event:?}\n after:  {back:?}"
        );
        decoded.push(back);
    }
    decoded
}

/// Replaying the stored (encoded, then decoded) events from scratch, as a
/// later load does, must give the state the dispatcher holds after applying
/// the produced events to the given state.
#[track_caller]
fn check_replay<A: Aggregate + Debug>(
    state: A,
    produced: &[A::Event],
    decoded: Vec<A::Event>,
    caller: &Location<'_>,
) -> A {
    let mut incremental = state;
    for event in produced {
        incremental.apply(event);
    }
    let mut replayed = A::initial();
    for event in &decoded {
        replayed.apply(event);
    }
    let (a, b) = (format!("{incremental:?}"), format!("{replayed:?}"));
    assert!(
        a == b,
        "{caller}: `{}` is not rebuilt faithfully: replaying the stored events gives another state than applying them as produced\n applied:  {a}\n replayed: {b}",
        A::NAME
    );
    incremental
}
