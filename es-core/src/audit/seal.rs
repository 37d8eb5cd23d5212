//! Seals: signed heads of the log's Merkle tree, and the keys that sign
//! them.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::store::Link;
use crate::{StreamId, Timestamp};

/// The stored aggregate type of the stream seals are appended to.
pub const SEAL_STREAM_TYPE: &str = "es.audit";
/// The aggregate id of the stream seals are appended to.
pub const SEAL_STREAM_ID: &str = "seals";
/// The stored name of a seal event.
pub const SEAL_EVENT: &str = "es.audit.Sealed";

/// The stream seals are appended to: `es.audit/seals`.
pub fn seal_stream() -> StreamId {
    StreamId::new(SEAL_STREAM_TYPE, SEAL_STREAM_ID)
}

/// A signed head of the log's Merkle tree: the tree of the first `size`
/// events of the log (in log order, their links as leaves) has root
/// `root`, the last of them at `position`; `previous` is the hash of the
/// seal before it. Stored as an event ([`SEAL_EVENT`] on
/// [`seal_stream`]), JSON, so that any tool reads it; exported as is as
/// the head to keep elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// How many events of the log it covers.
    pub size: u64,
    /// The root of their Merkle tree.
    pub root: Link,
    /// The log position of the last of them (0 when `size` is 0).
    pub position: u64,
    /// The [`hash`](Seal::hash) of the seal before it ([`Link::GENESIS`]
    /// for the first).
    pub previous: Link,
    /// When it was signed, in microseconds since the Unix epoch.
    pub sealed_at: i64,
    /// The public key that signed it.
    pub key: PublicKey,
    /// The Ed25519 signature over the fields above, 128 hex digits.
    pub signature: String,
    /// The roots of the tree's perfect subtrees, largest first: what the
    /// next sealer resumes from, and what narrows a mismatch down to a
    /// range of events. Not signed (the root is): an altered frontier
    /// only makes later seals fail verification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frontier: Vec<Link>,
}

/// Why a seal, a key, a proof or an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The signature does not verify with the seal's key.
    #[error("the signature of the seal of {size} events does not verify with its key {key}")]
    BadSignature {
        /// The seal's size.
        size: u64,
        /// The key it names.
        key: PublicKey,
    },
    /// The seal is signed by a key the caller does not trust.
    #[error("the seal of {size} events is signed by {key}, which is not a trusted key")]
    UntrustedKey {
        /// The seal's size.
        size: u64,
        /// The key that signed it.
        key: PublicKey,
    },
    /// A key, seal or proof that does not read, or a proof that does not
    /// hold.
    #[error("{0}")]
    Unreadable(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    /// Reading the log failed.
    #[error(transparent)]
    Subscription(Box<crate::subscription::SubscriptionError>),
}

impl From<crate::subscription::SubscriptionError> for AuditError {
    fn from(e: crate::subscription::SubscriptionError) -> Self {
        AuditError::Subscription(Box::new(e))
    }
}

impl Seal {
    /// The bytes the signature covers: a domain tag, then `size`, `root`,
    /// `position`, `previous`, `sealed_at` and `key`, integers big-endian.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(11 + 8 + 32 + 8 + 32 + 8 + 32);
        out.extend_from_slice(b"es.seal.v1\0");
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.root.0);
        out.extend_from_slice(&self.position.to_be_bytes());
        out.extend_from_slice(&self.previous.0);
        out.extend_from_slice(&self.sealed_at.to_be_bytes());
        out.extend_from_slice(&self.key.0);
        out
    }

    /// The seal's hash, which the next seal names as `previous`: SHA-256 of
    /// the signed bytes and the signature.
    pub fn hash(&self) -> Link {
        let mut bytes = self.signed_bytes();
        bytes.extend_from_slice(self.signature.as_bytes());
        Link::sha256(&bytes)
    }

    /// Checks the signature against the seal's own key, and that the key
    /// is one of `trusted` (any key, when `trusted` is empty: the caller
    /// then learns only that the seal is intact, not who made it).
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<(), AuditError> {
        let bad = || AuditError::BadSignature {
            size: self.size,
            key: self.key,
        };
        let bytes = crate::util::from_hex(&self.signature).ok_or_else(bad)?;
        let signature = ed25519_dalek::Signature::from_slice(&bytes).map_err(|_| bad())?;
        self.key
            .verifying()
            .ok_or_else(bad)?
            .verify_strict(&self.signed_bytes(), &signature)
            .map_err(|_| bad())?;
        if !trusted.is_empty() && !trusted.contains(&self.key) {
            return Err(AuditError::UntrustedKey {
                size: self.size,
                key: self.key,
            });
        }
        Ok(())
    }

    /// When it was signed.
    pub fn sealed_at(&self) -> Timestamp {
        Timestamp::from_micros(self.sealed_at)
    }
}

/// An Ed25519 public key, shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    fn verifying(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Link(self.0), f)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = AuditError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = Link::from_hex(s.trim())
            .ok_or_else(|| AuditError::Unreadable("a public key is 64 hex digits".to_owned()))?;
        let key = PublicKey(bytes.0);
        match key.verifying() {
            Some(_) => Ok(key),
            None => Err(AuditError::Unreadable("not an Ed25519 public key".to_owned())),
        }
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The Ed25519 key that signs seals. It never shows itself: `Debug` prints
/// the public key only, and errors never hold it.
pub struct SealKey(SigningKey);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealKey(public: {})", self.public_key())
    }
}

impl SealKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        use aes_gcm::aead::Generate as _;
        use zeroize::Zeroize as _;
        // 32 random bytes from the operating system, as a data key is made.
        let mut seed = aes_gcm::Key::<aes_gcm::Aes256Gcm>::generate();
        let mut bytes = Zeroizing::new([0_u8; 32]);
        bytes.copy_from_slice(&seed);
        seed.as_mut_slice().zeroize();
        SealKey(SigningKey::from_bytes(&bytes))
    }

    /// The key whose 32-byte seed is `text` in base64 (surrounding
    /// whitespace ignored): the form [`to_base64`](Self::to_base64)
    /// writes.
    pub fn from_base64(text: &str) -> Result<Self, AuditError> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| AuditError::Unreadable("a seal key is 32 bytes in base64".to_owned()))?,
        );
        let seed: &[u8; 32] = bytes[..]
            .try_into()
            .map_err(|_| AuditError::Unreadable("a seal key is 32 bytes in base64".to_owned()))?;
        Ok(SealKey(SigningKey::from_bytes(seed)))
    }

    /// The key in the environment variable `var` (base64).
    pub fn from_env(var: &str) -> Result<Self, AuditError> {
        let text =
            Zeroizing::new(std::env::var(var).map_err(|_| AuditError::Unreadable(format!("no seal key in ${var}")))?);
        Self::from_base64(&text)
            .map_err(|e| AuditError::Unreadable(format!("the seal key in ${var} does not read: {e}")))
    }

    /// The key in the file at `path` (base64).
    pub fn from_file(path: &std::path::Path) -> Result<Self, AuditError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            AuditError::Unreadable(format!(
                "cannot read the seal key file {}: {}",
                path.display(),
                e.kind()
            ))
        })?);
        Self::from_base64(&text)
            .map_err(|e| AuditError::Unreadable(format!("the seal key file {} does not read: {e}", path.display())))
    }

    /// The seed in base64, to write to a file only the operator reads.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0.to_bytes()))
    }

    /// The public key, which verifies its seals.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// A seal of the tree `frontier` (of the log up to `position`),
    /// chained to `previous`, signed now.
    pub fn seal(&self, frontier: &super::Frontier, position: u64, previous: Link) -> Seal {
        let mut seal = Seal {
            size: frontier.size(),
            root: frontier.root(),
            position,
            previous,
            sealed_at: Timestamp::now().as_micros(),
            key: self.public_key(),
            signature: String::new(),
            frontier: frontier.roots().to_vec(),
        };
        let signature = self.0.sign(&seal.signed_bytes());
        seal.signature = crate::util::hex(&signature.to_bytes());
        seal
    }
}

#[cfg(test)]
mod tests {
    use super::super::Frontier;
    use super::*;

    #[test]
    fn a_seal_verifies_with_its_key_and_not_once_changed() {
        let key = SealKey::generate();
        let mut frontier = Frontier::new();
        for i in 0..5_u8 {
            frontier.push(&Link([i; 32]));
        }
        let seal = key.seal(&frontier, 9, Link::GENESIS);
        assert!(seal.verify(&[]).is_ok());
        assert!(seal.verify(&[key.public_key()]).is_ok());
        let other = SealKey::generate().public_key();
        assert!(matches!(seal.verify(&[other]), Err(AuditError::UntrustedKey { .. })));
        for changed in [
            Seal {
                size: 4,
                ..seal.clone()
            },
            Seal {
                position: 8,
                ..seal.clone()
            },
            Seal {
                root: Link([7; 32]),
                ..seal.clone()
            },
            Seal {
                previous: Link([1; 32]),
                ..seal.clone()
            },
            Seal {
                sealed_at: seal.sealed_at + 1,
                ..seal.clone()
            },
            Seal {
                key: other,
                ..seal.clone()
            },
            Seal {
                signature: "00".repeat(64),
                ..seal.clone()
            },
            Seal {
                signature: "zz".to_owned(),
                ..seal.clone()
            },
        ] {
            assert!(
                matches!(changed.verify(&[]), Err(AuditError::BadSignature { .. })),
                "{changed:?}"
            );
        }
        let json = serde_json::to_string(&seal).unwrap();
        assert_eq!(serde_json::from_str::<Seal>(&json).unwrap(), seal);
    }

    #[test]
    fn a_key_round_trips_through_base64_and_never_prints_itself() {
        let key = SealKey::generate();
        let text = key.to_base64();
        let again = SealKey::from_base64(&text).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let shown = format!("{key:?}");
        assert!(!shown.contains(text.as_str()));
        assert!(shown.contains(&key.public_key().to_string()));
        let err = SealKey::from_base64("bm90IGEga2V5").unwrap_err().to_string();
        assert!(!err.contains("bm90"));
        assert_eq!(
            key.public_key().to_string().parse::<PublicKey>().unwrap(),
            key.public_key()
        );
    }
}
