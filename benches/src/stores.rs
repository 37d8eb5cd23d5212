//! Helpers the store benchmarks share: fresh names, the runtime, filling a
//! stream, the many-writer workload.

use std::sync::atomic::{AtomicU64, Ordering};

use es_core::{Dispatcher, EventStore, StreamId};

use crate::baseline::Command;
use crate::sql::framework_deposits;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// `prefix` with this process's id and a counter: a fresh schema or prefix.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A two-thread runtime, as the machine has two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Commands per iteration of the command benchmarks.
pub const COMMANDS: usize = 1_000;
/// Concurrent writers in the many-writer benchmarks.
pub const TASKS: usize = 8;

/// A baseline deposit of 1 on `account`.
pub fn deposit(account: &str) -> Command {
    Command::Deposit {
        account: account.to_owned(),
        amount: 1,
    }
}

/// A baseline opening of `account`.
pub fn open(account: &str) -> Command {
    Command::Open {
        account: account.to_owned(),
        owner: "ada".into(),
    }
}

/// `n` stored events for one account, appended through the store in batches.
pub async fn fill<S: EventStore>(store: &S, account: &str, n: usize) {
    use es_core::Event;
    let stream = StreamId::new("bank_account", account);
    let (events, _) = crate::workloads::events(n);
    let encoded: Vec<(&'static str, u32, Vec<u8>)> = events
        .iter()
        .map(|e| (e.name(), e.version(), e.encode(&es_core::Json).expect("encodes")))
        .collect();
    crate::workloads::append_encoded(store, &stream, &encoded).await;
}

/// `TASKS` tasks, each making its share of the deposits on its own account.
pub async fn framework_on_own_accounts<S: EventStore + Clone>(app: Dispatcher<S>) {
    framework_writers(app, TASKS).await
}

/// `tasks` tasks, each making `COMMANDS / tasks` deposits on its own account.
pub async fn framework_writers<S: EventStore + Clone>(app: Dispatcher<S>, tasks: usize) {
    let tasks: Vec<_> = (0..tasks)
        .map(|t| {
            let app = app.clone();
            tokio::spawn(async move { framework_deposits(&app, &format!("t{t}"), COMMANDS / tasks).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}

/// The PostgreSQL baselines of the many-writer workload.
#[derive(Debug, Clone, Copy)]
pub enum PgWriters {
    /// Each command loads its stream, folds, decides, inserts.
    Naive,
    /// State cached by its only writer; one transaction per command.
    Cached,
    /// State cached; appends handed to one committer ([`crate::sql::PgCommitter`]).
    OneCommitter,
}

/// `tasks` tasks, each opening its own account and making
/// `COMMANDS / tasks` deposits on it, the hand-written way `how`.
pub async fn pg_writers(bank: &crate::sql::PgBank, how: PgWriters, tasks: usize) {
    use crate::sql::{PgCachedAccount, PgCommitter};
    let committer = matches!(how, PgWriters::OneCommitter).then(|| PgCommitter::start(bank));
    let tasks: Vec<_> = (0..tasks)
        .map(|t| {
            let bank = bank.clone();
            let committer = committer.clone();
            tokio::spawn(async move {
                let account = format!("t{t}");
                let commands = std::iter::once(open(&account))
                    .chain(std::iter::repeat_with(|| deposit(&account)).take(COMMANDS / tasks));
                match how {
                    PgWriters::Naive => {
                        for cmd in commands {
                            bank.handle(&cmd).await.expect("accepted");
                        }
                    }
                    PgWriters::Cached | PgWriters::OneCommitter => {
                        let mut writer = PgCachedAccount::new(&bank, committer.as_ref(), &account);
                        for cmd in commands {
                            writer.handle(&cmd).await.expect("accepted");
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}
