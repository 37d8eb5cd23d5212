//! The commands that take more than a few lines: following the log,
//! rebuilding a read model, the schema of a store.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use es_core::EventStore;
use serde_json::json;

use crate::table::{Table, printable};
use crate::{
    Cli, CliError, Db, Rebuilds, fail, inspect, is_nats, is_postgres, last_position, load_checkpoint, on_store, open,
    personal,
};

pub(crate) async fn follow(
    db: &Db,
    from: Option<u64>,
    count: Option<u64>,
    json_lines: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let after = match from {
        Some(p) => p,
        None => last_position(db).await?,
    };
    on_store!(db, s => follow_tail(db, es_core::subscription::Tail::new(s.clone(), after), count, json_lines, out).await)
}

async fn follow_tail<S: EventStore>(
    db: &Db,
    mut tail: es_core::subscription::Tail<S>,
    count: Option<u64>,
    json_lines: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let mut subjects = personal::Subjects::default();
    let mut printed = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while count.is_none_or(|c| printed < c) {
        let e = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            e = tail.next() => e?,
        };
        let mut j = e.to_json();
        subjects.mask(db, &mut j["payload"]).await?;
        if json_lines {
            writeln!(out, "{j}")?;
        } else if e.name == es_core::store::FOREIGN {
            writeln!(
                out,
                "{:>8}  (a foreign message on {}, {} bytes: skipped by readers)",
                e.position,
                printable(e.stream.aggregate_id()),
                e.payload.len()
            )?;
        } else {
            writeln!(
                out,
                "{:>8}  {}  {}@{}  {} v{}  {}",
                e.position,
                e.recorded_at,
                printable(&e.stream.to_string()),
                e.version,
                printable(&e.name),
                e.schema_version,
                j["payload"]
            )?;
        }
        out.flush()?;
        printed += 1;
    }
    Ok(())
}

/// A progress bar of `len` steps on standard error, `message` before it
/// and `unit` after the count; hidden when standard error is not a terminal
/// or the output is JSON.
pub(crate) fn progress_bar(
    len: u64,
    message: String,
    unit: &str,
    json_out: bool,
) -> Result<indicatif::ProgressBar, CliError> {
    let bar = if std::io::stderr().is_terminal() && !json_out {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let template = format!("{{msg}} [{{bar:40}}] {{pos}}/{{len}}{unit} ({{per_sec}}, {{eta}} left)");
    bar.set_style(
        indicatif::ProgressStyle::with_template(&template)
            .map_err(|e| fail(e.to_string()))?
            .progress_chars("=> "),
    );
    bar.set_message(message);
    Ok(bar)
}

pub(crate) async fn rebuild(
    db: &Db,
    rebuilds: &Rebuilds,
    name: &str,
    confirmed: bool,
    json_out: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let Some((checkpoint, rebuild)) = rebuilds.entries.get(name) else {
        let known: Vec<&str> = rebuilds.entries.keys().map(String::as_str).collect();
        return Err(fail(if known.is_empty() {
            format!(
                "no read model named `{name}` is registered here: rebuilding runs the application's handlers, \
                 so it needs the application's admin binary (es_cli::main_with with es_cli::Rebuilds); \
                 `es reset` only moves a checkpoint"
            )
        } else {
            format!("no read model named `{name}`; registered: {}", known.join(", "))
        }));
    };
    let head = last_position(db).await?;
    if !confirmed {
        let at = load_checkpoint(db, checkpoint).await?.unwrap_or(0);
        return Err(fail(format!(
            "rebuilding `{name}` clears it and replays the log into it: {} events, up to position {head} \
             (its checkpoint `{checkpoint}` is at {at}); while it runs, the read model is incomplete, and if \
             another process runs it, the rebuild waits for it. Pass --yes to go ahead",
            on_store!(db, s => s.events_after(0).await?)
        )));
    }
    let bar = progress_bar(head, format!("rebuilding {name}"), " events", json_out)?;
    let task = tokio::spawn(rebuild(db.clone()));
    // The rebuild commits a page at a time; its checkpoint is the progress.
    let reached = loop {
        if task.is_finished() {
            break task
                .await
                .map_err(|e| fail(format!("the rebuild of `{name}` panicked: {e}")))?
                .map_err(|e| fail(format!("rebuilding `{name}`: {e}")))?;
        }
        if let Ok(Some(p)) = load_checkpoint(db, checkpoint).await {
            bar.set_position(p.min(head));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    if json_out {
        writeln!(out, "{}", json!({"read_model": name, "checkpoint": reached}))?;
    } else {
        writeln!(
            out,
            "rebuilt {name}: {reached} events replayed, checkpoint at {reached}"
        )?;
    }
    Ok(())
}

pub(crate) async fn schema(target: &str, cli: &Cli, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    // A SQLite file's version is read before the store opens it: opening
    // migrates it.
    #[cfg(feature = "sqlite")]
    let sqlite_version = if is_nats(target) || is_postgres(target) {
        None
    } else {
        Some(inspect::sqlite_schema_version(&PathBuf::from(target))?)
    };
    let db = open(target, &cli.schema, true).await?;
    let (version, newest) = match &db {
        #[cfg(feature = "sqlite")]
        Db::Sqlite(_) => (sqlite_version.unwrap_or_default(), es_sqlite::SCHEMA_VERSION),
        #[cfg(feature = "postgres")]
        Db::Postgres(store) => (
            inspect::postgres_schema_version(store).await?,
            i64::from(es_postgres::SCHEMA_VERSION),
        ),
        // Not a schema: the format of its event messages.
        #[cfg(feature = "nats")]
        Db::Nats(_) => (2, 2),
    };
    let catalogue = inspect::catalogue(&db).await?;
    if cli.json {
        writeln!(
            out,
            "{}",
            json!({"schema_version": version, "newest_schema_version": newest, "events": catalogue})
        )?;
    } else {
        let note = if version < newest {
            format!(" (the application migrates it to {newest} when it opens it; `es` never does)")
        } else {
            String::new()
        };
        writeln!(out, "schema version {version}{note}\n")?;
        let mut t = Table::new(["EVENT", "VERSION", "COUNT", "FIRST", "LAST"]);
        for c in &catalogue {
            t.row([
                c.name.clone(),
                c.schema_version.to_string(),
                c.count.to_string(),
                c.first_recorded_at.clone(),
                c.last_recorded_at.clone(),
            ]);
        }
        t.write(out)?;
    }
    Ok(())
}
