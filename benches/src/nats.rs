//! Hand-written baselines on NATS JetStream: the bank's deposits written
//! with async-nats alone, each writer keeping its account's state and the
//! sequence of its subject's last message (what es-nats keeps as a cached
//! head), so a command is one publish and one answer.
//!
//! - [`RawMode::Publish`]: one publish per command, checked by the server
//!   against the subject's last sequence (`Nats-Expected-Last-Subject-Sequence`).
//! - [`RawMode::Batch`]: one atomic batch per command (server 2.12) of the
//!   event, checked the same way, and a record of its event id that must be
//!   the first on its subject: what es-nats sends for a command without a
//!   command id, by hand.

use crate::baseline::{Account, Command, Event};
use crate::stores::COMMANDS;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage, stream};

/// The server's code for an expected-sequence check it could not make
/// yet.
const IN_FLIGHT: u64 = 10164;

/// The JetStream error code inside a publish error (0 for a transport
/// failure).
fn code_of(error: &(dyn std::error::Error + 'static)) -> u64 {
    let mut source = error.source();
    while let Some(e) = source {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return js.error_code().0;
        }
        source = e.source();
    }
    0
}

/// A publish's JetStream error code; no responders (the stream has no
/// leader yet, just made or electing one) counts as 503.
fn publish_code(error: &async_nats::jetstream::context::PublishError) -> u64 {
    match error.kind() {
        async_nats::jetstream::context::PublishErrorKind::StreamNotFound => NO_LEADER,
        _ => code_of(error),
    }
}

/// No server answers for the stream yet.
const NO_LEADER: u64 = 503;

/// How a raw writer stores a command's event.
#[derive(Debug, Clone, Copy)]
pub enum RawMode {
    /// One publish with the expected-last-subject-sequence check.
    Publish,
    /// One atomic batch: the event (checked) and its event-id record.
    Batch,
}

/// A stream of its own, on the server(s) at `url`, for one iteration.
pub struct RawNats {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
}

impl RawNats {
    /// Connects and makes a stream for events and event ids, stored in
    /// files on `replicas` servers, taking atomic batches.
    pub async fn new(url: &str, replicas: usize, prefix: &str) -> Self {
        let client = async_nats::connect(url.split(',').collect::<Vec<_>>())
            .await
            .expect("connect");
        let js = jetstream::new(client.clone());
        js.create_stream(stream::Config {
            name: format!("{prefix}_raw"),
            subjects: vec![format!("{prefix}.events.>"), format!("{prefix}.ids.>")],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            allow_atomic_publish: true,
            ..Default::default()
        })
        .await
        .expect("create the stream");
        // A replicated stream takes writes once it has elected a leader.
        let mut stream = js.get_stream(format!("{prefix}_raw")).await.expect("the stream");
        for _ in 0..200 {
            let info = stream.info().await.expect("its state");
            if info.cluster.as_ref().is_none_or(|c| c.leader.is_some()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        RawNats {
            client,
            js,
            prefix: prefix.to_owned(),
        }
    }

    /// How many messages the stream holds.
    pub async fn stored(&self) -> u64 {
        let mut stream = self
            .js
            .get_stream(format!("{}_raw", self.prefix))
            .await
            .expect("the stream");
        stream.info().await.expect("its state").state.messages
    }

    /// Opens `account`, then makes `commands` deposits of 1 on it.
    pub async fn deposits(&self, mode: RawMode, account: &str, commands: usize) {
        let subject = format!("{}.events.{account}", self.prefix);
        let mut state = Account::default();
        let mut last = 0;
        let opened = state
            .decide(&Command::Open {
                account: account.to_owned(),
                owner: "ada".into(),
            })
            .expect("opens");
        last = self.store(mode, &subject, last, &opened).await;
        state.apply(&opened);
        for _ in 0..commands {
            let event = state.decide(&crate::stores::deposit(account)).expect("deposits");
            last = self.store(mode, &subject, last, &event).await;
            state.apply(&event);
        }
    }

    /// `tasks` tasks, each making `COMMANDS / tasks` deposits on its own
    /// account.
    pub async fn writers(self: std::sync::Arc<Self>, mode: RawMode, tasks: usize) {
        let tasks: Vec<_> = (0..tasks)
            .map(|t| {
                let raw = self.clone();
                tokio::spawn(async move { raw.deposits(mode, &format!("t{t}"), COMMANDS / tasks).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    }

    /// Stores `event` after the subject's message at `last`: its sequence.
    async fn store(&self, mode: RawMode, subject: &str, last: u64, event: &Event) -> u64 {
        let payload = match event {
            Event::Opened(o) => serde_json::to_vec(o),
            Event::Deposited(d) => serde_json::to_vec(d),
            Event::Withdrawn(w) => serde_json::to_vec(w),
        }
        .expect("encodes");
        // On a cluster the server may answer that it cannot check the
        // expected sequence yet (another message for the stream is being
        // replicated, error 10164): the writer asks again, as es-nats does.
        let mut attempt = 0_u64;
        loop {
            attempt += 1;
            let stored = match mode {
                RawMode::Publish => self.publish(subject, last, &payload).await,
                RawMode::Batch => self.batch(subject, last, &payload).await,
            };
            match stored {
                Ok(sequence) => return sequence,
                Err(code) if (code == IN_FLIGHT || code == NO_LEADER) && attempt < 100 => {
                    tokio::time::sleep(std::time::Duration::from_micros(50 * attempt)).await
                }
                Err(code) => panic!("the server refused a write: error {code}"),
            }
        }
    }

    async fn publish(&self, subject: &str, last: u64, payload: &[u8]) -> Result<u64, u64> {
        let message = PublishMessage::build()
            .payload(payload.to_vec().into())
            .expected_last_subject_sequence(last);
        let acked = async {
            self.js
                .send_publish(subject.to_owned(), message)
                .await
                .map_err(|e| publish_code(&e))?
                .await
                .map_err(|e| publish_code(&e))
        };
        Ok(acked.await?.sequence)
    }

    async fn batch(&self, subject: &str, last: u64, payload: &[u8]) -> Result<u64, u64> {
        let id = es_core::EventId::new().as_uuid().simple().to_string();
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Batch-Id", id.as_str());
        headers.insert("Nats-Batch-Sequence", "1");
        headers.insert("Nats-Expected-Last-Subject-Sequence", last.to_string().as_str());
        self.client
            .publish_with_headers(subject.to_owned(), headers, payload.to_vec().into())
            .await
            .expect("publish");
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Batch-Id", id.as_str());
        headers.insert("Nats-Batch-Sequence", "2");
        headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
        headers.insert("Nats-Batch-Commit", "1");
        let reply = self
            .client
            .request_with_headers(format!("{}.ids.{id}", self.prefix), headers, Default::default())
            .await
            .expect("commit");
        let ack: serde_json::Value = serde_json::from_slice(&reply.payload).expect("an answer");
        if let Some(error) = ack.get("error") {
            return Err(error["err_code"].as_u64().unwrap_or(0));
        }
        // The event is the first of the two.
        Ok(ack["seq"].as_u64().expect("a sequence") - 1)
    }
}
