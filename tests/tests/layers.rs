//! es-core's modules import one way. The rules (also in the crate docs'
//! architecture section):
//!
//! - the subscription engine imports none of its sinks (projections,
//!   process managers);
//! - the write side (events, aggregates, commands, the dispatcher, its
//!   cache) imports nothing of the read side (the engine and its sinks);
//! - the core traits (events, aggregates, commands, stores) import no
//!   tooling (the schema lock, the test fixture);
//! - no module imports `__private`: generated code's helpers import the
//!   crate, never the other way;
//! - the foundation (envelopes, codecs, errors, store records, personal
//!   data's keys and sealing, shapes,
//!   utilities, metrics) imports nothing above it.
//!
//! An edge is any `crate::module` in a module's code (comments and tests
//! left out): a new back-edge fails here, naming the file.

use std::collections::BTreeSet;
use std::path::Path;

const WRITE: &[&str] = &["event", "aggregate", "command", "dispatcher", "cache"];
const READ: &[&str] = &["subscription", "projection", "process"];
const SINKS: &[&str] = &["projection", "process"];
const CORE: &[&str] = &["event", "aggregate", "command", "store"];
const TOOLING: &[&str] = &["schema", "testing"];
const FOUNDATION: &[&str] = &[
    "envelope",
    "codec",
    "error",
    "store",
    "personal",
    "shape",
    "util",
    "metrics",
    "time_conversions",
];

/// The modules a file's code names, as `crate::<module>`.
fn imports(code: &str) -> BTreeSet<String> {
    let code = code.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or_default();
                for item in group.split(',') {
                    if let Some((module, _)) = item.trim().split_once("::") {
                        out.insert(module.to_owned());
                    }
                }
            } else {
                let module: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if rest[module.len()..].starts_with("::") {
                    out.insert(module);
                }
            }
        }
    }
    out
}

fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn es_core_imports_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../es-core/src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut broken = Vec::new();
    let mut edges = 0;
    for file in &all {
        let module = module_of(&src, file);
        if module == "lib" || module == "__private" {
            continue;
        }
        let code = std::fs::read_to_string(file).unwrap();
        for target in imports(&code) {
            if target == module {
                continue;
            }
            edges += 1;
            let (m, t) = (module.as_str(), target.as_str());
            let rule = if t == "__private" {
                Some("no module imports `__private`")
            } else if m == "subscription" && SINKS.contains(&t) {
                Some("the engine imports none of its sinks")
            } else if WRITE.contains(&m) && READ.contains(&t) {
                Some("the write side imports nothing of the read side")
            } else if CORE.contains(&m) && TOOLING.contains(&t) {
                Some("the core traits import no tooling")
            } else if FOUNDATION.contains(&m) && !FOUNDATION.contains(&t) {
                Some("the foundation imports nothing above it")
            } else {
                None
            };
            if let Some(rule) = rule {
                broken.push(format!("{} imports `{t}`: {rule}", file.display()));
            }
        }
    }
    assert!(edges > 40, "found only {edges} imports: the scan is broken");
    assert!(broken.is_empty(), "back-edges:\n{}", broken.join("\n"));
}

#[test]
fn the_scan_sees_single_and_grouped_imports() {
    let found = imports(
        "use crate::store::X;\nuse crate::{error::E, envelope::{A, B}};\n// crate::process::x\nlet _ = crate::util::f();\n#[cfg(test)]\nuse crate::projection::P;",
    );
    let found: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(found, ["envelope", "error", "store", "util"]);
}
