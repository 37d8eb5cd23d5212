//! One conformance suite for every [`EventStore`]. A store joins by adding
//! one line to a test file:
//!
//! ```text
//! tests::conformance_tests!(|| async { Some(MyStore::fresh().await) });
//! ```
//!
//! The factory makes a fresh, empty store per test (or `None` to skip, after
//! saying why). Every case asserts exact values.

use std::ops::ControlFlow;

use es_core::store::{
    AppendOutcome, AppendRequest, Appended, ContextFields, EventStoreExt, ExpectedVersion, NewEvent, RecordedEvent,
    Snapshot,
};
use es_core::{AppendError, EventId, EventStore, Metadata, StoreError, StreamId, Timestamp};

/// Generates one `#[tokio::test]` per conformance case for the store that
/// `$make` (a closure returning a future of `Option<store>`) creates.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            append_and_read_back,
            expected_versions,
            a_batch_is_whole_or_nothing,
            positions_strictly_increase,
            reading_the_log_by_pages,
            many_streams,
            unicode_and_large_payloads,
            concurrent_writers_on_one_stream,
            concurrent_writers_on_many_streams,
            concurrent_appends_at_any_version_all_land,
            ids_are_checked_alike,
            event_ids_are_unique,
            command_ids_are_recorded,
            snapshots_and_checkpoints,
            reads_stop_when_asked,
            streams_are_hash_chained,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let make = $make;
                if let Some(store) = make().await {
                    $crate::conformance::$case(store).await;
                }
            }
        )*
    };
}

/// An event to append, owned (a request borrows its events: [`new_events`]).
use es_core::store::OwnedEvent as Ev;

fn event(name: &str, payload: &[u8]) -> Ev {
    Ev {
        event_id: EventId::new(),
        name: name.to_owned(),
        schema_version: 1,
        payload: payload.to_vec(),
    }
}

fn events(n: usize, tag: &str) -> Vec<Ev> {
    (0..n).map(|i| event("e", format!("{tag}-{i}").as_bytes())).collect()
}

/// `events` as a request carries them.
fn new_events(events: &[Ev]) -> Vec<NewEvent<'_>> {
    events.iter().map(Ev::as_new).collect()
}

async fn append<S: EventStore>(
    store: &S,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<Ev>,
) -> Result<AppendOutcome, AppendError> {
    store
        .append(AppendRequest {
            stream,
            expected,
            events: &new_events(&events),
            metadata: b"",
            command_id: None,
            recorded_at: Timestamp::now(),
        })
        .await
}

fn committed(outcome: AppendOutcome) -> Appended {
    match outcome {
        AppendOutcome::Appended(a) => a,
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// Events come back exactly as appended, with versions from 1 and metadata.
pub async fn append_and_read_back<S: EventStore>(store: S) {
    let s = StreamId::new("order", "o-1");
    let metadata = Metadata::new().correlation_id("c-1").encode();
    let batch = vec![
        Ev {
            event_id: EventId::new(),
            name: "order.placed".into(),
            schema_version: 3,
            payload: br#"{"total":10}"#.to_vec(),
        },
        event("order.paid", b"{}"),
    ];
    let ids: Vec<EventId> = batch.iter().map(|e| e.event_id).collect();
    let at = Timestamp::from_micros(1_795_440_245_123_456);
    let appended = committed(
        store
            .append(AppendRequest {
                stream: &s,
                expected: ExpectedVersion::NoStream,
                events: &new_events(&batch),
                metadata: &metadata,
                command_id: None,
                recorded_at: at,
            })
            .await
            .unwrap(),
    );
    assert_eq!((appended.first_version, appended.last_version), (1, 2));
    assert_eq!(appended.positions.len(), 2);
    let read = store.read_stream_vec(&s, 1).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].event_id, ids[0]);
    assert_eq!(read[0].stream, s);
    assert_eq!((read[0].version, read[1].version), (1, 2));
    assert_eq!(read[0].name, "order.placed");
    assert_eq!(read[0].schema_version, 3);
    assert_eq!(read[0].payload, br#"{"total":10}"#);
    assert_eq!(read[0].metadata, metadata);
    assert_eq!(read[0].recorded_at, at);
    assert_eq!(read[0].position, appended.positions.get(0).unwrap());
    assert_eq!(read[1].position, appended.positions.get(1).unwrap());
    // A narrow read (what a load asks for) reads the same events, with
    // their stream, version, name, schema version and payload, and the
    // fields asked for.
    let mut loaded = Vec::new();
    store
        .read_stream(&s, 1, ContextFields::LOAD, |e: &RecordedEvent<'_>| {
            assert_eq!(e.stream(), s);
            loaded.push((
                e.version,
                e.name.to_owned(),
                e.schema_version,
                e.payload.to_vec(),
                e.recorded_at,
            ));
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    let expected: Vec<_> = read
        .iter()
        .map(|e| {
            (
                e.version,
                e.name.clone(),
                e.schema_version,
                e.payload.clone(),
                e.recorded_at,
            )
        })
        .collect();
    assert_eq!(loaded, expected);
    for (from, versions) in [(2, &[2][..]), (3, &[][..]), (100, &[][..])] {
        let mut loaded = Vec::new();
        store
            .read_stream(&s, from, ContextFields::NONE, |e: &RecordedEvent<'_>| {
                loaded.push(e.version);
                ControlFlow::Continue(())
            })
            .await
            .unwrap();
        assert_eq!(loaded, versions, "loading from version {from}");
    }
    let mut none = 0;
    store
        .read_stream(
            &StreamId::new("order", "none"),
            1,
            ContextFields::LOAD,
            |_: &RecordedEvent<'_>| {
                none += 1;
                ControlFlow::Continue(())
            },
        )
        .await
        .unwrap();
    assert_eq!(none, 0);
    assert_eq!(store.read_stream_vec(&s, 2).await.unwrap().len(), 1);
    assert!(store.read_stream_vec(&s, 3).await.unwrap().is_empty());
    assert!(
        store
            .read_stream_vec(&StreamId::new("order", "none"), 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.stream_version(&s).await.unwrap(), 2);
    assert_eq!(store.stream_version(&StreamId::new("order", "none")).await.unwrap(), 0);
    assert_eq!(store.last_position().await.unwrap(), read[1].position);
}

/// New stream, exact version and any version, each refused when wrong.
pub async fn expected_versions<S: EventStore>(store: S) {
    let s = StreamId::new("t", "1");
    // Exact(0) is the same as NoStream.
    committed(
        append(&store, &s, ExpectedVersion::Exact(0), events(1, "a"))
            .await
            .unwrap(),
    );
    for wrong in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(2),
    ] {
        match append(&store, &s, wrong, events(1, "x")).await {
            Err(AppendError::Conflict(c)) => {
                assert_eq!((c.stream.clone(), c.expected, c.actual), (s.clone(), wrong, 1));
            }
            other => panic!("{wrong:?} must conflict, got {other:?}"),
        }
    }
    let a = committed(
        append(&store, &s, ExpectedVersion::Exact(1), events(2, "b"))
            .await
            .unwrap(),
    );
    assert_eq!((a.first_version, a.last_version), (2, 3));
    let a = committed(append(&store, &s, ExpectedVersion::Any, events(1, "c")).await.unwrap());
    assert_eq!((a.first_version, a.last_version), (4, 4));
    let fresh = StreamId::new("t", "2");
    match append(&store, &fresh, ExpectedVersion::Exact(3), events(1, "d")).await {
        Err(AppendError::Conflict(c)) => assert_eq!(c.actual, 0),
        other => panic!("must conflict on a missing stream, got {other:?}"),
    }
    let a = committed(
        append(&store, &fresh, ExpectedVersion::Any, events(1, "e"))
            .await
            .unwrap(),
    );
    assert_eq!(a.first_version, 1);
    assert_eq!(store.stream_version(&s).await.unwrap(), 4);
    // An empty batch writes nothing.
    let a = committed(append(&store, &s, ExpectedVersion::Exact(4), Vec::new()).await.unwrap());
    assert_eq!((a.first_version, a.last_version, a.positions.len()), (5, 4, 0));
    assert_eq!(store.stream_version(&s).await.unwrap(), 4);
}

/// A batch whose last event cannot be stored leaves no trace.
pub async fn a_batch_is_whole_or_nothing<S: EventStore>(store: S) {
    let s = StreamId::new("t", "batch");
    let first = events(1, "ok");
    let taken = first[0].event_id;
    committed(append(&store, &s, ExpectedVersion::NoStream, first).await.unwrap());
    let before = store.last_position().await.unwrap();
    let mut batch = events(5, "new");
    batch[4].event_id = taken;
    match append(&store, &s, ExpectedVersion::Exact(1), batch).await {
        Err(AppendError::Store(StoreError::DuplicateEventId { event_id, .. })) => assert_eq!(event_id, taken),
        other => panic!("a reused event id must fail the batch, got {other:?}"),
    }
    assert_eq!(store.stream_version(&s).await.unwrap(), 1);
    assert_eq!(store.last_position().await.unwrap(), before);
    assert_eq!(store.read_all_vec(0, 100).await.unwrap().len(), 1);
    // The stream takes the next batch normally.
    let a = committed(
        append(&store, &s, ExpectedVersion::Exact(1), events(5, "again"))
            .await
            .unwrap(),
    );
    assert_eq!((a.first_version, a.last_version), (2, 6));
}

/// Positions increase strictly across streams, in commit order.
pub async fn positions_strictly_increase<S: EventStore>(store: S) {
    let mut last = 0;
    for i in 0..30 {
        let s = StreamId::new("t", format!("s{}", i % 4));
        let a = committed(
            append(&store, &s, ExpectedVersion::Any, events(1 + i % 3, "p"))
                .await
                .unwrap(),
        );
        for p in a.positions.to_vec() {
            assert!(p > last, "position {p} after {last}");
            last = p;
        }
    }
    let all = store.read_all_vec(0, 1_000).await.unwrap();
    assert_eq!(all.len(), (0..30).map(|i| 1 + i % 3).sum::<usize>());
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(all.last().unwrap().position, last);
}

/// The global log from any position, in pages of any size.
pub async fn reading_the_log_by_pages<S: EventStore>(store: S) {
    for i in 0..25 {
        let s = StreamId::new("t", format!("s{}", i % 3));
        append(&store, &s, ExpectedVersion::Any, events(2, &format!("{i}")))
            .await
            .unwrap();
    }
    let all = store.read_all_vec(0, 1_000).await.unwrap();
    assert_eq!(all.len(), 50);
    let from = all[19].position;
    let tail = store.read_all_vec(from, 1_000).await.unwrap();
    assert_eq!(tail.len(), 30);
    assert_eq!(tail[0].event_id, all[20].event_id);
    for page_size in [1, 7, 50, 51] {
        let mut after = 0;
        let mut paged = Vec::new();
        loop {
            let page = store.read_all_vec(after, page_size).await.unwrap();
            assert!(page.len() <= page_size);
            let Some(last) = page.last() else { break };
            after = last.position;
            paged.extend(page);
        }
        let ids: Vec<_> = paged.iter().map(|e| e.event_id).collect();
        let expected: Vec<_> = all.iter().map(|e| e.event_id).collect();
        assert_eq!(ids, expected, "pages of {page_size}");
    }
    assert!(store.read_all_vec(all[49].position, 10).await.unwrap().is_empty());
}

/// Many streams keep their own versions.
pub async fn many_streams<S: EventStore>(store: S) {
    for round in 0..3u64 {
        for i in 0..120 {
            let s = StreamId::new("many", format!("{i:03}"));
            let a = committed(
                append(
                    &store,
                    &s,
                    ExpectedVersion::Exact(round * 2),
                    events(2, &format!("{i}-{round}")),
                )
                .await
                .unwrap(),
            );
            assert_eq!(a.last_version, round * 2 + 2);
        }
    }
    for i in [0, 57, 119] {
        let s = StreamId::new("many", format!("{i:03}"));
        let read = store.read_stream_vec(&s, 1).await.unwrap();
        let payloads: Vec<_> = read
            .iter()
            .map(|e| String::from_utf8(e.payload.clone()).unwrap())
            .collect();
        let expected: Vec<_> = (0..3)
            .flat_map(|r| (0..2).map(move |j| format!("{i}-{r}-{j}")))
            .collect();
        assert_eq!(payloads, expected);
    }
    assert_eq!(store.read_all_vec(0, 10_000).await.unwrap().len(), 720);
}

/// Text in every script and payloads of a mebibyte come back byte for byte.
pub async fn unicode_and_large_payloads<S: EventStore>(store: S) {
    let s = StreamId::new("ünïcødé", "数据-😀-ﬀ");
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let text = "Zoë 👩‍👩‍👧 ΑΒΓ 日本語 \u{0} nul".as_bytes().to_vec();
    let metadata = Metadata::new().with("ключ", "värde ✓").encode();
    let batch = vec![
        Ev {
            event_id: EventId::new(),
            name: "événement.créé".into(),
            schema_version: 1,
            payload: text.clone(),
        },
        event("big", &big),
    ];
    store
        .append(AppendRequest {
            stream: &s,
            expected: ExpectedVersion::NoStream,
            events: &new_events(&batch),
            metadata: &metadata,
            command_id: None,
            recorded_at: Timestamp::now(),
        })
        .await
        .unwrap();
    let read = store.read_stream_vec(&s, 1).await.unwrap();
    assert_eq!(read[0].stream, s);
    assert_eq!(read[0].name, "événement.créé");
    assert_eq!(read[0].payload, text);
    assert_eq!(read[1].payload.len(), big.len());
    assert!(read[1].payload == big);
    assert_eq!(Metadata::decode(&read[0].metadata).unwrap().values["ключ"], "värde ✓");
    let all = store.read_all_vec(0, 10).await.unwrap();
    assert_eq!(all[0].stream.aggregate_id(), "数据-😀-ﬀ");
}

/// 16 tasks race for one stream: each version is won exactly once, nothing
/// is lost, nothing is duplicated.
pub async fn concurrent_writers_on_one_stream<S: EventStore + Clone>(store: S) {
    let s = StreamId::new("race", "one");
    let mut tasks = Vec::new();
    for task in 0..16 {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            let mut conflicts = 0;
            while won.len() < 5 {
                let v = store.stream_version(&s).await.unwrap();
                let payload = format!("{task}-{}", won.len());
                match append(
                    &store,
                    &s,
                    ExpectedVersion::Exact(v),
                    vec![event("e", payload.as_bytes())],
                )
                .await
                {
                    Ok(a) => won.push((committed(a).first_version, payload)),
                    Err(AppendError::Conflict(c)) => {
                        assert!(c.actual > v, "a conflict means someone else appended");
                        conflicts += 1;
                    }
                    Err(e) => panic!("{e}"),
                }
                tokio::task::yield_now().await;
            }
            (won, conflicts)
        }));
    }
    let mut claimed = std::collections::BTreeMap::new();
    for t in tasks {
        let (won, _) = t.await.unwrap();
        for (version, payload) in won {
            assert!(
                claimed.insert(version, payload).is_none(),
                "version {version} won twice"
            );
        }
    }
    let read = store.read_stream_vec(&s, 1).await.unwrap();
    assert_eq!(read.len(), 80);
    for (i, e) in read.iter().enumerate() {
        assert_eq!(e.version, i as u64 + 1);
        assert_eq!(String::from_utf8(e.payload.clone()).unwrap(), claimed[&e.version]);
    }
}

/// Appends with `ExpectedVersion::Any` from 8 tasks on one stream all land,
/// each at its own version: "any version" never conflicts.
pub async fn concurrent_appends_at_any_version_all_land<S: EventStore + Clone>(store: S) {
    let s = StreamId::new("race", "any");
    let mut tasks = Vec::new();
    for task in 0..8 {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let payload = format!("{task}-{i}");
                let appended = append(&store, &s, ExpectedVersion::Any, vec![event("e", payload.as_bytes())])
                    .await
                    .unwrap_or_else(|e| panic!("an append at any version failed: {e}"));
                committed(appended);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let read = store.read_stream_vec(&s, 1).await.unwrap();
    assert_eq!(read.len(), 400);
    assert!(read.iter().enumerate().all(|(i, e)| e.version == i as u64 + 1));
    let mut payloads: Vec<String> = read
        .iter()
        .map(|e| String::from_utf8(e.payload.clone()).unwrap())
        .collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len(), 400);
}

/// Every store refuses the same ids and names, with the same error, and
/// writes nothing: empty aggregate types and event names, NUL characters,
/// ids over the limits. What one store keeps, all do.
pub async fn ids_are_checked_alike<S: EventStore>(store: S) {
    use es_core::store::{MAX_AGGREGATE_ID, MAX_AGGREGATE_TYPE, MAX_COMMAND_ID, MAX_EVENT_NAME};
    let refused = |result: Result<AppendOutcome, AppendError>, what: &str| match result {
        Err(AppendError::Store(StoreError::Invalid { detail, .. })) => {
            assert!(detail.starts_with(what), "{detail}");
            detail
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    };
    let long_id = "i".repeat(MAX_AGGREGATE_ID + 1);
    let bad_streams = [
        (StreamId::new("", "1"), "the aggregate type"),
        (StreamId::new("t\0x", "1"), "the aggregate type"),
        (
            StreamId::new("t".repeat(MAX_AGGREGATE_TYPE + 1), "1"),
            "the aggregate type",
        ),
        (StreamId::new("t", "a\0b"), "the aggregate id"),
        (StreamId::new("t", &long_id), "the aggregate id"),
    ];
    for (stream, what) in &bad_streams {
        let result = append(&store, stream, ExpectedVersion::Any, events(1, "x")).await;
        refused(result, what);
        // Reads refuse them alike (an id from a URL must not reach the
        // engine, where PostgreSQL fails on a NUL as if it were down).
        let reads: [(&str, Result<(), StoreError>); 5] = [
            ("read_stream", store.read_stream_vec(stream, 1).await.map(drop)),
            (
                "read_stream (a load)",
                store
                    .read_stream(stream, 1, ContextFields::LOAD, |_: &RecordedEvent<'_>| {
                        std::ops::ControlFlow::Continue(())
                    })
                    .await,
            ),
            ("stream_version", store.stream_version(stream).await.map(drop)),
            ("load_snapshot", store.load_snapshot(stream).await.map(drop)),
            ("find_command", store.find_command(stream, "c").await.map(drop)),
        ];
        for (read, result) in reads {
            match result {
                Err(StoreError::Invalid { detail, .. }) => assert!(detail.starts_with(what), "{read}: {detail}"),
                other => panic!("{read} of {stream:?}: expected a refusal, got {other:?}"),
            }
        }
    }
    let detail = refused(
        append(
            &store,
            &StreamId::new("t", &long_id),
            ExpectedVersion::Any,
            events(1, "x"),
        )
        .await,
        "the aggregate id",
    );
    assert_eq!(
        detail,
        format!(
            "the aggregate id \"{}\"…: it is {} bytes long; the limit is {MAX_AGGREGATE_ID}",
            "i".repeat(40),
            MAX_AGGREGATE_ID + 1
        )
    );
    let s = StreamId::new("t", "ok");
    for name in [String::new(), "a\0".to_owned(), "n".repeat(MAX_EVENT_NAME + 1)] {
        refused(
            append(&store, &s, ExpectedVersion::Any, vec![event(&name, b"x")]).await,
            "the event name",
        );
    }
    for id in [String::new(), "c\0".to_owned(), "c".repeat(MAX_COMMAND_ID + 1)] {
        let result = store
            .append(AppendRequest {
                stream: &s,
                expected: ExpectedVersion::Any,
                events: &new_events(&events(1, "x")),
                metadata: b"",
                command_id: Some(&id),
                recorded_at: Timestamp::now(),
            })
            .await;
        refused(result, "the command id");
        match store.find_command(&s, &id).await {
            Err(StoreError::Invalid { .. }) => {}
            other => panic!("looking up command id {id:?}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(
        store.last_position().await.unwrap(),
        0,
        "a refused append wrote something"
    );

    // At the limits, every store keeps them.
    let widest = StreamId::new("t".repeat(MAX_AGGREGATE_TYPE), "i".repeat(MAX_AGGREGATE_ID));
    let command_id = "c".repeat(MAX_COMMAND_ID);
    let kept = store
        .append(AppendRequest {
            stream: &widest,
            expected: ExpectedVersion::NoStream,
            events: &new_events(&[event(&"n".repeat(MAX_EVENT_NAME), "ünïcödé".as_bytes())]),
            metadata: b"",
            command_id: Some(&command_id),
            recorded_at: Timestamp::now(),
        })
        .await
        .unwrap();
    assert_eq!(committed(kept).last_version, 1);
    let record = store.find_command(&widest, &command_id).await.unwrap().unwrap();
    assert_eq!(record.stream, widest);
    let read = store.read_stream_vec(&widest, 1).await.unwrap();
    assert_eq!(read[0].name.len(), MAX_EVENT_NAME);

    // A stream the store holds, a name it holds at another schema version,
    // and a bad name after a good one in one batch: checked all the same,
    // and the batch writes nothing (a store may skip checking what it
    // already holds, never what it does not).
    let mut again = event(&"n".repeat(MAX_EVENT_NAME), b"y");
    again.schema_version = 2;
    let kept = store
        .append(AppendRequest {
            stream: &widest,
            expected: ExpectedVersion::Exact(1),
            events: &new_events(&[again]),
            metadata: b"",
            command_id: None,
            recorded_at: Timestamp::now(),
        })
        .await
        .unwrap();
    assert_eq!(committed(kept).last_version, 2);
    for name in ["", "a\0", es_core::store::FOREIGN] {
        refused(
            append(
                &store,
                &widest,
                ExpectedVersion::Exact(2),
                vec![event("fine", b"x"), event(name, b"x")],
            )
            .await,
            "the event name",
        );
    }
    assert_eq!(
        store.stream_version(&widest).await.unwrap(),
        2,
        "a refused batch wrote something"
    );
}

/// 16 tasks on 16 streams never get in each other's way.
pub async fn concurrent_writers_on_many_streams<S: EventStore + Clone>(store: S) {
    let mut tasks = Vec::new();
    for task in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let s = StreamId::new("race", format!("own-{task}"));
            for i in 0..10 {
                let a = committed(
                    append(&store, &s, ExpectedVersion::Exact(i), events(1, &format!("{task}")))
                        .await
                        .unwrap(),
                );
                assert_eq!(a.first_version, i + 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = store.read_all_vec(0, 1_000).await.unwrap();
    assert_eq!(all.len(), 160);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
}

/// Every stored event id is unique; a reused id is refused, also in another
/// stream.
pub async fn event_ids_are_unique<S: EventStore>(store: S) {
    for i in 0..20 {
        append(
            &store,
            &StreamId::new("ids", format!("{}", i % 5)),
            ExpectedVersion::Any,
            events(3, "x"),
        )
        .await
        .unwrap();
    }
    let all = store.read_all_vec(0, 1_000).await.unwrap();
    let unique: std::collections::HashSet<_> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(unique.len(), 60);
    let mut reused = events(1, "y");
    reused[0].event_id = all[7].event_id;
    match append(&store, &StreamId::new("ids", "other"), ExpectedVersion::Any, reused).await {
        Err(AppendError::Store(StoreError::DuplicateEventId { event_id, .. })) => assert_eq!(event_id, all[7].event_id),
        other => panic!("expected a duplicate id error, got {other:?}"),
    }
}

/// A command id is recorded with its batch; a second batch with the same id
/// is answered with the first's record and writes nothing.
pub async fn command_ids_are_recorded<S: EventStore>(store: S) {
    let s = StreamId::new("cmd", "1");
    append(&store, &s, ExpectedVersion::NoStream, events(1, "before"))
        .await
        .unwrap();
    fn request<'a>(s: &'a StreamId, events: &'a [NewEvent<'a>]) -> AppendRequest<'a> {
        AppendRequest {
            stream: s,
            expected: ExpectedVersion::Any,
            events,
            metadata: b"",
            command_id: Some("command-7"),
            recorded_at: Timestamp::now(),
        }
    }
    let (a, b, c, d) = (events(2, "a"), events(3, "b"), events(1, "c"), events(2, "d"));
    let (a, b, c, d) = (new_events(&a), new_events(&b), new_events(&c), new_events(&d));
    let first = committed(store.append(request(&s, &a)).await.unwrap());
    assert_eq!((first.first_version, first.last_version), (2, 3));
    match store.append(request(&s, &b)).await.unwrap() {
        AppendOutcome::Duplicate(record) => {
            assert_eq!(record.command_id, "command-7");
            assert_eq!(record.stream, s);
            assert_eq!((record.first_version, record.last_version), (2, 3));
        }
        other => panic!("expected the earlier record, got {other:?}"),
    }
    assert_eq!(store.stream_version(&s).await.unwrap(), 3);
    let found = store.find_command(&s, "command-7").await.unwrap().unwrap();
    assert_eq!((found.first_version, found.last_version), (2, 3));
    assert!(store.find_command(&s, "command-8").await.unwrap().is_none());

    // The same id on another stream is another command: appended, and
    // recorded for that stream alone.
    let other = StreamId::new("cmd", "2");
    assert!(store.find_command(&other, "command-7").await.unwrap().is_none());
    let on_other = committed(
        store
            .append(AppendRequest {
                stream: &other,
                ..request(&s, &c)
            })
            .await
            .unwrap(),
    );
    assert_eq!((on_other.first_version, on_other.last_version), (1, 1));
    let found = store.find_command(&other, "command-7").await.unwrap().unwrap();
    assert_eq!(found.stream, other);
    assert_eq!((found.first_version, found.last_version), (1, 1));
    let found = store.find_command(&s, "command-7").await.unwrap().unwrap();
    assert_eq!(
        (found.stream, found.first_version, found.last_version),
        (s.clone(), 2, 3)
    );
    // Another aggregate type with the same id is another stream too.
    let typed = StreamId::new("other_type", "1");
    let on_typed = committed(
        store
            .append(AppendRequest {
                stream: &typed,
                ..request(&s, &d)
            })
            .await
            .unwrap(),
    );
    assert_eq!((on_typed.first_version, on_typed.last_version), (1, 2));
}

/// Snapshots replace older ones; checkpoints are saved per name.
pub async fn snapshots_and_checkpoints<S: EventStore>(store: S) {
    let s = StreamId::new("snap", "1");
    assert!(store.load_snapshot(&s).await.unwrap().is_none());
    let snap = |version, payload: &[u8]| Snapshot {
        version,
        schema_version: 1,
        fingerprint: u64::MAX - 1,
        payload: payload.to_vec(),
    };
    store.save_snapshot(&s, snap(10, b"ten")).await.unwrap();
    store.save_snapshot(&s, snap(20, b"twenty")).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(snap(20, b"twenty")));
    // An older snapshot never replaces a newer one...
    store.save_snapshot(&s, snap(15, b"fifteen")).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap().unwrap().version, 20);
    // ...unless the state's shape changed.
    let reshaped = Snapshot {
        version: 5,
        schema_version: 2,
        fingerprint: u64::MAX - 1,
        payload: b"v2".to_vec(),
    };
    store.save_snapshot(&s, reshaped.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(reshaped));
    // ...or its fingerprint (every bit of the u64 is kept).
    let refingered = Snapshot {
        version: 4,
        schema_version: 2,
        fingerprint: 0x8000_0000_0000_0001,
        payload: b"fp".to_vec(),
    };
    store.save_snapshot(&s, refingered.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(refingered));
    assert!(
        store
            .load_snapshot(&StreamId::new("snap", "2"))
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(store.load_checkpoint("balances").await.unwrap(), None);
    store.save_checkpoint("balances", 42).await.unwrap();
    store.save_checkpoint("history", 7).await.unwrap();
    store.save_checkpoint("balances", 43).await.unwrap();
    assert_eq!(store.load_checkpoint("balances").await.unwrap(), Some(43));
    assert_eq!(store.load_checkpoint("history").await.unwrap(), Some(7));
}

/// A visitor that breaks stops the read.
pub async fn reads_stop_when_asked<S: EventStore>(store: S) {
    let s = StreamId::new("stop", "1");
    append(&store, &s, ExpectedVersion::NoStream, events(10, "x"))
        .await
        .unwrap();
    /// A visitor that counts what it sees and stops at the `n`th event.
    fn stop_at(n: usize, seen: &mut usize) -> ControlFlow<()> {
        *seen += 1;
        if *seen == n {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
    let mut seen = 0;
    store
        .read_stream(&s, 1, ContextFields::ALL, |_: &RecordedEvent<'_>| stop_at(3, &mut seen))
        .await
        .unwrap();
    assert_eq!(seen, 3);
    let mut seen = 0;
    store
        .read_stream(&s, 1, ContextFields::LOAD, |_: &RecordedEvent<'_>| {
            stop_at(2, &mut seen)
        })
        .await
        .unwrap();
    assert_eq!(seen, 2);
    let mut seen = 0;
    store
        .read_all(0, 100, ContextFields::NONE, |_: &RecordedEvent<'_>| {
            stop_at(4, &mut seen)
        })
        .await
        .unwrap();
    assert_eq!(seen, 4);
}

/// Each event's stored link is its stored form chained to the event before
/// it in its stream: batches, appends at any version racing each other, and
/// interleaved streams all chain, and every read that asks for the link
/// returns the same one.
pub async fn streams_are_hash_chained<S: EventStore + Clone>(store: S) {
    use es_core::store::{Heads, Link};
    let a = StreamId::new("chain", "a");
    let b = StreamId::new("chain", "b");
    committed(
        append(&store, &a, ExpectedVersion::NoStream, events(3, "a"))
            .await
            .unwrap(),
    );
    committed(append(&store, &b, ExpectedVersion::Any, events(1, "b")).await.unwrap());
    committed(
        append(&store, &a, ExpectedVersion::Exact(3), events(2, "a2"))
            .await
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for task in 0..4 {
        let (store, b) = (store.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let batch = events(1 + i % 3, &format!("b{task}-{i}"));
                committed(append(&store, &b, ExpectedVersion::Any, batch).await.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let log = store.read_all_vec(0, 10_000).await.unwrap();
    assert_eq!(log.len(), 3 + 1 + 2 + 4 * 19);
    let mut heads = Heads::default();
    for e in &log {
        let expected = heads.advance(&e.as_recorded());
        assert_eq!(e.link, expected, "the link of version {} of `{}`", e.version, e.stream);
        assert_ne!(e.link, Link::GENESIS);
    }
    for stream in [&a, &b] {
        let mut links = Vec::new();
        store
            .read_stream(stream, 1, ContextFields::LINK, |e: &RecordedEvent<'_>| {
                links.push(e.link);
                ControlFlow::Continue(())
            })
            .await
            .unwrap();
        let from_log: Vec<Link> = log.iter().filter(|e| &e.stream == stream).map(|e| e.link).collect();
        assert_eq!(links, from_log, "the links of `{stream}` read alone");
    }
}
