//! Opening a store: the server it needs, its two JetStream streams, and the
//! checks that refuse a store whose event stream vanished or was replaced.

use async_nats::jetstream::{self, stream};
use es_core::StoreError;

use crate::{NatsOptions, STORE, Storage, corrupt, invalid, js};

/// The oldest server with what the store needs: atomic batch publish
/// (2.12), which also brings batched direct gets (2.11) and the replicated
/// per-subject expected sequence (2.10.20).
pub const MIN_SERVER: (u32, u32, u32) = (2, 12, 0);

/// The names of a store's streams and subjects, from its prefix.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) prefix: String,
    /// `<prefix>_events`: events, event-id records and command records.
    pub(crate) events: String,
    /// `<prefix>_records`: snapshots, checkpoints and the store's identity.
    pub(crate) records: String,
    /// `<prefix>.events.>`
    pub(crate) all_events: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Names {
            prefix: prefix.to_owned(),
            events: format!("{prefix}_events"),
            records: format!("{prefix}_records"),
            all_events: format!("{prefix}.events.>"),
        }
    }

    /// Where the server announces each stored event (headers only).
    pub(crate) fn committed(&self) -> String {
        format!("{}.committed.>", self.prefix)
    }

    fn event_subjects(&self) -> Vec<String> {
        let p = &self.prefix;
        vec![self.all_events.clone(), format!("{p}.ids.>"), format!("{p}.cmds.>")]
    }

    pub(crate) fn identity(&self) -> String {
        format!("{}.records.store", self.prefix)
    }

    /// `<prefix>_keys`: the data keys of personal data.
    pub(crate) fn keys(&self) -> String {
        format!("{}_keys", self.prefix)
    }

    pub(crate) fn checkpoints(&self) -> String {
        format!("{}.records.checkpoints", self.prefix)
    }

    pub(crate) fn snapshots(&self) -> String {
        format!("{}.records.snapshots", self.prefix)
    }
}

/// `2.15.1` as numbers; `None` when it does not read as a version.
pub(crate) fn parse_version(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
}

/// Refuses a server without JetStream or older than [`MIN_SERVER`].
pub(crate) fn check_server(info: &async_nats::ServerInfo) -> Result<(), StoreError> {
    let (major, minor, patch) = MIN_SERVER;
    let found = parse_version(&info.version);
    if found.is_none_or(|v| v < MIN_SERVER) {
        return Err(invalid(format!(
            "nats-server {:?} (at {}:{}): es-nats needs {major}.{minor}.{patch} or newer, for atomic batch publish \
             (a command's events, its command-id record and its event-id records are one write)",
            info.version, info.host, info.port
        )));
    }
    if !info.jetstream {
        return Err(invalid(format!(
            "the server at {}:{} runs without JetStream: start it with `-js` (or `jetstream {{}}` in its configuration)",
            info.host, info.port
        )));
    }
    Ok(())
}

fn storage(options: &NatsOptions) -> stream::StorageType {
    match options.storage {
        Storage::File => stream::StorageType::File,
        Storage::Memory => stream::StorageType::Memory,
    }
}

fn events_config(names: &Names, options: &NatsOptions) -> stream::Config {
    stream::Config {
        name: names.events.clone(),
        subjects: names.event_subjects(),
        storage: storage(options),
        num_replicas: options.replicas,
        allow_direct: true,
        allow_atomic_publish: true,
        // Nothing is ever removed from the log: not by a client's delete or
        // purge, not by a limit. The server refuses to lift these two.
        deny_delete: true,
        deny_purge: true,
        republish: Some(stream::Republish {
            source: names.all_events.clone(),
            destination: names.committed(),
            headers_only: true,
        }),
        ..Default::default()
    }
}

fn records_config(names: &Names, options: &NatsOptions) -> stream::Config {
    stream::Config {
        name: names.records.clone(),
        subjects: vec![format!("{}.records.>", names.prefix)],
        storage: storage(options),
        num_replicas: options.replicas,
        // A record is the last message of its subject, as in a key-value
        // bucket; a purge would forget every checkpoint.
        max_messages_per_subject: 1,
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

fn keys_config(names: &Names, options: &NatsOptions) -> stream::Config {
    stream::Config {
        name: names.keys(),
        subjects: vec![format!("{}.keys.>", names.prefix)],
        storage: storage(options),
        num_replicas: options.replicas,
        allow_direct: true,
        // A key's older message is erased once its newer one is stored (a
        // rotation, a forget); the stream is never purged.
        deny_delete: false,
        deny_purge: true,
        ..Default::default()
    }
}

/// The key stream: made if missing (unless the store is opened without
/// creating anything, where a store without one has no keys).
pub(crate) async fn open_keys(
    context: &jetstream::Context,
    names: &Names,
    options: &NatsOptions,
) -> Result<Option<stream::Stream>, StoreError> {
    match existing(context, &names.keys()).await? {
        Some(stream) => Ok(Some(stream)),
        None if options.create => create(context, keys_config(names, options)).await.map(Some),
        None => Ok(None),
    }
}

fn failed(operation: &'static str) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> StoreError {
    move |e| StoreError::from_engine(STORE, operation, true, e)
}

/// The stream named `name`, or `None` when there is none.
async fn existing(context: &jetstream::Context, name: &str) -> Result<Option<stream::Stream>, StoreError> {
    match context.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e) => match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(failed("look up a stream")(Box::new(e))),
        },
    }
}

async fn create(context: &jetstream::Context, config: stream::Config) -> Result<stream::Stream, StoreError> {
    // Two processes may create it at once: the second finds it made.
    context
        .get_or_create_stream(config)
        .await
        .map_err(|e| failed("create a stream")(Box::new(e)))
}

/// What the records stream says about the event stream it belongs to.
fn identity(created: i128) -> String {
    format!("es-nats store\nevent stream created {created}\n")
}

fn created_of(identity: &[u8]) -> Option<i128> {
    std::str::from_utf8(identity)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("event stream created "))?
        .parse()
        .ok()
}

async fn last_message(
    stream: &stream::Stream,
    subject: &str,
) -> Result<Option<async_nats::jetstream::message::StreamMessage>, StoreError> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => Ok(Some(message)),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(failed("read a stream's last message")(Box::new(e))),
    }
}

/// Opens (or creates) the store's two streams and checks that they belong
/// together.
pub(crate) async fn open(
    client: &async_nats::Client,
    context: &jetstream::Context,
    names: &Names,
    options: &NatsOptions,
) -> Result<(stream::Stream, stream::Stream), StoreError> {
    let events = existing(context, &names.events).await?;
    let records = existing(context, &names.records).await?;
    let (mut events, records, fresh) = match (events, records) {
        (None, None) if !options.create => {
            return Err(invalid(format!(
                "the prefix {:?}: the server holds no store under it (no stream `{}`); check the prefix",
                names.prefix, names.events
            )));
        }
        (None, None) => {
            let events = create(context, events_config(names, options)).await?;
            let records = create(context, records_config(names, options)).await?;
            (events, records, true)
        }
        (None, Some(mut records)) => {
            let info = records
                .info()
                .await
                .map_err(|e| failed("read the records stream")(Box::new(e)))?;
            if info.state.messages > 0 {
                return Err(corrupt(format!(
                    "the event stream `{}` is missing, but `{}` holds {} records (checkpoints, snapshots) of a store \
                     that had one: the event stream was deleted. Restore it, or delete `{}` too to start an empty store",
                    names.events, names.records, info.state.messages, names.records
                )));
            }
            let events = create(context, events_config(names, options)).await?;
            (events, records, true)
        }
        (Some(mut events), None) => {
            let info = events
                .info()
                .await
                .map_err(|e| failed("read the event stream")(Box::new(e)))?;
            check_layout(names, &info.config)?;
            if info.state.messages > 0 && !options.accept_lost_records {
                return Err(corrupt(format!(
                    "the records stream `{}` is missing while `{}` holds {} messages: every checkpoint and snapshot \
                     is gone, so read models and process managers would start from the beginning. Restore it, or \
                     set `NatsOptions::accept_lost_records` to start anew (process reactions are still answered \
                     once by their command ids)",
                    names.records, names.events, info.state.messages
                )));
            }
            let records = create(context, records_config(names, options)).await?;
            (events, records, true)
        }
        (Some(events), Some(records)) => (events, records, false),
    };
    let info = events
        .info()
        .await
        .map_err(|e| failed("read the event stream")(Box::new(e)))?
        .clone();
    check_layout(names, &info.config)?;
    let created = info.created.unix_timestamp_nanos();
    match last_message(&records, &names.identity()).await? {
        Some(message) => match created_of(&message.payload) {
            Some(recorded) if recorded == created => {}
            recorded => {
                return Err(corrupt(format!(
                    "the event stream `{}` is not the one its records belong to (it was created at {} ns, the \
                     records name {}): it was deleted and made again, and its checkpoints and snapshots point into \
                     a log that is gone. Restore the event stream, or delete both streams to start an empty store",
                    names.events,
                    created,
                    recorded.map_or_else(|| "nothing readable".to_owned(), |r| format!("{r} ns"))
                )));
            }
        },
        None => {
            if !options.create {
                // A tool inspecting the store writes nothing.
                return Ok((events, records));
            }
            if !fresh && info.state.messages > 0 && !options.accept_lost_records {
                return Err(corrupt(format!(
                    "the records stream `{}` does not name the event stream `{}`, which holds {} messages: the records \
                     stream was replaced (its checkpoints and snapshots are gone), or the store was made by an \
                     earlier release. Set `NatsOptions::accept_lost_records` to start anew",
                    names.records, names.events, info.state.messages
                )));
            }
            write_identity(context, names, created).await?;
        }
    }
    check_checkpoints(client, &events, names, options).await?;
    Ok((events, records))
}

/// Records the event stream's identity, unless another process did first.
async fn write_identity(context: &jetstream::Context, names: &Names, created: i128) -> Result<(), StoreError> {
    let message = jetstream::message::PublishMessage::build()
        .payload(identity(created).into_bytes().into())
        .expected_last_subject_sequence(0);
    let sent = context
        .send_publish(names.identity(), message)
        .await
        .map_err(|e| failed("record the store's identity")(Box::new(e)))?;
    match sent.await {
        Ok(_) => Ok(()),
        // Another process opening the same new store wrote it first; the
        // next start compares it.
        Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => Ok(()),
        Err(e) => Err(failed("record the store's identity")(Box::new(e))),
    }
}

/// Refuses an event stream this release cannot use.
fn check_layout(names: &Names, config: &stream::Config) -> Result<(), StoreError> {
    let missing: Vec<String> = names
        .event_subjects()
        .into_iter()
        .filter(|s| !config.subjects.contains(s))
        .collect();
    if !config.allow_atomic_publish || !missing.is_empty() || !config.deny_delete || !config.deny_purge {
        return Err(corrupt(format!(
            "the event stream `{}` was not made by this release of es-nats (atomic publish {}, deletes {}, purges \
             {}, subjects {:?}): an earlier release kept one message per batch and its command ids in the records \
             stream, which this release does not read. Export its events (`es events --json` with the earlier \
             release) and import them into a new prefix",
            names.events,
            if config.allow_atomic_publish { "on" } else { "off" },
            if config.deny_delete { "denied" } else { "allowed" },
            if config.deny_purge { "denied" } else { "allowed" },
            config.subjects,
        )));
    }
    Ok(())
}

/// Refuses checkpoints that point past the end of the log: the log lost
/// events it once had.
async fn check_checkpoints(
    client: &async_nats::Client,
    events: &stream::Stream,
    names: &Names,
    options: &NatsOptions,
) -> Result<(), StoreError> {
    let end = last_message(events, &names.all_events).await?.map_or(0, |m| m.sequence);
    let space = format!("{}.>", names.checkpoints());
    let mut start = 1;
    loop {
        let page = js::direct_batch(
            client,
            &names.records,
            start,
            &space,
            1_000,
            true,
            options.request_timeout,
        )
        .await
        .map_err(|e| failed("read the checkpoints")(Box::new(e)))?;
        for message in &page.messages {
            let position = std::str::from_utf8(&message.payload)
                .ok()
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(position) = position
                && position > end
            {
                let name = crate::checkpoint_name(&message.subject).unwrap_or_else(|| message.subject.clone());
                return Err(corrupt(format!(
                    "checkpoint {name:?} is at position {position}, past the end of the log ({end}): the event \
                     stream `{}` lost events it had. Restore it; a rebuild of that reader starts it anew",
                    names.events
                )));
            }
        }
        match page.messages.last() {
            Some(last) if page.pending > 0 => start = last.sequence + 1,
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compared_as_numbers() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("v2.12.0-RC.1"), Some((2, 12, 0)));
        assert_eq!(parse_version("2.10"), Some((2, 10, 0)));
        assert_eq!(parse_version("nonsense"), None);
        assert!(parse_version("2.9.10").unwrap() < MIN_SERVER);
        assert!(parse_version("2.11.9").unwrap() < MIN_SERVER);
        assert!(parse_version("2.12.0").unwrap() >= MIN_SERVER);
        assert!(parse_version("2.15.1").unwrap() >= MIN_SERVER);
    }

    #[test]
    fn the_identity_names_the_event_streams_creation() {
        assert_eq!(
            created_of(identity(1_765_000_000_123_456_789).as_bytes()),
            Some(1_765_000_000_123_456_789)
        );
        assert_eq!(created_of(b"something else"), None);
    }
}
