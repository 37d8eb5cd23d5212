//! Group commit: appends that are ready while another is in flight go to
//! the server together, as one atomic batch.
//!
//! On one node, the server syncs each atomic batch to disk before it
//! answers, and batches of one stream commit one at a time: appends sent
//! one batch each wait for each other's sync. A committer task per store
//! takes the appends that queued while its last batch was in flight and
//! sends them as one batch, each with its own checks; when that batch is
//! refused (one append's check failed), each is sent again alone, so one
//! conflict fails only its own append. Appends that touch a subject
//! another append of the group touches wait for the next group.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::js::{self, JsError, Outbound};

/// The most messages the server takes in one atomic batch (its default
/// `max_batch_size`).
pub(crate) const MAX_BATCH_MESSAGES: usize = 1_000;

/// One append's messages and where its outcome goes: the sequence of its
/// last message.
struct Job {
    messages: Vec<Outbound>,
    reply: oneshot::Sender<Result<u64, JsError>>,
}

/// The committer of one store: started on first use in the runtime that
/// uses it, started again if that runtime went away.
#[derive(Default)]
pub(crate) struct Committer {
    queue: Mutex<Option<mpsc::UnboundedSender<Job>>>,
}

impl Committer {
    /// Stores `messages` as one atomic batch, alone or beside other
    /// appends: the sequence of its last message.
    pub(crate) async fn commit(
        &self,
        client: &async_nats::Client,
        timeout: Duration,
        messages: Vec<Outbound>,
    ) -> Result<u64, JsError> {
        let (reply, answer) = oneshot::channel();
        self.send(client, timeout, Job { messages, reply });
        answer.await.unwrap_or_else(|_| {
            Err(JsError::Transport(
                "the store's committer stopped before answering".to_owned(),
            ))
        })
    }

    fn send(&self, client: &async_nats::Client, timeout: Duration, mut job: Job) {
        let mut queue = self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = queue.as_ref() {
            match sender.send(job) {
                Ok(()) => return,
                // Its task is gone (its runtime ended): start another.
                Err(mpsc::error::SendError(back)) => job = back,
            }
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(client.clone(), timeout, receiver));
        let _ = sender.send(job);
        *queue = Some(sender);
    }
}

/// The committer's loop: a group per round trip.
///
/// Writers whose appends were answered together come back at slightly
/// different times (each reads before it appends again): sent at once,
/// the first would go alone and the rest wait a whole round trip for it.
/// So when the last group held several appends, the committer waits a
/// little (a quarter of the last round trip, at most a millisecond) for as
/// many to arrive. A lone writer never waits.
async fn run(client: async_nats::Client, timeout: Duration, mut receiver: mpsc::UnboundedReceiver<Job>) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut last_size = 1;
    let mut last_trip = Duration::ZERO;
    loop {
        if waiting.is_empty() {
            match receiver.recv().await {
                Some(job) => waiting.push_back(job),
                None => return,
            }
        }
        while let Ok(job) = receiver.try_recv() {
            waiting.push_back(job);
        }
        if waiting.len() < last_size {
            let until = tokio::time::Instant::now() + (last_trip / 4).min(Duration::from_millis(1));
            while waiting.len() < last_size {
                match tokio::time::timeout_at(until, receiver.recv()).await {
                    Ok(Some(job)) => waiting.push_back(job),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let group = take_group(&mut waiting);
        last_size = group.len();
        let started = std::time::Instant::now();
        commit_group(&client, timeout, group).await;
        last_trip = started.elapsed();
    }
}

/// The waiting jobs that fit one batch and touch no subject twice, in
/// order; the others stay.
fn take_group(waiting: &mut VecDeque<Job>) -> Vec<Job> {
    let mut group = Vec::new();
    let mut subjects: HashSet<String> = HashSet::new();
    let mut messages = 0;
    let mut kept = VecDeque::new();
    while let Some(job) = waiting.pop_front() {
        let fits = messages + job.messages.len() <= MAX_BATCH_MESSAGES;
        let clashes = job.messages.iter().any(|m| subjects.contains(&m.subject));
        if group.is_empty() || (fits && !clashes) {
            messages += job.messages.len();
            subjects.extend(job.messages.iter().map(|m| m.subject.clone()));
            group.push(job);
        } else {
            kept.push_back(job);
        }
    }
    *waiting = kept;
    group
}

async fn commit_group(client: &async_nats::Client, timeout: Duration, mut group: Vec<Job>) {
    if group.len() == 1 {
        let job = group.pop().expect("one job");
        let outcome = js::publish_batch(client, job.messages, timeout).await;
        let _ = job.reply.send(outcome);
        return;
    }
    // One batch for all: each job's last message is at the end of its run.
    let mut ends = Vec::with_capacity(group.len());
    let mut messages = Vec::with_capacity(group.iter().map(|j| j.messages.len()).sum());
    let mut replies = Vec::with_capacity(group.len());
    let mut alone = Vec::with_capacity(group.len());
    for job in group {
        alone.push(job.messages.clone());
        messages.extend(job.messages);
        ends.push(messages.len());
        replies.push(job.reply);
    }
    let total = messages.len() as u64;
    match js::publish_batch(client, messages, timeout).await {
        Ok(last) => {
            let first = last + 1 - total;
            for (reply, end) in replies.into_iter().zip(ends) {
                let _ = reply.send(Ok(first + end as u64 - 1));
            }
        }
        Err(JsError::Refused { .. }) => {
            // Some append's check failed (or the server took exception to
            // one of them): each on its own, so that only that one fails.
            let outcomes =
                futures_util::future::join_all(alone.into_iter().map(|m| js::publish_batch(client, m, timeout))).await;
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(error) => {
            // No answer: any of them may be stored. Each caller reads back.
            let message = error.to_string();
            for reply in replies {
                let _ = reply.send(Err(JsError::Transport(message.clone())));
            }
        }
    }
}
