//! A NATS server with JetStream for this test process, started from the
//! installed `nats-server` on a free loopback port (with `max_payload`
//! raised, for the large-payload case) and stopped when the process exits.
// Each test file uses some of these.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use es_nats::{NatsOptions, NatsStore, Storage};

struct Running {
    url: String,
    // Held open: the wrapper stops the server when it closes.
    _stdin: Mutex<ChildStdin>,
    _child: Child,
}

fn start() -> Option<Running> {
    if Command::new("nats-server").arg("--version").output().is_err() {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = std::env::temp_dir().join(format!("es-nats-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    let config = dir.join("server.conf");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nmax_payload: 8MB\njetstream {{ store_dir: \"{}\" }}\n",
            dir.join("data").display()
        ),
    )
    .ok()?;
    // The shell stops the server when this process's end of stdin closes,
    // however this process ends.
    let script = format!(
        "nats-server -c '{}' >'{}' 2>&1 & pid=$!; read _; kill $pid; wait $pid; rm -rf '{}'",
        config.display(),
        dir.join("server.log").display(),
        dir.display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .spawn()
        .ok()?;
    let stdin = child.stdin.take()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdin = stdin;
    let _ = stdin.flush();
    Some(Running {
        url: format!("nats://127.0.0.1:{port}"),
        _stdin: Mutex::new(stdin),
        _child: child,
    })
}

/// The server's URL, or `None` (said loudly) when none can be started;
/// `ES_REQUIRE_NATS=1` turns that into a failure.
pub(crate) fn url() -> Option<String> {
    static SERVER: OnceLock<Option<Running>> = OnceLock::new();
    let running = SERVER.get_or_init(start);
    match running {
        Some(r) => Some(r.url.clone()),
        None if std::env::var("ES_REQUIRE_NATS").as_deref() == Ok("1") => {
            panic!("ES_REQUIRE_NATS=1 but no NATS server could be started (is `nats-server` installed?)")
        }
        None => {
            eprintln!("*** skipping a NATS test: `nats-server` could not be started");
            None
        }
    }
}

/// A store under a prefix of its own on the test server.
pub(crate) async fn store() -> Option<NatsStore> {
    store_with(NatsOptions {
        storage: Storage::Memory,
        ..NatsOptions::default()
    })
    .await
}

/// A store with `options` under a prefix of its own.
pub(crate) async fn store_with(options: NatsOptions) -> Option<NatsStore> {
    let url = url()?;
    Some(
        NatsStore::connect_with(
            &url,
            NatsOptions {
                prefix: fresh_prefix(),
                ..options
            },
        )
        .await
        .expect("connect to the test NATS server"),
    )
}

/// A prefix no other test uses.
pub(crate) fn fresh_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Two stores on one prefix, each with its connection: two processes.
pub(crate) async fn two_connections() -> Option<(NatsStore, NatsStore)> {
    let url = url()?;
    let options = NatsOptions {
        prefix: fresh_prefix(),
        storage: Storage::Memory,
        ..NatsOptions::default()
    };
    let one = NatsStore::connect_with(&url, options.clone()).await.expect("connect");
    let two = NatsStore::connect_with(&url, options).await.expect("connect");
    Some((one, two))
}
