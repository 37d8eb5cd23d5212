//! Read models run as partitions shared by several runners through leases:
//! each event applied exactly once and each stream's events in order, while
//! runners stop, are killed with SIGKILL, and join, with writers running;
//! the number of partitions changed only by a rebuild.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use es_core::store::{ContextFields, RecordedEvent};
use es_core::subscription::{Partition, RunOptions};
use es_core::subscription::{PartitionOptions, PartitionRunner};
use es_core::{Dispatcher, EventStore};
use es_postgres::{PgPartitioned, PgProjection, PostgresStore};
use examples::bank::{AccountId, Deposit, OpenAccount, Withdraw};
use tests::ledger::OrderedLedger;

/// A row of the ledger: position, account, change.
type Row = (u64, String, i64);

/// The ledger projection named after its table.
fn ledger(store: &PostgresStore, table: &str) -> PgProjection<OrderedLedger> {
    let schema = store.schema();
    PgProjection::new(store.clone(), table, OrderedLedger::new(schema, table))
        .tables(OrderedLedger::tables(schema, table))
}

fn partitioned(store: &PostgresStore, count: u32) -> PgPartitioned<OrderedLedger> {
    ledger(store, "ledger").partitioned(count)
}

fn quick() -> PartitionOptions {
    PartitionOptions {
        run: RunOptions {
            poll: Duration::from_millis(50),
            retry_min: Duration::from_millis(20),
            retry_max: Duration::from_millis(200),
            coalesce: Duration::ZERO,
        },
        // Long enough that a heartbeat delayed by a loaded machine never
        // looks like a dead runner: these tests stop runners, they do not
        // kill them.
        lease: Duration::from_secs(10),
        heartbeat: Duration::from_millis(100),
    }
}

/// Opens `accounts` accounts named `prefix<i>` and gives each `per_account`
/// deposits, with a withdrawal after every fifth.
async fn write<S: EventStore + Clone>(store: &S, prefix: &str, accounts: usize, per_account: usize) {
    let app = Dispatcher::new(store.clone());
    for i in 0..accounts {
        app.dispatch(OpenAccount {
            account: AccountId::new(format!("{prefix}{i}")),
            owner: "o".into(),
        })
        .await
        .unwrap();
    }
    for k in 0..per_account {
        for i in 0..accounts {
            let account = AccountId::new(format!("{prefix}{i}"));
            app.dispatch(Deposit {
                account: account.clone(),
                amount: (k % 7 + 1) as u64,
            })
            .await
            .unwrap();
            if k % 5 == 4 {
                app.dispatch(Withdraw { account, amount: 1 }).await.unwrap();
            }
        }
    }
}

/// Every deposit and withdrawal in the log, as the ledger should hold it.
async fn expected<S: EventStore>(store: &S) -> Vec<Row> {
    let mut rows = Vec::new();
    store
        .read_all(0, usize::MAX, ContextFields::ALL, |e: &RecordedEvent<'_>| {
            let sign = match e.name {
                "account.deposited" => 1,
                "account.withdrawn" => -1,
                _ => return ControlFlow::Continue(()),
            };
            let v: serde_json::Value = serde_json::from_slice(e.payload).unwrap();
            rows.push((
                e.position,
                e.aggregate_id.to_owned(),
                sign * v["amount"].as_i64().unwrap(),
            ));
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    rows
}

/// The ledger table's rows in position order, after checking that no row
/// was applied before an earlier event of its stream.
async fn rows(store: &PostgresStore, table: &str) -> Vec<Row> {
    let s = store.schema();
    let late: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        r#"SELECT count(*) FROM "{s}".{table} WHERE late"#
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(late, 0, "events of a stream were applied out of order");
    sqlx::query_as::<_, (i64, String, i64)>(sqlx::AssertSqlSafe(format!(
        r#"SELECT position, account, change FROM "{s}".{table} ORDER BY position, account"#
    )))
    .fetch_all(store.pool())
    .await
    .unwrap()
    .into_iter()
    .map(|(p, a, c)| (p as u64, a, c))
    .collect()
}

/// Waits until every partition's checkpoint is at the end of the log.
async fn wait_caught_up(store: &PostgresStore, partitions: &PgPartitioned<OrderedLedger>, timeout: Duration) {
    let last = store.last_position().await.unwrap();
    let start = Instant::now();
    loop {
        let records = partitions.partitions(Duration::from_secs(2)).await.unwrap();
        if records.iter().all(|r| r.position >= last) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "the partitions did not reach position {last}: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for(runners: &[&PartitionRunner], what: &str, done: impl Fn(&[Vec<Partition>]) -> bool) {
    let start = Instant::now();
    loop {
        let owned: Vec<Vec<Partition>> = runners.iter().map(|r| r.owned()).collect();
        if done(&owned) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{what}: {owned:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_share_the_partitions_and_one_takes_all_when_the_other_stops() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    write(&store, "a", 24, 10).await;
    // Before any runner: eight partitions at 0, owned by nobody, read
    // without creating anything.
    let before = partitioned(&store, 8).partitions(Duration::from_secs(2)).await.unwrap();
    assert!(
        before.iter().all(|r| r.position == 0 && r.owner.is_none()),
        "{before:?}"
    );
    assert_eq!(before.len(), 8);
    let first = partitioned(&store, 8).spawn(quick());
    let second = partitioned(&store, 8).spawn(quick());
    wait_for(
        &[&first, &second],
        "the runners did not split eight partitions four and four",
        |o| o[0].len() == 4 && o[1].len() == 4,
    )
    .await;
    let mine: Vec<Partition> = first.owned().into_iter().chain(second.owned()).collect();
    let mut sorted = mine.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 8, "a partition owned twice: {mine:?}");
    let view = partitioned(&store, 8);
    wait_caught_up(&store, &view, Duration::from_secs(30)).await;
    assert_eq!(rows(&store, "ledger").await, expected(&store).await);
    // The store lists each partition's owner (from the heartbeat after
    // the claim).
    let (a, b) = (first.status().runner, second.status().runner);
    wait_owners(&|| owners(&view), "the store does not list the owners", |o| {
        let listed = |runner: &str, partitions: Vec<Partition>| {
            let mut want: Vec<u32> = partitions.iter().map(|p| p.index()).collect();
            want.sort();
            o.get(&Some(runner.to_owned())) == Some(&want)
        };
        listed(&a, first.owned()) && listed(&b, second.owned())
    })
    .await;
    let status = first.status();
    assert_eq!((status.live, status.share), (2, 4));
    assert!(status.owned.iter().all(|p| p.status.last_error.is_none()), "{status:?}");

    // One stops: the other takes its partitions at its next heartbeat and
    // goes on from their checkpoints while events keep coming.
    second.stop().await;
    wait_for(&[&first], "the remaining runner did not take all eight", |o| {
        o[0].len() == 8
    })
    .await;
    write(&store, "b", 8, 5).await;
    wait_caught_up(&store, &view, Duration::from_secs(30)).await;
    assert_eq!(rows(&store, "ledger").await, expected(&store).await);
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_number_of_partitions_changes_only_through_a_rebuild() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    write(&store, "c", 10, 6).await;
    let eight = partitioned(&store, 8).spawn(quick());
    let view = partitioned(&store, 8);
    wait_caught_up(&store, &view, Duration::from_secs(30)).await;

    // A runner started with another number stops before it applies
    // anything, and says why.
    let four = partitioned(&store, 4).spawn(quick());
    assert!(four.wait_until(Duration::from_secs(30), |s| s.stopped).await);
    let status = four.status();
    assert!(status.owned.is_empty(), "{status:?}");
    let error = status.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("stored as 8 partitions but this runner was started with 4 partitions")
            && error.contains("rebuild"),
        "{status:?}"
    );
    // An unpartitioned catch-up is refused the same way.
    let whole = ledger(&store, "ledger").catch_up().await.unwrap_err();
    assert!(
        matches!(&whole, es_core::SubscriptionError::Partitions { .. }),
        "{whole}"
    );
    assert_eq!(rows(&store, "ledger").await, expected(&store).await);

    // The rebuild to four fences the running eight-partition runner out
    // (it stops) and the four-partition runners replay the log.
    partitioned(&store, 4).rebuild().await.unwrap();
    assert!(eight.wait_until(Duration::from_secs(30), |s| s.stopped).await);
    let four = partitioned(&store, 4).spawn(quick());
    write(&store, "d", 4, 4).await;
    let view = partitioned(&store, 4);
    wait_caught_up(&store, &view, Duration::from_secs(30)).await;
    assert_eq!(rows(&store, "ledger").await, expected(&store).await);
    four.stop().await;

    // And back to one, through the unpartitioned rebuild.
    let last = store.last_position().await.unwrap();
    assert_eq!(ledger(&store, "ledger").rebuild().await.unwrap(), last);
    assert_eq!(rows(&store, "ledger").await, expected(&store).await);
    let refused = partitioned(&store, 4).catch_up().await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("stored as one partition (not partitioned)"),
        "{refused}"
    );
}

/// A runner process (`tests/src/bin/partitioned.rs`,
/// `tests/src/bin/nats_partitioned.rs`), with the lines it printed after
/// the first.
struct RunnerProcess {
    child: Child,
    name: String,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl RunnerProcess {
    fn start(url: &str, schema: &str) -> RunnerProcess {
        Self::start_program(env!("CARGO_BIN_EXE_partitioned"), &[url, schema, "2000", "200"])
    }

    fn start_program(program: &str, args: &[&str]) -> RunnerProcess {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a runner process");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut process = RunnerProcess {
            child,
            name: String::new(),
            lines: Arc::new(std::sync::Mutex::new(Vec::new())),
        };
        // Lines it prints after its name (it may apply events before it
        // says it runs: those lines come first).
        let (named, name) = std::sync::mpsc::channel();
        let collected = Arc::clone(&process.lines);
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                match line.strip_prefix("running ") {
                    Some(name) => {
                        let _ = named.send(name.to_owned());
                    }
                    None => collected.lock().unwrap().push(line),
                }
            }
        });
        process.name = name
            .recv_timeout(Duration::from_secs(60))
            .expect("the runner did not say it runs");
        process
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`) to the process.
    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal}");
    }
}

impl Drop for RunnerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Who owns which partition: runner name (`None`: nobody) -> partitions.
type Owners = BTreeMap<Option<String>, Vec<u32>>;

fn owners_of(pairs: impl IntoIterator<Item = (Option<String>, Partition)>) -> Owners {
    let mut owners = Owners::new();
    for (owner, partition) in pairs {
        owners.entry(owner).or_default().push(partition.index());
    }
    owners
}

/// Who owns which partition, as the PostgreSQL store says.
async fn owners(view: &PgPartitioned<OrderedLedger>) -> Owners {
    let records = view.partitions(Duration::from_secs(2)).await.unwrap();
    owners_of(records.into_iter().map(|r| (r.owner, r.partition)))
}

/// Reads the owners with `read` until `done` holds of them (for at most a
/// minute); returns how long that took.
async fn wait_owners<F: Future<Output = Owners>>(
    read: &impl Fn() -> F,
    what: &str,
    done: impl Fn(&Owners) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let owners = read().await;
        if done(&owners) {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{what}: {owners:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The runners left after [`faults`], and what the killed one printed.
struct Survivors {
    a: RunnerProcess,
    c: RunnerProcess,
    d: RunnerProcess,
    killed: RunnerProcess,
}

/// What runners of both stores go through, with writers running on
/// `store` all along: three runner processes share eight partitions; one
/// (b) is SIGKILLed, and the other two take its partitions; a fourth (d)
/// joins and gets its share; one (c) hangs (SIGSTOP) and, no sooner than
/// `hung_after`, the others take its partitions, then it wakes up. Each
/// takeover is timed and printed. Returns the processes and the killed
/// one's lines once the writers stopped.
async fn faults<S, F>(
    store: &S,
    start: impl Fn() -> RunnerProcess,
    read: impl Fn() -> F,
    label: &str,
    hung_after: Duration,
) -> Survivors
where
    S: EventStore + Clone + 'static,
    F: Future<Output = Owners>,
{
    let writing = Arc::new(AtomicBool::new(true));
    let writers = {
        let (store, writing) = (store.clone(), Arc::clone(&writing));
        tokio::spawn(async move {
            let mut round = 0;
            while writing.load(Ordering::Relaxed) {
                write(&store, &format!("w{round}-"), 8, 5).await;
                round += 1;
            }
        })
    };
    let (a, b, c) = (start(), start(), start());
    let names = [a.name.clone(), b.name.clone(), c.name.clone()];
    wait_owners(&read, "three runners did not share the eight partitions", |o| {
        !o.contains_key(&None)
            && names
                .iter()
                .all(|n| o.get(&Some(n.clone())).is_some_and(|p| p.len() >= 2))
    })
    .await;
    let orphaned = read().await[&Some(b.name.clone())].clone();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // SIGKILL one mid-page: its partitions go to the other two.
    let killed = b.name.clone();
    b.signal("KILL");
    let takeover = wait_owners(&read, "the killed runner's partitions were not taken over", |o| {
        !o.contains_key(&None) && !o.contains_key(&Some(killed.clone())) && o.len() == 2
    })
    .await;
    println!("{label}: partitions {orphaned:?} of a killed runner taken over in {takeover:?}");
    assert!(takeover < Duration::from_secs(10), "takeover took {takeover:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A fourth joins: the others give partitions up to it.
    let d = start();
    let joined = wait_owners(&read, "the runner that joined got no partitions", |o| {
        !o.contains_key(&None) && o.get(&Some(d.name.clone())).is_some_and(|p| p.len() >= 2) && o.len() == 3
    })
    .await;
    println!(
        "{label}: a joining runner got its share in {joined:?}: {:?}",
        read().await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // One hangs with its connections open: once its lease runs out the
    // others take its partitions; woken up, it finds itself fenced out.
    let hung = c.name.clone();
    c.signal("STOP");
    let takeover = wait_owners(&read, "the hung runner's partitions were not taken over", |o| {
        !o.contains_key(&None) && !o.contains_key(&Some(hung.clone())) && o.len() == 2
    })
    .await;
    println!("{label}: a hung runner's partitions taken over in {takeover:?}");
    assert!(
        takeover >= hung_after,
        "taken over before its lease ran out: {takeover:?}"
    );
    assert!(takeover < Duration::from_secs(10), "takeover took {takeover:?}");
    c.signal("CONT");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    writing.store(false, Ordering::Relaxed);
    writers.await.unwrap();
    Survivors { a, c, d, killed: b }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runner_processes_one_killed_another_joining_apply_each_event_exactly_once() {
    let Some(store) = tests::postgres::store().await else {
        return;
    };
    let schema = store.schema().to_owned();
    let url = tests::postgres::url();
    write(&store, "e", 40, 3).await;

    let view = partitioned(&store, 8);
    let Survivors { a, c, d, .. } = faults(
        &store,
        || RunnerProcess::start(&url, &schema),
        || owners(&view),
        "PostgreSQL",
        // Its sessions are ended once its record is older than the lease
        // (2 s), renewed last up to a heartbeat (200 ms) before it hung.
        Duration::from_millis(1_700),
    )
    .await;
    wait_caught_up(&store, &view, Duration::from_secs(120)).await;
    drop((a, c, d));

    // Each event exactly once, in order per stream, several runners'
    // work, and the same as a rebuild from scratch into a table of its own.
    let applied = rows(&store, "ledger").await;
    let want = expected(&store).await;
    println!("{} deposits and withdrawals applied", want.len());
    assert!(want.len() > 1_000, "only {} events were written", want.len());
    assert_eq!(applied, want);
    let runners: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        r#"SELECT DISTINCT runner FROM "{schema}".ledger"#
    )))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(runners.len(), 4, "the work of {runners:?} only");
    ledger(&store, "rebuilt").catch_up().await.unwrap();
    assert_eq!(rows(&store, "rebuilt").await, applied);
}

mod nats {
    use super::*;
    use es_core::projection::PartitionedProjection;
    use es_nats::NatsPartitioned;
    use std::collections::{BTreeSet, HashMap};
    use tests::ledger::AppliedOrder;

    /// Who holds which partition's lease, as the records stream says.
    async fn holders(view: &NatsPartitioned<AppliedOrder, es_core::Json>) -> Owners {
        let leases = view.leases().await.unwrap();
        owners_of(leases.into_iter().map(|l| (l.holder, l.partition)))
    }

    /// Each process's applications: position, account, version.
    fn applied(process: &RunnerProcess) -> Vec<(u64, String, u64)> {
        process
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| {
                let mut words = line.strip_prefix("applied ")?.split(' ');
                let position = words.next()?.parse().ok()?;
                let account = words.next()?.to_owned();
                let version = words.next()?.parse().ok()?;
                Some((position, account, version))
            })
            .collect()
    }

    /// Within each process, each account's events were applied once each,
    /// in version order.
    fn check_order(process: &RunnerProcess) {
        let mut last: HashMap<String, u64> = HashMap::new();
        for (position, account, version) in applied(process) {
            let before = last.insert(account.clone(), version).unwrap_or(0);
            assert!(
                version > before,
                "{}: `{account}` version {version} (position {position}) applied after version {before}",
                process.name
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_runner_processes_one_killed_another_joining_apply_each_event_at_least_once_in_stream_order() {
        let Some(store) = tests::nats::store().await else {
            return;
        };
        let url = tests::nats::url().expect("a server");
        let prefix = store.prefix().to_owned();
        write(&store, "e", 40, 3).await;
        let view = NatsPartitioned::new(
            store.clone(),
            PartitionedProjection::new("order", 8, AppliedOrder::default()),
        );
        let Survivors { a, c, d, killed } = faults(
            &store,
            || RunnerProcess::start_program(env!("CARGO_BIN_EXE_nats_partitioned"), &[&url, &prefix, "2000", "200"]),
            || holders(&view),
            "NATS",
            // Its leases are taken once seen unchanged for the lease (2 s),
            // counted from the last time another runner read them.
            Duration::from_secs(1),
        )
        .await;
        let b_applied = applied(&killed).len();
        check_order(&killed);

        // Every deposit and withdrawal applied at least once, by the
        // processes alive at the end (which hold every partition) or before.
        let want: BTreeSet<u64> = expected(&store).await.into_iter().map(|(p, _, _)| p).collect();
        let live = [&a, &c, &d];
        let started = Instant::now();
        loop {
            let seen: BTreeSet<u64> = live.iter().flat_map(|p| applied(p)).map(|(p, _, _)| p).collect();
            if want.is_subset(&seen) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} events never applied by the live runners, e.g. {:?}",
                want.difference(&seen).count(),
                want.difference(&seen).next()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for process in [&a, &c, &d] {
            check_order(process);
            assert!(!applied(process).is_empty(), "{} applied nothing", process.name);
        }
        assert!(b_applied > 0, "the killed runner applied nothing before it was killed");
        println!(
            "NATS: {} deposits and withdrawals, each applied by a live runner",
            want.len()
        );
        drop((a, c, d));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runner_of_another_number_of_partitions_stops_until_repartitioned() {
        let Some(store) = tests::nats::store().await else {
            return;
        };
        write(&store, "f", 6, 4).await;
        let projection = |count| PartitionedProjection::new("order", count, AppliedOrder::default());
        let eight = NatsPartitioned::new(store.clone(), projection(8));
        let running = eight.spawn(quick());
        assert!(
            running
                .wait_until(Duration::from_secs(30), |s| s.owned.len() == 8)
                .await
        );
        let four = NatsPartitioned::new(store.clone(), projection(4));
        let refused = four.spawn(quick());
        assert!(refused.wait_until(Duration::from_secs(30), |s| s.stopped).await);
        let error = refused.status().last_error.unwrap_or_default();
        assert!(
            error.contains("stored as 8 partitions but this runner was started with 4 partitions"),
            "{error}"
        );
        // Every event of its partitions, in order, in the one process.
        let last = store.last_position().await.unwrap();
        let caught_up = || {
            let positions = eight.projection().positions();
            positions.len() == 8 && positions.values().all(|&p| p >= last)
        };
        let started = Instant::now();
        while !caught_up() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{:?}",
                eight.projection().positions()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let applied: usize = eight.projection().read(|m| m.versions.values().map(Vec::len).sum());
        assert_eq!(applied, expected(&store).await.len());
        eight.projection().read(|m| {
            for (account, versions) in &m.versions {
                assert!(versions.windows(2).all(|w| w[0] < w[1]), "{account}: {versions:?}");
            }
        });

        // Repartitioned to four: the eight-partition runner stops, and one
        // of four runs.
        four.repartition().await.unwrap();
        assert!(running.wait_until(Duration::from_secs(30), |s| s.stopped).await);
        let now = four.spawn(quick());
        assert!(
            now.wait_until(Duration::from_secs(30), |s| s.owned.len() == 4).await,
            "{:?}",
            now.status()
        );
        let leases = four.leases().await.unwrap();
        assert!(
            leases
                .iter()
                .all(|l| l.holder.as_deref() == Some(now.status().runner.as_str())),
            "{leases:?}"
        );
        now.stop().await;
        let freed = four.leases().await.unwrap();
        assert!(
            freed.iter().all(|l| l.holder.is_none()),
            "a stopped runner frees its leases: {freed:?}"
        );
    }
}
