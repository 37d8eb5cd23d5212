//! What an operator's bad week does to a store on one server: a script
//! publishing to the store's subjects, streams deleted or replaced, a
//! purge, a hundred idle readers. Each is refused, survived or counted,
//! and never silently turns into lost or doubled work.

use tests::nats as support;

use std::time::Duration;

use async_nats::jetstream;
use es_core::store::{EventStoreExt, FOREIGN};
use es_core::{Dispatcher, EventStore, Projection, RunState, StoreError, StreamId};
use es_nats::{NatsOptions, NatsStore, Storage};
use examples::bank::{AccountId, BankAccount, Deposit, OpenAccount};
use examples::views::{BalanceOf, Balances};

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn raw(url: &str) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(url).await.expect("a plain client");
    let js = jetstream::new(client.clone());
    (client, js)
}

async fn bank(store: &NatsStore, accounts: &[&str]) -> Dispatcher<NatsStore> {
    let app = Dispatcher::new(store.clone());
    for account in accounts {
        app.dispatch(OpenAccount {
            account: AccountId::new(*account),
            owner: account.to_uppercase(),
        })
        .await
        .expect("open");
    }
    app
}

async fn deposit(app: &Dispatcher<NatsStore>, account: &str, amount: u64) -> u64 {
    app.dispatch(Deposit {
        account: AccountId::new(account),
        amount,
    })
    .await
    .expect("deposit")
    .position
    .expect("a position")
}

/// A message another client publishes on the event subjects — on a
/// subject of its own, and on a real stream's — is skipped by read models
/// (counted in their status), stepped over by stream reads and appends,
/// and listed for the operator; nothing stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_message_is_skipped_counted_and_listed() {
    let Some(store) = support::store().await else {
        return;
    };
    let url = support::url().unwrap();
    let balances = Projection::new("balances", Balances::default());
    let runner = balances.spawn(store.clone(), Duration::from_secs(60));
    let app = bank(&store, &["ada"]).await;
    deposit(&app, "ada", 5).await;

    let (client, js) = raw(&url).await;
    let prefix = store.prefix().to_owned();
    let ada = format!("{prefix}.events.x{}.x{}", hex("bank_account"), hex("ada"));
    for (subject, payload) in [
        (format!("{prefix}.events.test-script"), &b"hello from a test script"[..]),
        (ada.clone(), &b"{\"not\":\"an event\"}"[..]),
    ] {
        js.publish(subject, payload.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    drop(client);

    // The read model goes on past both.
    let last = deposit(&app, "ada", 7).await;
    runner
        .wait_for(last, Duration::from_secs(10))
        .await
        .expect("the read model goes on");
    assert_eq!(balances.query(BalanceOf { account: "ada".into() }), Some(12));
    let status = runner.status();
    assert!(
        matches!(status.state, RunState::Following | RunState::CatchingUp),
        "{status:?}"
    );
    assert_eq!(
        (status.skipped, status.failures, status.last_error.as_deref()),
        (2, 0, None),
        "{status:?}"
    );
    runner.stop().await;

    // The log says what they are; stream reads and a cold load step over
    // the one on ada's subject, and the next append follows it.
    let log = store.read_all_vec(0, 100).await.unwrap();
    let foreign: Vec<_> = log.iter().filter(|e| e.name == FOREIGN).collect();
    assert_eq!(foreign.len(), 2);
    assert_eq!(foreign[0].stream.aggregate_id(), format!("{prefix}.events.test-script"));
    assert_eq!(foreign[0].payload, b"hello from a test script");
    assert_eq!(foreign[1].stream.aggregate_id(), ada);
    let stream = StreamId::new("bank_account", "ada");
    assert_eq!(store.stream_version(&stream).await.unwrap(), 3);
    let events = store.read_stream_vec(&stream, 1).await.unwrap();
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3]);
    let cold = Dispatcher::builder(store.clone()).cache_capacity(0).build();
    deposit(&cold, "ada", 30).await;
    let account: BankAccount = cold.load(AccountId::new("ada")).await.unwrap();
    assert_eq!(account.balance, 42);

    // A rebuild skips them too; the operator's tools list them.
    let rebuilt = Projection::new("rebuilt", Balances::default());
    rebuilt.catch_up(&store).await.expect("a rebuild");
    assert_eq!(rebuilt.query(BalanceOf { account: "ada".into() }), Some(42));
    let heads = store.stream_heads().await.unwrap();
    assert_eq!(heads.streams.len(), 1);
    assert_eq!((heads.streams[0].version, heads.streams[0].stream.clone()), (4, stream));
    assert_eq!(
        heads.foreign_subjects,
        vec![(format!("{prefix}.events.test-script"), 1)]
    );
    let listed = store.foreign_messages(0, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|m| m.subject.as_str()).collect::<Vec<_>>(),
        [format!("{prefix}.events.test-script").as_str(), ada.as_str()]
    );
    assert_eq!(listed[1].payload.as_ref(), b"{\"not\":\"an event\"}");
}

async fn reopen(url: &str, prefix: &str, accept_lost_records: bool) -> Result<NatsStore, StoreError> {
    NatsStore::connect_with(
        url,
        NatsOptions {
            prefix: prefix.to_owned(),
            accept_lost_records,
            ..NatsOptions::default()
        },
    )
    .await
}

fn corrupt(result: Result<NatsStore, StoreError>) -> String {
    match result {
        Err(StoreError::Corrupt { detail, .. }) => detail,
        other => panic!("the store must refuse to open, got {other:?}"),
    }
}

/// A store whose event stream was deleted refuses to open (instead of
/// starting on an empty log that old command ids and checkpoints point
/// into), and so does one whose event stream was made again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_event_stream_vanished_or_was_replaced_refuses_to_open() {
    let Some(store) = support::store().await else {
        return;
    };
    let url = support::url().unwrap();
    let prefix = store.prefix().to_owned();
    let app = bank(&store, &["ada"]).await;
    let position = deposit(&app, "ada", 5).await;
    store.save_checkpoint("projection:balances", position).await.unwrap();
    drop((app, store));
    let (_client, js) = raw(&url).await;

    let config = js
        .get_stream(format!("{prefix}_events"))
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    js.delete_stream(format!("{prefix}_events"))
        .await
        .expect("delete the event stream");
    let detail = corrupt(reopen(&url, &prefix, false).await);
    assert!(
        detail.contains("is missing") && detail.contains(&format!("{prefix}_events")),
        "{detail}"
    );
    // Accepting lost records does not cover lost events.
    corrupt(reopen(&url, &prefix, true).await);

    // Made again by another tool, with the same configuration.
    js.create_stream(config).await.expect("make it again");
    let detail = corrupt(reopen(&url, &prefix, false).await);
    assert!(detail.contains("is not the one its records belong to"), "{detail}");
}

/// A store whose records stream (checkpoints, snapshots) is gone refuses
/// to open unless told to start it anew; a checkpoint past the end of the
/// log is refused, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_records_and_checkpoints_past_the_log_refuse_to_open() {
    let Some(store) = support::store().await else {
        return;
    };
    let url = support::url().unwrap();
    let prefix = store.prefix().to_owned();
    let app = bank(&store, &["ada"]).await;
    let position = deposit(&app, "ada", 5).await;
    store.save_checkpoint("far-ahead", position + 1_000).await.unwrap();
    let detail = corrupt(reopen(&url, &prefix, false).await);
    assert!(
        detail.contains("\"far-ahead\"") && detail.contains("past the end of the log"),
        "{detail}"
    );
    store.save_checkpoint("far-ahead", position).await.unwrap();
    reopen(&url, &prefix, false).await.expect("opens again");
    drop((app, store));

    let (_client, js) = raw(&url).await;
    js.delete_stream(format!("{prefix}_records"))
        .await
        .expect("delete the records");
    let detail = corrupt(reopen(&url, &prefix, false).await);
    assert!(
        detail.contains("accept_lost_records") && detail.contains("is missing"),
        "{detail}"
    );
    let store = reopen(&url, &prefix, true).await.expect("started anew when told to");
    assert_eq!(store.load_checkpoint("far-ahead").await.unwrap(), None);
    assert_eq!(
        store
            .stream_version(&StreamId::new("bank_account", "ada"))
            .await
            .unwrap(),
        2
    );
    // Started anew, it names its event stream again: the next open is plain.
    reopen(&url, &prefix, false).await.expect("opens");
}

/// Neither stream can be purged, nor a message deleted, and the server
/// will not lift that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_deny_purges_and_deletes() {
    let Some(store) = support::store().await else {
        return;
    };
    let url = support::url().unwrap();
    let app = bank(&store, &["ada"]).await;
    let position = deposit(&app, "ada", 5).await;
    store.save_checkpoint("c", position).await.unwrap();
    let (_client, js) = raw(&url).await;
    for name in [
        format!("{}_events", store.prefix()),
        format!("{}_records", store.prefix()),
    ] {
        let stream = js.get_stream(&name).await.unwrap();
        assert!(stream.purge().await.is_err(), "{name} was purged");
        assert!(
            stream.delete_message(1).await.is_err(),
            "a message of {name} was deleted"
        );
        let mut config = stream.cached_info().config.clone();
        config.deny_purge = false;
        config.deny_delete = false;
        assert!(js.update_stream(config).await.is_err(), "{name}'s denials were lifted");
    }
    assert_eq!(store.load_checkpoint("c").await.unwrap(), Some(position));
    assert_eq!(store.events_after(0).await.unwrap(), 2);
}

/// A hundred read models following one store hold no server-side
/// consumer, before, during and after a run of commands, and all reach
/// its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_idle_followers_hold_no_server_consumers() {
    let Some(store) = support::store_with(NatsOptions {
        storage: Storage::File,
        ..NatsOptions::default()
    })
    .await
    else {
        return;
    };
    let url = support::url().unwrap();
    let (_client, js) = raw(&url).await;
    let consumers = async || {
        js.get_stream(format!("{}_events", store.prefix()))
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .consumer_count
    };
    let followers: Vec<_> = (0..100)
        .map(|i| {
            let projection = Projection::new("balances", Balances::default());
            let runner = projection.spawn(store.clone(), Duration::from_millis(100));
            (i, projection, runner)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(consumers().await, 0);
    let app = bank(&store, &["ada"]).await;
    let mut last = 0;
    for amount in 1..=50 {
        last = deposit(&app, "ada", amount).await;
        if amount % 10 == 0 {
            assert_eq!(consumers().await, 0);
        }
    }
    for (i, projection, runner) in &followers {
        runner
            .wait_for(last, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("follower {i}: {e}"));
        assert_eq!(projection.query(BalanceOf { account: "ada".into() }), Some(1275));
    }
    assert_eq!(consumers().await, 0);
    for (_, _, runner) in followers {
        runner.stop().await;
    }
}
