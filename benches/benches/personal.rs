//! Personal data: what sealing costs. Each group runs the framework on a
//! member whose contact details are two `Personal<String>` fields
//! ("framework") beside the framework on the same events with plain
//! `String`s ("baseline"), in the same run: the ratio is the price of
//! sealing and opening. Two more groups measure the AEAD choice: sealing
//! and opening the same values with AES-256-GCM (chosen) and
//! XChaCha20-Poly1305.

use std::hint::black_box;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, Generate, Nonce, Payload};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use es_core::personal::{MasterKey, Personal, StaticKeys};
use es_core::prelude::*;
use es_core::{Dispatcher, InMemoryStore};
use serde::{Deserialize, Serialize};

/// A member's contact details changed (personal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "member.contact_changed")]
pub struct ContactChanged {
    member: String,
    #[personal(subject = member)]
    name: Personal<String>,
    #[personal(subject = member)]
    email: Personal<String>,
}

/// The same event with plain fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "member.contact_changed")]
pub struct PlainContactChanged {
    member: String,
    name: String,
    email: String,
}

/// A member's events.
#[derive(Debug, Clone, PartialEq, Eq, Event)]
pub enum MemberEvent {
    /// See [`ContactChanged`].
    Changed(ContactChanged),
}

/// A plain member's events.
#[derive(Debug, Clone, PartialEq, Eq, Event)]
pub enum PlainMemberEvent {
    /// See [`PlainContactChanged`].
    Changed(PlainContactChanged),
}

/// Members refuse nothing.
#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// Change a member's contact details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = Member)]
pub struct ChangeContact {
    #[aggregate_id]
    member: String,
    name: String,
    email: String,
}

/// The same for a plain member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(aggregate = PlainMember)]
pub struct ChangePlainContact {
    #[aggregate_id]
    member: String,
    name: String,
    email: String,
}

/// A member: how often the contact changed, and whether an address is
/// known (so each apply reads a personal value).
#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "member", id = String, event = MemberEvent, error = Never)]
pub struct Member {
    changes: u64,
    contactable: bool,
}

#[es_core::handlers]
impl Member {
    #[handle]
    fn change(&self, cmd: ChangeContact) -> Result<ContactChanged, Never> {
        Ok(ContactChanged {
            member: cmd.member,
            name: Personal::new(cmd.name),
            email: Personal::new(cmd.email),
        })
    }

    #[apply]
    fn changed(&mut self, e: &ContactChanged) {
        self.changes += 1;
        self.contactable = e.email.get().is_some_and(|e| !e.is_empty());
    }
}

/// The member with plain fields.
#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "plain_member", id = String, event = PlainMemberEvent, error = Never)]
pub struct PlainMember {
    changes: u64,
    contactable: bool,
}

#[es_core::handlers]
impl PlainMember {
    #[handle]
    fn change(&self, cmd: ChangePlainContact) -> Result<PlainContactChanged, Never> {
        Ok(PlainContactChanged {
            member: cmd.member,
            name: cmd.name,
            email: cmd.email,
        })
    }

    #[apply]
    fn changed(&mut self, e: &PlainContactChanged) {
        self.changes += 1;
        self.contactable = !e.email.is_empty();
    }
}

const NAME: &str = "Ada Lovelace";
const EMAIL: &str = "ada.lovelace@analytical.example";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime")
}

fn store() -> InMemoryStore {
    InMemoryStore::new().with_keys(StaticKeys::new(MasterKey::new("bench", [7; 32]), []))
}

fn change(member: &str) -> ChangeContact {
    ChangeContact {
        member: member.to_owned(),
        name: NAME.to_owned(),
        email: EMAIL.to_owned(),
    }
}

fn change_plain(member: &str) -> ChangePlainContact {
    ChangePlainContact {
        member: member.to_owned(),
        name: NAME.to_owned(),
        email: EMAIL.to_owned(),
    }
}

/// 1,000 commands on 100 members, each sealing two fields (the members'
/// keys are created by the first command of each, as in a real service).
fn commands(c: &mut Criterion) {
    let rt = runtime();
    let members: Vec<String> = (0..100).map(|i| format!("m-{i}")).collect();
    let mut g = c.benchmark_group("personal_1000_commands");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    g.bench_function("framework", |b| {
        b.iter_batched(
            || Dispatcher::new(store()),
            |app| {
                rt.block_on(async {
                    for i in 0..1_000 {
                        app.dispatch(change(&members[i % 100])).await.expect("commits");
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("baseline", |b| {
        b.iter_batched(
            || Dispatcher::new(store()),
            |app| {
                rt.block_on(async {
                    for i in 0..1_000 {
                        app.dispatch(change_plain(&members[i % 100])).await.expect("commits");
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// A cold load (no cached state) of one member with 10,000 events, each
/// opening two sealed fields (the member's key cached, as it is after the
/// first load of a process).
fn cold_load(c: &mut Criterion) {
    let rt = runtime();
    let sealed = store();
    let plain = store();
    rt.block_on(async {
        let writer = Dispatcher::new(sealed.clone());
        let plain_writer = Dispatcher::new(plain.clone());
        for _ in 0..10_000 {
            writer.dispatch(change("ada")).await.expect("commits");
            plain_writer.dispatch(change_plain("ada")).await.expect("commits");
        }
    });
    let app = Dispatcher::builder(sealed).cache_capacity(0).build();
    let plain_app = Dispatcher::builder(plain).cache_capacity(0).build();
    let loaded = rt.block_on(app.load::<Member>("ada")).expect("loads");
    assert_eq!((loaded.changes, loaded.contactable), (10_000, true));
    let loaded = rt.block_on(plain_app.load::<PlainMember>("ada")).expect("loads");
    assert_eq!((loaded.changes, loaded.contactable), (10_000, true));
    let mut g = c.benchmark_group("personal_cold_load_10000_events");
    g.sample_size(20);
    g.bench_function("framework", |b| {
        b.iter(|| {
            rt.block_on(app.load::<Member>(black_box("ada")))
                .expect("loads")
                .changes
        })
    });
    g.bench_function("baseline", |b| {
        b.iter(|| {
            rt.block_on(plain_app.load::<PlainMember>(black_box("ada")))
                .expect("loads")
                .changes
        })
    });
    g.finish();
}

/// The AEAD choice: sealing 10,000 values the size of an e-mail address,
/// each with a fresh random nonce and 64 bytes of associated data, then
/// opening them, with AES-256-GCM ("framework", the choice: AES
/// instructions make it the faster; its 96-bit random nonces allow 2^32
/// values per key, and each data key seals one subject's values) and
/// XChaCha20-Poly1305 ("baseline": 192-bit nonces, safe to draw at random
/// for any number of values, slower here).
fn aead_choice(c: &mut Criterion) {
    use aes_gcm::Aes256Gcm;
    use chacha20poly1305::XChaCha20Poly1305;
    use chacha20poly1305::aead::KeyInit;

    let xchacha = XChaCha20Poly1305::new(&[9u8; 32].into());
    let aes = Aes256Gcm::new(&[9u8; 32].into());
    let mut g = c.benchmark_group("personal_aead_seal_10000_values");
    g.sample_size(20);
    g.bench_function("baseline", |b| b.iter(|| seal_values(&xchacha, 10_000)));
    g.bench_function("framework", |b| b.iter(|| seal_values(&aes, 10_000)));
    g.finish();

    // Opening: what a load pays per personal value.
    let (nonce_x, sealed_x) = sealed_value(&xchacha);
    let (nonce_a, sealed_a) = sealed_value(&aes);
    let mut g = c.benchmark_group("personal_aead_open_10000_values");
    g.sample_size(20);
    g.bench_function("baseline", |b| {
        b.iter(|| open_values(&xchacha, &nonce_x, &sealed_x, 10_000))
    });
    g.bench_function("framework", |b| {
        b.iter(|| open_values(&aes, &nonce_a, &sealed_a, 10_000))
    });
    g.finish();
}

/// The associated data of each value sealed in the AEAD groups.
const AAD: [u8; 64] = [0x42; 64];

/// Seals [`EMAIL`] `n` times with `cipher`, each under a fresh random
/// nonce; returns the bytes sealed.
fn seal_values<A: Aead>(cipher: &A, n: usize) -> usize
where
    Nonce<A>: Generate,
{
    (0..n).map(|_| sealed_value(cipher).1.len()).sum()
}

/// [`EMAIL`] sealed by `cipher` under a fresh random nonce, and the nonce.
fn sealed_value<A: Aead>(cipher: &A) -> (Nonce<A>, Vec<u8>)
where
    Nonce<A>: Generate,
{
    let nonce = Nonce::<A>::generate();
    let payload = Payload {
        msg: EMAIL.as_bytes(),
        aad: &AAD,
    };
    let sealed = cipher.encrypt(&nonce, payload).expect("seals");
    (nonce, sealed)
}

/// Opens `sealed` `n` times; returns the bytes opened.
fn open_values<A: Aead>(cipher: &A, nonce: &Nonce<A>, sealed: &[u8], n: usize) -> usize {
    (0..n)
        .map(|_| {
            let payload = Payload {
                msg: black_box(sealed),
                aad: &AAD,
            };
            cipher.decrypt(nonce, payload).expect("opens").len()
        })
        .sum()
}

criterion_group!(benches, commands, cold_load, aead_choice);
criterion_main!(benches);
