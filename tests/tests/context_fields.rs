//! A read model reads only the parts of each event's context its handlers
//! use: the derive works them out from the handlers' bodies (erring towards
//! all of them), the SQL stores leave the other columns unread, and what a
//! handler does read is the stored value on every store. A decoding failure
//! still names the event's stream and version.

use es_core::prelude::*;
use es_core::store::{AppendRequest, ContextFields, EventStoreExt, NewEvent, StoredEvent};
use es_core::{
    Dispatcher, EventId, EventStore, ExpectedVersion, InMemoryStore, ReadModel, StreamId, SubscriptionError, Timestamp,
};
use examples::bank::{AccountEvent, AccountId, Deposit, OpenAccount};
use examples::views::Balances;

/// Counts events; its handler takes no context.
#[derive(Default)]
struct Counter {
    events: u64,
}

#[es_core::handlers(read_model)]
impl Counter {
    #[apply]
    fn on(&mut self, _event: &AccountEvent) {
        self.events += 1;
    }
}

/// Keeps what it reads of each event's context: the stream by its id, the
/// version and the position.
#[derive(Default)]
struct Versions {
    rows: Vec<(String, u64, u64)>,
}

#[es_core::handlers(read_model)]
impl Versions {
    #[apply]
    fn on(&mut self, _event: &AccountEvent, ctx: &EventContext<'_>) {
        let id = ctx.aggregate_id.to_owned();
        self.rows.push((id, ctx.version, ctx.position));
    }
}

/// Reads every part of the context, each by its own name.
#[derive(Default)]
struct Audit {
    rows: Vec<(String, u64, u64, i64, EventId, Option<String>)>,
}

#[es_core::handlers(read_model)]
impl Audit {
    #[apply]
    fn on(&mut self, _event: &AccountEvent, context: &EventContext<'_>) {
        self.rows.push((
            context.stream().to_string(),
            context.version,
            context.position,
            context.recorded_at.as_micros(),
            context.event_id,
            context.metadata().correlation_id,
        ));
    }
}

/// Hands its context to a function: it may use anything.
#[derive(Default)]
struct PassesItOn {
    streams: Vec<String>,
}

fn describe(ctx: &EventContext<'_>) -> String {
    format!("{}/{}", ctx.aggregate_type, ctx.aggregate_id)
}

#[es_core::handlers(read_model)]
impl PassesItOn {
    #[apply]
    fn on(&mut self, _event: &AccountEvent, ctx: &EventContext<'_>) {
        self.streams.push(describe(ctx));
    }
}

/// Prints its context whole, through a format string's captured name.
#[derive(Default)]
struct Prints {
    lines: Vec<String>,
}

#[es_core::handlers(read_model)]
impl Prints {
    #[apply]
    fn on(&mut self, _event: &AccountEvent, ctx: &EventContext<'_>) {
        self.lines.push(format!("{ctx:?}"));
    }
}

/// Binds its context again under another name.
#[derive(Default)]
struct Rebinds {
    ids: Vec<String>,
}

#[es_core::handlers(read_model)]
impl Rebinds {
    #[apply]
    fn on(&mut self, _event: &AccountEvent, ctx: &EventContext<'_>) {
        let c = ctx;
        self.ids.push(c.aggregate_id.to_owned());
    }
}

#[test]
fn the_derive_finds_the_fields_each_read_model_reads() {
    assert_eq!(<Counter as ReadModel>::CONTEXT_FIELDS, ContextFields::NONE);
    assert_eq!(<Balances as ReadModel>::CONTEXT_FIELDS, ContextFields::AGGREGATE_ID);
    assert_eq!(
        <Versions as ReadModel>::CONTEXT_FIELDS,
        ContextFields::AGGREGATE_ID
            .union(ContextFields::VERSION)
            .union(ContextFields::POSITION)
    );
    assert_eq!(<Audit as ReadModel>::CONTEXT_FIELDS, ContextFields::CONTEXT);
    // Anything but a field or a known method of the context: all of it.
    assert_eq!(<PassesItOn as ReadModel>::CONTEXT_FIELDS, ContextFields::CONTEXT);
    assert_eq!(<Prints as ReadModel>::CONTEXT_FIELDS, ContextFields::CONTEXT);
    assert_eq!(<Rebinds as ReadModel>::CONTEXT_FIELDS, ContextFields::CONTEXT);
}

#[test]
fn context_fields_name_their_sql_columns_in_one_order() {
    let all = ContextFields::ALL;
    assert_eq!(
        all.sql_columns(),
        "position, name, schema_version, payload, event_id, aggregate_type, aggregate_id, version, metadata, recorded_at, link"
    );
    assert_eq!(all.column(ContextFields::LINK), Some(10));
    assert_eq!(ContextFields::LINK.column(ContextFields::LINK), Some(4));
    assert_eq!(
        ContextFields::LINK
            .union(ContextFields::POSITION)
            .column(ContextFields::LINK),
        Some(4)
    );
    assert_eq!(all.column(ContextFields::EVENT_ID), Some(4));
    assert_eq!(all.column(ContextFields::RECORDED_AT), Some(9));
    let some = ContextFields::AGGREGATE_ID.union(ContextFields::RECORDED_AT);
    assert_eq!(
        some.sql_columns(),
        "position, name, schema_version, payload, aggregate_id, recorded_at"
    );
    assert_eq!(some.column(ContextFields::AGGREGATE_ID), Some(4));
    assert_eq!(some.column(ContextFields::RECORDED_AT), Some(5));
    assert_eq!(some.column(ContextFields::VERSION), None);
    // Only single fields have a column.
    assert_eq!(all.column(ContextFields::ALL), None);
    assert_eq!(all.column(ContextFields::NONE), None);
    // Every set's columns are where `column` says.
    for bits in 0..=all.bits() {
        let fields = ContextFields::from_bits(bits);
        assert_eq!(fields.bits(), bits);
        let columns: Vec<String> = fields.sql_columns().split(", ").map(str::to_owned).collect();
        for (field, name) in [
            (ContextFields::EVENT_ID, "event_id"),
            (ContextFields::AGGREGATE_TYPE, "aggregate_type"),
            (ContextFields::AGGREGATE_ID, "aggregate_id"),
            (ContextFields::VERSION, "version"),
            (ContextFields::METADATA, "metadata"),
            (ContextFields::RECORDED_AT, "recorded_at"),
        ] {
            assert_eq!(fields.column(field), columns.iter().position(|c| c == name));
        }
    }
}

/// Three accounts, a few deposits each, with a correlation id.
async fn fill<S: EventStore + Clone>(store: &S) {
    let app = Dispatcher::new(store.clone());
    for a in ["a", "b", "c"] {
        let account = AccountId::new(a);
        app.dispatch(OpenAccount {
            account: account.clone(),
            owner: a.into(),
        })
        .await
        .unwrap();
        for amount in 1..=3 {
            app.dispatch_with(
                Deposit {
                    account: account.clone(),
                    amount,
                },
                es_core::Metadata::new().correlation_id(format!("c-{a}")),
            )
            .await
            .unwrap();
        }
    }
}

/// Every read model sees, of what its handlers read, what the store holds.
async fn handlers_read_what_is_stored<S: EventStore + Clone>(store: S) {
    fill(&store).await;
    let stored: Vec<StoredEvent> = store.read_all_vec(0, 1_000).await.unwrap();
    assert_eq!(stored.len(), 12);

    let counter = Projection::new("counter", Counter::default());
    counter.catch_up(&store).await.unwrap();
    assert_eq!(counter.read(|c| c.events), 12);

    let versions = Projection::new("versions", Versions::default());
    versions.catch_up(&store).await.unwrap();
    let expected: Vec<_> = stored
        .iter()
        .map(|e| (e.stream.aggregate_id().to_owned(), e.version, e.position))
        .collect();
    assert_eq!(versions.read(|v| v.rows.clone()), expected);

    let audit = Projection::new("audit", Audit::default());
    audit.catch_up(&store).await.unwrap();
    let expected: Vec<_> = stored
        .iter()
        .map(|e| {
            let metadata = es_core::Metadata::decode(&e.metadata).unwrap_or_default();
            (
                e.stream.to_string(),
                e.version,
                e.position,
                e.recorded_at.as_micros(),
                e.event_id,
                metadata.correlation_id,
            )
        })
        .collect();
    assert_eq!(audit.read(|a| a.rows.clone()), expected);
    assert!(expected.iter().any(|row| row.5.as_deref() == Some("c-b")));

    let passes = Projection::new("passes", PassesItOn::default());
    passes.catch_up(&store).await.unwrap();
    let expected: Vec<_> = stored.iter().map(|e| e.stream.to_string()).collect();
    assert_eq!(passes.read(|p| p.streams.clone()), expected);
}

/// An event a read model cannot decode is named by its stream and version,
/// though the read left both out.
async fn an_undecodable_event_is_named_by_stream_and_version<S: EventStore + Clone>(store: S) {
    fill(&store).await;
    let stream = StreamId::new("bank_account", "b");
    store
        .append(AppendRequest {
            stream: &stream,
            expected: ExpectedVersion::Exact(4),
            events: &[NewEvent {
                event_id: EventId::new(),
                name: "account.deposited",
                schema_version: 1,
                payload: br#"{"amount":"lots"}"#,
            }],
            metadata: b"",
            command_id: None,
            recorded_at: Timestamp::now(),
        })
        .await
        .unwrap();
    let counter = Projection::new("counter", Counter::default());
    let Err(SubscriptionError::Decode(error)) = counter.catch_up(&store).await else {
        panic!("the bad event decoded");
    };
    assert_eq!(error.stream, stream);
    assert_eq!(error.stream_version, 5);
    assert_eq!(error.event_name, "account.deposited");
    let message = error.to_string();
    assert!(message.contains("bank_account/b"), "{message}");
    // Everything before it (the whole log) was applied.
    assert_eq!(counter.read(|c| c.events), 12);
}

/// A store wrapper (to count, decrypt, filter) sees every log read of a
/// projection: the fields a read needs are an argument of the one log read,
/// not a second, defaulted method a wrapper could forget to forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapper_sees_the_narrow_reads_of_projections() {
    let store = tests::CountingStore::new(tests::sqlite::temp_store().await);
    fill(&store).await;
    let before = store.log_reads();
    let counter = Projection::new("counter", Counter::default());
    counter.catch_up(&store).await.unwrap();
    assert_eq!(counter.read(|c| c.events), 12);
    assert!(store.log_reads() > before);
}

mod handlers_read_what_is_stored {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory() {
        handlers_read_what_is_stored(InMemoryStore::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        handlers_read_what_is_stored(tests::sqlite::temp_store().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(store) = tests::postgres::store().await else {
            return;
        };
        handlers_read_what_is_stored(store).await;
    }
}

mod an_undecodable_event_is_named_by_stream_and_version {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory() {
        an_undecodable_event_is_named_by_stream_and_version(InMemoryStore::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        an_undecodable_event_is_named_by_stream_and_version(tests::sqlite::temp_store().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(store) = tests::postgres::store().await else {
            return;
        };
        an_undecodable_event_is_named_by_stream_and_version(store).await;
    }
}
