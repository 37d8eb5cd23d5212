//! `es audit`, run as an operator would: make a key, seal, export the head,
//! verify, prove an event and check the proof offline; a store changed with
//! the sqlite3 shell's means fails verification, naming the place.

use serde_json::Value;

mod common;
use common::{es, ok};

fn failing(args: &[&str]) -> (String, String) {
    let out = es(args);
    assert!(!out.status.success(), "es {args:?} should fail");
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_export_verify_prove_and_check_offline() {
    let dir = tests::sqlite::temp_dir();
    let path = dir.join("bank.db");
    let db = path.to_str().unwrap();
    let store = es_sqlite::SqliteStore::open(&path).await.unwrap();
    // Filled and sealed once by the application's sealer, with its key.
    let filled = tests::audit::fill(&store).await;
    let app_key = filled.key.public_key().to_string();

    // A key: written to a file only its owner reads, never to the terminal.
    let key_file = dir.join("seal.key");
    let key_path = key_file.to_str().unwrap();
    let shown = ok(&["audit", "keygen", "--out", key_path]);
    let secret = std::fs::read_to_string(&key_file).unwrap();
    assert!(!shown.contains(secret.trim()), "{shown}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let public = shown.lines().last().unwrap().trim().to_owned();
    assert_eq!(public.len(), 64, "{shown}");
    let (_, err) = failing(&["audit", "keygen", "--out", key_path]);
    assert!(err.contains("cannot create"), "{err}");

    ok(&["--db", db, "audit", "seal", "--key-file", key_path]);
    let head_file = dir.join("head.json");
    std::fs::write(&head_file, ok(&["--db", db, "audit", "head"])).unwrap();
    let head = head_file.to_str().unwrap();
    let verified = ok(&[
        "--db", db, "audit", "verify", "--key", &public, "--key", &app_key, "--head", head,
    ]);
    assert!(verified.contains("verified: every chain and seal holds"), "{verified}");
    assert!(verified.contains("the log extends the exported head"), "{verified}");
    let report: Value = serde_json::from_str(&ok(&["--db", db, "--json", "audit", "verify"])).unwrap();
    assert_eq!(report["clean"], true);
    assert_eq!(report["any_key"], true);

    // A proof of position 5, checked with the public key alone.
    let proof = ok(&["--db", db, "audit", "prove", "5"]);
    let proof_file = dir.join("proof.json");
    std::fs::write(&proof_file, &proof).unwrap();
    let checked = ok(&["audit", "check", proof_file.to_str().unwrap(), "--key", &public]);
    assert!(checked.contains("the proof holds"), "{checked}");
    let mut changed: Value = serde_json::from_str(&proof).unwrap();
    let payload = changed["event"]["payload"].as_str().unwrap().replacen("31", "39", 1);
    changed["event"]["payload"] = Value::String(payload);
    let changed_file = dir.join("changed.json");
    std::fs::write(&changed_file, changed.to_string()).unwrap();
    let (_, err) = failing(&["audit", "check", changed_file.to_str().unwrap(), "--key", &public]);
    assert!(err.contains("the proof does not hold"), "{err}");

    // Editing the file directly: a deposit made 999,999.99 in its packed
    // cell (see `es_sqlite::packed`).
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (position, cell): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT position, packed FROM es_events WHERE aggregate_id = 'a' AND version = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let payload = es_sqlite::packed::Packed::read(&cell).unwrap().payload.to_vec();
    let forged = String::from_utf8(payload).unwrap().replace("100", "99999999");
    tests::sqlite::set_payload(&path, position as u64, forged.as_bytes());
    let (out, err) = failing(&[
        "--db", db, "audit", "verify", "--key", &public, "--key", &app_key, "--head", head,
    ]);
    assert!(
        out.contains(&format!(
            "BROKEN: version 2 of stream `bank_account/a` (position {position})"
        )),
        "{out}"
    );
    assert!(err.contains("the store does not verify: 1 problems"), "{err}");
}

#[test]
fn a_bad_key_or_missing_key_says_so_without_echoing_it() {
    let (_, err) = failing(&[
        "audit",
        "check",
        "/nonexistent/proof.json",
        "--key",
        "not-a-key\u{1b}[31m",
    ]);
    assert!(err.contains("a public key is 64 hex digits"), "{err}");
    assert!(!err.contains('\u{1b}'), "escape sequences reach the terminal: {err:?}");
    let dir = tests::sqlite::temp_dir();
    let key = dir.join("bad.key");
    std::fs::write(&key, "c2VjcmV0LXNlZWQtdGhhdC1pcy10b28tc2hvcnQ=").unwrap();
    let db = dir.join("x.db");
    std::fs::write(&db, b"").unwrap();
    let out = es(&[
        "--db",
        db.to_str().unwrap(),
        "audit",
        "seal",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(!err.contains("c2VjcmV0"), "the key reached the terminal: {err}");
}
