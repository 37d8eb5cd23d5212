//! Given events, expect a read model's answer or a process's commands.

use std::collections::HashMap;
use std::fmt::Debug;
use std::panic::Location;

use super::diff::diff;
use crate::aggregate::Aggregate;
use crate::codec::{Codec, Json};
use crate::envelope::{EventId, StreamId, Timestamp};
use crate::error::EventDecodeError;
use crate::event::{Event, IntoEvents};
use crate::process::Process;
use crate::projection::{Answer, EventContext, Query, ReadModel};
use crate::store::{Link, RecordedEvent};

/// The log the given events form: each is encoded with the codec and
/// handed over as a store would hand it, with its stream, version and
/// position.
struct Log<C> {
    codec: C,
    position: u64,
    versions: HashMap<StreamId, u64>,
}

impl<C: Codec> Log<C> {
    fn new(codec: C) -> Self {
        Log {
            codec,
            position: 0,
            versions: HashMap::new(),
        }
    }

    /// Records `events` on the stream of aggregate `A` `id`, handing each
    /// in its stored form to `each`, which decodes it for the `reader` (a
    /// read model, a process) it names; an event it cannot decode fails
    /// the test.
    fn record<A: Aggregate>(
        &mut self,
        id: &A::Id,
        events: impl IntoEvents<A::Event>,
        reader: &str,
        mut each: impl FnMut(&C, &RecordedEvent<'_>) -> Result<bool, EventDecodeError>,
        caller: &Location<'_>,
    ) {
        let stream = StreamId::of::<A>(id);
        let mut given = Vec::new();
        events.into_events(&mut given);
        for event in given {
            let name = event.name();
            let payload = event
                .encode(&self.codec)
                .unwrap_or_else(|e| panic!("{caller}: event `{name}` does not encode: {e}"));
            let version = self.versions.entry(stream.clone()).or_insert(0);
            *version += 1;
            self.position += 1;
            let recorded = RecordedEvent {
                event_id: EventId::new(),
                aggregate_type: stream.aggregate_type(),
                aggregate_id: stream.aggregate_id(),
                version: *version,
                position: self.position,
                name,
                schema_version: event.version(),
                payload: &payload,
                metadata: &[],
                recorded_at: Timestamp::now(),
                link: Link::GENESIS,
            };
            if let Err(e) = each(&self.codec, &recorded) {
                panic!(
                    "{caller}: the {reader} cannot decode `{name}` at version {} of `{stream}`: {e}",
                    recorded.version
                );
            }
        }
    }
}

/// A given/then test of a read model: events of any aggregates, in the
/// order given, then the answers to its queries.
///
/// Each event goes through the codec and the read model's generated
/// decoding, as in a running projection, so a handler that a name or a
/// version does not reach shows up here.
///
/// ```
/// # use es_core::prelude::*;
/// # use es_core::testing::ReadModelTest;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// # pub struct Deposited { amount: u64 }
/// # #[derive(Debug, Clone, PartialEq, Event)]
/// # pub enum AccountEvent { Deposited(Deposited) }
/// # #[derive(Debug, thiserror::Error)]
/// # #[error("never")]
/// # pub struct Never;
/// # #[derive(Debug, Default, Aggregate)]
/// # #[aggregate(id = String, event = AccountEvent, error = Never)]
/// # pub struct Account;
/// # #[es_core::handlers]
/// # impl Account { #[apply] fn deposited(&mut self, _: &Deposited) {} }
/// #[derive(Debug, Clone, Query)]
/// #[query(output = u64)]
/// pub struct Total;
///
/// #[derive(Debug, Default)]
/// pub struct Totals(u64);
///
/// #[es_core::handlers(read_model)]
/// impl Totals {
///     #[apply]
///     fn deposited(&mut self, e: &Deposited) { self.0 += e.amount }
///     #[handle]
///     fn total(&self, _: Total) -> u64 { self.0 }
/// }
///
/// ReadModelTest::new(Totals::default())
///     .given::<Account>(&"a".into(), [Deposited { amount: 5 }, Deposited { amount: 7 }])
///     .given::<Account>(&"b".into(), Deposited { amount: 1 })
///     .then_answer(Total, 13);
/// ```
pub struct ReadModelTest<R: ReadModel, C: Codec = Json> {
    model: R,
    log: Log<C>,
}

impl<R: ReadModel> ReadModelTest<R, Json> {
    /// A test of `model` (usually its `Default`), with the JSON codec.
    pub fn new(model: R) -> Self {
        ReadModelTest {
            model,
            log: Log::new(Json),
        }
    }
}

impl<R: ReadModel, C: Codec> ReadModelTest<R, C> {
    /// The same test with another codec.
    pub fn codec<C2: Codec>(self, codec: C2) -> ReadModelTest<R, C2> {
        ReadModelTest {
            model: self.model,
            log: Log::new(codec),
        }
    }

    /// Applies `events` as the next events of aggregate `A` `id`.
    #[track_caller]
    pub fn given<A: Aggregate>(mut self, id: &A::Id, events: impl IntoEvents<A::Event>) -> Self {
        let caller = Location::caller();
        let model = &mut self.model;
        self.log.record::<A>(
            id,
            events,
            "read model",
            |codec, recorded| model.apply_recorded(codec, recorded),
            caller,
        );
        self
    }

    /// Asserts the read model answers `query` with `expected`; a failure
    /// shows a diff of the two answers.
    #[track_caller]
    pub fn then_answer<Q>(self, query: Q, expected: Q::Output) -> Self
    where
        Q: Query + Debug,
        R: Answer<Q>,
        Q::Output: PartialEq + Debug,
    {
        let asked = format!("{query:?}");
        let answer = self.model.answer(query);
        assert!(
            answer == expected,
            "{}: the read model answered `{asked}` otherwise than expected\n{}",
            Location::caller(),
            diff(&expected, &answer)
        );
        self
    }

    /// The read model, for checks of your own.
    pub fn model(&self) -> &R {
        &self.model
    }
}

/// A given/then test of a process manager: events of any aggregates, in
/// the order given, then the commands it sent in reaction, in order
/// (`examples/tests/fixtures.rs` tests the bank's transfer process so).
pub struct ProcessTest<P: Process, C: Codec = Json> {
    process: P,
    log: Log<C>,
    sent: Vec<P::Command>,
}

impl<P: Process> ProcessTest<P, Json> {
    /// A test of `process`, with the JSON codec.
    pub fn new(process: P) -> Self {
        ProcessTest {
            process,
            log: Log::new(Json),
            sent: Vec::new(),
        }
    }
}

impl<P: Process, C: Codec> ProcessTest<P, C> {
    /// The same test with another codec.
    pub fn codec<C2: Codec>(self, codec: C2) -> ProcessTest<P, C2> {
        ProcessTest {
            process: self.process,
            log: Log::new(codec),
            sent: Vec::new(),
        }
    }

    /// Hands `events` to the process as the next events of aggregate `A`
    /// `id`, keeping the commands it sends.
    #[track_caller]
    pub fn given<A: Aggregate>(mut self, id: &A::Id, events: impl IntoEvents<A::Event>) -> Self {
        let caller = Location::caller();
        let (process, sent) = (&self.process, &mut self.sent);
        self.log.record::<A>(
            id,
            events,
            "process",
            |codec, recorded| process.react_recorded(codec, recorded, &EventContext::from(recorded), sent),
            caller,
        );
        self
    }

    /// Asserts the process sent exactly `expected`, in order, since the
    /// last `then_commands` (or the start); a failure shows a diff.
    #[track_caller]
    pub fn then_commands(mut self, expected: impl IntoIterator<Item = P::Command>) -> Self
    where
        P::Command: PartialEq + Debug,
    {
        let expected: Vec<P::Command> = expected.into_iter().collect();
        let sent = std::mem::take(&mut self.sent);
        assert!(
            sent == expected,
            "{}: the process sent other commands than expected\n{}",
            Location::caller(),
            diff(&expected, &sent)
        );
        self
    }
}
