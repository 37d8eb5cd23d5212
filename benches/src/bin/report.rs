//! Turns the criterion medians of the last `cargo bench -p benches` run
//! into the ratio table of BENCHMARKS.md:
//! `cargo run -p benches --bin report`.
//!
//! Each group holds a `framework` and a `baseline` function timed in the
//! same run (and maybe second baselines, `baseline_<what>`); the ratio is
//! framework throughput over baseline throughput, that is, baseline time
//! over framework time.

use std::path::{Path, PathBuf};

fn median_ns(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("new").join("estimates.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
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

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"));
    let mut groups: Vec<_> = match std::fs::read_dir(&root) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) => {
            eprintln!(
                "no criterion results in {}: {e}; run `cargo bench -p benches` first",
                root.display()
            );
            std::process::exit(1);
        }
    };
    groups.sort();
    println!("| case | framework (median) | baseline (median) | ratio |");
    println!("|---|---|---|---|");
    for group in groups {
        let name = group
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == "report" {
            continue;
        }
        let Some(f) = median_ns(&group.join("framework")) else {
            continue;
        };
        match median_ns(&group.join("baseline")) {
            Some(b) => println!("| {name} | {} | {} | {:.2} |", human(f), human(b), b / f),
            None => println!("| {name} | {} | — | — |", human(f)),
        }
        // Second baselines (`baseline_<what>`), each a row of its own.
        let mut others: Vec<_> = std::fs::read_dir(&group)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("baseline_"))
            .collect();
        others.sort();
        for other in others {
            if let Some(b) = median_ns(&group.join(&other)) {
                println!("| {name} vs {other} | {} | {} | {:.2} |", human(f), human(b), b / f);
            }
        }
    }
}
