//! Turns the criterion medians of the last `cargo bench -p benches` run
//! into the ratio table of BENCHMARKS.md:
//!
//! ```sh
//! cargo run -p benches --bin report                    # print the table
//! cargo run -p benches --bin report -- --write         # and put it in BENCHMARKS.md
//! cargo run -p benches --bin report -- --before DIR    # beside another run's ratios
//! cargo run -p benches --bin report -- --before DIR --before-label 2aa624a
//! ```
//!
//! Each group holds a `framework` and a `baseline` function timed in the
//! same run (or `baseline_postgres` where the baseline is another store),
//! and maybe second baselines, `baseline_<what>`, each a row of its own.
//! The ratio is framework throughput over baseline throughput, that is,
//! baseline time over framework time. `--before` takes the criterion folder
//! of a run of an earlier commit (built in a worktree and run right before
//! or after this one) and adds its ratios as a column: the one comparison
//! this shared, noisy machine allows.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The groups in the order of the table, with what each measures and its
/// target ("report" where there is none to meet, only a figure to watch).
const GROUPS: &[(&str, &str, &str)] = &[
    ("apply_1m", "apply dispatch: fold 1,000,000 events", "≥ 0.95"),
    (
        "deposits_100k_on_1000_accounts",
        "100,000 deposits round-robin on 1,000 accounts, in memory",
        "≥ 0.5",
    ),
    (
        "deposits_100k_on_1000_accounts_multi_thread",
        "… the same on the multi-thread runtime",
        "≥ 0.5",
    ),
    (
        "deposits_100k_on_1_account",
        "100,000 deposits on one account, in memory",
        "≥ 10",
    ),
    ("cold_load_1000_json", "cold load, 1,000 events, JSON", "≥ 0.8"),
    ("cold_load_10000_json", "cold load, 10,000 events, JSON", "≥ 0.8"),
    ("cold_load_100000_json", "cold load, 100,000 events, JSON", "≥ 0.8"),
    ("cold_load_1000_binary", "cold load, 1,000 events, binary", "report"),
    ("cold_load_10000_binary", "cold load, 10,000 events, binary", "report"),
    ("cold_load_100000_binary", "cold load, 100,000 events, binary", "report"),
    (
        "cold_load_10000_one_version_behind",
        "cold load, 10,000 events one schema version behind (against current)",
        "report",
    ),
    (
        "fingerprint_bank_account_state",
        "state fingerprint of the bank account",
        "report",
    ),
    ("event_ids_10k", "10,000 event ids", "≥ 1.0"),
    (
        "personal_1000_commands",
        "1,000 commands sealing two personal fields (against plain fields)",
        "≥ 0.8",
    ),
    (
        "personal_cold_load_10000_events",
        "cold load, 10,000 events with two sealed fields (against plain fields)",
        "≥ 0.5",
    ),
    (
        "personal_aead_seal_10000_values",
        "sealing 10,000 values, AES-256-GCM (against XChaCha20-Poly1305)",
        "report",
    ),
    (
        "personal_aead_open_10000_values",
        "opening 10,000 values, AES-256-GCM (against XChaCha20-Poly1305)",
        "report",
    ),
    (
        "binary_codec_round_trip_100k",
        "binary codec round trip, 100,000 events",
        "report",
    ),
    ("pg_1000_commands_1_task", "PostgreSQL, 1,000 commands, 1 task", "≥ 1.0"),
    (
        "pg_1000_commands_8_tasks",
        "PostgreSQL, 1,000 commands, 8 tasks on own accounts",
        "≥ 2.5",
    ),
    (
        "pg_1000_commands_32_tasks",
        "PostgreSQL, 1,000 commands, 32 tasks on own accounts",
        "report",
    ),
    (
        "pg_1000_commands_64_tasks",
        "PostgreSQL, 1,000 commands, 64 tasks on own accounts",
        "report",
    ),
    (
        "pg_load_10000_events",
        "PostgreSQL, load an aggregate of 10,000 events",
        "≥ 1.0",
    ),
    (
        "sqlite_1000_commands_1_task",
        "SQLite, 1,000 commands, 1 task",
        "report",
    ),
    (
        "sqlite_1000_commands_8_tasks",
        "SQLite, 1,000 commands, 8 tasks on own accounts",
        "report",
    ),
    (
        "sqlite_load_10000_events",
        "SQLite, load an aggregate of 10,000 events",
        "report",
    ),
    (
        "link_1000_events",
        "links of 1,000 deposits, SHA-256 framed (against unframed SHA-256)",
        "report",
    ),
    (
        "cold_load_1000_verified",
        "cold load, 1,000 events, chain verified (against unverified)",
        "report",
    ),
    (
        "verify_1m_sqlite",
        "verify a 1,000,000-event SQLite store (against reading it)",
        "report",
    ),
    (
        "sqlite_driver_200_commands",
        "SQLite driver choice, 200 commands",
        "report",
    ),
    (
        "sqlite_driver_load_10000_events",
        "SQLite driver choice, load 10,000 events",
        "report",
    ),
    (
        "projection_20000_events_memory",
        "projection catch-up, 20,000 events, memory",
        "report",
    ),
    (
        "projection_20000_events_sqlite",
        "projection catch-up, 20,000 events, SQLite",
        "≥ 0.9",
    ),
    (
        "projection_20000_events_postgres",
        "projection catch-up, 20,000 events, PostgreSQL",
        "≥ 0.9",
    ),
    (
        "partitioned_1000_events_1ms_cpu_postgres",
        "read model, 1 ms of CPU per event, two runner processes (against one)",
        "≈ 2 (≥ 1.7)",
    ),
    (
        "partitioned_1000_events_1ms_wait_postgres",
        "read model, 1 ms wait per event, eight partitions in one runner (against unpartitioned)",
        "report",
    ),
    (
        "http_1000_deposits_8_clients_memory",
        "HTTP, 1,000 deposits from 8 clients, memory",
        "report",
    ),
    (
        "http_1000_deposits_8_clients_sqlite",
        "HTTP, 1,000 deposits from 8 clients, SQLite",
        "report",
    ),
    (
        "nats3_1000_commands_8_tasks",
        "NATS, 3 replicas, 1,000 commands, 8 tasks (against PostgreSQL)",
        "≥ 0.5",
    ),
    (
        "nats3_1000_commands_1_task",
        "NATS, 3 replicas, 1,000 commands, 1 task (against PostgreSQL)",
        "report",
    ),
    (
        "nats3_load_10000_events",
        "NATS, 3 replicas, load 10,000 events (against PostgreSQL)",
        "report",
    ),
    (
        "nats1_1000_commands_8_tasks",
        "NATS, one server, 1,000 commands, 8 tasks (against PostgreSQL)",
        "≥ 1.5",
    ),
    (
        "nats1_1000_commands_1_task",
        "NATS, one server, 1,000 commands, 1 task (against PostgreSQL)",
        "report",
    ),
    (
        "nats1_load_10000_events",
        "NATS, one server, load 10,000 events (against PostgreSQL)",
        "report",
    ),
    (
        "nats1_1000_commands_100_followers",
        "NATS, 1,000 commands with 100 followers (against none)",
        "≥ 0.5",
    ),
];

const START: &str = "<!-- report: start -->";
const END: &str = "<!-- report: end -->";

fn median_ns(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("new").join("estimates.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn modified(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir.join("new").join("estimates.json"))
        .and_then(|m| m.modified())
        .ok()
}

fn human(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// One row: a group's framework against one of its baselines.
struct Row {
    group: String,
    baseline: String,
    framework_ns: f64,
    baseline_ns: f64,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.baseline_ns / self.framework_ns
    }
}

/// The rows of a criterion folder, keyed by group and baseline.
fn rows(root: &Path) -> Result<(Vec<Row>, Option<SystemTime>), String> {
    let entries = std::fs::read_dir(root).map_err(|e| {
        format!(
            "no criterion results in {}: {e}; run `cargo bench -p benches` first",
            root.display()
        )
    })?;
    let mut rows = Vec::new();
    let mut newest: Option<SystemTime> = None;
    for group in entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()) {
        let name = group
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(framework_ns) = median_ns(&group.join("framework")) else {
            continue;
        };
        newest = newest.max(modified(&group.join("framework")));
        let mut baselines: Vec<String> = std::fs::read_dir(&group)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n == "baseline" || n.starts_with("baseline_"))
            .collect();
        // The main baseline first: `baseline`, else `baseline_postgres`.
        baselines.sort_by_key(|b| (b != "baseline" && b != "baseline_postgres", b.clone()));
        for baseline in baselines {
            if let Some(baseline_ns) = median_ns(&group.join(&baseline)) {
                rows.push(Row {
                    group: name.clone(),
                    baseline,
                    framework_ns,
                    baseline_ns,
                });
            }
        }
    }
    Ok((rows, newest))
}

/// The place of a group in the table (unknown groups last, by name).
fn order(group: &str) -> (usize, String) {
    let at = GROUPS.iter().position(|(g, _, _)| *g == group).unwrap_or(GROUPS.len());
    (at, group.to_owned())
}

fn label(row: &Row, first: bool) -> String {
    let known = GROUPS.iter().find(|(g, _, _)| *g == row.group);
    let what = known.map_or(row.group.as_str(), |(_, what, _)| what);
    if first {
        format!("{what} (`{}`)", row.group)
    } else {
        format!("… against `{}`", row.baseline)
    }
}

/// The targets against second baselines: group, baseline, target.
const SECOND_TARGETS: &[(&str, &str, &str)] = &[
    ("pg_1000_commands_8_tasks", "baseline_cached", "≥ 1.5"),
    ("pg_1000_commands_8_tasks", "baseline_one_committer", "≥ 0.7"),
    ("sqlite_1000_commands_8_tasks", "baseline_one_committer", "≥ 0.7"),
    ("nats1_1000_commands_1_task", "baseline_raw_publish", "≥ 0.6"),
    ("nats1_1000_commands_8_tasks", "baseline_raw_publish", "≥ 0.6"),
];

fn target(row: &Row, first: bool) -> &'static str {
    if !first {
        return SECOND_TARGETS
            .iter()
            .find(|(g, b, _)| *g == row.group && *b == row.baseline)
            .map_or("report", |(_, _, target)| target);
    }
    match GROUPS.iter().find(|(g, _, _)| *g == row.group) {
        Some((_, _, target)) => target,
        None => "report",
    }
}

/// Days since 1970-01-01 as a civil date (the proleptic Gregorian calendar).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn date(at: SystemTime) -> String {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil(i64::try_from(secs / 86_400).unwrap_or(0));
    format!("{y:04}-{m:02}-{d:02}")
}

fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn table(rows: &[Row], before: Option<&[Row]>, before_label: &str) -> String {
    let mut out = String::new();
    match before {
        Some(_) => {
            out.push_str(&format!(
                "| case | framework | baseline | ratio | ratio before ({before_label}) | target |\n"
            ));
            out.push_str("|---|---|---|---|---|---|\n");
        }
        None => {
            out.push_str("| case | framework | baseline | ratio | target |\n");
            out.push_str("|---|---|---|---|---|\n");
        }
    }
    let mut previous: Option<&str> = None;
    for row in rows {
        let first = previous != Some(row.group.as_str());
        previous = Some(&row.group);
        let cells = format!(
            "| {} | {} | {} | {:.2} |",
            label(row, first),
            human(row.framework_ns),
            human(row.baseline_ns),
            row.ratio()
        );
        out.push_str(&cells);
        if let Some(before) = before {
            let then = before
                .iter()
                .find(|b| b.group == row.group && b.baseline == row.baseline);
            match then {
                Some(then) => out.push_str(&format!(" {:.2} |", then.ratio())),
                None => out.push_str(" — |"),
            }
        }
        out.push_str(&format!(" {} |\n", target(row, first)));
    }
    out
}

fn main() {
    let mut root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let mut before_root: Option<PathBuf> = None;
    let mut before_label = "an earlier commit".to_owned();
    let mut write = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--write" => write = true,
            "--before" => before_root = args.next().map(PathBuf::from),
            "--before-label" => before_label = args.next().unwrap_or(before_label),
            _ if !arg.starts_with('-') => root = PathBuf::from(arg),
            _ => {
                eprintln!("usage: report [CRITERION_DIR] [--before CRITERION_DIR [--before-label TEXT]] [--write]");
                std::process::exit(2);
            }
        }
    }
    let fail = |e: String| -> ! {
        eprintln!("{e}");
        std::process::exit(1);
    };
    let (mut rows, newest) = rows(&root).unwrap_or_else(|e| fail(e));
    rows.sort_by_key(|r| order(&r.group));
    let before = before_root.map(|b| rows_of(&b).unwrap_or_else(|e| fail(e)));
    let table = table(&rows, before.as_deref(), &before_label);
    if !write {
        print!("{table}");
        return;
    }
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let when = newest.map_or_else(|| "an unknown date".to_owned(), date);
    let section = format!(
        "{START}\nThe run: {when}, commit {commit}{}, {} groups (a group not in it is left out); written \
         by `cargo run -p benches --bin report -- --write`.\n\n{table}{END}",
        if dirty { " with uncommitted changes" } else { "" },
        rows.iter()
            .map(|r| r.group.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
    let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
        fail(format!("{} has no `{START}` … `{END}` section", path.display()));
    };
    let text = format!("{}{section}{}", &text[..start], &text[end + END.len()..]);
    std::fs::write(&path, text).unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
    println!("wrote the table of {} rows to {}", rows.len(), path.display());
}

fn rows_of(root: &Path) -> Result<Vec<Row>, String> {
    rows(root).map(|(rows, _)| rows)
}

#[cfg(test)]
mod tests {
    use super::civil;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_793), (2026, 12, 6));
    }
}
