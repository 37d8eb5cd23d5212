//! The `metrics` feature: a recorder of this test's own (installed for the
//! whole process, which is why this file is its own test binary) sees each
//! counter, histogram and gauge `es_core::metrics` lists, with its labels.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use es_core::{Dispatcher, InMemoryStore, Metadata, Projection};
use examples::bank::{
    AccountId, AccountOpened, BankAccount, BankCommand, Deposit, MoneyDeposited, OpenAccount, Withdraw,
};
use examples::views::Balances;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata as Meta, SharedString, Unit,
};

#[derive(Default)]
struct Cell {
    count: AtomicU64,
    gauge: Mutex<f64>,
    samples: Mutex<Vec<f64>>,
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.count.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.count.fetch_max(value, Ordering::Relaxed);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        *self.gauge.lock().unwrap() += value;
    }
    fn decrement(&self, value: f64) {
        *self.gauge.lock().unwrap() -= value;
    }
    fn set(&self, value: f64) {
        *self.gauge.lock().unwrap() = value;
    }
}

impl HistogramFn for Cell {
    fn record(&self, value: f64) {
        self.samples.lock().unwrap().push(value);
    }
}

/// Every metric by `name{label=value,..}` (labels sorted).
#[derive(Default)]
struct Recorder {
    cells: Mutex<BTreeMap<String, Arc<Cell>>>,
}

impl Recorder {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.cells.lock().unwrap().entry(name).or_default().clone()
    }

    fn count(&self, name: &str) -> u64 {
        self.cells
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.count.load(Ordering::Relaxed))
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        self.cells.lock().unwrap().get(name).map(|c| *c.gauge.lock().unwrap())
    }

    fn samples(&self, name: &str) -> Vec<f64> {
        self.cells
            .lock()
            .unwrap()
            .get(name)
            .map_or_else(Vec::new, |c| c.samples.lock().unwrap().clone())
    }
}

struct Installed(&'static Recorder);

impl metrics::Recorder for Installed {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Meta<'_>) -> Counter {
        Counter::from_arc(self.0.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Meta<'_>) -> Gauge {
        Gauge::from_arc(self.0.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Meta<'_>) -> Histogram {
        Histogram::from_arc(self.0.cell(key))
    }
}

fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<&'static Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder: &'static Recorder = Box::leak(Box::default());
        metrics::set_global_recorder(Installed(recorder)).expect("the only recorder");
        recorder
    })
}

fn open(account: &str) -> BankCommand {
    BankCommand::Open(OpenAccount {
        account: AccountId::new(account),
        owner: "Ada".into(),
    })
}

fn deposit(account: &str, amount: u64) -> BankCommand {
    BankCommand::Deposit(Deposit {
        account: AccountId::new(account),
        amount,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_conflicts_loads_appends_and_lag_are_measured() {
    let metrics = recorder();
    let store = InMemoryStore::new();
    let balances = Projection::new("balances", Balances::default());
    let runner = balances.spawn(store.clone(), Duration::from_millis(20));

    let one = Dispatcher::new(store.clone());
    let other = Dispatcher::new(store.clone());
    one.dispatch(open("m-1")).await.expect("open");
    one.dispatch(deposit("m-1", 10)).await.expect("deposit");
    // `other` moves the stream on; `one`'s cached state is then stale and
    // its next append conflicts, is decided again, and commits.
    other.dispatch(deposit("m-1", 5)).await.expect("deposit");
    one.dispatch(deposit("m-1", 1)).await.expect("deposit after a conflict");
    let refused = one
        .dispatch(BankCommand::Withdraw(Withdraw {
            account: AccountId::new("m-1"),
            amount: 1_000,
        }))
        .await;
    assert!(refused.is_err());
    let mut again = Metadata::new();
    again.command_id = Some("m-dep".into());
    let first = one
        .dispatch_with(deposit("m-1", 2), again.clone())
        .await
        .expect("deposit");
    one.dispatch_with(deposit("m-1", 2), again)
        .await
        .expect("the same deposit again");
    assert!(first.position.is_some());
    // An import appends through the same store call, and is timed too.
    let imported = one
        .append_events::<BankAccount>(
            AccountId::new("m-2"),
            (AccountOpened { owner: "Bo".into() }, MoneyDeposited { amount: 3 }),
            Metadata::new(),
        )
        .await
        .expect("import");
    let head = imported.position.expect("a position");

    let commands = |command: &str, outcome: &str| {
        metrics.count(&format!(
            "es_commands_total{{aggregate=bank_account,command={command},outcome={outcome}}}"
        ))
    };
    assert_eq!(commands("OpenAccount", "committed"), 1);
    assert_eq!(commands("Deposit", "committed"), 4);
    assert_eq!(commands("Deposit", "duplicate"), 1);
    assert_eq!(commands("Withdraw", "rejected"), 1);
    assert_eq!(metrics.count("es_conflicts_total{aggregate=bank_account}"), 1);
    assert_eq!(metrics.count("es_command_retries_total{aggregate=bank_account}"), 1);

    let durations = metrics.samples("es_command_duration_seconds{aggregate=bank_account,outcome=committed}");
    assert_eq!(durations.len(), 5);
    assert!(durations.iter().all(|s| *s > 0.0 && *s < 10.0), "{durations:?}");
    // Seven appends reached the store: six commands' (the conflicting one
    // included; the rejection and the duplicate never got there) and the
    // import's.
    assert_eq!(metrics.samples("es_append_duration_seconds{store=memory}").len(), 7);
    // Loads: each dispatcher's first load, the reload after the conflict,
    // and the check of the rejection decided on cached state.
    assert!(
        metrics
            .samples("es_load_duration_seconds{aggregate=bank_account}")
            .len()
            >= 3
    );

    runner.wait_for(head, Duration::from_secs(5)).await.expect("caught up");
    assert_eq!(
        metrics.gauge("es_subscription_position{subscription=balances}"),
        Some(head as f64)
    );
    assert_eq!(metrics.gauge("es_subscription_lag{subscription=balances}"), Some(0.0));
    runner.stop().await;
}
