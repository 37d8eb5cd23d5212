//! Writers and a read model on a three-node cluster while the node leading
//! the event stream is killed (SIGKILL) and later started again: every
//! acknowledged command is stored exactly once, each stream's versions
//! have no gap, the read model ends equal to a rebuild, and nothing needed
//! a restart of the application. Prints its figures.

use tests::nats as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use es_core::{Dispatcher, EventStoreExt, Metadata, Projection, StreamId};
use examples::bank::{AccountId, BankCommand, Deposit, OpenAccount};
use examples::views::{BalanceOf, Balances};

const WRITERS: usize = 4;
const COMMANDS: usize = 80;

/// Dispatches until acknowledged, with the same command id each time;
/// counts the failures seen on the way.
async fn until_acknowledged(
    app: &Dispatcher<es_nats::NatsStore>,
    command: BankCommand,
    command_id: String,
    failures: &AtomicU64,
) -> Duration {
    let started = Instant::now();
    loop {
        let mut metadata = Metadata::new();
        metadata.command_id = Some(command_id.clone());
        match app.dispatch_with(command.clone(), metadata).await {
            Ok(_) => return started.elapsed(),
            Err(error) => {
                failures.fetch_add(1, Ordering::Relaxed);
                assert!(
                    started.elapsed() < Duration::from_secs(90),
                    "`{command_id}` still failing after 90 s: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_leader_loses_no_acknowledged_command_and_the_read_model_matches_a_rebuild() {
    let Some(cluster) = support::cluster() else {
        return;
    };
    // Requests fail after a second while there is no leader, and are
    // retried (the slowest command still takes about ten seconds: the
    // cluster's election, not the client, sets that).
    let options = es_nats::NatsOptions {
        request_timeout: Duration::from_secs(1),
        ..es_nats::NatsOptions::default()
    };
    let store = cluster.store_with(options.clone()).await;
    let reader = cluster.same(&store, options).await;
    let balances = Projection::new("balances", Balances::default());
    let runner = balances.spawn(reader.clone(), Duration::from_millis(500));
    let app = Dispatcher::new(store.clone());
    let failures = Arc::new(AtomicU64::new(0));
    for w in 0..WRITERS {
        let open = BankCommand::Open(OpenAccount {
            account: AccountId::new(format!("acct-{w}")),
            owner: "Ada".into(),
        });
        until_acknowledged(&app, open, format!("open-{w}"), &failures).await;
    }

    // Which node leads the event stream: that one is killed.
    let client = async_nats::connect(cluster.url.split(',').collect::<Vec<_>>())
        .await
        .expect("an observer");
    let js = async_nats::jetstream::new(client);
    let leader = js
        .get_stream(format!("{}_events", store.prefix()))
        .await
        .expect("the event stream")
        .info()
        .await
        .expect("its info")
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("a leader");
    let victim: usize = leader.trim_start_matches('n').parse().expect("a node name");

    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let app = app.clone();
            let failures = failures.clone();
            tokio::spawn(async move {
                let mut slowest = Duration::ZERO;
                for i in 0..COMMANDS {
                    let deposit = BankCommand::Deposit(Deposit {
                        account: AccountId::new(format!("acct-{w}")),
                        amount: 1,
                    });
                    slowest = slowest.max(until_acknowledged(&app, deposit, format!("dep-{w}-{i}"), &failures).await);
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                slowest
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.nodes[victim].kill();
    let killed_at = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.nodes[victim].restart();
    let restarted_at = started.elapsed();
    let mut slowest = Duration::ZERO;
    for writer in writers {
        slowest = slowest.max(writer.await.expect("a writer"));
    }
    let elapsed = started.elapsed();

    // Every acknowledged command exactly once, each stream without gaps.
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = reader.read_all_vec(after, 500).await.expect("read the log");
        let Some(last) = page.last() else { break };
        after = last.position;
        all.extend(page);
    }
    let mut ids: Vec<String> = all
        .iter()
        .filter_map(|e| Metadata::decode(&e.metadata).ok()?.command_id)
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((total, ids.len()), (WRITERS * (COMMANDS + 1), WRITERS * (COMMANDS + 1)));
    for w in 0..WRITERS {
        let stream = StreamId::new("bank_account", format!("acct-{w}"));
        let events = reader.read_stream_vec(&stream, 1).await.expect("a stream");
        assert!(events.iter().enumerate().all(|(i, e)| e.version == i as u64 + 1));
        assert_eq!(events.len(), COMMANDS + 1);
    }

    // The read model, fed through the outage, equals a rebuild.
    runner
        .wait_for(after, Duration::from_secs(60))
        .await
        .expect("the read model catches up");
    let rebuilt = Projection::new("rebuilt", Balances::default());
    rebuilt.catch_up(&store).await.expect("a rebuild");
    for w in 0..WRITERS {
        let account = format!("acct-{w}");
        let live = balances.query(BalanceOf {
            account: account.clone(),
        });
        assert_eq!(live, Some(COMMANDS as u64));
        assert_eq!(live, rebuilt.query(BalanceOf { account }));
    }
    let status = runner.status();
    runner.stop().await;
    eprintln!(
        "cluster fault: {} commands from {WRITERS} writers in {:.1} s; leader n{victim} killed at {:.1} s, \
         restarted at {:.1} s; {} failed attempts retried with the same command id; slowest command {:.1} s; \
         read model failures {}",
        WRITERS * COMMANDS,
        elapsed.as_secs_f64(),
        killed_at.as_secs_f64(),
        restarted_at.as_secs_f64(),
        failures.load(Ordering::Relaxed),
        slowest.as_secs_f64(),
        status.failures,
    );
}
