//! The bank's and the cart's stored event shapes, held to the lock file the
//! examples commit (`examples/schema.lock`), and their event reference
//! (`examples/EVENTS.md`). Changing a stored event's fields without a new
//! version fails here, naming the event and the field.

use es_core::schema::SchemaLock;
use examples::bank::BankAccount;
use examples::cart::Cart;
use examples::transfer::Transfer;

fn bank() -> SchemaLock {
    SchemaLock::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/schema.lock"))
        .aggregate::<BankAccount>()
        .aggregate::<Transfer>()
        .aggregate::<Cart>()
}

#[test]
fn the_examples_keep_their_stored_shapes() {
    bank()
        .markdown(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/EVENTS.md"))
        .check();
}

#[test]
fn a_field_changed_without_a_new_version_fails_naming_the_event_and_the_field() {
    let lock = bank();
    let text = lock.catalogue().lock_text();
    // As if the code had changed `MoneyDeposited::amount` from `i64` to
    // `u64` with no new version: the lock says i64, the code says u64.
    let start = text.find("[bank_account account.deposited v1]").unwrap();
    let tampered = format!(
        "{}{}",
        &text[..start],
        text[start..].replacen("amount: u64", "amount: i64", 1)
    );
    let report = lock.compare(&tampered).unwrap();
    assert!(!report.ok());
    assert_eq!(report.changed.len(), 1, "{report:#?}");
    let message = &report.changed[0];
    assert!(
        message.starts_with(
            "`account.deposited` version 1 (in `bank_account`), read by `examples::bank::MoneyDeposited`, changed its stored shape:\n    struct {\n  -   amount: i64\n  +   amount: u64\n    }\n"
        ),
        "{message}"
    );
    assert!(message.ends_with("give the new shape version 2: `#[event(version = 2, older = [..])]` on the new struct, `next = ..` on the old one."), "{message}");
    assert!(report.removed.is_empty() && report.added.is_empty());
}

#[test]
fn a_version_no_struct_reads_fails_and_a_new_one_passes() {
    let lock = bank();
    let text = lock.catalogue().lock_text();
    // The lock knows a version 5 of `account.withdrawn` the code lost, and
    // lacks the code's version 1 (a version added since the lock was made).
    let start = text.find("[bank_account account.withdrawn v1]").unwrap();
    let end = text[start..].find("\n[").map_or(text.len(), |e| start + e + 1);
    let tampered = format!(
        "{}{}[bank_account account.withdrawn v5]\ntype: Gone\ncurrent: no\nshape:\n  struct {{\n    amount: u64\n  }}\n",
        &text[..start],
        &text[end..]
    );
    let report = lock.compare(&tampered).unwrap();
    assert_eq!(report.removed.len(), 1, "{report:#?}");
    assert!(
        report.removed[0].starts_with(
            "`account.withdrawn` version 5 (in `bank_account`) is in the lock, but no struct reads it any more"
        ),
        "{}",
        report.removed[0]
    );
    assert_eq!(
        report.added,
        ["`account.withdrawn` version 1 (in `bank_account`, read by `examples::bank::MoneyWithdrawnV1`)"]
    );
    assert!(report.changed.is_empty());
}

/// The crate docs' way to add a field: `#[serde(default)]` and a version
/// bump, with no struct kept for version 1. The lock accepts it (version 1
/// events decode into the new struct, and the report says so), and a
/// version 1 event does decode.
#[test]
fn a_defaulted_new_field_with_a_version_bump_passes() {
    use es_core::Event;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, es_core::Event)]
    #[event(name = "order.placed", version = 1)]
    struct PlacedV1 {
        total: u64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, es_core::Event)]
    #[event(name = "order.placed", version = 2)]
    struct Placed {
        total: u64,
        #[serde(default)]
        currency: String,
    }

    let dir = tests::sqlite::temp_dir();
    let old = SchemaLock::new(dir.join("schema.lock")).events::<PlacedV1>("orders");
    let lock_text = old.catalogue().lock_text();
    let new = SchemaLock::new(dir.join("schema.lock")).events::<Placed>("orders");
    let report = new.compare(&lock_text).unwrap();
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.read_by_newer.len(), 1, "{report:#?}");
    assert!(report.read_by_newer[0].contains("decode into"), "{report:#?}");

    let codec = es_core::Json;
    let stored = PlacedV1 { total: 7 }.encode(&codec).unwrap();
    let decoded = Placed::decode(&codec, "order.placed", 1, &stored).unwrap();
    assert_eq!(
        decoded,
        Placed {
            total: 7,
            currency: String::new()
        }
    );
}
