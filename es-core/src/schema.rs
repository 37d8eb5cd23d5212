//! The schema lock: the stored shape of every event version an application
//! reads, written to a file in its repository and checked by its tests.
//!
//! Events are stored forever. Changing a field of an event that is already
//! stored, without giving the new shape a new version, makes the old
//! events decode wrongly or not at all — and nothing in the code says so.
//! The lock does: a test lists the aggregates (and any other events) the
//! application stores, and [`SchemaLock::check`] compares their shapes,
//! traced from the code (see [`shape`](crate::shape)), with the lock file.
//!
//! ```no_run
//! # use es_core::schema::SchemaLock;
//! # #[derive(Debug, Default, Clone, es_core::Aggregate)]
//! # #[aggregate(name = "bank_account", id = String, event = Opened, error = E)]
//! # struct BankAccount;
//! # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, es_core::Event)]
//! # struct Opened;
//! # #[derive(Debug, thiserror::Error)] #[error("e")] struct E;
//! # impl es_core::Apply<Opened> for BankAccount { fn apply(&mut self, _: &Opened) {} }
//! #[test]
//! fn stored_events_keep_their_shape() {
//!     SchemaLock::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.lock"))
//!         .aggregate::<BankAccount>()
//!         .check();
//! }
//! ```
//!
//! It fails, with a diff naming the event, the version and the field, when
//!
//! - a stored version's shape changed (a field renamed, added, removed or
//!   retyped, a variant changed) — give the new shape the next version and
//!   keep the old struct in `older = [..]`;
//! - a version in the lock is no longer read by any struct — put it back.
//!
//! A version bump that only adds `#[serde(default)]` fields (no `older`
//! list) passes: the older version's events decode into the new struct,
//! and the report says so.
//!
//! A new event or a new version passes, and is written to the lock when
//! the test runs with `ES_UPDATE_SCHEMA_LOCK=1` (the file is created on the
//! first run). [`SchemaLock::markdown`] renders the same catalogue as the
//! application's event reference.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::{Aggregate, Event};

/// The variable that makes [`SchemaLock::check`] rewrite the lock file.
pub const UPDATE_VARIABLE: &str = "ES_UPDATE_SCHEMA_LOCK";

pub use crate::event::EventShape;

/// The events of an application, grouped (by aggregate, usually).
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    /// By group, then by stored name and version.
    groups: BTreeMap<String, BTreeMap<(&'static str, u32), EventShape>>,
}

impl Catalogue {
    /// An empty catalogue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the events of aggregate `A`, grouped under its stored name.
    pub fn aggregate<A: Aggregate>(self) -> Self {
        self.events::<A::Event>(A::NAME)
    }

    /// Adds event (or event set) `E` under `group`.
    pub fn events<E: Event>(mut self, group: &str) -> Self {
        let mut shapes = Vec::new();
        E::describe(&mut shapes);
        let entries = self.groups.entry(group.to_owned()).or_default();
        for shape in shapes {
            entries.insert((shape.name, shape.version), shape);
        }
        self
    }

    /// The lock file's text.
    pub fn lock_text(&self) -> String {
        let mut out = String::from(
            "# es schema lock: the stored shape of every event version this application reads.\n\
             # Checked by es_core::schema::SchemaLock in its tests. A changed shape needs a new\n\
             # version; after adding one, run the tests with ES_UPDATE_SCHEMA_LOCK=1.\n",
        );
        for (group, entries) in &self.groups {
            for e in entries.values() {
                let _ = write!(out, "\n[{group} {} v{}]\n", e.name, e.version);
                let _ = writeln!(out, "type: {}", e.rust_type);
                let _ = writeln!(
                    out,
                    "current: {}",
                    if e.current { "yes" } else { "no (read to be upcast)" }
                );
                if !e.aliases.is_empty() {
                    let _ = writeln!(out, "aliases: {}", e.aliases.join(", "));
                }
                out.push_str("shape:\n");
                for line in e.shape.lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
        out
    }

    /// The catalogue as Markdown: the application's event reference.
    pub fn markdown(&self) -> String {
        let mut out =
            String::from("# Events\n\nEvery event version this application stores or reads, from its schema lock.\n");
        for (group, entries) in &self.groups {
            let _ = write!(
                out,
                "\n## `{group}`\n\n| event | version | read by | written today | also read as |\n|---|---|---|---|---|\n"
            );
            for e in entries.values() {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | `{}` | {} | {} |",
                    e.name,
                    e.version,
                    e.rust_type,
                    if e.current { "yes" } else { "no, upcast" },
                    if e.aliases.is_empty() {
                        "—".to_owned()
                    } else {
                        e.aliases
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                );
            }
            for e in entries.values() {
                let _ = write!(out, "\n### `{}` v{}\n\n```text\n{}\n```\n", e.name, e.version, e.shape);
            }
        }
        out
    }

    fn entries(&self) -> BTreeMap<(String, &'static str, u32), &EventShape> {
        self.groups
            .iter()
            .flat_map(|(group, entries)| entries.values().map(move |e| ((group.clone(), e.name, e.version), e)))
            .collect()
    }
}

/// A stored version as the lock file has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Locked {
    group: String,
    name: String,
    version: u32,
    shape: String,
}

/// Reads the entries of a lock file.
fn parse(text: &str) -> Result<Vec<Locked>, String> {
    let mut out: Vec<Locked> = Vec::new();
    let mut in_shape = false;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let mut parts = header.split(' ');
            let (Some(group), Some(name), Some(version), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("line {}: expected `[group name vN]`, found `{line}`", n + 1));
            };
            let version = version
                .strip_prefix('v')
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("line {}: `{version}` is not a version like `v2`", n + 1))?;
            out.push(Locked {
                group: group.to_owned(),
                name: name.to_owned(),
                version,
                shape: String::new(),
            });
            in_shape = false;
        } else if line == "shape:" {
            in_shape = true;
        } else if let (true, Some(shape_line), Some(entry)) = (in_shape, line.strip_prefix("  "), out.last_mut()) {
            if !entry.shape.is_empty() {
                entry.shape.push('\n');
            }
            entry.shape.push_str(shape_line);
        }
    }
    Ok(out)
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Stored versions whose shape changed: the failures.
    pub changed: Vec<String>,
    /// Versions in the lock no struct reads any more: failures too.
    pub removed: Vec<String>,
    /// New events and versions: fine, to be recorded.
    pub added: Vec<String>,
    /// Versions in the lock with no struct of their own that a newer
    /// version's struct reads (it lists no `older` versions, so serde
    /// decodes them into it: fields it added need `#[serde(default)]`):
    /// fine, said so.
    pub read_by_newer: Vec<String>,
}

impl Report {
    /// Whether nothing stored was broken.
    pub fn ok(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Checks a [`Catalogue`] against a lock file; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct SchemaLock {
    path: PathBuf,
    catalogue: Catalogue,
    markdown: Option<PathBuf>,
}

impl SchemaLock {
    /// A lock kept in the file at `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        SchemaLock {
            path: path.as_ref().to_path_buf(),
            catalogue: Catalogue::new(),
            markdown: None,
        }
    }

    /// Adds the events of aggregate `A`.
    pub fn aggregate<A: Aggregate>(mut self) -> Self {
        self.catalogue = self.catalogue.aggregate::<A>();
        self
    }

    /// Adds event (or event set) `E` under `group`.
    pub fn events<E: Event>(mut self, group: &str) -> Self {
        self.catalogue = self.catalogue.events::<E>(group);
        self
    }

    /// Also keeps the Markdown event reference at `path` up to date (and
    /// fails when it is not).
    pub fn markdown(mut self, path: impl AsRef<Path>) -> Self {
        self.markdown = Some(path.as_ref().to_path_buf());
        self
    }

    /// The catalogue being checked.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Compares the catalogue with the text of a lock file.
    pub fn compare(&self, lock_text: &str) -> Result<Report, String> {
        let locked = parse(lock_text)?;
        let current = self.catalogue.entries();
        let mut report = Report::default();
        let mut seen = std::collections::HashSet::new();
        for l in &locked {
            let key = (l.group.clone(), l.name.as_str(), l.version);
            let found = current
                .iter()
                .find(|((g, n, v), _)| *g == key.0 && *n == key.1 && *v == key.2);
            let title = format!("`{}` version {} (in `{}`)", l.name, l.version, l.group);
            // A struct without `older = [..]` reads every version below its
            // own (a struct with them has each older version in the
            // catalogue: the derive checks the chain has no gap).
            let newer = current
                .iter()
                .filter(|((g, n, v), _)| *g == key.0 && *n == key.1 && *v > key.2)
                .min_by_key(|((_, _, v), _)| *v);
            match found {
                None if newer.is_some() => {
                    let ((_, _, v), e) = newer.expect("checked");
                    report.read_by_newer.push(format!(
                        "{title} has no struct of its own: stored events of it decode into `{}` (version {v}), whose fields added since must have `#[serde(default)]`",
                        e.rust_type
                    ));
                }
                None => report.removed.push(format!(
                    "{title} is in the lock, but no struct reads it any more: stored events of that version would fail to decode, or decode into another version's struct. Put its struct back (in the current version's `older = [..]`), or, if no store holds such events, record the removal with {UPDATE_VARIABLE}=1."
                )),
                Some((k, e)) => {
                    seen.insert(k.clone());
                    if e.shape != l.shape {
                        report.changed.push(format!(
                            "{title}, read by `{}`, changed its stored shape:\n{}\nEvents already stored in the old shape would no longer read right. Keep the old struct as version {} and give the new shape version {}: `#[event(version = {}, older = [..])]` on the new struct, `next = ..` on the old one.",
                            e.rust_type,
                            diff(&l.shape, &e.shape),
                            l.version,
                            l.version + 1,
                            l.version + 1
                        ));
                    }
                }
            }
        }
        for (key, e) in &current {
            if !seen.contains(key) {
                report.added.push(format!(
                    "`{}` version {} (in `{}`, read by `{}`)",
                    e.name, e.version, key.0, e.rust_type
                ));
            }
        }
        Ok(report)
    }

    /// Checks the lock file (and the Markdown reference, if set): panics
    /// with what changed if a stored shape changed or a stored version is no
    /// longer read. Writes the files when they do not exist, or when
    /// `ES_UPDATE_SCHEMA_LOCK=1`.
    pub fn check(&self) {
        let update = std::env::var(UPDATE_VARIABLE).is_ok_and(|v| v == "1");
        let text = self.catalogue.lock_text();
        match std::fs::read_to_string(&self.path) {
            Ok(existing) if !update => {
                let report = self
                    .compare(&existing)
                    .unwrap_or_else(|e| panic!("the schema lock {} cannot be read: {e}", self.path.display()));
                if !report.ok() {
                    let mut message = format!("the schema lock {} does not hold:\n", self.path.display());
                    for line in report.changed.iter().chain(&report.removed) {
                        let _ = write!(message, "\n- {line}\n");
                    }
                    panic!("{message}");
                }
                for line in &report.read_by_newer {
                    eprintln!("schema lock {}: {line}", self.path.display());
                }
                if !report.added.is_empty() {
                    eprintln!(
                        "schema lock {}: new, not yet recorded (run with {UPDATE_VARIABLE}=1 to record): {}",
                        self.path.display(),
                        report.added.join(", ")
                    );
                }
            }
            _ => {
                std::fs::write(&self.path, &text)
                    .unwrap_or_else(|e| panic!("cannot write the schema lock {}: {e}", self.path.display()));
            }
        }
        if let Some(path) = &self.markdown {
            let markdown = self.catalogue.markdown();
            match std::fs::read_to_string(path) {
                Ok(existing) if !update => assert!(
                    existing == markdown,
                    "the event reference {} is out of date: run the tests with {UPDATE_VARIABLE}=1",
                    path.display()
                ),
                _ => std::fs::write(path, markdown)
                    .unwrap_or_else(|e| panic!("cannot write the event reference {}: {e}", path.display())),
            }
        }
    }
}

/// The lines of `old` not in `new` (`-`) and of `new` not in `old` (`+`),
/// with the unchanged ones for context.
fn diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // Longest common subsequence, then a walk that prints it as a diff.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "    {}", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "  - {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "  + {}", b[j]);
            j += 1;
        }
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_marks_changed_lines() {
        assert_eq!(
            diff("struct {\n  amount: u64\n}", "struct {\n  amount: i64\n  fee: u64\n}"),
            "    struct {\n  -   amount: u64\n  +   amount: i64\n  +   fee: u64\n    }"
        );
    }

    #[test]
    fn lock_text_parses_back() {
        let text = "# c\n\n[g a.b v2]\ntype: X\ncurrent: yes\nshape:\n  struct {\n    n: u64\n  }\n";
        assert_eq!(
            parse(text).unwrap(),
            [Locked {
                group: "g".into(),
                name: "a.b".into(),
                version: 2,
                shape: "struct {\n  n: u64\n}".into()
            }]
        );
        assert!(parse("[bad header]").is_err());
    }
}
