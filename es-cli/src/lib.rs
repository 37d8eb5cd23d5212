//! An operator's command line for es stores.
//!
//! ```text
//! es --db bank.db streams                       # every stream, its version and last write
//! es --db bank.db events bank_account/ada       # a stream's events as JSON, with metadata
//! es --db postgres://localhost/app follow       # the global log, live (Ctrl-C ends it)
//! es --db bank.db projections                   # each checkpoint, the log's head and the lag
//! es --db bank.db reset balances --yes          # forget a projection's checkpoint
//! es --db bank.db rebuild balances --yes        # clear and replay a registered read model
//! es --db bank.db schema                        # the store's schema version and event catalogue
//! es --db nats://localhost:4222 foreign         # messages on a NATS store's subjects that are no events
//! es --db hotel.db forget guest-7 --yes          # erase a data subject's key: its personal data reads as forgotten
//! es --db hotel.db unsealed                      # events holding a personal field in clear (written before it was made personal)
//! es audit keygen --out seal.key                 # a new seal key; prints its public key
//! es --db bank.db audit seal --key-file seal.key # sign a seal of the log now
//! es --db bank.db audit head > head.json         # export the latest seal, to keep elsewhere
//! es --db bank.db audit verify --key <HEX> --head head.json   # every chain, every seal, the log grew from the head
//! es --db bank.db audit prove 42 > proof.json    # an inclusion proof of the event at position 42
//! es audit check proof.json --key <HEX>          # check it offline, with the public key alone
//! ```
//!
//! `--db` (or `ES_DB`) is a SQLite file, a `postgres://` URL (`--schema`
//! for a PostgreSQL schema other than `es`) or a `nats://` URL (`--schema`
//! names the store's prefix). Output is a table on a terminal,
//! JSON with `--json` (one document; `follow` writes one line per event).
//!
//! Most commands need nothing of the application: payloads stored with the
//! JSON codec print as JSON, others as hex. Rebuilding a read model runs the
//! application's own handlers, so an application builds its own binary around
//! [`main_with`] and registers its read models in [`Rebuilds`]; the plain
//! `es` binary knows none and says so:
//!
//! ```no_run
//! use es_cli::{Db, Rebuilds};
//! use es_sqlite::SqliteProjection;
//! use tests::ledger::SqliteLedger;
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let rebuilds = Rebuilds::new().register("ledger", "projection:ledger", |db| async move {
//!         let Db::Sqlite(store) = db else { return Err("the ledger lives in SQLite".into()) };
//!         let projection = SqliteProjection::new(store, "ledger", SqliteLedger::default())
//!             .tables(SqliteLedger::tables());
//!         Ok(projection.rebuild().await?)
//!     });
//!     es_cli::main_with(rebuilds).await
//! }
//! ```
//!
//! While a rebuild runs, a progress bar on standard error (when it is a
//! terminal) follows the read model's checkpoint towards the log's head.

// A build with only some stores leaves helpers of the others unused; the
// default build (every store) is held to every lint.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres", feature = "nats")),
    allow(unused_imports, unused_variables, dead_code)
)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use es_core::{EventStore, EventStoreExt, StreamId};
#[cfg(feature = "postgres")]
use es_postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "sqlite")]
use es_sqlite::SqliteStore;

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "nats")))]
compile_error!("es-cli needs at least one store: enable its `sqlite`, `postgres` or `nats` feature");
use serde_json::{Value, json};

mod audit;
mod commands;
mod inspect;
mod personal;
mod table;

pub use audit::AuditCommand;
use commands::{follow, rebuild, schema};
pub use inspect::{CatalogueEntry, CheckpointInfo, ForeignInfo, StreamInfo};
pub use personal::{Unsealed, UnsealedReport};
use table::{Table, printable};

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "es", version, about = "Look inside an es event store")]
pub struct Cli {
    /// The store: a SQLite file's path, a postgres:// URL or a nats:// URL
    /// (several, comma-separated, for a cluster).
    #[arg(long, env = "ES_DB", global = true)]
    pub db: Option<String>,
    /// The PostgreSQL schema holding the store's tables, or the NATS store's
    /// prefix.
    #[arg(long, default_value = "es", global = true)]
    pub schema: String,
    /// JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List streams with their version and last write.
    Streams {
        /// Only streams of this aggregate type.
        #[arg(long = "type")]
        aggregate_type: Option<String>,
        /// At most this many, the most recently written first.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Print one stream's events, decoded, with metadata.
    Events {
        /// The stream, as `aggregate_type/aggregate_id`.
        stream: String,
        /// Start after this version.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Follow the global log: print events as they are committed.
    Follow {
        /// Start after this position (default: the head, so only new events).
        #[arg(long)]
        from: Option<u64>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Each projection's checkpoint, the log's head and the lag.
    Projections,
    /// Move a projection's checkpoint back (to 0 unless `--to`), so its
    /// runner replays the log from there on its next start.
    Reset {
        /// The projection's name (its checkpoint is `projection:<name>`).
        name: String,
        /// The position to move it to.
        #[arg(long, default_value_t = 0)]
        to: u64,
        /// Confirm: the read model's data is not cleared, so a SQL read model
        /// must be emptied first (or use `rebuild`).
        #[arg(long)]
        yes: bool,
    },
    /// Clear a registered read model and replay the whole log into it.
    Rebuild {
        /// The read model's registered name.
        name: String,
        /// Confirm: the read model is cleared before the log is replayed
        /// into it. Without it, `rebuild` says what it would do and does
        /// nothing.
        #[arg(long)]
        yes: bool,
    },
    /// The store's schema version and the catalogue of stored events.
    Schema,
    /// Forget a data subject: erase the key that seals its personal data
    /// (no master key is needed) and record the forget in the log.
    Forget {
        /// The subject, as stored beside its key (a guest's id, say).
        subject: String,
        /// Confirm: every personal value of the subject, in every event and
        /// snapshot, becomes unreadable for good.
        #[arg(long)]
        yes: bool,
    },
    /// List the events that hold a personal field in clear (written before
    /// the field was made personal): fields some event stores sealed are
    /// found by themselves; name others with `--field`. Values are not
    /// shown.
    Unsealed {
        /// A personal field as `event.name:field` (repeatable).
        #[arg(long = "field", value_name = "EVENT:FIELD")]
        fields: Vec<String>,
    },
    /// Messages another client published on a NATS store's event subjects:
    /// the stream keeps them (it denies deletes) and readers skip them.
    /// SQLite and PostgreSQL stores hold none.
    Foreign {
        /// Start after this position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// The audit trail: verify chains and seals, seal the log, export its
    /// head, prove an event, check a proof.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// An opened store of either kind.
#[derive(Clone)]
pub enum Db {
    /// A SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteStore),
    /// A PostgreSQL schema.
    #[cfg(feature = "postgres")]
    Postgres(PostgresStore),
    /// A NATS JetStream store.
    #[cfg(feature = "nats")]
    Nats(es_nats::NatsStore),
}

/// Runs `$body` with `$s` bound to whichever store `$db` holds.
macro_rules! on_store {
    ($db:expr, $s:ident => $body:expr) => {
        match $db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite($s) => $body,
            #[cfg(feature = "postgres")]
            Db::Postgres($s) => $body,
            #[cfg(feature = "nats")]
            Db::Nats($s) => $body,
        }
    };
}
use on_store;

/// What a rebuild returns: the checkpoint it reached.
pub type RebuildFuture = Pin<Box<dyn Future<Output = Result<u64, Box<dyn std::error::Error + Send + Sync>>> + Send>>;

type RebuildFn = Box<dyn Fn(Db) -> RebuildFuture + Send + Sync>;

/// The application's read models that `rebuild` can clear and replay.
#[derive(Default)]
pub struct Rebuilds {
    entries: BTreeMap<String, (String, RebuildFn)>,
}

impl Rebuilds {
    /// None registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `name`, whose checkpoint is `checkpoint` (for the progress
    /// bar), rebuilt by `rebuild` (typically `SqliteProjection::rebuild` or
    /// `PgProjection::rebuild` with the model's reset).
    pub fn register<F, Fut>(mut self, name: &str, checkpoint: impl Into<String>, rebuild: F) -> Self
    where
        F: Fn(Db) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<u64, Box<dyn std::error::Error + Send + Sync>>> + Send + 'static,
    {
        let rebuild: RebuildFn = Box::new(move |db| Box::pin(rebuild(db)));
        self.entries.insert(name.to_owned(), (checkpoint.into(), rebuild));
        self
    }
}

/// A failure of the command line, printed as `error: ..`.
#[derive(Debug)]
pub struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

fn fail(message: impl Into<String>) -> CliError {
    CliError(message.into())
}

impl From<es_core::StoreError> for CliError {
    fn from(e: es_core::StoreError) -> Self {
        CliError(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader went away (`es events .. | head`): nothing to say.
            CliError(String::new())
        } else {
            CliError(format!("writing the output: {e}"))
        }
    }
}

/// Parses the process's arguments, runs, prints errors: the body of an
/// application's admin binary.
pub async fn main_with(rebuilds: Rebuilds) -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout();
    match run(cli, &rebuilds, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.0.is_empty() => ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote ids and names from the store: escaped too.
            eprintln!("error: {}", printable(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// Parses `args` (the first is the program's name) and runs.
pub async fn run_args(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    rebuilds: &Rebuilds,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let cli = Cli::try_parse_from(args).map_err(|e| fail(e.to_string()))?;
    run(cli, rebuilds, out).await
}

/// Runs a parsed command line, writing to `out`.
pub async fn run(cli: Cli, rebuilds: &Rebuilds, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    if let Command::Audit { command } = &cli.command
        && command.offline()
    {
        return audit::run_offline(command, cli.json, out);
    }
    let target = cli
        .db
        .clone()
        .ok_or_else(|| fail("no store given: pass --db <SQLite file | postgres:// URL | nats:// URL> or set ES_DB"))?;
    if let Command::Schema = cli.command {
        return schema(&target, &cli, out).await;
    }
    // Only `reset` and `rebuild` write; every other command opens the
    // store read-only (nothing created, migrated or written).
    let writes = match &cli.command {
        Command::Reset { .. } | Command::Rebuild { .. } | Command::Forget { .. } => true,
        Command::Audit { command } => command.writes(),
        _ => false,
    };
    let db = open(&target, &cli.schema, !writes).await?;
    match &cli.command {
        Command::Streams { aggregate_type, limit } => {
            let streams = inspect::streams(&db, aggregate_type.as_deref(), *limit).await?;
            if cli.json {
                writeln!(out, "{}", json!(streams))?;
            } else {
                let mut t = Table::new(["STREAM", "VERSION", "LAST WRITE"]);
                for s in &streams {
                    if s.foreign {
                        t.row([
                            format!("(foreign) {}", printable(&s.aggregate_id)),
                            format!("{} messages", s.version),
                            "see `es foreign`".to_owned(),
                        ]);
                    } else {
                        t.row([
                            printable(&format!("{}/{}", s.aggregate_type, s.aggregate_id)),
                            s.version.to_string(),
                            s.last_recorded_at.clone(),
                        ]);
                    }
                }
                t.write(out)?;
            }
        }
        Command::Events { stream, after } => {
            let (kind, id) = stream
                .split_once('/')
                .ok_or_else(|| fail(format!("`{stream}` is not a stream: write aggregate_type/aggregate_id")))?;
            let stream_id = StreamId::new(kind.to_owned(), id);
            let events = on_store!(&db, s => s.read_stream_vec(&stream_id, after + 1).await?);
            if events.is_empty() && *after == 0 {
                return Err(fail(format!("stream `{stream}` has no events")));
            }
            let mut subjects = personal::Subjects::default();
            let mut shown = Vec::with_capacity(events.len());
            for e in &events {
                let mut j = e.to_json();
                subjects.mask(&db, &mut j["payload"]).await?;
                shown.push(j);
            }
            if cli.json {
                writeln!(out, "{}", Value::Array(shown))?;
            } else {
                let mut t = Table::new(["VERSION", "POSITION", "RECORDED", "EVENT", "PAYLOAD", "METADATA"]);
                for (e, j) in events.iter().zip(shown) {
                    t.row([
                        e.version.to_string(),
                        e.position.to_string(),
                        e.recorded_at.to_string(),
                        format!("{} v{}", e.name, e.schema_version),
                        j["payload"].to_string(),
                        j["metadata"].to_string(),
                    ]);
                }
                t.write(out)?;
            }
        }
        Command::Follow { from, count } => follow(&db, *from, *count, cli.json, out).await?,
        Command::Projections => {
            let checkpoints = inspect::checkpoints(&db).await?;
            if cli.json {
                writeln!(out, "{}", json!(checkpoints))?;
            } else {
                // An owner column where partitioned read models have owners.
                let owners = checkpoints.iter().any(|c| c.owner.is_some());
                let mut t = if owners {
                    Table::new(["CHECKPOINT", "POSITION", "HEAD", "LAG", "OWNER"])
                } else {
                    Table::new(["CHECKPOINT", "POSITION", "HEAD", "LAG"])
                };
                for c in &checkpoints {
                    let cells = [
                        c.name.clone(),
                        c.position.to_string(),
                        c.head.to_string(),
                        c.lag.to_string(),
                    ];
                    match &c.owner {
                        _ if !owners => t.row(cells),
                        owner => {
                            let [name, position, head, lag] = cells;
                            t.row([
                                name,
                                position,
                                head,
                                lag,
                                owner.clone().unwrap_or_else(|| "-".to_owned()),
                            ]);
                        }
                    }
                }
                t.write(out)?;
            }
        }
        Command::Reset { name, to, yes } => {
            let checkpoint = checkpoint_name(name);
            let before = load_checkpoint(&db, &checkpoint)
                .await?
                .ok_or_else(|| fail(format!("no checkpoint `{checkpoint}`: `es projections` lists them")))?;
            if !yes {
                return Err(fail(format!(
                    "`{checkpoint}` is at {before}; resetting it to {to} makes its runner apply those events \
                     again, and does not clear the read model's data. Empty it first (or use `rebuild`), \
                     then pass --yes"
                )));
            }
            let head = last_position(&db).await?;
            if *to > head {
                return Err(fail(format!(
                    "position {to} is past the end of the log ({head}): the read model would skip every event \
                     up to there, those still to come included; give a position at or before {head}"
                )));
            }
            inspect::set_checkpoint(&db, &checkpoint, *to).await?;
            if cli.json {
                writeln!(out, "{}", json!({"checkpoint": checkpoint, "from": before, "to": to}))?;
            } else {
                writeln!(out, "{}: {before} -> {to}", printable(&checkpoint))?;
            }
        }
        Command::Rebuild { name, yes } => rebuild(&db, rebuilds, name, *yes, cli.json, out).await?,
        Command::Forget { subject, yes } => {
            if !yes {
                return Err(fail(format!(
                    "forgetting `{}` erases the key of its personal data: every value sealed with it, in \
                     every event and snapshot, becomes unreadable for good (backups keep their copy). \
                     Pass --yes to forget it",
                    printable(subject)
                )));
            }
            personal::forget(&db, subject).await?;
            if cli.json {
                writeln!(out, "{}", json!({"forgotten": subject}))?;
            } else {
                writeln!(out, "forgot `{}`", printable(subject))?;
            }
        }
        Command::Unsealed { fields } => {
            let mut declared = Vec::new();
            for field in fields {
                let Some((name, field)) = field.rsplit_once(':').filter(|(n, f)| !n.is_empty() && !f.is_empty()) else {
                    return Err(fail(format!(
                        "`--field {}`: write the event's stored name and the field as `event.name:field`",
                        printable(field)
                    )));
                };
                declared.push((name.to_owned(), field.to_owned()));
            }
            let report = personal::unsealed(&db, &declared).await?;
            if cli.json {
                writeln!(out, "{}", json!(report))?;
            } else {
                let mut t = Table::new(["POSITION", "STREAM", "VERSION", "EVENT", "FIELD"]);
                for u in &report.found {
                    t.row([
                        u.position.to_string(),
                        printable(&u.stream),
                        u.version.to_string(),
                        printable(&u.name),
                        printable(&u.field),
                    ]);
                }
                t.write(out)?;
                let fields: Vec<String> = report.fields.iter().map(|f| printable(f)).collect();
                writeln!(
                    out,
                    "{} events hold a personal field in clear; personal fields: {}",
                    report.found.len(),
                    if fields.is_empty() {
                        "none found".to_owned()
                    } else {
                        fields.join(", ")
                    }
                )?;
                if report.not_json > 0 {
                    writeln!(out, "{} events are not JSON and were not looked into", report.not_json)?;
                }
            }
        }
        Command::Foreign { after, limit } => {
            let found = inspect::foreign(&db, *after, *limit).await?;
            if cli.json {
                writeln!(out, "{}", json!(found))?;
            } else {
                let mut t = Table::new(["POSITION", "SUBJECT", "BYTES", "PAYLOAD"]);
                for m in &found {
                    let shown: String = m.payload.chars().take(80).collect();
                    let more = if shown.len() < m.payload.len() { "…" } else { "" };
                    t.row([
                        m.position.to_string(),
                        printable(&m.subject),
                        m.bytes.to_string(),
                        format!("{}{more}", printable(&shown)),
                    ]);
                }
                t.write(out)?;
            }
        }
        Command::Audit { command } => audit::run(&db, command, cli.json, out).await?,
        Command::Schema => unreachable!("handled before opening the store"),
    }
    Ok(())
}

/// `projection:<name>` unless the name is a checkpoint's already.
fn checkpoint_name(name: &str) -> String {
    if name.contains(':') {
        name.to_owned()
    } else {
        format!("projection:{name}")
    }
}

fn is_nats(target: &str) -> bool {
    target.starts_with("nats://") || target.starts_with("tls://")
}

fn is_postgres(target: &str) -> bool {
    target.starts_with("postgres://") || target.starts_with("postgresql://")
}

async fn open(target: &str, schema: &str, read_only: bool) -> Result<Db, CliError> {
    if is_nats(target) {
        #[cfg(feature = "nats")]
        {
            // Inspecting never creates a store: a mistyped prefix is an error.
            let options = es_nats::NatsOptions {
                prefix: schema.to_owned(),
                create: false,
                ..es_nats::NatsOptions::default()
            };
            return Ok(Db::Nats(es_nats::NatsStore::connect_with(target, options).await?));
        }
        #[cfg(not(feature = "nats"))]
        return Err(not_built("NATS", "nats"));
    }
    if is_postgres(target) {
        #[cfg(feature = "postgres")]
        {
            let store = PostgresStore::connect_with(
                target,
                PostgresOptions {
                    schema: schema.to_owned(),
                    max_connections: 2,
                    ..PostgresOptions::default()
                },
            )
            .await?;
            inspect::require_postgres_schema(&store).await?;
            return Ok(Db::Postgres(store));
        }
        #[cfg(not(feature = "postgres"))]
        return Err(not_built("PostgreSQL", "postgres"));
    }
    let path = PathBuf::from(target);
    if !path.is_file() {
        return Err(fail(format!(
            "`{target}` is not a file; --db takes a SQLite file that exists, a postgres:// or a nats:// URL"
        )));
    }
    #[cfg(feature = "sqlite")]
    {
        inspect::require_sqlite_store(&path)?;
        let options = es_sqlite::SqliteOptions {
            read_only,
            ..es_sqlite::SqliteOptions::default()
        };
        Ok(Db::Sqlite(SqliteStore::open_with(&path, options).await?))
    }
    #[cfg(not(feature = "sqlite"))]
    {
        let _ = (schema, read_only);
        Err(not_built("SQLite", "sqlite"))
    }
}

/// The error for a store this build of `es` leaves out.
#[allow(dead_code, reason = "unused when every store is built in")]
fn not_built(store: &str, feature: &str) -> CliError {
    fail(format!(
        "this `es` was built without {store}: install it with `--features {feature}` (or the default features)"
    ))
}

async fn load_checkpoint(db: &Db, name: &str) -> Result<Option<u64>, CliError> {
    Ok(on_store!(db, s => s.load_checkpoint(name).await?))
}

async fn last_position(db: &Db) -> Result<u64, CliError> {
    Ok(on_store!(db, s => s.last_position().await?))
}
