//! Personal data on every store: the hotel's guests registered, booked,
//! forgotten, loaded and replayed.

use std::ops::ControlFlow;

use es_core::personal::{MasterKey, StaticKeys};
use es_core::store::{ContextFields, RecordedEvent};
use es_core::{Dispatcher, EventStore, EventStoreExt, Projection, StreamId};
use examples::hotel::{BookRoom, Guest, GuestList, RegisterGuest};

/// The name every test guest registers with.
pub const NAME: &str = "Ada Lovelace";
/// The address every test guest registers with.
pub const EMAIL: &str = "ada.lovelace@analytical.example";

/// The tests' master key.
pub fn master() -> MasterKey {
    MasterKey::new("test-master-1", [0x5a; 32])
}

/// A key provider with the tests' master key.
pub fn keys() -> StaticKeys {
    StaticKeys::new(master(), [])
}

/// A guest id no other test uses.
pub fn guest() -> String {
    format!("guest-{}", es_core::EventId::new())
}

/// Registers `guest` and books one room for two nights.
pub async fn register<S: EventStore>(app: &Dispatcher<S>, guest: &str) {
    app.dispatch(RegisterGuest {
        guest_id: guest.to_owned(),
        name: NAME.to_owned(),
        email: EMAIL.to_owned(),
    })
    .await
    .expect("registers");
    app.dispatch(BookRoom {
        guest_id: guest.to_owned(),
        room: 12,
        nights: 2,
    })
    .await
    .expect("books");
}

/// The raw payloads of `guest`'s events, as the store holds them.
pub async fn payloads<S: EventStore>(store: &S, guest: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    store
        .read_stream(
            &StreamId::new("guest", guest),
            1,
            ContextFields::ALL,
            |e: &RecordedEvent<'_>| {
                out.push(e.payload.to_vec());
                ControlFlow::Continue(())
            },
        )
        .await
        .expect("reads");
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Register, book, forget, book again, load, replay: on any store opened
/// with [`keys`].
pub async fn lifecycle<S: EventStore + Clone>(store: S) {
    let app = Dispatcher::new(store.clone());
    let id = guest();
    register(&app, &id).await;

    // The store holds the values sealed, never in clear.
    let stored = payloads(&store, &id).await;
    assert_eq!(stored.len(), 2);
    for payload in &stored {
        assert!(!contains(payload, NAME.as_bytes()), "the name is stored in clear");
        assert!(!contains(payload, EMAIL.as_bytes()), "the address is stored in clear");
    }
    assert!(
        contains(&stored[0], b"es-personal:"),
        "{}",
        String::from_utf8_lossy(&stored[0])
    );

    // A process without the cached aggregate reads them back.
    let fresh = Dispatcher::new(store.clone());
    let loaded = fresh.load::<Guest>(&id).await.expect("loads");
    assert_eq!(
        loaded.name.as_ref().and_then(|n| n.get()).map(String::as_str),
        Some(NAME)
    );
    assert_eq!(
        loaded.email.as_ref().and_then(|n| n.get()).map(String::as_str),
        Some(EMAIL)
    );
    assert_eq!(loaded.name.as_ref().and_then(|n| n.subject()), Some(id.as_str()));

    // So does a read model.
    let list = Projection::new("guests", GuestList::default());
    list.catch_up(&store).await.expect("catches up");
    let row = list.read(|l| l.rows.get(&id).cloned()).expect("a row");
    assert_eq!(row.name.as_deref(), Some(NAME));
    assert_eq!(row.nights, 2);

    // A third event: a snapshot (every 3), which seals the values too.
    app.dispatch(BookRoom {
        guest_id: id.clone(),
        room: 12,
        nights: 1,
    })
    .await
    .expect("books");
    let snapshot = store
        .load_snapshot(&StreamId::new("guest", &id))
        .await
        .unwrap()
        .expect("a snapshot at version 3");
    assert_eq!(snapshot.version, 3);
    assert!(
        !contains(&snapshot.payload, NAME.as_bytes()),
        "the snapshot holds the name in clear"
    );
    assert!(!contains(&snapshot.payload, EMAIL.as_bytes()));
    let loaded = Dispatcher::new(store.clone()).load::<Guest>(&id).await.expect("loads");
    assert!(loaded.contactable);
    assert_eq!(
        loaded.email.as_ref().and_then(|n| n.get()).map(String::as_str),
        Some(EMAIL)
    );

    // Forget the guest.
    app.forget(id.clone()).await.expect("forgets");
    assert!(store.keyring().expect("keys").is_forgotten(&id).await.unwrap());

    // Commands still decide, from the cache and from the store alike, and
    // the events written now about the guest are about a forgotten one.
    app.dispatch(BookRoom {
        guest_id: id.clone(),
        room: 14,
        nights: 1,
    })
    .await
    .expect("books after the forget");
    fresh
        .dispatch(BookRoom {
            guest_id: id.clone(),
            room: 15,
            nights: 1,
        })
        .await
        .expect("books after the forget, from a cached state");

    // Loads see the values forgotten and the rest as it was; the snapshot
    // of version 3 holds the forgotten values, so the state is rebuilt
    // from the events (what it worked out from the address is gone too).
    let loaded = Dispatcher::new(store.clone()).load::<Guest>(&id).await.expect("loads");
    assert!(loaded.registered);
    assert_eq!(loaded.nights, 5);
    assert!(!loaded.contactable, "the snapshot taken before the forget was used");
    assert!(loaded.name.as_ref().is_some_and(|n| n.is_forgotten()), "{loaded:?}");
    assert!(loaded.email.as_ref().is_some_and(|n| n.is_forgotten()));

    // The read model that copied the values scrubs them on the forget event.
    list.catch_up(&store).await.expect("catches up");
    let row = list.read(|l| l.rows.get(&id).cloned()).expect("a row");
    assert_eq!((row.name, row.email, row.nights), (None, None, 5));

    // A read model rebuilt from the log never sees them.
    let rebuilt = Projection::new("guests-rebuilt", GuestList::default());
    rebuilt.catch_up(&store).await.expect("catches up");
    let row = rebuilt.read(|l| l.rows.get(&id).cloned()).expect("a row");
    assert_eq!((row.name, row.email, row.nights), (None, None, 5));

    // Forgetting again changes nothing.
    app.forget(id.clone()).await.expect("forgets again");
    let forgets = store
        .read_stream_vec(&StreamId::new(es_core::FORGOTTEN_STREAM, &id), 1)
        .await
        .unwrap();
    assert_eq!(forgets.len(), 1, "one forget event");
}
