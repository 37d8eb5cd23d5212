//! Event ids are UUID v7 and monotonic within this process, millisecond or
//! not (RFC 9562, section 6.2), also while another thread makes ids for old
//! times (an import).

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use es_core::{EventId, Timestamp};

fn millis(id: EventId) -> u64 {
    let (secs, nanos) = id.as_uuid().get_timestamp().expect("a v7 timestamp").to_unix();
    secs * 1_000 + u64::from(nanos) / 1_000_000
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

#[test]
fn ids_from_one_thread_increase_even_within_a_millisecond() {
    let before = now_millis();
    // Far more than 4,096 ids a millisecond, so the counter runs out and
    // carries into the timestamp many times.
    let ids: Vec<EventId> = (0..300_000).map(|_| EventId::new()).collect();
    let after = now_millis();
    for pair in ids.windows(2) {
        assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
    }
    let same_millisecond = ids.windows(2).filter(|p| millis(p[0]) == millis(p[1])).count();
    assert!(
        same_millisecond > 1_000,
        "only {same_millisecond} pairs shared a millisecond"
    );
    for id in [ids[0], ids[ids.len() - 1]] {
        assert_eq!(id.as_uuid().get_version_num(), 7);
        // A counter that ran out moves the time on, but never far.
        assert!(millis(id) >= before && millis(id) <= after + 1_000, "{id}");
    }
}

#[test]
fn ids_from_many_threads_are_unique_and_each_thread_sees_them_increase() {
    let threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| (0..50_000).map(|_| EventId::new()).collect::<Vec<_>>()))
        .collect();
    let mut all = HashSet::new();
    for thread in threads {
        let ids = thread.join().expect("thread");
        assert!(ids.windows(2).all(|p| p[0] < p[1]));
        all.extend(ids);
    }
    assert_eq!(all.len(), 200_000);
    // An id made after the others were seen sorts after all of them.
    let later = EventId::new();
    assert!(all.iter().all(|id| *id < later));
}

#[test]
fn a_time_far_back_keeps_its_time_and_leaves_the_sequence_alone() {
    let now = Timestamp::now();
    let a = EventId::at(now);
    let b = EventId::at(now);
    assert!(a < b);
    // A clock stepped back a little: the sequence continues.
    let stepped_back = Timestamp::from_micros(now.as_micros() - 2_000_000);
    let c = EventId::at(stepped_back);
    assert!(b < c && millis(c) >= millis(b));
    // An old event imported with its own time keeps that time, and the ids
    // made now (here and on the other tests' threads) go on increasing
    // across it: each pair below mostly shares a millisecond, where a
    // sequence started again from the old time would have restarted the
    // counter at random.
    let old = Timestamp::from(SystemTime::now() - Duration::from_secs(86_400 * 365));
    for _ in 0..10_000 {
        let before = EventId::new();
        let imported = EventId::at(old);
        assert_eq!(millis(imported), u64::try_from(old.as_millis()).expect("after 1970"));
        let after = EventId::new();
        assert!(imported < before && before < after, "{before} then {after}");
    }
}
