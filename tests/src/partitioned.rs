//! What the partitioned runner processes (`src/bin/partitioned.rs`,
//! `src/bin/nats_partitioned.rs`) share: their options and their life
//! until they are killed.

use std::time::Duration;

use es_core::subscription::{PartitionOptions, PartitionRunner, RunOptions};

/// The runner options from the command line's lease and heartbeat, in
/// milliseconds.
pub fn options(lease_ms: &str, heartbeat_ms: &str) -> PartitionOptions {
    let ms = |s: &str| Duration::from_millis(s.parse().expect("milliseconds"));
    PartitionOptions {
        run: RunOptions::polling(Duration::from_millis(100)),
        lease: ms(lease_ms),
        heartbeat: ms(heartbeat_ms),
    }
}

/// Waits for `runner`'s first heartbeat, prints `running <name>`, and runs
/// until the process is killed; a runner that stops panics, saying why.
pub async fn run_until_killed(runner: PartitionRunner) -> ! {
    assert!(
        runner.wait_until(Duration::from_secs(30), |s| s.live > 0).await,
        "no heartbeat: {:?}",
        runner.status()
    );
    println!("running {}", runner.status().runner);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = runner.status();
        if status.stopped {
            panic!("the runner stopped: {status:?}");
        }
    }
}
