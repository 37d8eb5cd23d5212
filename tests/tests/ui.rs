//! Every compile error a user can see, pinned by a `.stderr` file, and the
//! shapes that must compile. Regenerate with `TRYBUILD=overwrite` and read
//! the diff: each message is API.

use std::io::IsTerminal;

#[test]
fn ui() {
    // trybuild colours its report whenever TERM allows, terminal or not;
    // into a log or a pipe, run the cases again in a child process told
    // `NO_COLOR`, so the report is plain text.
    if !std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        let status = std::process::Command::new(std::env::current_exe().expect("this test binary"))
            .args(["ui", "--exact", "--test-threads=1"])
            .env("NO_COLOR", "1")
            .status()
            .expect("run the compile-fail cases");
        assert!(status.success(), "compile-fail cases failed: the report is above");
        return;
    }
    let t = trybuild::TestCases::new();
    for topic in [
        "aggregate",
        "apply",
        "command",
        "event",
        "evolution",
        "handle",
        "personal",
        "read_side",
        "wiring",
    ] {
        t.compile_fail(format!("ui/{topic}/*.rs"));
    }
    t.pass("ui/pass/*.rs");
}
