//! `RUST_LOG` does something: the bank's story, run as a user runs it,
//! writes a line for each command it dispatches when asked, and nothing
//! below a warning when not.

use std::process::Command;

fn run_bank(rust_log: Option<&str>) -> String {
    let dir = std::env::temp_dir().join(format!("es-logging-{}-{}", std::process::id(), rust_log.is_some()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_bank"));
    command.env("BANK_DB", dir.join("bank.db")).env_remove("NATS_URL");
    match rust_log {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn rust_log_shows_each_command() {
    let logged = run_bank(Some("es_core=info"));
    let dispatches = logged
        .lines()
        .filter(|l| l.contains("es.dispatch") && l.contains("close"))
        .count();
    assert!(dispatches >= 5, "a closed dispatch span per command:\n{logged}");
    assert!(logged.contains(r#"es.command.type="OpenAccount""#), "{logged}");
    assert!(!logged.contains('\u{1b}'), "no colour codes off a terminal:\n{logged}");
    let quiet = run_bank(None);
    assert!(quiet.trim().is_empty(), "nothing below a warning by default:\n{quiet}");
}
