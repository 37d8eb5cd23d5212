//! The README reads as plain Markdown: its Rust blocks, compiled as doctests
//! through `tests/src/lib.rs`, hide no lines (rustdoc's `# ` prefix), so what
//! a reader sees is the whole program that is compiled.

#[test]
fn readme_rust_blocks_hide_no_lines() {
    let readme = include_str!("../../README.md");
    let mut in_rust = false;
    let mut blocks = 0;
    for (n, line) in readme.lines().enumerate() {
        if let Some(info) = line.strip_prefix("```") {
            if in_rust {
                in_rust = false;
            } else if info.trim_start().starts_with("rust") {
                in_rust = true;
                blocks += 1;
            }
            continue;
        }
        if in_rust {
            let hidden = line == "#" || line.starts_with("# ") || line.starts_with("##");
            assert!(!hidden, "README.md line {}: a hidden doctest line: {line}", n + 1);
        }
    }
    assert!(blocks >= 4, "the README's Rust blocks were not found");
}

/// Every name the crate root of es-core exports is in its overview table,
/// so a new public name comes with the sentence that says what it means.
#[test]
fn every_root_name_of_es_core_is_in_its_overview() {
    let lib = include_str!("../../es-core/src/lib.rs");
    let start = lib.find("# Every public name").expect("the overview section");
    let end = lib.find("#![cfg_attr").expect("the end of the crate docs");
    let overview = &lib[start..end];
    let mut missing = Vec::new();
    let mut seen = 0;
    let mut rest = lib;
    while let Some(at) = rest.find("\npub use crate::") {
        rest = &rest[at + 1..];
        let statement = &rest[..rest.find(';').expect("a use ends")];
        let names = match (statement.find('{'), statement.rfind('}')) {
            (Some(open), Some(close)) => statement[open + 1..close].to_owned(),
            _ => statement.rsplit("::").next().unwrap_or_default().to_owned(),
        };
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            seen += 1;
            // A name behind a feature is written without a link.
            if !overview.contains(&format!("`{name}`")) {
                missing.push(name.to_owned());
            }
        }
    }
    assert!(seen > 40, "found only {seen} names");
    assert!(missing.is_empty(), "not in es-core's overview: {missing:?}");
}
