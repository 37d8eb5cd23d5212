//! One word per concept: the words retired in favour of another stay
//! retired, in the code, the docs, the examples and the tests. The words
//! kept, and what each means, are in es-core's crate docs ("Glossary").

use std::path::{Path, PathBuf};

/// A retired word, and the word that names its concept.
const RETIRED: &[(&str, &str)] = &[
    ("receipt", "committed (what a command committed: `Committed`)"),
    ("run_once", "catch_up (process everything up to the head, once)"),
    ("with_codec", "codec (every builder sets its codec with `.codec(..)`)"),
    (
        "with_services",
        "services (`.services(..)`, as on the dispatcher's builder)",
    ),
    (
        "AppendOutcome::Committed",
        "AppendOutcome::Appended (`Committed` is the dispatcher's)",
    ),
    ("LoadedEvent", "RecordedEvent with the ContextFields a read asks for"),
    ("load_events", "read_stream with ContextFields::LOAD"),
    ("read_all_fields", "read_all with its ContextFields"),
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                files(&path, out);
            }
        } else if name.ends_with(".rs") || name.ends_with(".md") || name.ends_with(".stderr") {
            out.push(path);
        }
    }
}

/// Whether `word` occurs in `line` as a whole word.
fn has_word(line: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

#[test]
fn retired_words_stay_retired() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut all = Vec::new();
    files(&root, &mut all);
    assert!(
        all.len() > 100,
        "found only {} files under {}",
        all.len(),
        root.display()
    );
    let mut found = Vec::new();
    for path in all {
        if path.ends_with("tests/tests/glossary.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            for (word, instead) in RETIRED {
                if has_word(line, word) {
                    found.push(format!("{}:{}: `{word}`: say {instead}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "retired words:\n{}", found.join("\n"));
}

#[test]
fn the_glossary_is_in_the_crate_docs() {
    let lib = include_str!("../../es-core/src/lib.rs");
    let glossary = lib
        .split("# Glossary")
        .nth(1)
        .expect("a Glossary section in es-core's docs");
    for word in [
        "rejection",
        "refusal",
        "version",
        "schema version",
        "checkpoint",
        "catch up",
        "committed",
        "appended",
    ] {
        assert!(
            glossary.to_lowercase().contains(&format!("**{word}**")),
            "the glossary does not define {word}"
        );
    }
}
