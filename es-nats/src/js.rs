//! The JetStream requests es-nats makes beyond what async-nats 0.46 wraps:
//! an atomic batch publish (server 2.12, ADR-50) and a batched direct get
//! (server 2.11, ADR-31). Both are plain NATS messages with headers.

use std::time::Duration;

use async_nats::{HeaderMap, Request};
use bytes::Bytes;
use futures_util::StreamExt;

/// The server's code for a failed expected-sequence check.
pub(crate) const WRONG_LAST_SEQUENCE: u64 = 10071;
/// The server's code for an expected-sequence check it could not make: a
/// batch for the same subject was in flight (proposed, not yet applied).
pub(crate) const WRONG_LAST_SEQUENCE_IN_FLIGHT: u64 = 10164;
/// The server's code for a batch over its `max_batch_size`.
pub(crate) const BATCH_TOO_LARGE: u64 = 10199;

/// A message of an atomic batch.
#[derive(Clone)]
pub(crate) struct Outbound {
    pub(crate) subject: String,
    pub(crate) payload: Bytes,
    /// `Nats-Expected-Last-Subject-Sequence`: the batch is stored only if
    /// the subject's last message (before the batch) is at this sequence;
    /// 0 for a subject without messages.
    pub(crate) expected_subject_sequence: Option<u64>,
}

/// Why a JetStream request failed.
#[derive(Debug)]
pub(crate) enum JsError {
    /// The server answered with an error.
    Refused {
        /// Its JetStream error code (`err_code`).
        code: u64,
        /// What it said.
        description: String,
    },
    /// No answer in time, or the connection failed.
    Transport(String),
}

impl std::fmt::Display for JsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsError::Refused { code, description } => write!(f, "the server refused: {description} (error {code})"),
            JsError::Transport(detail) => write!(f, "{detail}"),
        }
    }
}

impl std::error::Error for JsError {}

impl JsError {
    /// Whether the server may take the same request a moment later: too
    /// many batches in flight, a batch it abandoned, a leader change.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            JsError::Refused { code, description } => {
                let d = description.to_ascii_lowercase();
                // 503: no server answers for the stream yet (a replica
                // catching up after a restart turns its direct gets off).
                *code == 503 || d.contains("too many inflight") || d.contains("incomplete") || d.contains("leader")
            }
            JsError::Transport(_) => false,
        }
    }
}

#[derive(serde::Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

#[derive(serde::Deserialize)]
struct BatchAck {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    count: u64,
}

/// Publishes `messages` as one atomic batch: all are stored, in order and
/// at consecutive sequences, or none is. Returns the sequence of the last.
/// The messages before the last go without a reply (the connection keeps
/// their order); the last commits the batch and waits for the answer.
pub(crate) async fn publish_batch(
    client: &async_nats::Client,
    messages: Vec<Outbound>,
    timeout: Duration,
) -> Result<u64, JsError> {
    let id = es_core::EventId::new().as_uuid().simple().to_string();
    let total = messages.len();
    for (i, message) in messages.into_iter().enumerate() {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Batch-Id", id.as_str());
        headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
        if let Some(sequence) = message.expected_subject_sequence {
            headers.insert("Nats-Expected-Last-Subject-Sequence", sequence.to_string().as_str());
        }
        if i + 1 < total {
            client
                .publish_with_headers(message.subject, headers, message.payload)
                .await
                .map_err(|e| JsError::Transport(format!("publish: {e}")))?;
            continue;
        }
        headers.insert("Nats-Batch-Commit", "1");
        let request = Request::new()
            .headers(headers)
            .payload(message.payload)
            .timeout(Some(timeout));
        let reply = client
            .send_request(message.subject, request)
            .await
            .map_err(|e| match e.kind() {
                // No stream listens on the subject yet (a stream just made,
                // or electing its leader): nothing of the batch was stored,
                // and the caller may send it again, as for the server's 503.
                async_nats::RequestErrorKind::NoResponders => JsError::Refused {
                    code: 503,
                    description: "no server answers for the stream yet (no responders)".to_owned(),
                },
                _ => JsError::Transport(format!("commit a batch: {e}")),
            })?;
        let ack: BatchAck = serde_json::from_slice(&reply.payload)
            .map_err(|e| JsError::Transport(format!("an answer to a batch that does not read: {e}")))?;
        if let Some(error) = ack.error {
            return Err(JsError::Refused {
                code: error.err_code,
                description: error.description,
            });
        }
        if ack.count != total as u64 || ack.seq < total as u64 {
            return Err(JsError::Transport(format!(
                "the server stored a batch of {} messages at {}; {total} were sent",
                ack.count, ack.seq
            )));
        }
        return Ok(ack.seq);
    }
    Err(JsError::Transport("an empty batch".to_owned()))
}

/// A stored message, as a direct get returns it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) sequence: u64,
    pub(crate) subject: String,
    pub(crate) payload: Bytes,
}

/// What one batched direct get returned.
#[derive(Debug, Default)]
pub(crate) struct Page {
    /// The messages, in sequence order (without their sequences and
    /// subjects when read without headers).
    pub(crate) messages: Vec<Stored>,
    /// How many messages matching the filter come after the last one, as
    /// the answering server knew them.
    pub(crate) pending: u64,
    /// The sequence of the last message returned.
    pub(crate) last: Option<u64>,
}

#[derive(serde::Serialize)]
struct DirectGet<'a> {
    seq: u64,
    next_by_subj: &'a str,
    batch: usize,
    max_bytes: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_hdr: bool,
}

/// How much one direct get may return: the server stops a batch there.
const MAX_BYTES: usize = 8 << 20;

fn header_u64(headers: Option<&HeaderMap>, name: impl async_nats::header::IntoHeaderName) -> Option<u64> {
    headers?.get(name)?.as_str().parse().ok()
}

/// Up to `batch` messages of stream `stream` on subjects matching `filter`
/// from sequence `start`, in one request that any replica may answer (it
/// may be a little behind the leader, never ahead and never with a gap).
/// Without `headers` the server leaves every header out, the message's
/// sequence and subject included (the page's `last` still says where it
/// ended): a tenth of the work for a reader that needs neither.
pub(crate) async fn direct_batch(
    client: &async_nats::Client,
    stream: &str,
    start: u64,
    filter: &str,
    batch: usize,
    headers: bool,
    timeout: Duration,
) -> Result<Page, JsError> {
    let body = serde_json::to_vec(&DirectGet {
        seq: start.max(1),
        next_by_subj: filter,
        batch: batch.max(1),
        max_bytes: MAX_BYTES,
        no_hdr: !headers,
    })
    .map_err(|e| JsError::Transport(e.to_string()))?;
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| JsError::Transport(format!("subscribe for a read: {e}")))?;
    client
        .publish_with_reply(format!("$JS.API.DIRECT.GET.{stream}"), inbox, body.into())
        .await
        .map_err(|e| JsError::Transport(format!("ask for a read: {e}")))?;
    let mut page = Page::default();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let reply = match tokio::time::timeout_at(deadline, replies.next()).await {
            Ok(Some(reply)) => reply,
            Ok(None) => return Err(JsError::Transport("the connection closed during a read".to_owned())),
            Err(_) => {
                return Err(JsError::Transport(format!(
                    "no answer to a read of `{stream}` within {timeout:?}"
                )));
            }
        };
        match reply.status.map(|s| s.as_u16()) {
            None if !headers => page.messages.push(Stored {
                sequence: 0,
                subject: String::new(),
                payload: reply.payload,
            }),
            None => {
                let headers = reply.headers.as_ref();
                let sequence = header_u64(headers, async_nats::header::NATS_SEQUENCE)
                    .ok_or_else(|| JsError::Transport("a stored message without its sequence".to_owned()))?;
                let subject = headers
                    .and_then(|h| h.get(async_nats::header::NATS_SUBJECT))
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default();
                page.pending = header_u64(headers, "Nats-Num-Pending").unwrap_or(0);
                page.last = Some(sequence);
                page.messages.push(Stored {
                    sequence,
                    subject,
                    payload: reply.payload,
                });
            }
            // The end of the batch.
            Some(204) => {
                let eob = reply.headers.as_ref();
                page.pending = header_u64(eob, "Nats-Num-Pending").unwrap_or(page.pending);
                page.last = header_u64(eob, async_nats::header::NATS_LAST_SEQUENCE).or(page.last);
                return Ok(page);
            }
            // Nothing from `start` on.
            Some(404) => return Ok(page),
            Some(code) => {
                return Err(JsError::Refused {
                    code: u64::from(code),
                    description: reply
                        .description
                        .unwrap_or_else(|| format!("status {code} to a direct get")),
                });
            }
        }
    }
}
