//! Errors, one type per layer: codec, decoding, store, dispatch.
//!
//! Each names what failed and where: a stored event that cannot be decoded
//! carries its stream, stream version, event name and stored schema version;
//! a conflict carries the versions that disagreed.

use crate::codec::CodecError;
use crate::envelope::StreamId;
use crate::store::ExpectedVersion;

/// A boxed error that can cross threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why stored bytes could not become a value of an event type.
///
/// [`Event::decode`](crate::Event::decode) returns this; the repository adds
/// the stream and version and returns a [`DecodeError`].
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    /// The stored name is none of the names the type knows.
    #[error("`{type_name}` has no event named `{name}` (known names: {known:?})")]
    UnknownName {
        /// The stored name.
        name: String,
        /// The Rust type that was asked to decode it.
        type_name: &'static str,
        /// The names that type knows.
        known: &'static [&'static str],
    },
    /// A personal field's sealed value belongs to another field or subject
    /// (the stored event was altered).
    #[error("{0}")]
    Personal(String),
    /// The event was written by newer code than this one.
    #[error(
        "`{name}` was stored with schema version {stored}, newer than version {supported} that this code knows; deploy the newer code or add an upcast"
    )]
    NewerVersion {
        /// The stored name.
        name: &'static str,
        /// The version in the store.
        stored: u32,
        /// The newest version this code decodes.
        supported: u32,
    },
    /// The stored schema version is none this code knows: not the current
    /// one, and not one of the older versions its upcast chain lists.
    #[error(
        "`{name}` has no schema version {stored}; this code reads versions 1 to {current} (list older versions in `#[event(older = [..])]`)"
    )]
    UnknownVersion {
        /// The stored name.
        name: &'static str,
        /// The version in the store.
        stored: u32,
        /// The current version.
        current: u32,
    },
    /// An older version upcast to a number of events other than the one
    /// this caller needs; read it with [`Event::decode_each`](crate::Event::decode_each).
    #[error(
        "`{name}` version {stored} upcasts to {produced} events, and this read needs exactly one; read it with `Event::decode_each`"
    )]
    UpcastCount {
        /// The stored name.
        name: &'static str,
        /// The version in the store.
        stored: u32,
        /// How many events the chain produced.
        produced: usize,
    },
    /// The codec rejected the bytes.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// A stored event that could not be decoded, with where it is stored.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot decode event `{event_name}` (schema version {schema_version}) at version {stream_version} of stream `{stream}`: {source}"
)]
pub struct DecodeError {
    /// The stream holding the event.
    pub stream: StreamId,
    /// The event's version in that stream (1 for the first event).
    pub stream_version: u64,
    /// The stored event name.
    pub event_name: String,
    /// The stored schema version of the event.
    pub schema_version: u32,
    /// Why decoding failed.
    #[source]
    pub source: EventDecodeError,
}

/// A failure of the storage engine itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine reported an error while doing `operation`.
    #[error("{store} store: {operation} failed: {source}")]
    Backend {
        /// Which store (`"memory"`, `"sqlite"`, `"postgres"`).
        store: &'static str,
        /// What the store was doing.
        operation: &'static str,
        /// What the engine reported.
        #[source]
        source: BoxError,
    },
    /// The engine cannot be reached (connection refused, pool closed, file gone).
    /// Retrying later may succeed.
    #[error("{store} store is unavailable while doing {operation}: {source}")]
    Unavailable {
        /// Which store.
        store: &'static str,
        /// What the store was doing.
        operation: &'static str,
        /// What the engine reported.
        #[source]
        source: BoxError,
    },
    /// The store holds data this code cannot read (a schema from a newer
    /// release, a corrupt row).
    #[error("{store} store holds data it cannot read: {detail}")]
    Corrupt {
        /// Which store.
        store: &'static str,
        /// What is wrong and where.
        detail: String,
    },
    /// An id or name the store refuses to keep (empty, too long, holding a
    /// NUL character), the same on every store; nothing was written.
    #[error("{store} store refused {detail}")]
    Invalid {
        /// Which store.
        store: &'static str,
        /// What is wrong, and the limit.
        detail: String,
    },
    /// A data key that seals personal data could not be used: a wrong or
    /// missing master key, an altered key record. Never holds key material.
    #[error("{store} store: {detail}")]
    Keys {
        /// Which store.
        store: &'static str,
        /// Which subject's key, and what is wrong.
        detail: String,
    },
    /// An appended event reuses the id of a stored one; nothing of the
    /// batch was written.
    #[error("{store} store already holds an event with id {event_id}; the batch was not appended")]
    DuplicateEventId {
        /// Which store.
        store: &'static str,
        /// The reused id.
        event_id: crate::EventId,
    },
}

impl StoreError {
    /// An engine's error while doing `operation`: [`StoreError::Unavailable`]
    /// when the engine cannot be reached (`unavailable`), else
    /// [`StoreError::Backend`]. For store implementations.
    pub fn from_engine(
        store: &'static str,
        operation: &'static str,
        unavailable: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        let source = source.into();
        if unavailable {
            StoreError::Unavailable {
                store,
                operation,
                source,
            }
        } else {
            StoreError::Backend {
                store,
                operation,
                source,
            }
        }
    }
}

/// An append whose expected version did not match the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream `{stream}` is at version {actual}, but the append expected {expected}")]
pub struct Conflict {
    /// The stream appended to.
    pub stream: StreamId,
    /// What the writer expected.
    pub expected: ExpectedVersion,
    /// The stream's version when the append was refused.
    pub actual: u64,
}

/// Why an append did not happen. Nothing of the batch was written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer got there first.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Any aggregate's error, for code that dispatches commands of many
/// aggregates (a command enum); downcast it to the aggregate's error type.
#[derive(Debug)]
pub struct AnyRejection(BoxError);

impl AnyRejection {
    /// Wraps an aggregate's error (an `AnyRejection` is not wrapped twice).
    pub fn new(error: impl Into<BoxError>) -> Self {
        match error.into().downcast::<AnyRejection>() {
            Ok(rejection) => *rejection,
            Err(other) => AnyRejection(other),
        }
    }

    /// The aggregate's error, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }

    /// Whether the aggregate's error is an `E`.
    pub fn is<E: std::error::Error + 'static>(&self) -> bool {
        self.0.is::<E>()
    }

    /// The boxed error.
    pub fn into_inner(self) -> BoxError {
        self.0
    }
}

impl std::fmt::Display for AnyRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for AnyRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Why a command did not commit.
///
/// `E` is the aggregate's error type for [`dispatch`](crate::Dispatcher::dispatch)
/// of one command, and [`AnyRejection`] for a routed command enum.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError<E = AnyRejection> {
    /// The aggregate's handler refused the command. Nothing was written.
    #[error("command `{command}` rejected by `{stream}`: {error}")]
    Rejected {
        /// The command's type name.
        command: &'static str,
        /// The aggregate's stream.
        stream: StreamId,
        /// The handler's error.
        #[source]
        error: E,
    },
    /// Other writers kept appending to the stream; the command was decided
    /// `attempts` times and every append lost the race.
    #[error("command `{command}` gave up after {attempts} attempts: {conflict}")]
    Conflict {
        /// The command's type name.
        command: &'static str,
        /// How many times it was decided.
        attempts: u32,
        /// The last conflict.
        #[source]
        conflict: Conflict,
    },
    /// A stored event of the aggregate could not be decoded (boxed: it is
    /// rare and large).
    #[error(transparent)]
    Decode(Box<DecodeError>),
    /// An event produced by the handler could not be encoded. Nothing was written.
    #[error("cannot encode event `{event_name}` for stream `{stream}`: {source}")]
    Encode {
        /// The aggregate's stream.
        stream: StreamId,
        /// The event's stored name.
        event_name: &'static str,
        /// What the codec reported.
        #[source]
        source: Box<CodecError>,
    },
    /// The aggregate declares services that were never given to the dispatcher.
    #[error(
        "aggregate `{aggregate}` needs services of type `{services}`; give them with `Dispatcher::builder(store).services::<{aggregate}>(..)`"
    )]
    MissingServices {
        /// The aggregate's type name.
        aggregate: &'static str,
        /// The services type.
        services: &'static str,
    },
    /// A handler of the aggregate panicked while deciding the command or
    /// applying what it decided. Nothing was written, and the aggregate's
    /// cached state was dropped: the next command reloads it from the store.
    #[error(
        "command `{command}` on `{stream}`: a handler of aggregate `{aggregate}` panicked: {message}; nothing was written"
    )]
    Panicked {
        /// The aggregate's stored type name.
        aggregate: &'static str,
        /// The aggregate's stream.
        stream: StreamId,
        /// The command's type name.
        command: &'static str,
        /// What the panic said.
        message: String,
    },
    /// The command's id was already used on the stream by a command of
    /// another type: the id names that command, so this one was not run.
    /// Nothing was written. Give each command its own id (a client retrying
    /// a request sends the same command with the same id).
    #[error(
        "command `{command}` on `{stream}`: its command id `{command_id}` was already used there by {}, so it was not run; a command id names one command: give each command its own id",
        used_by(command, earlier)
    )]
    CommandIdReused {
        /// The command's type name.
        command: &'static str,
        /// The aggregate's stream.
        stream: StreamId,
        /// The command id.
        command_id: String,
        /// The type name of the command that used the id first: the same
        /// name when the same kind of command was sent with other content.
        earlier: String,
    },
    /// The store failed; whether the command committed is unknown only if
    /// this happened during the append (a retry with the same command id is
    /// safe either way).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E> DispatchError<E> {
    /// The handler's error, if the command was rejected.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            DispatchError::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Turns the rejection into another type, keeping every other variant.
    pub fn map_rejection<F>(self, f: impl FnOnce(E) -> F) -> DispatchError<F> {
        match self {
            DispatchError::Rejected { command, stream, error } => DispatchError::Rejected {
                command,
                stream,
                error: f(error),
            },
            DispatchError::Conflict {
                command,
                attempts,
                conflict,
            } => DispatchError::Conflict {
                command,
                attempts,
                conflict,
            },
            DispatchError::Decode(e) => DispatchError::Decode(e),
            DispatchError::Encode {
                stream,
                event_name,
                source,
            } => DispatchError::Encode {
                stream,
                event_name,
                source,
            },
            DispatchError::MissingServices { aggregate, services } => {
                DispatchError::MissingServices { aggregate, services }
            }
            DispatchError::Panicked {
                aggregate,
                stream,
                command,
                message,
            } => DispatchError::Panicked {
                aggregate,
                stream,
                command,
                message,
            },
            DispatchError::CommandIdReused {
                command,
                stream,
                command_id,
                earlier,
            } => DispatchError::CommandIdReused {
                command,
                stream,
                command_id,
                earlier,
            },
            DispatchError::Store(e) => DispatchError::Store(e),
        }
    }

    /// Erases the rejection's type, for code that handles commands of many
    /// aggregates.
    pub fn erased(self) -> DispatchError<AnyRejection>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.map_rejection(AnyRejection::new)
    }
}

impl<E> From<DecodeError> for DispatchError<E> {
    fn from(e: DecodeError) -> Self {
        DispatchError::Decode(Box::new(e))
    }
}

/// Who used a reused command id: another kind of command, or the same kind
/// with other content.
fn used_by(command: &str, earlier: &str) -> String {
    if command == earlier {
        format!("another `{earlier}` with other content")
    } else {
        format!("command `{earlier}`")
    }
}

/// The decoding failure of `event`, with where it is stored.
pub(crate) fn decode_error(event: &crate::store::RecordedEvent<'_>, source: EventDecodeError) -> DecodeError {
    DecodeError {
        stream: event.stream(),
        stream_version: event.version,
        event_name: event.name.to_owned(),
        schema_version: event.schema_version,
        source,
    }
}
