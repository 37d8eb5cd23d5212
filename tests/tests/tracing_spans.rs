//! The spans a dispatcher opens, captured by a subscriber of our own: each
//! command's `es.dispatch` span carries the aggregate, the command, its ids,
//! the attempts and the outcome; loads run in `es.load` spans under it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use es_core::{Dispatcher, InMemoryStore, Metadata};
use examples::bank::{AccountId, Deposit, OpenAccount, Withdraw};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata as TraceMetadata, Subscriber};

/// One captured span: its name, its fields as text, and its parent's id.
#[derive(Debug, Clone)]
struct Captured {
    name: &'static str,
    fields: BTreeMap<String, String>,
    parent: Option<u64>,
}

#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<BTreeMap<u64, Captured>>>,
    next: Arc<AtomicU64>,
    /// The entered spans, innermost last (one thread: the test's runtime).
    stack: Arc<Mutex<Vec<u64>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &TraceMetadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = if attrs.is_root() {
            None
        } else {
            attrs
                .parent()
                .map(Id::into_u64)
                .or_else(|| self.stack.lock().unwrap().last().copied())
        };
        self.spans.lock().unwrap().insert(
            id,
            Captured {
                name: attrs.metadata().name(),
                fields,
                parent,
            },
        );
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(s) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut s.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, span: &Id) {
        self.stack.lock().unwrap().push(span.into_u64());
    }

    fn exit(&self, span: &Id) {
        let mut stack = self.stack.lock().unwrap();
        if let Some(at) = stack.iter().rposition(|&s| s == span.into_u64()) {
            stack.remove(at);
        }
    }
}

impl Capture {
    fn named(&self, name: &str) -> Vec<(u64, Captured)> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.name == name)
            .map(|(&id, s)| (id, s.clone()))
            .collect()
    }
}

/// The spans `run` makes, run on a runtime of its own under a capturing
/// subscriber.
fn captured(run: impl std::future::Future<Output = ()>) -> Capture {
    let capture = Capture::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(capture.clone(), || rt.block_on(run));
    capture
}

fn field<'a>(span: &'a Captured, name: &str) -> &'a str {
    span.fields
        .get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("span `{}` has no field `{name}`: {:?}", span.name, span.fields))
}

#[test]
fn each_dispatch_runs_in_a_span_that_names_the_command_and_its_outcome() {
    let capture = captured(async {
        let app = Dispatcher::new(InMemoryStore::new());
        let account = AccountId("acc-7".into());
        app.dispatch(OpenAccount {
            account: account.clone(),
            owner: "ada".into(),
        })
        .await
        .unwrap();
        let metadata = Metadata {
            command_id: Some("cmd-1".into()),
            correlation_id: Some("corr-1".into()),
            ..Metadata::default()
        };
        let deposit = Deposit {
            account: account.clone(),
            amount: 500,
        };
        app.dispatch_with(deposit.clone(), metadata.clone()).await.unwrap();
        // The same command id again: answered from the store.
        app.dispatch_with(deposit, metadata).await.unwrap();
        app.dispatch(Withdraw {
            account: account.clone(),
            amount: 10_000,
        })
        .await
        .unwrap_err();
    });

    let dispatches = capture.named("es.dispatch");
    assert_eq!(dispatches.len(), 4, "{dispatches:#?}");
    let [open, deposit, again, withdraw] = [0, 1, 2, 3].map(|i| &dispatches[i].1);
    for span in [open, deposit, again, withdraw] {
        assert_eq!(field(span, "es.aggregate.type"), "bank_account");
        assert_eq!(field(span, "es.aggregate.id"), "acc-7");
    }
    assert_eq!(field(open, "es.command.type"), "OpenAccount");
    assert_eq!(field(open, "es.outcome"), "committed");
    assert_eq!(field(open, "es.attempts"), "1");
    assert_eq!(field(open, "es.version"), "1");
    assert_eq!(field(open, "es.position"), "1");
    assert_eq!(field(open, "otel.status_code"), "OK");
    assert!(!open.fields.contains_key("es.command.id"), "{open:?}");

    assert_eq!(field(deposit, "es.command.type"), "Deposit");
    assert_eq!(field(deposit, "es.command.id"), "cmd-1");
    assert_eq!(field(deposit, "es.correlation_id"), "corr-1");
    assert_eq!(field(deposit, "es.outcome"), "committed");
    assert_eq!(field(deposit, "es.version"), "2");

    assert_eq!(field(again, "es.outcome"), "duplicate");
    assert_eq!(field(again, "es.version"), "2");

    assert_eq!(field(withdraw, "es.command.type"), "Withdraw");
    assert_eq!(field(withdraw, "es.outcome"), "rejected");
    // A rejection is the domain's answer, not an error of the service.
    assert!(!withdraw.fields.contains_key("error.type"), "{withdraw:?}");

    // The first command loaded the (empty) stream inside its dispatch span.
    let loads = capture.named("es.load");
    let (open_id, _) = dispatches[0];
    let first_load = loads
        .iter()
        .find(|(_, l)| l.parent == Some(open_id))
        .unwrap_or_else(|| panic!("no es.load under the first dispatch: {loads:#?}"));
    assert_eq!(field(&first_load.1, "es.aggregate.type"), "bank_account");
    assert_eq!(field(&first_load.1, "es.cached"), "false");
    assert_eq!(field(&first_load.1, "es.version"), "0");
}

#[test]
fn a_panicking_handler_marks_its_span_as_an_error() {
    use tests::guarantees::fragile::{PanicIn, Poke};
    let capture = captured(async {
        let app = Dispatcher::new(InMemoryStore::new());
        let poke = |panic_in| Poke {
            id: "f".into(),
            panic_in,
        };
        app.dispatch(poke(PanicIn::Nowhere)).await.unwrap();
        app.dispatch(poke(PanicIn::Decide)).await.unwrap_err();
        app.dispatch(poke(PanicIn::Apply)).await.unwrap_err();
    });
    let dispatches = capture.named("es.dispatch");
    let outcomes: Vec<(&str, Option<&String>, Option<&String>)> = dispatches
        .iter()
        .map(|(_, s)| {
            (
                field(s, "es.outcome"),
                s.fields.get("otel.status_code"),
                s.fields.get("error.type"),
            )
        })
        .collect();
    let (ok, error, panicked) = ("OK".to_owned(), "ERROR".to_owned(), "panicked".to_owned());
    assert_eq!(
        outcomes,
        vec![
            ("committed", Some(&ok), None),
            ("panicked", Some(&error), Some(&panicked)),
            ("panicked", Some(&error), Some(&panicked)),
        ]
    );
    // After the panics the aggregate reloads: its next load is not cached.
    assert!(
        capture
            .named("es.load")
            .iter()
            .filter(|(_, l)| field(l, "es.cached") == "false")
            .count()
            >= 2
    );
}

#[test]
fn each_subscription_page_runs_in_a_span_with_its_positions() {
    let capture = captured(async {
        let store = InMemoryStore::new();
        let app = Dispatcher::new(store.clone());
        for i in 0..3 {
            app.dispatch(OpenAccount {
                account: AccountId(format!("acc-{i}")),
                owner: "ada".into(),
            })
            .await
            .unwrap();
        }
        let balances = es_core::Projection::new("balances", examples::views::Balances::default());
        assert_eq!(balances.catch_up(&store).await.unwrap(), 3);
    });
    let pages = capture.named("es.subscription.page");
    let first = &pages.first().expect("a page span").1;
    assert_eq!(field(first, "es.subscription"), "balances");
    assert_eq!(field(first, "es.from"), "0");
    assert_eq!(field(first, "es.to"), "3");
    assert_eq!(field(first, "es.events"), "3");
}
