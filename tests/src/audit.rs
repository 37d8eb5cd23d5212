//! The audit trail under attack: a store is filled through the dispatcher
//! and sealed, then changed behind the library's back with the database's
//! own means (SQL on the file or the server), and verification must name
//! the place. One suite; a store joins through a [`Raw`] handle.

use es_core::audit::{self, Problem, Report, Seal, SealKey, Sealer, VerifyOptions};
use es_core::store::{EventStoreExt, Heads, Link, StoredEvent};
use es_core::{Dispatcher, EventStore, StreamId};
use examples::bank::{AccountId, BankAccount, Deposit, OpenAccount, Withdraw};

/// The database under a store, written to directly.
pub enum Raw {
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL pool and the store's schema.
    Postgres(sqlx::PgPool, String),
}

/// A value bound to a statement.
enum Bind {
    Int(i64),
    Bytes(Vec<u8>),
}

impl Raw {
    /// Runs `sql` (`{t}` stands for the events table, `?1`, `?2` for the
    /// binds: rewritten to `$1`, `$2` for PostgreSQL).
    async fn exec(&self, sql: &str, binds: Vec<Bind>) {
        match self {
            Raw::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let sql = sql.replace("{t}", "es_events");
                let params: Vec<Box<dyn rusqlite::ToSql>> = binds
                    .into_iter()
                    .map(|b| -> Box<dyn rusqlite::ToSql> {
                        match b {
                            Bind::Int(i) => Box::new(i),
                            Bind::Bytes(v) => Box::new(v),
                        }
                    })
                    .collect();
                conn.execute(&sql, rusqlite::params_from_iter(params.iter()))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Raw::Postgres(pool, schema) => {
                let sql = sql
                    .replace("{t}", &format!("\"{schema}\".events"))
                    .replace("?1", "$1")
                    .replace("?2", "$2");
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for b in binds {
                    q = match b {
                        Bind::Int(i) => q.bind(i),
                        Bind::Bytes(v) => q.bind(v),
                    };
                }
                q.execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    /// Sets the payload of the event at `position`.
    pub async fn set_payload(&self, position: u64, payload: &[u8]) {
        if let Raw::Sqlite(path) = self {
            // In its packed cell (see `es_sqlite::packed`).
            return crate::sqlite::set_payload(path, position, payload);
        }
        self.exec(
            "UPDATE {t} SET payload = ?1 WHERE position = ?2",
            vec![Bind::Bytes(payload.to_vec()), Bind::Int(position as i64)],
        )
        .await;
    }

    /// Sets the metadata of the event at `position`.
    pub async fn set_metadata(&self, position: u64, metadata: &[u8]) {
        self.exec(
            "UPDATE {t} SET metadata = ?1 WHERE position = ?2",
            vec![Bind::Bytes(metadata.to_vec()), Bind::Int(position as i64)],
        )
        .await;
    }

    /// Sets the stored link of the event at `position`.
    pub async fn set_link(&self, position: u64, link: Link) {
        self.exec(
            "UPDATE {t} SET link = ?1 WHERE position = ?2",
            vec![Bind::Bytes(link.0.to_vec()), Bind::Int(position as i64)],
        )
        .await;
    }

    /// Deletes the event at `position`.
    pub async fn delete(&self, position: u64) {
        self.exec("DELETE FROM {t} WHERE position = ?1", vec![Bind::Int(position as i64)])
            .await;
    }

    /// Deletes every seal.
    pub async fn delete_seals(&self) {
        self.exec("DELETE FROM {t} WHERE aggregate_type = 'es.audit'", vec![])
            .await;
    }
}

/// What a filled store holds: three accounts, a seal of their events, and
/// events after the seal.
pub struct Filled {
    /// The operator's key.
    pub key: SealKey,
    /// The head exported after the seal.
    pub head: Seal,
    /// The events as stored, in log order.
    pub log: Vec<StoredEvent>,
}

impl Filled {
    /// The event at `version` of account `account`.
    pub fn event(&self, account: &str, version: u64) -> &StoredEvent {
        let stream = StreamId::new("bank_account", account);
        self.log
            .iter()
            .find(|e| e.stream == stream && e.version == version)
            .unwrap_or_else(|| panic!("no version {version} of {account}"))
    }
}

fn account(id: &str) -> AccountId {
    AccountId(id.to_owned())
}

/// Fills `store`: accounts `a`, `b`, `c` with a few deposits and
/// withdrawals, sealed, then two more deposits on `a`.
pub async fn fill<S: EventStore + Clone>(store: &S) -> Filled {
    let app = Dispatcher::new(store.clone());
    for id in ["a", "b", "c"] {
        app.dispatch(OpenAccount {
            account: account(id),
            owner: format!("owner {id}"),
        })
        .await
        .unwrap();
    }
    for round in 1..=3_u64 {
        for id in ["a", "b", "c"] {
            app.dispatch(Deposit {
                account: account(id),
                amount: 100 * round,
            })
            .await
            .unwrap();
        }
    }
    app.dispatch(Withdraw {
        account: account("c"),
        amount: 50,
    })
    .await
    .unwrap();
    let key = SealKey::generate();
    let head = Sealer::new(store.clone(), SealKey::from_base64(&key.to_base64()).unwrap())
        .seal_now()
        .await
        .unwrap()
        .expect("a seal");
    for amount in [7, 8] {
        app.dispatch(Deposit {
            account: account("a"),
            amount,
        })
        .await
        .unwrap();
    }
    let log = store.read_all_vec(0, 1_000).await.unwrap();
    Filled { key, head, log }
}

/// Verifies with the operator's key and, if given, the exported head.
pub async fn check<S: EventStore>(store: &S, filled: &Filled, head: bool) -> Report {
    let options = VerifyOptions {
        trusted: vec![filled.key.public_key()],
        head: head.then(|| filled.head.clone()),
        ..VerifyOptions::default()
    };
    audit::verify(store, &options, |_, _| {}).await.unwrap()
}

fn assert_in_range(problem: &Problem, position: u64) {
    let (first, last) = match problem {
        Problem::SealMismatch { first, last, .. } | Problem::HeadMismatch { first, last, .. } => (*first, *last),
        other => panic!("expected a mismatch naming a range, got {other}"),
    };
    assert!(
        (first..=last).contains(&position),
        "{problem} should contain position {position}"
    );
}

/// A store written only through the library verifies, with and without
/// the head, and an inclusion proof of each sealed event checks offline.
pub async fn a_clean_store_verifies<S: EventStore + Clone>(store: S, _raw: Raw) {
    let filled = fill(&store).await;
    let report = check(&store, &filled, true).await;
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.events, filled.log.len() as u64);
    assert_eq!(report.seals, 1);
    assert_eq!(report.streams, 4);
    assert_eq!(report.unsealed, 3, "the seal and the two deposits after it");
    assert!(report.head_checked);
    for e in filled.log.iter().filter(|e| e.position <= filled.head.position) {
        let proof = audit::prove(&store, e.position, None).await.unwrap();
        assert_eq!(audit::check_proof(&proof, &filled.key.public_key()).unwrap(), e.link);
    }
}

/// A changed payload (the deposit of 100.00 made 999,999.99): the event is
/// named, and a dispatcher that verifies chains refuses to load the
/// account while one that does not decides on the forged balance.
pub async fn a_changed_payload<S: EventStore + Clone>(store: S, raw: Raw) {
    let filled = fill(&store).await;
    let target = filled.event("a", 2);
    let forged = String::from_utf8(target.payload.clone())
        .unwrap()
        .replace("100", "99999999");
    assert_ne!(forged.as_bytes(), &target.payload[..]);
    raw.set_payload(target.position, forged.as_bytes()).await;
    let report = check(&store, &filled, true).await;
    assert_eq!(
        report.problems,
        vec![Problem::Changed {
            stream: target.stream.clone(),
            version: 2,
            position: target.position
        }]
    );
    let trusting = Dispatcher::new(store.clone());
    let loaded = trusting.load::<BankAccount>(account("a")).await.unwrap();
    assert!(
        format!("{loaded:?}").contains("99999999") || format!("{loaded:?}").contains("100000"),
        "{loaded:?}"
    );
    let careful = Dispatcher::builder(store.clone()).verify_chains(true).build();
    let err = careful.load::<BankAccount>(account("a")).await.unwrap_err().to_string();
    assert!(
        err.contains("version 2 of stream `bank_account/a`") && err.contains(&format!("position {}", target.position)),
        "{err}"
    );
}

/// A changed metadata value is a changed event.
pub async fn a_changed_metadata_value<S: EventStore + Clone>(store: S, raw: Raw) {
    let filled = fill(&store).await;
    let target = filled.event("b", 3);
    raw.set_metadata(target.position, br#"{"user":"mallory"}"#).await;
    let report = check(&store, &filled, false).await;
    assert_eq!(
        report.problems,
        vec![Problem::Changed {
            stream: target.stream.clone(),
            version: 3,
            position: target.position
        }]
    );
}

/// A deleted event in the middle of a stream: the stream skips a version
/// there, and the seal covering it no longer matches.
pub async fn a_deleted_middle_event<S: EventStore + Clone>(store: S, raw: Raw) {
    let filled = fill(&store).await;
    let target = filled.event("b", 2);
    let next = filled.event("b", 3);
    raw.delete(target.position).await;
    let report = check(&store, &filled, false).await;
    assert_eq!(
        report.problems[0],
        Problem::Missing {
            stream: target.stream.clone(),
            expected: 2,
            found: 3,
            position: next.position
        }
    );
    assert_in_range(&report.problems[1], target.position);
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
}

/// The last events of a stream, covered by a seal, deleted: no chain shows
/// it (a chain has no end marker); the seal does, and names the range.
pub async fn a_deleted_tail_after_a_seal<S: EventStore + Clone>(store: S, raw: Raw) {
    let filled = fill(&store).await;
    let last = filled.event("c", 5);
    raw.delete(last.position).await;
    let report = check(&store, &filled, false).await;
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_in_range(&report.problems[0], last.position);
}

/// Two events' payloads swapped: the first of them is named.
pub async fn two_events_swapped<S: EventStore + Clone>(store: S, raw: Raw) {
    let filled = fill(&store).await;
    let (x, y) = (filled.event("a", 2), filled.event("a", 3));
    raw.set_payload(x.position, &y.payload).await;
    raw.set_payload(y.position, &x.payload).await;
    let report = check(&store, &filled, false).await;
    assert_eq!(
        report.problems.first(),
        Some(&Problem::Changed {
            stream: x.stream.clone(),
            version: 2,
            position: x.position
        })
    );
}

/// Every link recomputed as a store would have after `change`, in log order.
async fn relink(raw: &Raw, log: &[StoredEvent], change: impl Fn(&mut StoredEvent)) {
    let mut heads = Heads::default();
    for e in log {
        let mut e = e.clone();
        change(&mut e);
        let link = heads.advance(&e.as_recorded());
        if link != e.link {
            raw.set_link(e.position, link).await;
        }
    }
}

/// A forged event whose stream's chain was recomputed from it on: every
/// chain holds, the seal does not, and names a range holding the event.
pub async fn a_forged_event_with_its_chain_recomputed<S: EventStore + Clone>(store: S, raw: Raw) {
    let filled = fill(&store).await;
    let target = filled.event("b", 2).clone();
    let forged = String::from_utf8(target.payload.clone()).unwrap().replace("100", "900");
    raw.set_payload(target.position, forged.as_bytes()).await;
    relink(&raw, &filled.log, |e| {
        if e.position == target.position {
            e.payload = forged.clone().into_bytes();
        }
    })
    .await;
    let report = check(&store, &filled, false).await;
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_in_range(&report.problems[0], target.position);
}

/// The whole store rewritten consistently (an early event changed, every
/// link recomputed, the seals replaced by ones signed with the attacker's
/// own key): every chain holds; only the operator's key and the exported
/// head catch it.
pub async fn a_store_rewritten_whole<S: EventStore + Clone>(store: S, raw: Raw) {
    let filled = fill(&store).await;
    let target = filled.event("a", 1).clone();
    let forged = String::from_utf8(target.payload.clone())
        .unwrap()
        .replace("owner a", "mallory");
    raw.set_payload(target.position, forged.as_bytes()).await;
    raw.delete_seals().await;
    let kept: Vec<StoredEvent> = filled
        .log
        .iter()
        .filter(|e| e.stream != audit::seal_stream())
        .cloned()
        .collect();
    relink(&raw, &kept, |e| {
        if e.position == target.position {
            e.payload = forged.clone().into_bytes();
        }
    })
    .await;
    // Without seals or a head, nothing is left to catch it.
    let blind = audit::verify(&store, &VerifyOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert!(blind.is_clean(), "{:?}", blind.problems);
    assert_eq!(blind.seals, 0);
    // The attacker seals with a key of their own.
    Sealer::new(store.clone(), SealKey::generate())
        .seal_now()
        .await
        .unwrap();
    let blind = audit::verify(&store, &VerifyOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert!(blind.is_clean() && blind.any_key, "{:?}", blind.problems);
    // The operator's key refuses the seal; the exported head names where.
    let report = check(&store, &filled, false).await;
    assert!(
        matches!(&report.problems[..], [Problem::BadSeal { detail, .. }] if detail.contains("not a trusted key")),
        "{:?}",
        report.problems
    );
    let report = check(&store, &filled, true).await;
    let mismatch = report
        .problems
        .iter()
        .find(|p| matches!(p, Problem::HeadMismatch { .. }))
        .unwrap_or_else(|| panic!("no head mismatch in {:?}", report.problems));
    assert_in_range(mismatch, target.position);
}

/// Generates one test per attack for a store: `$make` returns a future of
/// `Option<(store, Raw)>` (`None` to skip, after saying why).
#[macro_export]
macro_rules! audit_attacks {
    ($make:expr) => {
        $crate::audit_attacks!(@cases $make;
            a_clean_store_verifies,
            a_changed_payload,
            a_changed_metadata_value,
            a_deleted_middle_event,
            a_deleted_tail_after_a_seal,
            two_events_swapped,
            a_forged_event_with_its_chain_recomputed,
            a_store_rewritten_whole,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let make = $make;
                if let Some((store, raw)) = make().await {
                    $crate::audit::$case(store, raw).await;
                }
            }
        )*
    };
}
