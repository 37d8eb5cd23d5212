//! Commands over HTTP: the bank service (`examples::service`) runs in a
//! second process on loopback; `CLIENTS` clients post `Deposit`s round-robin
//! over `ACCOUNTS` accounts, `COMMANDS` per iteration, each waiting for its
//! answer. The baseline is the bare dispatcher doing the same commands with
//! as many tasks, in this process, on the same kind of store. The ratio is
//! what HTTP (parsing, routing, JSON in and out, the loopback round trip, the
//! client) leaves of the dispatcher's throughput; commands per second over
//! HTTP are `COMMANDS` over the framework's median. The service keeps its
//! balances read model current as commands land; `baseline_with_read_model`
//! runs that read model beside the bare dispatcher, so its ratio is what HTTP
//! alone costs.
//!
//! The server process is this benchmark binary started again with
//! `ES_BENCH_HTTP_SERVE` set; it prints its address and exits when its
//! standard input closes, so it never outlives the benchmark. Criterion's
//! measurement time bounds the run.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::Criterion;
use es_core::{Dispatcher, EventStore, InMemoryStore, Metadata, Projection};
use examples::bank::{AccountId, BankCommand, Deposit, OpenAccount};
use examples::views::Balances;

const SERVE: &str = "ES_BENCH_HTTP_SERVE";
const COMMANDS: usize = 1_000;
const CLIENTS: usize = 8;
const ACCOUNTS: usize = 100;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn account(i: usize) -> String {
    format!("acct-{i}")
}

/// The server side: run the service on `store` until standard input closes.
fn serve(kind: &str) {
    let rt = runtime();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("address"));
        let stdin_closed = async {
            // Reading stdin blocks; a thread of its own reports its end.
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let _ = std::io::stdin().read_to_end(&mut Vec::new());
                let _ = tx.send(());
            });
            let _ = rx.await;
        };
        if let Some(path) = kind.strip_prefix("sqlite:") {
            let store = es_sqlite::SqliteStore::open(path).await.expect("sqlite");
            run(store, listener, stdin_closed).await;
        } else {
            run(InMemoryStore::new(), listener, stdin_closed).await;
        }
    });
}

async fn run<S: EventStore + Clone>(
    store: S,
    listener: tokio::net::TcpListener,
    until: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (router, running) = examples::service::start(store);
    running.serve(listener, router, until).await.expect("serve");
}

/// A server process and a client for it.
struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Server {
    fn start(kind: &str) -> Server {
        let mut child = Process::new(std::env::current_exe().expect("this binary"))
            .env(SERVE, kind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the server's address");
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CLIENTS)
            .build()
            .expect("client");
        Server {
            child,
            base: format!("http://{}", line.trim()),
            client,
        }
    }

    async fn post(&self, body: String) {
        let response = self
            .client
            .post(format!("{}/commands", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
        response.bytes().await.expect("body");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// `COMMANDS` deposits from `CLIENTS` concurrent clients over HTTP.
async fn over_http(server: &Arc<Server>, next: &Arc<AtomicUsize>) {
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let server = server.clone();
            let next = next.clone();
            tokio::spawn(async move {
                for _ in 0..COMMANDS / CLIENTS {
                    let i = next.fetch_add(1, Ordering::Relaxed) % ACCOUNTS;
                    let body = format!(r#"{{"type":"deposit","account":"{}","amount":1}}"#, account(i));
                    server.post(body).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client");
    }
}

/// The same deposits through the dispatcher, `CLIENTS` concurrent tasks.
async fn bare<S: EventStore + Clone>(app: &Dispatcher<S>, next: &Arc<AtomicUsize>) {
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let app = app.clone();
            let next = next.clone();
            tokio::spawn(async move {
                for _ in 0..COMMANDS / CLIENTS {
                    let i = next.fetch_add(1, Ordering::Relaxed) % ACCOUNTS;
                    let command = BankCommand::Deposit(Deposit {
                        account: AccountId(account(i)),
                        amount: 1,
                    });
                    app.dispatch_with(command, Metadata::new()).await.expect("deposit");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}

async fn open_accounts_bare<S: EventStore + Clone>(app: &Dispatcher<S>) {
    for i in 0..ACCOUNTS {
        let open = BankCommand::Open(OpenAccount {
            account: AccountId(account(i)),
            owner: "ada".into(),
        });
        app.dispatch_with(open, Metadata::new()).await.expect("open");
    }
}

async fn open_accounts_http(server: &Server) {
    for i in 0..ACCOUNTS {
        server
            .post(format!(r#"{{"type":"open","account":"{}","owner":"ada"}}"#, account(i)))
            .await;
    }
}

fn group<S: EventStore + Clone>(c: &mut Criterion, name: &str, server_kind: &str, store: impl AsyncFnOnce() -> S) {
    let rt = runtime();
    let server = Arc::new(Server::start(server_kind));
    rt.block_on(open_accounts_http(&server));
    let store = rt.block_on(store());
    let app = Dispatcher::new(store.clone());
    rt.block_on(open_accounts_bare(&app));
    let next = Arc::new(AtomicUsize::new(0));
    let mut g = c.benchmark_group(name);
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("framework", |b| b.iter(|| rt.block_on(over_http(&server, &next))));
    g.bench_function("baseline", |b| b.iter(|| rt.block_on(bare(&app, &next))));
    // The service also keeps a read model current while it takes commands;
    // a second baseline runs the same read model beside the dispatcher.
    let runner = {
        let _inside = rt.enter();
        Projection::new("balances", Balances::default()).spawn(store, Duration::from_millis(100))
    };
    g.bench_function("baseline_with_read_model", |b| {
        b.iter(|| rt.block_on(bare(&app, &next)))
    });
    rt.block_on(runner.stop());
    g.finish();
}

fn temp_db(what: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("es-bench-http-{what}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

fn main() {
    if let Ok(kind) = std::env::var(SERVE) {
        serve(&kind);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    group(&mut c, "http_1000_deposits_8_clients_memory", "memory", async || {
        InMemoryStore::new()
    });
    let served = temp_db("served");
    let bare_db = temp_db("bare");
    group(
        &mut c,
        "http_1000_deposits_8_clients_sqlite",
        &format!("sqlite:{}", served.display()),
        async || es_sqlite::SqliteStore::open(&bare_db).await.expect("sqlite"),
    );
    for path in [served, bare_db] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    c.final_summary();
}
