//! Personal data that can be forgotten.
//!
//! An event store keeps every event for ever; a person may ask to be
//! forgotten. Mark the fields of an event that hold personal data, say whose
//! data they are, and the framework stores them sealed under a key of that
//! person (the *data subject*) alone. Forgetting the subject destroys the
//! key: every value sealed with it is gone from every event, snapshot and
//! replica at once, while the events themselves, their versions and their
//! order stay as they were.
//!
//! ```
//! use es_core::prelude::*;
//! use es_core::personal::Personal;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
//! #[event(name = "guest.registered")]
//! pub struct GuestRegistered {
//!     pub guest_id: String,
//!     #[personal(subject = guest_id)]
//!     pub name: Personal<String>,
//!     #[personal(subject = guest_id)]
//!     pub email: Personal<String>,
//! }
//! ```
//!
//! The compiler checks the declaration: a `Personal<T>` field must be marked
//! `#[personal(subject = ..)]` and a marked field must be a `Personal<T>`;
//! the subject must be another field of the event, not itself personal, of
//! a type that can be an id. Code that reads a personal value must say what
//! it does when it is forgotten: [`Personal::get`] is an `Option`.
//!
//! # Keys
//!
//! Each subject has a random 256-bit data key, made when its first value is
//! sealed and kept in the store itself (a table on SQLite and PostgreSQL, a
//! message per subject on NATS, a map in memory), wrapped by a master key
//! the application provides ([`KeyProvider`]: [`EnvKeys`], [`FileKeys`], or
//! a key management service of yours). A stolen copy of the database holds
//! only sealed values and wrapped keys. Give the store its provider when
//! opening it (`with_keys(provider)` on every store); a store without one
//! refuses to store or read personal data. [`Keyring::rotate`] re-wraps
//! every data key under a new master key without touching an event.
//!
//! Values are sealed with AES-256-GCM (RustCrypto's `aes-gcm`): a fresh
//! random 96-bit nonce per value, and associated data that binds the value
//! to its stream, its event (or snapshot), its field and its subject, so a
//! sealed value copied to another event or field does not open. Random
//! 96-bit nonces are safe for up to 2^32 values under one key; each data
//! key seals one subject's values, and the master key one wrapped key per
//! subject and rotation. AES-GCM was chosen over XChaCha20-Poly1305 by
//! measurement (`cargo bench -p benches --bench personal`): it opened a
//! value ten times faster on this project's machines, which have AES
//! instructions (without them the `aes` crate's constant-time software
//! fallback is slower).
//!
//! # Forgetting
//!
//! [`Dispatcher::forget`](crate::Dispatcher::forget) erases the subject's
//! key and appends a [`SubjectForgotten`](crate::SubjectForgotten) event,
//! which holds no personal data, for read models to scrub what they copied.
//! Afterwards aggregates load with the subject's values forgotten and keep
//! deciding commands; a read model rebuilt from the log sees none of them;
//! a snapshot that holds a forgotten value is not used (the state is
//! rebuilt from the events).
//!
//! What it cannot reach: backups and replicas taken before the forget,
//! logs, the memory of processes that had the key cached (up to
//! [`Keyring::cache_for`], 60 seconds by default), copies a read model made
//! and does not scrub on [`SubjectForgotten`](crate::SubjectForgotten), and
//! values stored before their field was marked personal (they are plain
//! JSON, and stay so).

mod keys;
mod master;
pub(crate) mod seal;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

pub use keys::{
    EnvKeys, FileKeys, KEY_LEN, KeyBackend, KeyFuture, KeyProvider, KeyProviderError, KeyWrite, Keyring, MasterKey,
    StaticKeys, StoredKey,
};

/// A personal value: the value, or nothing once its subject was forgotten.
///
/// A field of this type in an event must be marked
/// `#[personal(subject = <field>)]`; the derive checks both ways. Its
/// `Debug` never shows the value.
///
/// Outside the store (a response, a test) it serializes as the value, or
/// `null` when forgotten. In the store it is sealed.
pub struct Personal<T> {
    value: Value<T>,
    binding: Option<Binding>,
}

enum Value<T> {
    Known(T),
    Forgotten,
    /// Read without a key to open it (a tool without the master key): the
    /// sealed bytes, written back as they were.
    Sealed(Box<[u8]>),
}

/// Whose value it is, and which field of its event holds it.
#[derive(Clone, PartialEq, Eq)]
struct Binding {
    subject: Arc<str>,
    field: Cow<'static, str>,
}

impl<T> Personal<T> {
    /// A known value.
    pub fn new(value: T) -> Self {
        Personal {
            value: Value::Known(value),
            binding: None,
        }
    }

    /// A forgotten value.
    pub fn forgotten() -> Self {
        Personal {
            value: Value::Forgotten,
            binding: None,
        }
    }

    /// The value, or `None` when its subject was forgotten (or it was read
    /// by code that has no key to open it).
    pub fn get(&self) -> Option<&T> {
        match &self.value {
            Value::Known(v) => Some(v),
            _ => None,
        }
    }

    /// The value, owned, or `None` as for [`get`](Self::get).
    pub fn into_value(self) -> Option<T> {
        match self.value {
            Value::Known(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the value's subject was forgotten.
    pub fn is_forgotten(&self) -> bool {
        matches!(self.value, Value::Forgotten)
    }

    /// Whether the value is still sealed: read by code that has no key to
    /// open it.
    pub fn is_sealed(&self) -> bool {
        matches!(self.value, Value::Sealed(_))
    }

    /// Whose value it is, once it has been stored or read from the store.
    pub fn subject(&self) -> Option<&str> {
        self.binding.as_ref().map(|b| &*b.subject)
    }

    /// A personal value made from this one (of the same subject, so it can
    /// be kept in a state and snapshot); forgotten stays forgotten.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Personal<U> {
        Personal {
            value: match self.value {
                Value::Known(v) => Value::Known(f(v)),
                Value::Forgotten => Value::Forgotten,
                Value::Sealed(bytes) => Value::Sealed(bytes),
            },
            binding: self.binding,
        }
    }

    /// Binds the value to its subject and field. A value read from the
    /// store must have been sealed for the same subject and field.
    #[doc(hidden)]
    pub fn __bind(&mut self, subject: &Arc<str>, field: &'static str) -> Result<(), String> {
        if let Some(bound) = &self.binding
            && (bound.subject != *subject || bound.field != field)
        {
            return Err(format!(
                "the value of personal field `{field}` (subject {subject:?}) was sealed as field `{}` of subject {:?}: the stored event was altered",
                bound.field, bound.subject
            ));
        }
        self.binding = Some(Binding {
            subject: subject.clone(),
            field: Cow::Borrowed(field),
        });
        Ok(())
    }
}

impl<T> From<T> for Personal<T> {
    fn from(value: T) -> Self {
        Personal::new(value)
    }
}

impl<T: Clone> Clone for Personal<T> {
    fn clone(&self) -> Self {
        Personal {
            value: match &self.value {
                Value::Known(v) => Value::Known(v.clone()),
                Value::Forgotten => Value::Forgotten,
                Value::Sealed(bytes) => Value::Sealed(bytes.clone()),
            },
            binding: self.binding.clone(),
        }
    }
}

/// Equal when both hold equal values, or both are forgotten (whoever's
/// they are); a sealed value equals the same sealed bytes.
impl<T: PartialEq> PartialEq for Personal<T> {
    fn eq(&self, other: &Self) -> bool {
        match (&self.value, &other.value) {
            (Value::Known(a), Value::Known(b)) => a == b,
            (Value::Forgotten, Value::Forgotten) => true,
            (Value::Sealed(a), Value::Sealed(b)) => a == b,
            _ => false,
        }
    }
}

impl<T: Eq> Eq for Personal<T> {}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Value::Known(_) => f.write_str("Personal(..)"),
            Value::Forgotten => f.write_str("Personal(<forgotten>)"),
            Value::Sealed(_) => f.write_str("Personal(<sealed>)"),
        }
    }
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match seal::current_mode() {
            // Into the store: sealed.
            Some(true) => self.serialize_sealed(serializer),
            // Anywhere else: the value, or null.
            _ => match &self.value {
                Value::Known(v) => serializer.serialize_some(v),
                Value::Forgotten => serializer.serialize_none(),
                Value::Sealed(bytes) => write_sealed(serializer, bytes),
            },
        }
    }
}

fn write_sealed<S: Serializer>(serializer: S, bytes: &[u8]) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_some(&seal::to_text(bytes))
    } else {
        serializer.serialize_some(&Bytes(bytes))
    }
}

struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<T: Serialize> Personal<T> {
    fn serialize_sealed<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = match &self.value {
            Value::Known(v) => v,
            Value::Forgotten => return serializer.serialize_none(),
            Value::Sealed(bytes) => return write_sealed(serializer, bytes),
        };
        let Some(binding) = &self.binding else {
            return Err(S::Error::custom(
                "a personal value with no data subject cannot be stored: keep values that came from an event's personal field, or make them with `Personal::map` from one",
            ));
        };
        let plain = Zeroizing::new(serde_json::to_vec(value).map_err(S::Error::custom)?);
        match seal::seal(&binding.subject, &binding.field, &plain).map_err(S::Error::custom)? {
            seal::Sealed::Bytes(bytes) => write_sealed(serializer, &bytes),
            seal::Sealed::Forgotten => serializer.serialize_none(),
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let opening = seal::current_mode() == Some(false);
        if deserializer.is_human_readable() {
            // Text formats say what they hold: null (forgotten), a sealed
            // value, or a plain one (stored before the field was personal,
            // or written outside the store).
            let raw = serde_json::Value::deserialize(deserializer)?;
            match raw {
                serde_json::Value::Null => Ok(Personal::forgotten()),
                serde_json::Value::String(text) if text.starts_with(seal::PREFIX) => {
                    let bytes = seal::from_text(&text)
                        .ok_or_else(|| D::Error::custom("a sealed personal value that is not valid base64"))?;
                    Self::from_sealed(bytes).map_err(D::Error::custom)
                }
                plain => T::deserialize(plain).map(Personal::new).map_err(D::Error::custom),
            }
        } else if opening {
            match Option::<serde_bytes_buf::ByteBuf>::deserialize(deserializer)? {
                None => Ok(Personal::forgotten()),
                Some(bytes) => Self::from_sealed(bytes.0).map_err(D::Error::custom),
            }
        } else {
            Ok(match Option::<T>::deserialize(deserializer)? {
                Some(v) => Personal::new(v),
                None => Personal::forgotten(),
            })
        }
    }
}

impl<T: serde::de::DeserializeOwned> Personal<T> {
    fn from_sealed(bytes: Vec<u8>) -> Result<Self, String> {
        let parts = seal::parts(&bytes).ok_or("a sealed personal value that is cut short or of an unknown format")?;
        let binding = Some(Binding {
            subject: Arc::from(parts.subject),
            field: Cow::Owned(parts.field.to_owned()),
        });
        let value = match seal::open(&parts) {
            None => Value::Sealed(bytes.clone().into_boxed_slice()),
            Some(Err(e)) => return Err(e),
            Some(Ok(seal::Opened::Forgotten)) => Value::Forgotten,
            Some(Ok(seal::Opened::Plain(json))) => Value::Known(serde_json::from_slice(&json).map_err(|e| {
                format!(
                    "personal field `{}` opens to a value that does not decode: {e}",
                    parts.field
                )
            })?),
        };
        Ok(Personal { value, binding })
    }
}

/// A byte buffer read from any serde format (sequences of bytes too).
mod serde_bytes_buf {
    pub(super) struct ByteBuf(pub(super) Vec<u8>);

    impl<'de> serde::Deserialize<'de> for ByteBuf {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a sealed personal value")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                    while let Some(b) = seq.next_element::<u8>()? {
                        out.push(b);
                    }
                    Ok(ByteBuf(out))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }
}

/// Opens the personal values of stored events decoded inside
/// [`Opener::run`]: for read-model runners that decode a page's events
/// after reading it (in their own transaction). A key not cached yet fails
/// the decoding; [`Opener::again`] fetches it, and the page is applied
/// again.
#[doc(hidden)]
pub struct Opener(seal::Scope);

impl Opener {
    /// An opener with `keyring`'s keys.
    pub fn new(keyring: &Arc<Keyring>) -> Self {
        Opener(seal::Scope::new(keyring.clone(), false))
    }

    /// Runs `f` (which decodes `event`) with `event`'s values opening.
    pub fn run<R>(&mut self, event: &crate::store::RecordedEvent<'_>, f: impl FnOnce() -> R) -> R {
        self.0.place(
            event.aggregate_type,
            event.aggregate_id,
            seal::At::Event(event.event_id),
        );
        self.0.run(f)
    }

    /// Awaits `future` (which decodes `event`) with `event`'s values
    /// opening while it is polled, and only then: other tasks on the
    /// thread never see them.
    pub async fn run_async<F: std::future::Future>(
        &mut self,
        event: &crate::store::RecordedEvent<'_>,
        future: F,
    ) -> F::Output {
        self.0.place(
            event.aggregate_type,
            event.aggregate_id,
            seal::At::Event(event.event_id),
        );
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| self.0.run(|| future.as_mut().poll(cx))).await
    }

    /// After a page was applied (its values opened by this opener): whether
    /// to apply it again, because it `failed` for keys not cached yet,
    /// which are fetched first. Four runs at most, counted in `runs`.
    pub async fn again(&mut self, failed: bool, runs: &mut u32) -> Result<bool, crate::StoreError> {
        self.0.again(failed, false, runs, 4).await
    }
}

/// Can name a data subject: an id. Its `Display` form is the subject stored
/// beside its key, so it must be stable.
///
/// Implemented for `String`, `str`, the integers, `Uuid` and
/// [`EventId`](crate::EventId); for an id newtype of yours, implement it
/// (it has no methods): `impl es_core::personal::Subject for GuestId {}`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot name a data subject",
    label = "the subject of a personal field must be an id",
    note = "a subject is an id: a `String`, an integer, a `Uuid`, or an id type of yours with `impl es_core::personal::Subject for {Self} {{}}` (it needs `Display`)"
)]
pub trait Subject: fmt::Display {}

macro_rules! subjects {
    ($($t:ty),*) => { $(impl Subject for $t {})* };
}

subjects!(
    String,
    str,
    Box<str>,
    Arc<str>,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    uuid::Uuid,
    crate::EventId
);

impl<T: Subject + ?Sized> Subject for &T {}

impl Subject for Cow<'_, str> {}

/// The subject and field of a sealed value in its text form (as a text
/// format such as JSON stores it), for tools that show stored events
/// without opening them; `None` for any other text.
pub fn sealed_text_subject(text: &str) -> Option<(String, String)> {
    let bytes = seal::from_text(text)?;
    let parts = seal::parts(&bytes)?;
    Some((parts.subject.to_owned(), parts.field.to_owned()))
}

/// The stored form of a subject.
#[doc(hidden)]
pub fn __subject<S: Subject + ?Sized>(subject: &S) -> Arc<str> {
    Arc::from(subject.to_string())
}
