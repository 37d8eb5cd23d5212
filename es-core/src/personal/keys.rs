//! Data keys: one per data subject, kept in the store wrapped by a master
//! key the application provides, unwrapped into a cache when used.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroize;
use zeroize::Zeroizing;

use crate::envelope::Timestamp;
use crate::error::StoreError;

pub use super::master::{EnvKeys, FileKeys, KeyProvider, KeyProviderError, MasterKey, StaticKeys};

/// The length of a data key and of a master key, in bytes.
pub const KEY_LEN: usize = 32;

/// A boxed future, for the object-safe [`KeyBackend`].
pub type KeyFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A data key as a store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredKey {
    /// The key, wrapped (encrypted) by the master key named `master_key`.
    Wrapped {
        /// The master key's name.
        master_key: String,
        /// The wrapped key: a nonce, then the sealed key and its tag.
        wrapped: Vec<u8>,
    },
    /// The subject was forgotten at `at`: the key is gone.
    Forgotten {
        /// When.
        at: Timestamp,
    },
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredKey::Wrapped { master_key, .. } => write!(f, "Wrapped {{ master_key: {master_key:?}, .. }}"),
            StoredKey::Forgotten { at } => write!(f, "Forgotten {{ at: {at} }}"),
        }
    }
}

/// A change to a subject's data key ([`KeyBackend::write_key`]).
#[derive(Clone, Copy)]
pub enum KeyWrite<'a> {
    /// Store this key if the subject has none (nor a forgotten one); the
    /// answer is what the store holds afterwards, so two writers racing to
    /// create a subject's key both end with the one that was stored first.
    Create {
        /// The master key's name.
        master_key: &'a str,
        /// The wrapped key.
        wrapped: &'a [u8],
    },
    /// Replace the wrapped key if it is still `from` (a rotation).
    Rewrap {
        /// The wrapped key read before.
        from: &'a [u8],
        /// The new master key's name.
        master_key: &'a str,
        /// The key wrapped by it.
        wrapped: &'a [u8],
    },
    /// Erase the key, keeping only that (and when) the subject was forgotten.
    Forget {
        /// When.
        at: Timestamp,
    },
}

impl fmt::Debug for KeyWrite<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyWrite::Create { master_key, .. } => write!(f, "Create {{ master_key: {master_key:?}, .. }}"),
            KeyWrite::Rewrap { master_key, .. } => write!(f, "Rewrap {{ master_key: {master_key:?}, .. }}"),
            KeyWrite::Forget { at } => write!(f, "Forget {{ at: {at} }}"),
        }
    }
}

/// Where a store keeps its data keys: a table on SQLite and PostgreSQL, a
/// message per subject on NATS, a map in memory. Every store of the
/// workspace implements it and passes the same conformance cases.
pub trait KeyBackend: Send + Sync + 'static {
    /// The store's name in errors.
    fn store_name(&self) -> &'static str;

    /// The subject's key, if the store has one (or a record that it was
    /// forgotten).
    fn read_key<'a>(&'a self, subject: &'a str) -> KeyFuture<'a, Option<StoredKey>>;

    /// Changes the subject's key; the answer is what the store holds
    /// afterwards. Forgetting erases the wrapped key from the storage
    /// itself as far as the store can (see each store's documentation).
    fn write_key<'a>(&'a self, subject: &'a str, write: KeyWrite<'a>) -> KeyFuture<'a, StoredKey>;

    /// Up to `limit` subjects after `after` (by byte order) with their keys.
    fn read_keys<'a>(&'a self, after: &'a str, limit: usize) -> KeyFuture<'a, Vec<(String, StoredKey)>>;
}

/// An unwrapped data key, ready to use (its key schedule computed once),
/// wiped when dropped.
pub(crate) struct DataKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    cipher: Aes256Gcm,
}

impl DataKey {
    fn new(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let cipher = Aes256Gcm::new((&*bytes).into());
        DataKey { bytes, cipher }
    }

    pub(crate) fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }
}

/// The length of a nonce: 96 bits, drawn at random for each value. Each
/// data key seals one subject's values, so a key meets nowhere near the
/// 2^32 random nonces that AES-GCM allows under one key.
pub(crate) const NONCE_LEN: usize = 12;

/// What the cache knows of a subject.
#[derive(Clone)]
pub(crate) enum Known {
    Key(Arc<DataKey>),
    Forgotten,
}

struct Cached {
    known: Known,
    until: Instant,
}

/// The data keys of one store, unwrapped on demand and cached: what seals
/// and unseals personal fields. Build it with the store
/// (`with_keys(provider)` on each store); the dispatcher, the read side and
/// the tools reach it through [`EventStore::keyring`](crate::EventStore::keyring).
///
/// The cache holds a subject's key for [`Keyring::cache_for`] (60 seconds
/// by default): after a subject is forgotten, another process that had its
/// key cached can decrypt that subject's values until the entry expires.
pub struct Keyring {
    provider: Box<dyn KeyProvider>,
    backend: Box<dyn KeyBackend>,
    cache: Mutex<HashMap<Arc<str>, Cached>>,
    ttl: Duration,
    capacity: usize,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("store", &self.backend.store_name())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The associated data of a wrapped key: the subject it belongs to, so a
/// wrapped key copied to another subject does not unwrap.
fn wrap_aad(subject: &str) -> Vec<u8> {
    let mut aad = b"es data key v1\0".to_vec();
    aad.extend_from_slice(subject.as_bytes());
    aad
}

impl Keyring {
    /// The keyring of a store whose keys `backend` keeps, wrapped by
    /// `provider`'s master keys.
    pub fn new(provider: impl KeyProvider, backend: impl KeyBackend) -> Self {
        Keyring {
            provider: Box::new(provider),
            backend: Box::new(backend),
            cache: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(60),
            capacity: 100_000,
        }
    }

    /// Keeps unwrapped keys for `ttl` (60 seconds by default): shorter
    /// means a forget reaches other processes sooner, and more reads of the
    /// key table.
    #[must_use]
    pub fn cache_for(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Where the keys are kept.
    pub fn backend(&self) -> &dyn KeyBackend {
        &*self.backend
    }

    fn store(&self) -> &'static str {
        self.backend.store_name()
    }

    fn key_error(&self, subject: &str, detail: impl fmt::Display) -> StoreError {
        StoreError::Keys {
            store: self.store(),
            detail: format!("the data key of subject {subject:?}: {detail}"),
        }
    }

    /// The cached knowledge of `subject`, without waiting.
    pub(crate) fn cached(&self, subject: &str) -> Option<Known> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(subject)
            .filter(|c| c.until > Instant::now())
            .map(|c| c.known.clone())
    }

    fn remember(&self, subject: &str, known: Known) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.capacity {
            let now = Instant::now();
            cache.retain(|_, c| c.until > now);
            if cache.len() >= self.capacity {
                cache.clear();
            }
        }
        cache.insert(
            Arc::from(subject),
            Cached {
                known,
                until: Instant::now() + self.ttl,
            },
        );
    }

    fn forget_cached(&self, subject: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.remove(subject);
    }

    fn unwrap_key(&self, subject: &str, stored: &StoredKey) -> Result<Known, StoreError> {
        let (master_key, wrapped) = match stored {
            StoredKey::Forgotten { .. } => return Ok(Known::Forgotten),
            StoredKey::Wrapped { master_key, wrapped } => (master_key, wrapped),
        };
        let master = self
            .provider
            .get(master_key)
            .map_err(|e| self.key_error(subject, format!("the key provider failed: {e}")))?
            .ok_or_else(|| {
                self.key_error(
                    subject,
                    format!("it is wrapped by master key {master_key:?}, which the key provider does not have"),
                )
            })?;
        if wrapped.len() < NONCE_LEN {
            return Err(self.key_error(subject, "the stored key is too short"));
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| self.key_error(subject, "the stored key is too short"))?;
        let plain = Zeroizing::new(
            master
                .cipher()
                .decrypt(
                    &nonce,
                    Payload {
                        msg: sealed,
                        aad: &wrap_aad(subject),
                    },
                )
                .map_err(|_| {
                    self.key_error(
                        subject,
                        format!(
                            "it does not unwrap with master key {master_key:?}: a wrong master key, or an altered key record"
                        ),
                    )
                })?,
        );
        let bytes: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(
            plain
                .as_slice()
                .try_into()
                .map_err(|_| self.key_error(subject, "it unwraps to a key of the wrong length"))?,
        );
        Ok(Known::Key(Arc::new(DataKey::new(bytes))))
    }

    fn wrap_key(&self, subject: &str, master: &MasterKey, key: &[u8; KEY_LEN]) -> Result<Vec<u8>, StoreError> {
        let nonce = Nonce::generate();
        let sealed = master
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: key,
                    aad: &wrap_aad(subject),
                },
            )
            .map_err(|_| self.key_error(subject, "it could not be wrapped"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// What the store holds for `subject`, unwrapped and cached; `create`
    /// makes a key for a subject that has none.
    pub(crate) async fn fetch(&self, subject: &str, create: bool) -> Result<Known, StoreError> {
        if let Some(known) = self.cached(subject) {
            return Ok(known);
        }
        let stored = match self.backend.read_key(subject).await? {
            Some(stored) => stored,
            None if create => {
                let master = self
                    .provider
                    .current()
                    .map_err(|e| self.key_error(subject, format!("the key provider failed: {e}")))?;
                let mut fresh = aes_gcm::Key::<Aes256Gcm>::generate();
                let mut key = Zeroizing::new([0u8; KEY_LEN]);
                key.copy_from_slice(&fresh);
                fresh.as_mut_slice().zeroize();
                let wrapped = self.wrap_key(subject, &master, &key)?;
                self.backend
                    .write_key(
                        subject,
                        KeyWrite::Create {
                            master_key: master.id(),
                            wrapped: &wrapped,
                        },
                    )
                    .await?
            }
            None => {
                return Err(StoreError::Corrupt {
                    store: self.store(),
                    detail: format!(
                        "there is no data key for subject {subject:?}, which was never forgotten: its personal data cannot be read"
                    ),
                });
            }
        };
        let known = self.unwrap_key(subject, &stored)?;
        self.remember(subject, known.clone());
        Ok(known)
    }

    /// Whether `subject` was forgotten (reading the store, not the cache).
    pub async fn is_forgotten(&self, subject: &str) -> Result<bool, StoreError> {
        Ok(matches!(
            self.backend.read_key(subject).await?,
            Some(StoredKey::Forgotten { .. })
        ))
    }

    /// Erases `subject`'s data key: every personal value sealed with it is
    /// unreadable from now on, here and (once their caches expire) in
    /// other processes. Forgetting twice is the same as once. Most code
    /// calls [`Dispatcher::forget`](crate::Dispatcher::forget), which also
    /// records the forget in the log for read models.
    pub async fn forget(&self, subject: &str) -> Result<(), StoreError> {
        crate::store::validate_subject(self.store(), subject)?;
        self.forget_cached(subject);
        self.backend
            .write_key(subject, KeyWrite::Forget { at: Timestamp::now() })
            .await?;
        self.remember(subject, Known::Forgotten);
        Ok(())
    }

    /// Re-wraps every data key not wrapped by the provider's current master
    /// key with it; the events are not touched. Returns how many keys were
    /// re-wrapped. Run it after making a new master key current, then
    /// retire the old one once this returns.
    pub async fn rotate(&self) -> Result<u64, StoreError> {
        let current = self.provider.current().map_err(|e| StoreError::Keys {
            store: self.store(),
            detail: format!("the key provider failed: {e}"),
        })?;
        let mut after = String::new();
        let mut count = 0;
        loop {
            let page = self.backend.read_keys(&after, 500).await?;
            let Some((last, _)) = page.last() else {
                return Ok(count);
            };
            let last = last.clone();
            for (subject, stored) in page {
                let StoredKey::Wrapped { master_key, wrapped } = &stored else {
                    continue;
                };
                if *master_key == current.id() {
                    continue;
                }
                let Known::Key(key) = self.unwrap_key(&subject, &stored)? else {
                    continue;
                };
                let rewrapped = self.wrap_key(&subject, &current, &key.bytes)?;
                self.backend
                    .write_key(
                        &subject,
                        KeyWrite::Rewrap {
                            from: wrapped,
                            master_key: current.id(),
                            wrapped: &rewrapped,
                        },
                    )
                    .await?;
                count += 1;
            }
            after = last;
        }
    }
}
