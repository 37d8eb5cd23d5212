//! Personal data on the write side: the scope an aggregate's events are
//! sealed and opened in, and forgetting a data subject.

use super::Dispatcher;
use crate::aggregate::Aggregate;
use crate::codec::{Codec, CodecError};
use crate::envelope::{EventId, StreamId, Timestamp};
use crate::error::{EventDecodeError, StoreError};
use crate::event::Event;
use crate::personal::Subject;
use crate::personal::seal::Scope;
use crate::store::{AppendRequest, EventStore, ExpectedVersion, NewEvent};

/// The aggregate type of the streams that record forgets: one stream per
/// subject, holding its [`SubjectForgotten`] event.
pub const FORGOTTEN_STREAM: &str = "es.personal";

/// A data subject was forgotten: its key is gone, and with it every value
/// sealed for it. Holds no personal data. A read model that copied
/// personal values handles it to scrub them:
///
/// ```ignore
/// #[apply]
/// fn forgotten(&mut self, event: &SubjectForgotten) {
///     self.guests.retain(|g| g.id != event.subject);
/// }
/// ```
///
/// Stored as `es.subject_forgotten` on the stream `es.personal/<subject>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubjectForgotten {
    /// The subject, as stored beside its key.
    pub subject: String,
}

impl SubjectForgotten {
    /// Its stored name.
    pub const NAME: &'static str = "es.subject_forgotten";
}

#[diagnostic::do_not_recommend]
impl Event for SubjectForgotten {
    const NAMES: &'static [&'static str] = &[Self::NAME];
    const SINGLE: bool = true;
    const VERSION: u32 = 1;

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError> {
        codec.encode(self)
    }

    fn decode<C: Codec>(codec: &C, name: &str, version: u32, payload: &[u8]) -> Result<Self, EventDecodeError> {
        if name != Self::NAME {
            return Err(EventDecodeError::UnknownName {
                name: name.to_owned(),
                type_name: "SubjectForgotten",
                known: Self::NAMES,
            });
        }
        if version != 1 {
            return Err(EventDecodeError::UnknownVersion {
                name: Self::NAME,
                stored: version,
                current: 1,
            });
        }
        codec.decode(payload).map_err(EventDecodeError::from)
    }
}

impl<T: crate::event::Apply<SubjectForgotten> + ?Sized> crate::event::ApplyTo<T> for SubjectForgotten {
    fn apply_to(&self, target: &mut T) {
        target.apply(self)
    }
}

impl<S: EventStore, C: Codec> Dispatcher<S, C> {
    /// The scope `A`'s events are sealed (`sealing`) or opened in, if they
    /// hold personal data; an error if they do and the store has no keys.
    pub(super) fn personal_scope<A: Aggregate>(&self, sealing: bool) -> Result<Option<Scope>, StoreError> {
        if !<A::Event as Event>::PERSONAL {
            return Ok(None);
        }
        match self.inner.store.keyring() {
            Some(keyring) => Ok(Some(Scope::new(keyring.clone(), sealing))),
            None => Err(no_keys(S::NAME, A::NAME)),
        }
    }

    /// Forgets a data subject: erases its data key from the store, so every
    /// personal value sealed for it reads as forgotten from now on, and
    /// appends a [`SubjectForgotten`] event (no personal data) for read
    /// models. Forgetting twice is the same as once. This dispatcher's
    /// cached aggregates are dropped; other processes stop reading the
    /// subject's values when their key cache expires
    /// ([`Keyring::cache_for`](crate::personal::Keyring::cache_for)).
    ///
    /// What the store does to erase the key from its own files, and what
    /// the operator must do besides, is in each store's documentation.
    pub async fn forget(&self, subject: impl Subject) -> Result<(), StoreError> {
        let subject = subject.to_string();
        let keyring = self.inner.store.keyring().ok_or_else(|| StoreError::Keys {
            store: S::NAME,
            detail: "this store was opened without a key provider, so it holds no personal data to forget: open it with `.with_keys(provider)`".to_owned(),
        })?;
        keyring.forget(&subject).await?;
        self.inner.caches.clear();
        record_forget(&self.inner.store, &subject).await
    }
}

/// Forgets `subject` in a store whose keys `keys` keeps, without a master
/// key (forgetting needs none): erases the key and appends the
/// [`SubjectForgotten`] event, as [`Dispatcher::forget`] does. For
/// operator tools; an application calls [`Dispatcher::forget`], which also
/// drops its cached aggregates and its cached key.
pub async fn forget_subject<S: EventStore>(
    store: &S,
    keys: &dyn crate::personal::KeyBackend,
    subject: &str,
) -> Result<(), StoreError> {
    crate::store::validate_subject(S::NAME, subject)?;
    keys.write_key(subject, crate::personal::KeyWrite::Forget { at: Timestamp::now() })
        .await?;
    record_forget(store, subject).await
}

/// Appends the [`SubjectForgotten`] event of `subject` (once: its command
/// id makes a second forget a duplicate).
async fn record_forget<S: EventStore>(store: &S, subject: &str) -> Result<(), StoreError> {
    let stream = StreamId::new(FORGOTTEN_STREAM, subject);
    let payload = serde_json::to_vec(&SubjectForgotten {
        subject: subject.to_owned(),
    })
    .map_err(|e| StoreError::Invalid {
        store: S::NAME,
        detail: format!("a forget event: {e}"),
    })?;
    let recorded_at = Timestamp::now();
    let event = NewEvent {
        event_id: EventId::at(recorded_at),
        name: SubjectForgotten::NAME,
        schema_version: 1,
        payload: &payload,
    };
    let appended = store
        .append(AppendRequest {
            stream: &stream,
            expected: ExpectedVersion::Any,
            events: std::slice::from_ref(&event),
            metadata: b"",
            command_id: Some("forget"),
            recorded_at,
        })
        .await;
    match appended {
        Ok(_) => Ok(()),
        Err(crate::AppendError::Store(e)) => Err(e),
        Err(crate::AppendError::Conflict(c)) => Err(StoreError::Corrupt {
            store: S::NAME,
            detail: format!("an append with any expected version conflicted: {c}"),
        }),
    }
}

/// The error for personal data in a store without keys.
pub(crate) fn no_keys(store: &'static str, aggregate: &str) -> StoreError {
    StoreError::Keys {
        store,
        detail: format!(
            "the events of `{aggregate}` hold personal data, and this store was opened without a key provider: open it with `.with_keys(provider)` (see es_core::personal)"
        ),
    }
}
