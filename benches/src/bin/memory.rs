//! Memory per stored event in the in-memory store:
//! `cargo run --release -p benches --bin memory [-- events accounts]`.
//!
//! Dispatches `events` bank commands (1,000,000 by default: an opening per
//! account, then deposits round-robin over `accounts`, 1,000 by default),
//! drops the dispatcher, and reports the growth of the process's resident
//! memory per stored event. Beside it, the same events' content packed by
//! hand (each 16-byte id, its stream's number and version, and the payload
//! bytes back to back), measured the same way: the floor a store of these
//! events could reach.
//!
//! Resident memory is read from `/proc/self/status` (the workspace forbids
//! `unsafe`, so no counting allocator); at a million events the page
//! granularity is far below the figures.

use benches::workloads::account;
use es_core::{Dispatcher, EventStore, InMemoryStore};
use examples::bank::{AccountId, Deposit, OpenAccount};

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let accounts: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ids: Vec<AccountId> = (0..accounts).map(|i| AccountId(account(i))).collect();

    let before = resident_bytes();
    let store = InMemoryStore::new();
    rt.block_on(async {
        let app = Dispatcher::new(store.clone());
        for id in &ids {
            app.dispatch(OpenAccount {
                account: id.clone(),
                owner: "ada".into(),
            })
            .await
            .expect("opens");
        }
        for i in accounts..events {
            app.dispatch(Deposit {
                account: ids[i % accounts].clone(),
                amount: 1 + (i as u64 % 1_000),
            })
            .await
            .expect("deposits");
        }
    });
    let after = resident_bytes();
    let stored = rt.block_on(store.last_position()).expect("position") as usize;
    assert_eq!(stored, events);

    // The floor: each event's id, stream number, version and payload bytes.
    let floor_before = resident_bytes();
    let mut payload_bytes = 0usize;
    let mut ids: Vec<([u8; 16], u32, u32)> = Vec::with_capacity(events);
    let mut payloads: Vec<u8> = Vec::new();
    let mut offsets: Vec<u32> = Vec::with_capacity(events);
    rt.block_on(store.read_all(
        0,
        usize::MAX,
        es_core::store::ContextFields::ALL,
        |e: &es_core::store::RecordedEvent<'_>| {
            payload_bytes += e.payload.len();
            let account: u32 = e.aggregate_id[4..].parse().unwrap_or(0);
            ids.push((*e.event_id.as_uuid().as_bytes(), account, e.version as u32));
            offsets.push(payloads.len() as u32);
            payloads.extend_from_slice(e.payload);
            std::ops::ControlFlow::Continue(())
        },
    ))
    .expect("reads");
    let floor_after = resident_bytes();
    assert_eq!(ids.len(), events);
    let per_event = (after.saturating_sub(before)) as f64 / events as f64;
    let floor_per_event = (floor_after.saturating_sub(floor_before)) as f64 / events as f64;
    println!("{events} bank events on {accounts} accounts in the in-memory store");
    println!("  store:   {per_event:.0} bytes per event");
    println!(
        "  floor:   {floor_per_event:.0} bytes per event (packed by hand; payloads average {:.1} bytes)",
        payload_bytes as f64 / events as f64
    );
    println!("  ratio:   {:.2} of the floor", per_event / floor_per_event);
    drop((store, ids, offsets, payloads));
}
