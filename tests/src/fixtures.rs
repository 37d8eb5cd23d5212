//! Stored events written by earlier releases of the bank, committed as data
//! (`examples/fixtures/`), appended to a store as those releases wrote them.

use es_core::store::{AppendRequest, NewEvent};
use es_core::{EventId, EventStore, ExpectedVersion, StreamId, Timestamp};

/// The codec a fixture was stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// JSON text.
    Json,
    /// postcard bytes.
    Postcard,
}

/// The account fixture: its events at every schema version, and what
/// replaying them must give.
#[derive(Debug, serde::Deserialize)]
pub struct AccountFixture {
    /// The account's id.
    pub stream: String,
    /// Its balance after replay, in cents.
    pub balance: u64,
    /// How many withdrawals replay makes of its events.
    pub withdrawals: usize,
    /// The stored events.
    pub events: Vec<FixtureEvent>,
}

/// One stored event of a fixture.
#[derive(Debug, serde::Deserialize)]
pub struct FixtureEvent {
    /// Its stored name.
    pub name: String,
    /// Its stored schema version.
    pub schema_version: u32,
    /// Its payload as JSON text.
    pub json: String,
    /// Its payload as postcard bytes, in hex.
    pub postcard: String,
}

impl FixtureEvent {
    /// The payload as `codec` stored it.
    pub fn payload(&self, codec: Stored) -> Vec<u8> {
        match codec {
            Stored::Json => self.json.as_bytes().to_vec(),
            Stored::Postcard => (0..self.postcard.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&self.postcard[i..i + 2], 16).expect("hex"))
                .collect(),
        }
    }
}

/// The account fixture of `examples/fixtures/account_fx-1.json`.
pub fn account() -> AccountFixture {
    serde_json::from_str(include_str!("../../examples/fixtures/account_fx-1.json")).expect("the fixture parses")
}

impl AccountFixture {
    /// Appends the fixture's events, as stored with `codec`, to `store`.
    pub async fn store_into<S: EventStore>(&self, store: &S, codec: Stored) {
        let stream = StreamId::new("bank_account", &self.stream);
        let payloads: Vec<Vec<u8>> = self.events.iter().map(|e| e.payload(codec)).collect();
        let events: Vec<NewEvent<'_>> = self
            .events
            .iter()
            .zip(&payloads)
            .map(|(e, payload)| NewEvent {
                event_id: EventId::new(),
                name: &e.name,
                schema_version: e.schema_version,
                payload,
            })
            .collect();
        store
            .append(AppendRequest {
                stream: &stream,
                expected: ExpectedVersion::NoStream,
                events: &events,
                metadata: b"",
                command_id: None,
                recorded_at: Timestamp::now(),
            })
            .await
            .expect("the fixture appends");
    }
}
