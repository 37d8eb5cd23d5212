//! A writer process SIGKILLed under load: eight tasks in another process
//! send deposits under command ids as fast as they can, and the process is
//! killed (SIGKILL) in the middle, some batches no doubt half sent. Then
//! every command it tried is sent again under its id, as a client that
//! never got its answer would: each one lands exactly once, whether the
//! killed process had stored it or not, and every balance is exact.

use tests::nats as support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use es_core::{Dispatcher, Metadata};
use es_nats::{NatsOptions, NatsStore};
use examples::bank::{AccountId, BankAccount, Deposit, OpenAccount};

/// Set for the writer process: `<url> <prefix>`.
const WRITER: &str = "ES_NATS_KILLED_WRITER";
const TASKS: usize = 8;

fn deposit(task: usize) -> Deposit {
    Deposit {
        account: AccountId::new(format!("w-{task}")),
        amount: 1,
    }
}

/// The writer process: what the parent test starts and kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the writer process of `a_writer_killed_under_load_...`, started by it"]
async fn killed_writer_process() {
    let Ok(spec) = std::env::var(WRITER) else {
        return;
    };
    let (url, prefix) = spec.split_once(' ').expect("url and prefix");
    let options = NatsOptions {
        prefix: prefix.to_owned(),
        ..NatsOptions::default()
    };
    let app = Dispatcher::new(NatsStore::connect_with(url, options).await.expect("connect"));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let app = app.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let id = format!("dep-{task}-{i}");
                    // Said before it is sent: the parent sends again
                    // everything that was tried.
                    println!("try {task} {id}");
                    let mut metadata = Metadata::new();
                    metadata.command_id = Some(id);
                    app.dispatch_with(deposit(task), metadata).await.expect("a deposit");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_killed_under_load_stores_each_command_once_when_its_commands_are_sent_again() {
    let Some(url) = support::url() else {
        return;
    };
    let prefix = support::fresh_prefix();
    let options = NatsOptions {
        prefix: prefix.clone(),
        ..NatsOptions::default()
    };
    let store = NatsStore::connect_with(&url, options).await.expect("connect");
    let app = Dispatcher::new(store.clone());
    for task in 0..TASKS {
        app.dispatch(OpenAccount {
            account: AccountId::new(format!("w-{task}")),
            owner: format!("writer {task}"),
        })
        .await
        .expect("open");
    }

    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "killed_writer_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER, format!("{url} {prefix}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the writer process");
    let tried: Arc<Mutex<BTreeSet<(usize, String)>>> = Arc::default();
    let reader = {
        let tried = tried.clone();
        let stdout = child.stdout.take().expect("its output");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The test harness's own words may begin the first line.
                if let Some(rest) = line.find("try ").map(|at| &line[at + 4..])
                    && let Some((task, id)) = rest.split_once(' ')
                {
                    tried.lock().unwrap().insert((task.parse().unwrap(), id.to_owned()));
                }
            }
        })
    };
    // Under load for a while, then killed mid-flight.
    let started = Instant::now();
    while tried.lock().unwrap().len() < 1_000 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("the writer is gone");
    reader.join().expect("its output read");
    let tried = std::mem::take(&mut *tried.lock().unwrap());
    assert!(tried.len() >= 100, "the writer tried only {} commands", tried.len());
    let stored_before = support::events_per_command(&store).await.len();

    // Every command tried, sent again under its id.
    let mut repeats = 0;
    let mut appended = 0;
    for (task, id) in &tried {
        let mut metadata = Metadata::new();
        metadata.command_id = Some(id.clone());
        let outcome = app
            .dispatch_with(deposit(*task), metadata)
            .await
            .unwrap_or_else(|e| panic!("`{id}` sent again: {e}"));
        if outcome.deduplicated {
            repeats += 1;
        } else {
            appended += 1;
        }
    }
    let per_command = support::events_per_command(&store).await;
    let doubled: Vec<_> = per_command.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "commands stored twice: {doubled:?}");
    let mut per_account: BTreeMap<usize, u64> = BTreeMap::new();
    for (task, _) in &tried {
        *per_account.entry(*task).or_default() += 1;
    }
    let known: BTreeSet<&str> = tried.iter().map(|(_, id)| id.as_str()).collect();
    let unknown: Vec<_> = per_command
        .keys()
        .filter(|(_, id)| id.starts_with("dep-") && !known.contains(id.as_str()))
        .collect();
    assert!(unknown.is_empty(), "stored but never tried: {unknown:?}");
    for (task, deposits) in per_account {
        let account: BankAccount = app.load(AccountId::new(format!("w-{task}"))).await.expect("an account");
        assert_eq!(account.balance, deposits, "the balance of w-{task}");
    }
    // The writer had stored most of what it tried; what it had not (sent,
    // or half sent, when it was killed) landed now, once.
    assert_eq!(repeats + appended, tried.len());
    assert!(
        appended <= TASKS,
        "{appended} commands were lost by the writer: at most one per task can be"
    );
    eprintln!(
        "killed writer: {} commands tried by {TASKS} tasks before SIGKILL, {stored_before} of them stored by \
         then; sent again: {repeats} answered as repeats, {appended} stored now; none twice",
        tried.len(),
    );
}
