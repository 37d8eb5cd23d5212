//! Master keys and where they come from: the keys that wrap every data key.

use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Generate, KeyInit};
use zeroize::{Zeroize, Zeroizing};

use super::keys::KEY_LEN;

/// A master key: 32 secret bytes under a name. Its `Debug` shows the name
/// only, and its bytes are wiped when it is dropped.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl MasterKey {
    /// A master key named `id` (the name is stored beside each data key it
    /// wraps, so rotation knows which key unwraps which).
    pub fn new(id: impl Into<String>, bytes: [u8; KEY_LEN]) -> Self {
        MasterKey {
            id: id.into(),
            bytes: Zeroizing::new(bytes),
        }
    }

    /// A new random master key named `id`, from the operating system's
    /// random source.
    pub fn generate(id: impl Into<String>) -> Self {
        let mut key = aes_gcm::Key::<Aes256Gcm>::generate();
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(&key);
        key.as_mut_slice().zeroize();
        MasterKey::new(id, bytes)
    }

    /// Reads `id:base64` (the form [`EnvKeys`] and [`FileKeys`] read).
    pub fn parse(text: &str) -> Result<Self, KeyProviderError> {
        use base64::Engine;
        let (id, encoded) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| KeyProviderError::new("a master key is written `name:base64-of-32-bytes`"))?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(KeyProviderError::new(
                "a master key's name is 1 to 64 letters, digits, `-`, `_` or `.`",
            ));
        }
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| KeyProviderError::new(format!("master key `{id}` is not valid base64")))?,
        );
        let bytes: [u8; KEY_LEN] = decoded.as_slice().try_into().map_err(|_| {
            KeyProviderError::new(format!(
                "master key `{id}` is {} bytes long; it must be {KEY_LEN}",
                decoded.len()
            ))
        })?;
        Ok(MasterKey::new(id, bytes))
    }

    /// The key as `id:base64`, for writing a generated key to a file or a
    /// secret manager. Never log it.
    pub fn export(&self) -> Zeroizing<String> {
        use base64::Engine;
        Zeroizing::new(format!(
            "{}:{}",
            self.id,
            base64::engine::general_purpose::STANDARD.encode(self.bytes.as_slice())
        ))
    }

    /// Its name.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.bytes.as_slice()).expect("a master key is 32 bytes")
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({:?}, ..)", self.id)
    }
}

/// Why a key provider gave no key. Its text never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyProviderError(String);

impl KeyProviderError {
    /// An error with this text (which must not hold key material).
    pub fn new(text: impl Into<String>) -> Self {
        KeyProviderError(text.into())
    }
}

/// Where the master keys come from: the current one wraps new data keys;
/// older ones, looked up by name, still unwrap the data keys they wrapped
/// until [`Keyring::rotate`](super::Keyring::rotate) has re-wrapped them.
///
/// Built in: [`EnvKeys`] (an environment variable), [`FileKeys`] (a file),
/// [`StaticKeys`] (keys in memory, for tests). A key management service
/// implements this trait.
pub trait KeyProvider: Send + Sync + 'static {
    /// The key new data keys are wrapped with.
    fn current(&self) -> Result<MasterKey, KeyProviderError>;

    /// The key named `id`, if this provider has it.
    fn get(&self, id: &str) -> Result<Option<MasterKey>, KeyProviderError>;
}

/// Master keys in memory: the first is current.
#[derive(Debug, Clone)]
pub struct StaticKeys(Vec<MasterKey>);

impl StaticKeys {
    /// `current` first, then older keys still needed to unwrap.
    pub fn new(current: MasterKey, older: impl IntoIterator<Item = MasterKey>) -> Self {
        StaticKeys(std::iter::once(current).chain(older).collect())
    }

    /// Reads `id:base64` keys, one per line or separated by commas; the
    /// first is current. Blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Self, KeyProviderError> {
        let keys = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(MasterKey::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyProviderError::new("no master key given"));
        }
        Ok(StaticKeys(keys))
    }
}

impl KeyProvider for StaticKeys {
    fn current(&self) -> Result<MasterKey, KeyProviderError> {
        Ok(self.0[0].clone())
    }

    fn get(&self, id: &str) -> Result<Option<MasterKey>, KeyProviderError> {
        Ok(self.0.iter().find(|k| k.id == id).cloned())
    }
}

/// Master keys from an environment variable (by default `ES_MASTER_KEYS`):
/// `name:base64` keys separated by commas, the current one first. Read
/// once, when built.
#[derive(Debug, Clone)]
pub struct EnvKeys(StaticKeys);

impl EnvKeys {
    /// The name read by [`EnvKeys::from_env`].
    pub const VARIABLE: &'static str = "ES_MASTER_KEYS";

    /// Reads [`EnvKeys::VARIABLE`].
    pub fn from_env() -> Result<Self, KeyProviderError> {
        Self::from_var(Self::VARIABLE)
    }

    /// Reads the variable `name`.
    pub fn from_var(name: &str) -> Result<Self, KeyProviderError> {
        let text = Zeroizing::new(
            std::env::var(name).map_err(|_| KeyProviderError::new(format!("the variable `{name}` is not set")))?,
        );
        StaticKeys::parse(&text)
            .map(EnvKeys)
            .map_err(|e| KeyProviderError::new(format!("the variable `{name}`: {e}")))
    }
}

impl KeyProvider for EnvKeys {
    fn current(&self) -> Result<MasterKey, KeyProviderError> {
        self.0.current()
    }

    fn get(&self, id: &str) -> Result<Option<MasterKey>, KeyProviderError> {
        self.0.get(id)
    }
}

/// Master keys from a file: `name:base64` keys, one per line, the current
/// one first (`#` starts a comment line). Read once, when built; the file
/// should be readable by the application's user alone.
#[derive(Debug, Clone)]
pub struct FileKeys(StaticKeys);

impl FileKeys {
    /// Reads the file at `path`.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, KeyProviderError> {
        let path = path.as_ref();
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| KeyProviderError::new(format!("cannot read the key file {}: {e}", path.display())))?,
        );
        StaticKeys::parse(&text)
            .map(FileKeys)
            .map_err(|e| KeyProviderError::new(format!("the key file {}: {e}", path.display())))
    }
}

impl KeyProvider for FileKeys {
    fn current(&self) -> Result<MasterKey, KeyProviderError> {
        self.0.current()
    }

    fn get(&self, id: &str) -> Result<Option<MasterKey>, KeyProviderError> {
        self.0.get(id)
    }
}
