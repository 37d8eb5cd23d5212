//! Shared scenarios for the read side, run against each store.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use es_core::store::AppendRequest;
use std::time::Duration;

use es_core::{AppendError, Dispatcher, EventStore, ProcessManager, Projection, StoreError, StreamId};
use examples::bank::{AccountId, BankAccount, CloseAccount, Deposit, OpenAccount, Withdraw};
use examples::transfer::{RequestTransfer, Transfer, TransferProcess, TransferStatus};
use examples::views::{AllBalances, Balances, History, HistoryOf, TotalHeld};

/// Opens accounts, moves money around and runs transfers (with the process)
/// through `app`. Returns how much money went in (deposits minus
/// withdrawals), which must be what the accounts hold.
pub async fn busy_bank<S: EventStore + Clone>(app: &Dispatcher<S>, accounts: usize, rounds: usize) -> u64 {
    let id = |i: usize| AccountId::new(format!("acc-{i:03}"));
    let mut held = 0;
    for i in 0..accounts {
        app.dispatch(OpenAccount {
            account: id(i),
            owner: format!("owner {i}"),
        })
        .await
        .unwrap();
    }
    let process = ProcessManager::new("transfers", TransferProcess);
    for r in 0..rounds {
        for i in 0..accounts {
            let amount = (r * 7 + i * 3) as u64 % 50 + 1;
            app.dispatch(Deposit { account: id(i), amount }).await.unwrap();
            held += amount;
            if (r + i) % 3 == 0
                && app
                    .dispatch(Withdraw {
                        account: id(i),
                        amount: 2,
                    })
                    .await
                    .is_ok()
            {
                held -= 2;
            }
        }
        app.dispatch(RequestTransfer {
            transfer: format!("t{r}"),
            from: id(r % accounts),
            to: id((r + 1) % accounts),
            amount: 10 + r as u64,
        })
        .await
        .unwrap();
        process.catch_up(app).await.unwrap();
    }
    // Settle every transfer.
    process.settle(app).await.unwrap();
    held
}

/// A live projection (inline), a following one (spawned) and a rebuilt one
/// end up the same.
pub async fn rebuild_equals_live<S: EventStore + Clone>(store: S) {
    let live = Projection::new("balances-live", Balances::default());
    let history = Projection::new("history-live", History::default());
    let following = Projection::new("balances-following", Balances::default());
    let runner = following.spawn(store.clone(), Duration::from_millis(20));
    let app = Dispatcher::builder(store.clone())
        .inline(live.clone())
        .inline(history.clone())
        .build();
    let held = busy_bank(&app, 6, 12).await;

    let last = store.last_position().await.unwrap();
    assert_eq!(
        live.position(),
        last,
        "an inline projection is current when dispatch returns"
    );
    following.wait_for(last, Duration::from_secs(10)).await.unwrap();
    runner.stop().await;

    let rebuilt = Projection::new("balances-rebuilt", Balances::default());
    assert_eq!(rebuilt.catch_up(&store).await.unwrap(), last);
    let snapshot = |p: &Projection<Balances>| p.read(Clone::clone);
    assert_eq!(snapshot(&live), snapshot(&rebuilt));
    assert_eq!(snapshot(&following), snapshot(&rebuilt));
    assert_eq!(
        rebuilt.query(TotalHeld),
        u128::from(held),
        "money is neither made nor lost"
    );
    assert_eq!(live.query(AllBalances).len(), 6);

    // Rebuilding in place gives the same again.
    live.rebuild(&store, Balances::default()).await.unwrap();
    assert_eq!(snapshot(&live), snapshot(&rebuilt));
    let rebuilt_history = Projection::new("history-rebuilt", History::default());
    rebuilt_history.catch_up(&store).await.unwrap();
    let q = || HistoryOf {
        account: "acc-002".into(),
    };
    assert_eq!(history.query(q()), rebuilt_history.query(q()));
    assert!(history.query(q()).len() > 12);
}

pub use crate::doubles::CrashingStore;

/// Two transfers (one completes, one is refused by a closed account and
/// refunded), with the process dying after each possible number of writes
/// and restarted: every time, each transfer settles once and no money is
/// made or lost.
pub async fn transfers_survive_a_crash_at_every_step<S: EventStore + Clone>(make: impl AsyncFn() -> S) {
    let ada = AccountId::new("ada");
    let bob = AccountId::new("bob");
    let eve = AccountId::new("eve");
    for allowed in 0.. {
        let store = make().await;
        let app = Dispatcher::new(store.clone());
        for id in [&ada, &bob, &eve] {
            app.dispatch(OpenAccount {
                account: id.clone(),
                owner: id.to_string(),
            })
            .await
            .unwrap();
        }
        app.dispatch(Deposit {
            account: ada.clone(),
            amount: 100,
        })
        .await
        .unwrap();
        app.dispatch(CloseAccount { account: eve.clone() }).await.unwrap();
        for (id, to, amount) in [("t-ok", &bob, 30), ("t-refused", &eve, 20)] {
            app.dispatch(RequestTransfer {
                transfer: id.into(),
                from: ada.clone(),
                to: to.clone(),
                amount,
            })
            .await
            .unwrap();
        }
        // The first life of the process dies after `allowed` writes...
        let dying = CrashingStore::new(store.clone(), allowed);
        let doomed = Dispatcher::new(dying.clone());
        let first = ProcessManager::new("transfers", TransferProcess);
        for _ in 0..10 {
            if first.catch_up(&doomed).await.is_err() {
                break;
            }
        }
        let finished_first_life = !dying.crashed();
        // ...and its next life, on a healthy store, finishes the work.
        let second = ProcessManager::new("transfers", TransferProcess);
        for _ in 0..10 {
            second.catch_up(&app).await.unwrap();
        }
        let transfer = |id: &'static str| {
            let app = app.clone();
            async move { app.load::<Transfer>(&id.to_owned()).await.unwrap() }
        };
        let (ok, refused) = (transfer("t-ok").await, transfer("t-refused").await);
        assert_eq!(ok.status, TransferStatus::Completed, "crash after {allowed} writes");
        assert_eq!(refused.status, TransferStatus::Failed, "crash after {allowed} writes");
        let balance = |id: &AccountId| {
            let (app, id) = (app.clone(), id.clone());
            async move { app.load::<BankAccount>(&id).await.unwrap().balance }
        };
        assert_eq!(
            (balance(&ada).await, balance(&bob).await, balance(&eve).await),
            (70, 30, 0),
            "crash after {allowed} writes"
        );
        let balances = Projection::new("check", Balances::default());
        balances.catch_up(&store).await.unwrap();
        assert_eq!(balances.query(TotalHeld), 100);
        if finished_first_life {
            // Every number of writes below `allowed` crashed the first life.
            assert!(allowed >= 14, "too few crash points were exercised: {allowed}");
            return;
        }
    }
}

/// A sink that refuses every event while its gate is closed, and applies
/// nothing (it only moves its checkpoint) once it is open.
struct Gate {
    open: Arc<std::sync::atomic::AtomicBool>,
    position: u64,
}

impl es_core::subscription::Sink for Gate {
    fn name(&self) -> &str {
        "gate"
    }

    async fn checkpoint(&mut self) -> Result<u64, es_core::SubscriptionError> {
        Ok(self.position)
    }

    fn handles(&self, _name: &str) -> bool {
        true
    }

    fn visit(&mut self, event: &es_core::store::RecordedEvent<'_>) -> Result<(), es_core::SubscriptionError> {
        if self.open.load(Ordering::Relaxed) {
            return Ok(());
        }
        Err(es_core::SubscriptionError::Handler {
            subscription: "gate".into(),
            event_name: event.name.to_owned(),
            position: event.position,
            source: "the gate is closed".into(),
        })
    }

    async fn commit(&mut self, _from: u64, to: u64) -> Result<(), es_core::SubscriptionError> {
        self.position = to;
        Ok(())
    }

    fn abandon(&mut self) {}
}

/// A runner's lag is counted in events, not positions: on a store whose
/// positions leave gaps (a refused append on PostgreSQL, the records
/// between events on NATS) a runner six events behind says 6; once it
/// has caught up it says 0.
pub async fn lag_counts_events<S: EventStore + Clone>(store: S) {
    use es_core::store::{EventStoreExt, ExpectedVersion, NewEvent};
    use es_core::subscription::{RunOptions, spawn};
    let app = Dispatcher::new(store.clone());
    let account = AccountId::new("lag");
    app.dispatch(OpenAccount {
        account: account.clone(),
        owner: "Lag".into(),
    })
    .await
    .unwrap();
    for amount in [1, 2, 3] {
        app.dispatch(Deposit {
            account: account.clone(),
            amount,
        })
        .await
        .unwrap();
    }
    // A batch refused for a reused event id: nothing stored, though a store
    // may have drawn positions for it.
    let taken = store.read_all_vec(0, 1).await.unwrap()[0].event_id;
    let events = [
        NewEvent {
            event_id: es_core::EventId::new(),
            name: "account.deposited",
            schema_version: 1,
            payload: b"{\"amount\":9}",
        },
        NewEvent {
            event_id: taken,
            name: "account.deposited",
            schema_version: 1,
            payload: b"{\"amount\":9}",
        },
    ];
    let refused = store
        .append(AppendRequest {
            stream: &StreamId::new("bank_account", "lag"),
            expected: ExpectedVersion::Any,
            events: &events,
            metadata: b"",
            command_id: None,
            recorded_at: es_core::Timestamp::now(),
        })
        .await;
    assert!(
        matches!(refused, Err(AppendError::Store(StoreError::DuplicateEventId { .. }))),
        "{refused:?}"
    );
    for amount in [4, 5] {
        app.dispatch(Deposit {
            account: account.clone(),
            amount,
        })
        .await
        .unwrap();
    }
    assert_eq!(store.events_after(0).await.unwrap(), 6);
    let all = store.read_all_vec(0, 100).await.unwrap();
    assert_eq!(store.events_after(all[3].position).await.unwrap(), 2);
    assert_eq!(store.events_after(all[5].position).await.unwrap(), 0);

    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let options = RunOptions {
        poll: Duration::from_millis(20),
        retry_min: Duration::from_millis(10),
        retry_max: Duration::from_millis(20),
        coalesce: Duration::ZERO,
    };
    let runner = spawn(
        store.clone(),
        Gate {
            open: open.clone(),
            position: 0,
        },
        options,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while runner.status().failures < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the runner never failed: {:?}",
            runner.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = runner.status();
    assert_eq!((status.position, status.lag), (0, 6), "{status:?}");
    open.store(true, Ordering::Relaxed);
    let end = all[5].position;
    runner.wait_for(end, Duration::from_secs(10)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while runner.status().lag != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the lag stayed {:?}",
            runner.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!((runner.status().position, runner.status().skipped), (end, 0));
    runner.stop().await;
}
