//! Running the `es` binary as an operator would, for the test files.

use std::process::{Command, Output};

/// Runs `es` with `args` and a clean environment (no `ES_DB`, no seal key).
pub(crate) fn es(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_es"))
        .args(args)
        .env_remove("ES_DB")
        .env_remove("ES_SEAL_KEY")
        .output()
        .expect("run es")
}

/// What `es` printed, having checked that it succeeded.
pub(crate) fn ok(args: &[&str]) -> String {
    let out = es(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "es {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}
