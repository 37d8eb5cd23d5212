//! A cluster's bad week, on three nodes with three replicas: the node
//! leading the event stream SIGKILLed under writers and a read model; the
//! leaders of both streams failing over again and again under writers and
//! a process manager; a power cut of the whole cluster (every node
//! SIGKILLed at once) after racing appends; writers of two processes on
//! the same cluster. After each: every command id retried once more, and
//! none may append again; every acknowledged command is stored exactly
//! once; each stream's versions have no gap; a process reacted to each
//! event exactly once (balances exact); read models equal a rebuild. Each
//! prints its figures. The tests take turns: each starts its own cluster.

use tests::nats as support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use es_core::{DispatchError, Dispatcher, EventStore, EventStoreExt, Metadata, ProcessManager, Projection, StreamId};
use es_nats::{NatsOptions, NatsStore};
use examples::bank::{AccountId, BankAccount, BankCommand, Deposit, OpenAccount};
use examples::transfer::{RequestTransfer, Transfer, TransferProcess, TransferStatus};
use examples::views::{BalanceOf, Balances};

/// One cluster at a time: three nodes each, on two cores.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// A command of the bank's workload, with the id it is always sent under.
#[derive(Clone)]
enum Sent {
    Bank(BankCommand),
    Transfer(RequestTransfer),
}

/// Sends `command` once: whether it was answered as a repeat and its
/// stream's version, or `None` for a refusal, or the failure.
async fn send(app: &Dispatcher<NatsStore>, command: &Sent, metadata: Metadata) -> Result<(bool, u64), Option<String>> {
    fn failure<E: std::fmt::Display>(rejected: bool, error: E) -> Option<String> {
        (!rejected).then(|| error.to_string())
    }
    match command.clone() {
        Sent::Bank(c) => app
            .dispatch_with(c, metadata)
            .await
            .map(|c| (c.deduplicated, c.version))
            .map_err(|e| failure(matches!(e, DispatchError::Rejected { .. }), e)),
        Sent::Transfer(c) => app
            .dispatch_with(c, metadata)
            .await
            .map(|c| (c.deduplicated, c.version))
            .map_err(|e| failure(matches!(e, DispatchError::Rejected { .. }), e)),
    }
}

/// Sends `command` under `command_id` until it is acknowledged (a refusal
/// counts: it is an answer), counting the failures on the way. Returns
/// whether it was answered as a repeat, and how long it took.
async fn until_acknowledged(
    app: &Dispatcher<NatsStore>,
    command: &Sent,
    command_id: &str,
    failures: &AtomicU64,
) -> (bool, Duration) {
    let started = Instant::now();
    loop {
        let mut metadata = Metadata::new();
        metadata.command_id = Some(command_id.to_owned());
        match send(app, command, metadata).await {
            Ok((deduplicated, _)) => return (deduplicated, started.elapsed()),
            Err(None) => return (false, started.elapsed()),
            Err(Some(error)) => {
                failures.fetch_add(1, Ordering::Relaxed);
                if std::env::var_os("ES_NATS_VERBOSE").is_some() {
                    eprintln!("{:>6.2} s `{command_id}`: {error}", started.elapsed().as_secs_f64());
                }
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "`{command_id}` still failing after 120 s: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn account(i: usize) -> AccountId {
    AccountId::new(format!("acct-{i}"))
}

/// Opens `accounts` accounts holding 1,000 each.
async fn open_accounts(app: &Dispatcher<NatsStore>, accounts: usize, failures: &AtomicU64) -> Vec<(Sent, String)> {
    let mut sent = Vec::new();
    for i in 0..accounts {
        let open = Sent::Bank(BankCommand::Open(OpenAccount {
            account: account(i),
            owner: format!("Owner {i}"),
        }));
        let seed = Sent::Bank(BankCommand::Deposit(Deposit {
            account: account(i),
            amount: 1_000,
        }));
        for (command, id) in [(open, format!("open-{i}")), (seed, format!("seed-{i}"))] {
            until_acknowledged(app, &command, &id, failures).await;
            sent.push((command, id));
        }
    }
    sent
}

/// `writers` tasks each sending `per_writer` deposits of 1 (writer `w`'s
/// `i`-th to account `(w + i) % accounts`: the writers race on every
/// account) and, every tenth command, a transfer of 10 to the next account.
/// Returns every command with its id, and the slowest acknowledgement.
async fn racing_writers(
    app: &Dispatcher<NatsStore>,
    writers: usize,
    per_writer: usize,
    accounts: usize,
    failures: &Arc<AtomicU64>,
) -> (Vec<(Sent, String)>, Duration) {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let app = app.clone();
            let failures = failures.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut slowest = Duration::ZERO;
                for i in 0..per_writer {
                    let to = (w + i) % accounts;
                    let (command, id) = if i % 10 == 9 {
                        let transfer = Sent::Transfer(RequestTransfer {
                            transfer: format!("t-{w}-{i}"),
                            from: account(to),
                            to: account((to + 1) % accounts),
                            amount: 10,
                        });
                        (transfer, format!("req-{w}-{i}"))
                    } else {
                        let deposit = Sent::Bank(BankCommand::Deposit(Deposit {
                            account: account(to),
                            amount: 1,
                        }));
                        (deposit, format!("dep-{w}-{i}"))
                    };
                    let (_, took) = until_acknowledged(&app, &command, &id, &failures).await;
                    slowest = slowest.max(took);
                    sent.push((command, id));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (sent, slowest)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut slowest = Duration::ZERO;
    for task in tasks {
        let (sent, took) = task.await.expect("a writer");
        all.extend(sent);
        slowest = slowest.max(took);
    }
    (all, slowest)
}

/// Sends every command again under its id: each must be answered as the
/// repeat it is, appending nothing. Returns how many were.
async fn send_everything_again(app: &Dispatcher<NatsStore>, sent: &[(Sent, String)]) -> usize {
    let failures = AtomicU64::new(0);
    let mut repeats = 0;
    for (command, id) in sent {
        let mut metadata = Metadata::new();
        metadata.command_id = Some(id.clone());
        match send(app, command, metadata).await {
            Ok((true, _)) => repeats += 1,
            Ok((false, version)) => panic!("`{id}` appended again, at version {version}"),
            // Refused the first time (an overdrawn transfer): refused again,
            // and nothing stored either time.
            Err(None) => repeats += 1,
            Err(Some(error)) => {
                failures.fetch_add(1, Ordering::Relaxed);
                panic!("`{id}` could not be sent again: {error}");
            }
        }
    }
    repeats
}

/// What the log must hold after `sent` and a settled transfer process:
/// every command id's events once, every transfer completed or failed by
/// the process exactly once, and the balances that follow.
async fn check_exactly_once(store: &NatsStore, app: &Dispatcher<NatsStore>, sent: &[(Sent, String)], accounts: usize) {
    let per_command = support::events_per_command(store).await;
    let doubled: Vec<_> = per_command.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "commands stored more than once: {doubled:?}");
    for (_, id) in sent {
        assert!(
            per_command.keys().any(|(_, c)| c == id),
            "acknowledged command `{id}` is not in the log"
        );
    }
    let mut expected: BTreeMap<usize, i64> = (0..accounts).map(|i| (i, 0)).collect();
    let mut transfers = 0;
    for (command, _) in sent {
        match command {
            Sent::Bank(BankCommand::Deposit(d)) => {
                let i: usize = d.account.0.trim_start_matches("acct-").parse().unwrap();
                *expected.get_mut(&i).unwrap() += d.amount as i64;
            }
            Sent::Transfer(t) => {
                let transfer: Transfer = app.load(t.transfer.clone()).await.expect("a transfer");
                let from: usize = t.from.0.trim_start_matches("acct-").parse().unwrap();
                let to: usize = t.to.0.trim_start_matches("acct-").parse().unwrap();
                match transfer.status {
                    TransferStatus::Completed => {
                        *expected.get_mut(&from).unwrap() -= t.amount as i64;
                        *expected.get_mut(&to).unwrap() += t.amount as i64;
                        transfers += 1;
                    }
                    TransferStatus::Failed => {}
                    other => panic!("transfer `{}` left {other:?} by a settled process", t.transfer),
                }
            }
            _ => {}
        }
    }
    for (i, balance) in expected {
        let loaded: BankAccount = app.load(account(i)).await.expect("an account");
        assert_eq!(loaded.balance as i64, balance, "the balance of acct-{i}");
    }
    assert!(transfers > 0, "no transfer completed: the check checked nothing");
    for i in 0..accounts {
        let events = store
            .read_stream_vec(&StreamId::new("bank_account", format!("acct-{i}")), 1)
            .await
            .expect("a stream");
        assert!(events.iter().enumerate().all(|(n, e)| e.version == n as u64 + 1));
    }
}

/// Runs the transfer process until it has reacted to everything, asking
/// again while the cluster is still electing a leader (a spawned runner
/// retries the same way).
async fn settle(app: &Dispatcher<NatsStore>) -> u64 {
    let started = Instant::now();
    loop {
        match ProcessManager::new("transfers", TransferProcess).settle(app).await {
            Ok(position) => return position,
            Err(error) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("the transfers do not settle yet: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the transfers never settled: {error}"),
        }
    }
}

fn options() -> NatsOptions {
    // Requests fail after a second while there is no leader, and are
    // retried.
    NatsOptions {
        request_timeout: Duration::from_secs(1),
        ..NatsOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_leader_loses_no_acknowledged_command_and_the_read_model_matches_a_rebuild() {
    let _turn = one_at_a_time().await;
    let Some(cluster) = support::cluster() else {
        return;
    };
    let store = cluster.store_with(options()).await;
    let reader = cluster.same(&store, options()).await;
    let balances = Projection::new("balances", Balances::default());
    let runner = balances.spawn(reader.clone(), Duration::from_millis(500));
    let app = Dispatcher::new(store.clone());
    let failures = Arc::new(AtomicU64::new(0));
    let mut sent = open_accounts(&app, 4, &failures).await;

    let victim = cluster.leader_of(&format!("{}_events", store.prefix())).await;
    let started = Instant::now();
    let writing = {
        let app = app.clone();
        let failures = failures.clone();
        tokio::spawn(async move { racing_writers(&app, 4, 60, 4, &failures).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.nodes[victim].kill();
    let killed_at = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.nodes[victim].restart();
    let (written, slowest) = writing.await.expect("the writers");
    sent.extend(written);
    let elapsed = started.elapsed();

    settle(&app).await;
    let repeats = send_everything_again(&app, &sent).await;
    assert_eq!(repeats, sent.len());
    check_exactly_once(&store, &app, &sent, 4).await;

    // The read model, fed through the outage, equals a rebuild.
    let end = store.last_position().await.expect("the log's end");
    runner
        .wait_for(end, Duration::from_secs(60))
        .await
        .expect("the read model catches up");
    let rebuilt = Projection::new("rebuilt", Balances::default());
    rebuilt.catch_up(&store).await.expect("a rebuild");
    for i in 0..4 {
        let live = balances.query(BalanceOf {
            account: format!("acct-{i}"),
        });
        assert!(live.is_some());
        assert_eq!(
            live,
            rebuilt.query(BalanceOf {
                account: format!("acct-{i}")
            })
        );
    }
    let status = runner.status();
    runner.stop().await;
    eprintln!(
        "killed leader: {} commands in {:.1} s; event stream leader n{victim} killed at {:.1} s for 3 s; \
         {} failed attempts retried under the same command id; slowest command {:.1} s; {} repeats answered; \
         read model failures {}",
        sent.len(),
        elapsed.as_secs_f64(),
        killed_at.as_secs_f64(),
        failures.load(Ordering::Relaxed),
        slowest.as_secs_f64(),
        repeats,
        status.failures,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaders_of_both_streams_failing_over_double_no_command_and_no_reaction() {
    let _turn = one_at_a_time().await;
    let Some(cluster) = support::cluster() else {
        return;
    };
    let store = cluster.store_with(options()).await;
    let app = Dispatcher::new(store.clone());
    let failures = Arc::new(AtomicU64::new(0));
    let mut sent = open_accounts(&app, 4, &failures).await;
    // The process runs through the failovers: its checkpoint lives in the
    // records stream, its commands' ids beside the events.
    let process = ProcessManager::new("transfers", TransferProcess).spawn(app.clone(), Duration::from_millis(200));

    let started = Instant::now();
    let writing = {
        let app = app.clone();
        let failures = failures.clone();
        tokio::spawn(async move { racing_writers(&app, 4, 60, 4, &failures).await })
    };
    let streams = [
        format!("{}_events", store.prefix()),
        format!("{}_records", store.prefix()),
    ];
    let mut stepped = 0;
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let name = &streams[round % 2];
        if cluster.step_down(name).await {
            stepped += 1;
        }
    }
    let (written, slowest) = writing.await.expect("the writers");
    sent.extend(written);
    let elapsed = started.elapsed();
    assert!(stepped >= 4, "only {stepped} of 6 leader changes were made");

    let process_status = process.status();
    process.stop().await;
    settle(&app).await;
    let repeats = send_everything_again(&app, &sent).await;
    assert_eq!(repeats, sent.len());
    check_exactly_once(&store, &app, &sent, 4).await;
    eprintln!(
        "failovers: {} commands in {:.1} s through {stepped} leader changes of the event and records streams; \
         {} failed attempts retried; slowest command {:.1} s; process failures {}; {} repeats answered",
        sent.len(),
        elapsed.as_secs_f64(),
        failures.load(Ordering::Relaxed),
        slowest.as_secs_f64(),
        process_status.failures,
        repeats,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_power_cut_of_the_whole_cluster_forgets_no_command_id_and_no_checkpoint() {
    let _turn = one_at_a_time().await;
    let Some(cluster) = support::cluster() else {
        return;
    };
    let store = cluster.store_with(options()).await;
    let app = Dispatcher::new(store.clone());
    let failures = Arc::new(AtomicU64::new(0));
    let mut sent = open_accounts(&app, 3, &failures).await;
    // Racing appends first, the process settled: the state to keep.
    let (written, _) = racing_writers(&app, 4, 30, 3, &failures).await;
    sent.extend(written);
    let transfers = ProcessManager::new("transfers", TransferProcess);
    let checkpoint = settle(&app).await;
    let per_command_before = support::events_per_command(&store).await;
    let end_before = store.last_position().await.unwrap();

    // Power cut: every node at once, with writers still sending.
    let writing = {
        let app = app.clone();
        let failures = failures.clone();
        tokio::spawn(async move {
            // Other ids than the first round's: writer numbers from 10.
            let mut sent = Vec::new();
            for w in 10..12 {
                for i in 0..60 {
                    let command = Sent::Bank(BankCommand::Deposit(Deposit {
                        account: account(i % 3),
                        amount: 1,
                    }));
                    let id = format!("dep-{w}-{i}");
                    until_acknowledged(&app, &command, &id, &failures).await;
                    sent.push((command, id));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cut = Instant::now();
    let failed_before = failures.load(Ordering::Relaxed);
    cluster.kill_all();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart_all();
    sent.extend(writing.await.expect("the writers"));
    let back = cut.elapsed();
    assert!(
        failures.load(Ordering::Relaxed) > failed_before,
        "no command failed during the power cut: the writers had finished before it"
    );

    // Everything from before the cut is there: command ids, checkpoint.
    let per_command_after = support::events_per_command(&store).await;
    for (key, n) in &per_command_before {
        assert_eq!(per_command_after.get(key), Some(n), "{key:?} after the power cut");
    }
    assert!(store.last_position().await.unwrap() >= end_before);
    // The records stream may still be electing its leader.
    let started = Instant::now();
    let saved = loop {
        match store.load_checkpoint(&transfers.checkpoint_name()).await {
            Ok(saved) => break saved,
            Err(e @ es_core::StoreError::Unavailable { .. }) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("the checkpoint is not readable yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("read the checkpoint: {e}"),
        }
    };
    assert_eq!(saved, Some(checkpoint), "the process's checkpoint after the power cut");

    // Every command id again, from a new connection (a restarted
    // application): each answered as a repeat.
    let restarted = Dispatcher::new(cluster.same(&store, options()).await);
    let repeats = send_everything_again(&restarted, &sent).await;
    assert_eq!(repeats, sent.len());
    settle(&restarted).await;
    check_exactly_once(&store, &restarted, &sent, 3).await;
    eprintln!(
        "power cut: {} commands; every node SIGKILLed, back and answering {:.1} s later; {} failed attempts \
         retried; {} command records and the process checkpoint at {checkpoint} kept; {} repeats answered",
        sent.len(),
        back.as_secs_f64(),
        failures.load(Ordering::Relaxed),
        per_command_before.len(),
        repeats,
    );
}

/// Writers in two processes on one cluster, each on its own streams, are
/// served alike: no writer waits on another process's (the starvation of a
/// stream-wide guard).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_of_two_processes_are_served_alike() {
    let _turn = one_at_a_time().await;
    let Some(cluster) = support::cluster() else {
        return;
    };
    let first = cluster.store_with(options()).await;
    let second = cluster.same(&first, options()).await;
    let per_writer = 40;
    let run = |store: NatsStore, name: &'static str| {
        tokio::spawn(async move {
            let app = Dispatcher::new(store);
            let failures = AtomicU64::new(0);
            let started = Instant::now();
            let mut slowest = Duration::ZERO;
            let tasks: Vec<_> = (0..4)
                .map(|w| {
                    let app = app.clone();
                    tokio::spawn(async move {
                        let failures = AtomicU64::new(0);
                        let mut slowest = Duration::ZERO;
                        let id = AccountId::new(format!("{name}-{w}"));
                        let open = Sent::Bank(BankCommand::Open(OpenAccount {
                            account: id.clone(),
                            owner: name.into(),
                        }));
                        until_acknowledged(&app, &open, &format!("open-{name}-{w}"), &failures).await;
                        for i in 0..per_writer {
                            let deposit = Sent::Bank(BankCommand::Deposit(Deposit {
                                account: id.clone(),
                                amount: 1,
                            }));
                            let (_, took) =
                                until_acknowledged(&app, &deposit, &format!("{name}-{w}-{i}"), &failures).await;
                            slowest = slowest.max(took);
                        }
                        slowest
                    })
                })
                .collect();
            for task in tasks {
                slowest = slowest.max(task.await.expect("a writer"));
            }
            (started.elapsed(), slowest, failures.load(Ordering::Relaxed))
        })
    };
    let one = run(first.clone(), "p1");
    let two = run(second, "p2");
    let (took_one, slowest_one, _) = one.await.expect("process one");
    let (took_two, slowest_two, _) = two.await.expect("process two");
    eprintln!(
        "two processes, 4 writers each, {per_writer} deposits per writer: {:.2} s and {:.2} s; slowest command \
         {:.0} ms and {:.0} ms",
        took_one.as_secs_f64(),
        took_two.as_secs_f64(),
        slowest_one.as_secs_f64() * 1e3,
        slowest_two.as_secs_f64() * 1e3,
    );
    // Neither process's writers waited on the other's: no command took
    // seconds (a stream-wide guard kept one process's writers 25 s).
    assert!(
        slowest_one < Duration::from_secs(3) && slowest_two < Duration::from_secs(3),
        "a command waited {slowest_one:?} / {slowest_two:?}"
    );
    let per_command = support::events_per_command(&first).await;
    assert_eq!(per_command.len(), 2 * 4 * (per_writer + 1));
    assert!(per_command.values().all(|n| *n == 1));
}
