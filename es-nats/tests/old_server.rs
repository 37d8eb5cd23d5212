//! A server older than es-nats needs is refused at connect, with the
//! version found and the one needed. Runs the old `nats-server` at
//! `$ES_NATS_OLD_SERVER`, else Debian's (`/usr/sbin/nats-server`, 2.9.10),
//! when it is there and older than [`es_nats::MIN_SERVER`].

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use es_core::StoreError;
use es_nats::{NatsOptions, NatsStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_older_than_needed_is_refused_naming_both_versions() {
    let binary = std::env::var("ES_NATS_OLD_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".to_owned());
    let Ok(output) = Command::new(&binary).arg("--version").output() else {
        eprintln!("*** skipping: no old nats-server at {binary} (set ES_NATS_OLD_SERVER)");
        return;
    };
    let version = String::from_utf8_lossy(&output.stdout)
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    let found: Vec<u32> = version
        .trim_start_matches('v')
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    if found.len() < 3 || (found[0], found[1], found[2]) >= es_nats::MIN_SERVER {
        eprintln!("*** skipping: {binary} is {version}, not older than es-nats needs");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("es-nats-old-{}", std::process::id()));
    let mut server = Command::new(&binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the old server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the old server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let opened = NatsStore::connect_with(&format!("nats://127.0.0.1:{port}"), NatsOptions::default()).await;
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    match opened {
        Err(StoreError::Invalid { detail, .. }) => {
            let bare = version.trim_start_matches('v');
            assert!(detail.contains(bare) && detail.contains("2.12.0"), "{detail}");
        }
        other => panic!("a {version} server must be refused, got {other:?}"),
    }
}
