//! Sealing and opening personal values: the scope the framework sets while
//! it encodes or decodes an event or a snapshot, and the sealed form.
//!
//! A sealed value is, as bytes: format `1`; the subject (length as two
//! bytes, little-endian, then UTF-8); the field (length as one byte, then
//! UTF-8); a 12-byte nonce; the value's JSON sealed with AES-256-GCM under
//! the subject's data key. The associated data binds it to where it
//! is: the stream, the event id (or, in a snapshot, its version), the field
//! and the subject. Text formats hold it as `es-personal:` and the bytes in
//! unpadded URL-safe base64.

use std::cell::RefCell;
use std::sync::Arc;

use aes_gcm::Nonce;
use aes_gcm::aead::{Aead, Generate, Payload};
use zeroize::Zeroizing;

use super::keys::{Keyring, Known, NONCE_LEN as NONCE};
use crate::envelope::EventId;

/// What a sealed value starts with in a text format.
pub(crate) const PREFIX: &str = "es-personal:";

const FORMAT: u8 = 1;

/// Where the values being sealed or opened are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// In the event with this id.
    Event(EventId),
    /// In the snapshot taken at this version.
    Snapshot(u64),
}

/// What the framework knows while it encodes or decodes one event or
/// snapshot of a stream that holds personal data.
pub(crate) struct Scope {
    keyring: Arc<Keyring>,
    aggregate_type: String,
    aggregate_id: String,
    at: At,
    /// Sealing (encoding to store) or opening (decoding from it).
    sealing: bool,
    /// Subjects whose keys were not cached when needed: fetch them and try
    /// again.
    pub(crate) missing: Vec<Arc<str>>,
    /// Whether a value of a forgotten subject was met.
    pub(crate) forgotten: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

impl Scope {
    /// A scope for the events or snapshots of one stream.
    pub(crate) fn new(keyring: Arc<Keyring>, sealing: bool) -> Self {
        Scope {
            keyring,
            aggregate_type: String::new(),
            aggregate_id: String::new(),
            at: At::Snapshot(0),
            sealing,
            missing: Vec::new(),
            forgotten: false,
        }
    }

    /// Points the scope at one event or snapshot.
    pub(crate) fn place(&mut self, aggregate_type: &str, aggregate_id: &str, at: At) {
        if self.aggregate_type != aggregate_type {
            aggregate_type.clone_into(&mut self.aggregate_type);
        }
        if self.aggregate_id != aggregate_id {
            aggregate_id.clone_into(&mut self.aggregate_id);
        }
        self.at = at;
    }

    /// Fetches the keys this scope found missing into the keyring's cache
    /// (making those that do not exist yet, with `create`).
    pub(crate) async fn fetch_missing(&mut self, create: bool) -> Result<(), crate::error::StoreError> {
        for subject in std::mem::take(&mut self.missing) {
            self.keyring.fetch(&subject, create).await?;
        }
        Ok(())
    }

    /// After a run in this scope: whether to run it again, because it
    /// `failed` for keys not loaded yet, which are fetched first (made,
    /// with `create`). `tries` runs at most, counted in `runs`.
    pub(crate) async fn again(
        &mut self,
        failed: bool,
        create: bool,
        runs: &mut u32,
        tries: u32,
    ) -> Result<bool, crate::error::StoreError> {
        *runs += 1;
        if !failed || self.missing.is_empty() || *runs >= tries {
            return Ok(false);
        }
        self.fetch_missing(create).await?;
        Ok(true)
    }

    /// Runs `attempt` (which places the scope and runs in it) until
    /// [`again`](Scope::again) says no.
    pub(crate) async fn retry_fetching<R>(
        &mut self,
        create: bool,
        tries: u32,
        failed: impl Fn(&R) -> bool,
        mut attempt: impl FnMut(&mut Scope) -> R,
    ) -> Result<R, crate::error::StoreError> {
        let mut runs = 0;
        loop {
            let out = attempt(self);
            let failed = failed(&out);
            if !self.again(failed, create, &mut runs, tries).await? {
                return Ok(out);
            }
        }
    }

    /// Runs `f`, a snapshot's decode or encode, placed at the snapshot of
    /// `stream` at `version`, fetching missing keys and trying again (three
    /// runs at most) while it fails.
    pub(crate) async fn retry_on_snapshot<T, E>(
        &mut self,
        stream: &crate::StreamId,
        version: u64,
        f: impl Fn() -> Option<Result<T, E>>,
    ) -> Result<Option<Result<T, E>>, crate::error::StoreError> {
        self.retry_fetching(
            false,
            3,
            |r| matches!(r, Some(Err(_))),
            |scope| {
                scope.place(stream.aggregate_type(), stream.aggregate_id(), At::Snapshot(version));
                scope.run(&f)
            },
        )
        .await
    }

    /// Runs `f` with this scope current on this thread: what a
    /// [`Personal`](super::Personal) serialized or deserialized inside
    /// sees. `f` must not await (the scope is the thread's).
    pub(crate) fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        struct Restore<'a> {
            slot: &'a mut Scope,
            previous: Option<Scope>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                let previous = self.previous.take();
                if let Some(scope) = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), previous)) {
                    *self.slot = scope;
                }
            }
        }
        let placeholder = Scope::new(self.keyring.clone(), self.sealing);
        let mine = std::mem::replace(self, placeholder);
        let previous = CURRENT.with(|c| c.borrow_mut().replace(mine));
        let _restore = Restore { slot: self, previous };
        f()
    }

    fn aad(&self, field: &str, subject: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64 + self.aggregate_type.len() + self.aggregate_id.len() + field.len());
        aad.extend_from_slice(b"es personal v1\0");
        for part in [self.aggregate_type.as_bytes(), self.aggregate_id.as_bytes()] {
            aad.extend_from_slice(&(part.len() as u64).to_le_bytes());
            aad.extend_from_slice(part);
        }
        match self.at {
            At::Event(id) => {
                aad.push(b'e');
                aad.extend_from_slice(uuid::Uuid::from(id).as_bytes());
            }
            At::Snapshot(version) => {
                aad.push(b's');
                aad.extend_from_slice(&version.to_le_bytes());
            }
        }
        for part in [field.as_bytes(), subject.as_bytes()] {
            aad.extend_from_slice(&(part.len() as u64).to_le_bytes());
            aad.extend_from_slice(part);
        }
        aad
    }
}

/// Whether the current scope seals (`Some(true)`), opens (`Some(false)`),
/// or there is none.
pub(crate) fn current_mode() -> Option<bool> {
    CURRENT.with(|c| c.borrow().as_ref().map(|s| s.sealing))
}

/// What sealing a value gave.
pub(crate) enum Sealed {
    /// The sealed bytes.
    Bytes(Vec<u8>),
    /// The subject was forgotten: store nothing.
    Forgotten,
}

/// Seals `plain` (a value's JSON) for `subject`'s field `field` in the
/// current scope.
pub(crate) fn seal(subject: &Arc<str>, field: &str, plain: &[u8]) -> Result<Sealed, String> {
    CURRENT.with(|c| {
        let mut current = c.borrow_mut();
        let scope = current.as_mut().ok_or("no sealing scope")?;
        let key = match scope.keyring.cached(subject) {
            Some(Known::Key(key)) => key,
            Some(Known::Forgotten) => {
                scope.forgotten = true;
                return Ok(Sealed::Forgotten);
            }
            None => {
                scope.missing.push(subject.clone());
                return Err(format!("the data key of subject {subject:?} is not loaded yet"));
            }
        };
        if subject.len() > usize::from(u16::MAX) || field.len() > usize::from(u8::MAX) {
            return Err(format!("field `{field}` or its subject is too long to seal"));
        }
        let nonce = Nonce::generate();
        let sealed = key
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &scope.aad(field, subject),
                },
            )
            .map_err(|_| format!("field `{field}` could not be sealed"))?;
        let mut out = Vec::with_capacity(4 + subject.len() + field.len() + NONCE + sealed.len());
        out.push(FORMAT);
        out.extend_from_slice(&(subject.len() as u16).to_le_bytes());
        out.extend_from_slice(subject.as_bytes());
        out.push(field.len() as u8);
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(Sealed::Bytes(out))
    })
}

/// The parts of a sealed value.
pub(crate) struct Parts<'a> {
    pub(crate) subject: &'a str,
    pub(crate) field: &'a str,
    nonce: &'a [u8],
    sealed: &'a [u8],
}

/// Splits a sealed value into its parts, if it is one.
pub(crate) fn parts(bytes: &[u8]) -> Option<Parts<'_>> {
    let (&format, rest) = bytes.split_first()?;
    if format != FORMAT || rest.len() < 2 {
        return None;
    }
    let (len, rest) = rest.split_at(2);
    let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
    if rest.len() < len + 1 {
        return None;
    }
    let (subject, rest) = rest.split_at(len);
    let (&field_len, rest) = rest.split_first()?;
    let field_len = usize::from(field_len);
    if rest.len() < field_len + NONCE + 16 {
        return None;
    }
    let (field, rest) = rest.split_at(field_len);
    let (nonce, sealed) = rest.split_at(NONCE);
    Some(Parts {
        subject: std::str::from_utf8(subject).ok()?,
        field: std::str::from_utf8(field).ok()?,
        nonce,
        sealed,
    })
}

/// What opening a sealed value gave.
pub(crate) enum Opened {
    /// The value's JSON.
    Plain(Zeroizing<Vec<u8>>),
    /// Its subject was forgotten.
    Forgotten,
}

/// Opens a sealed value in the current scope; `None` when there is no
/// opening scope (the value stays sealed).
pub(crate) fn open(parts: &Parts<'_>) -> Option<Result<Opened, String>> {
    CURRENT.with(|c| {
        let mut current = c.borrow_mut();
        let scope = current.as_mut().filter(|s| !s.sealing)?;
        let key = match scope.keyring.cached(parts.subject) {
            Some(Known::Key(key)) => key,
            Some(Known::Forgotten) => {
                scope.forgotten = true;
                return Some(Ok(Opened::Forgotten));
            }
            None => {
                scope.missing.push(Arc::from(parts.subject));
                return Some(Err(format!(
                    "the data key of subject {:?} is not loaded yet",
                    parts.subject
                )));
            }
        };
        let Ok(nonce) = Nonce::try_from(parts.nonce) else {
            return Some(Err("a sealed value with a short nonce".to_owned()));
        };
        let plain = key.cipher().decrypt(
            &nonce,
            Payload {
                msg: parts.sealed,
                aad: &scope.aad(parts.field, parts.subject),
            },
        );
        Some(match plain {
            Ok(plain) => Ok(Opened::Plain(Zeroizing::new(plain))),
            Err(_) => Err(format!(
                "personal field `{}` does not decrypt: the stored value was altered, or moved from another event or field",
                parts.field
            )),
        })
    })
}

/// Unpadded URL-safe base64.
pub(crate) fn to_text(bytes: &[u8]) -> String {
    use base64::Engine;
    let mut out = String::with_capacity(PREFIX.len() + bytes.len().div_ceil(3) * 4);
    out.push_str(PREFIX);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes, &mut out);
    out
}

/// The bytes of a sealed value's text form, if `text` is one.
pub(crate) fn from_text(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let encoded = text.strip_prefix(PREFIX)?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok()
}
