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
