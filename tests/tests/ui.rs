//! Every compile error a user can see, pinned by a `.stderr` file, and the
//! shapes that must compile. Regenerate with `TRYBUILD=overwrite` and read
//! the diff: each message is API.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    for topic in [
        "aggregate",
        "apply",
        "command",
        "event",
        "evolution",
        "handle",
        "read_side",
        "wiring",
    ] {
        t.compile_fail(format!("ui/{topic}/*.rs"));
    }
    t.pass("ui/pass/*.rs");
}
