//! Kills a writer process with SIGKILL in the middle of its appends and
//! checks what it left behind.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use es_core::store::EventStoreExt;
use es_core::{EventStore, StreamId};

/// Starts `writer` with `args`, waits until it is appending, lets it run for
/// `for_ms`, then kills it with SIGKILL.
pub fn run_and_kill(writer: &str, args: &[&str], for_ms: u64) {
    run_until_and_kill(writer, args, "writing", for_ms);
}

/// Starts `program` with `args`, waits until it prints `ready`, lets it run
/// for `for_ms`, then kills it with SIGKILL.
pub fn run_until_and_kill(program: &str, args: &[&str], ready: &str, for_ms: u64) {
    let writer = program;
    let mut child = Command::new(writer)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read from the writer");
    assert_eq!(line.trim(), ready, "the child did not start");
    std::thread::sleep(Duration::from_millis(for_ms));
    child.kill().expect("SIGKILL the writer");
    let status = child.wait().expect("reap the writer");
    assert!(!status.success(), "the writer was killed, not finished");
}

/// Every batch the killed writer left is whole: all its events, in order,
/// at consecutive versions. Returns how many batches there are.
pub async fn check_whole_batches<S: EventStore>(store: &S) -> usize {
    let mut batches = 0;
    for s in 0..4 {
        let stream = StreamId::new("crash", format!("s{s}"));
        let events = store.read_stream_vec(&stream, 1).await.expect("read");
        let mut i = 0;
        while i < events.len() {
            let head = String::from_utf8_lossy(&events[i].payload).into_owned();
            let parts: Vec<&str> = head.splitn(4, '/').collect();
            let (batch, size): (u64, usize) = (parts[0].parse().unwrap(), parts[2].parse().unwrap());
            assert_eq!(
                parts[1], "0",
                "stream {stream}: a batch starts mid-way at version {}",
                events[i].version
            );
            assert!(i + size <= events.len(), "stream {stream}: batch {batch} is cut short");
            for (k, e) in events[i..i + size].iter().enumerate() {
                let text = String::from_utf8_lossy(&e.payload);
                assert!(
                    text.starts_with(&format!("{batch}/{k}/{size}/")),
                    "stream {stream}: batch {batch} is torn"
                );
                assert_eq!(e.version, events[i].version + k as u64);
            }
            i += size;
            batches += 1;
        }
    }
    batches
}
