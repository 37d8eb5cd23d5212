//! Subjects and keys: any text as a subject token (hex), records keyed by
//! a hash of what they stand for, the prefix's rules.

use es_core::StoreError;

use crate::invalid;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex, for subjects and keys that must hold any text.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Whether `hex_text` is `bytes` in lower-case hex, without building it.
pub(crate) fn is_hex_of(hex_text: &str, bytes: &[u8]) -> bool {
    hex_text.len() == bytes.len() * 2
        && hex_text
            .as_bytes()
            .chunks(2)
            .zip(bytes)
            .all(|(pair, b)| pair[0] == DIGITS[usize::from(b >> 4)] && pair[1] == DIGITS[usize::from(b & 15)])
}

/// A key for a record that stands for several texts of any length: the
/// first 128 bits of their SHA-256 (each text length-prefixed), in hex.
/// The record repeats what it stands for, and reads compare it.
pub(crate) fn key_hash(parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex(&hasher.finalize()[..16])
}

/// The checkpoint name a record's subject stands for.
pub(crate) fn checkpoint_name(subject: &str) -> Option<String> {
    subject
        .rsplit('.')
        .next()
        .and_then(|key| key.strip_prefix('c'))
        .and_then(unhex)
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

pub(crate) fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "the prefix {prefix:?}: it names JetStream streams and their subjects, so it takes 1 to 32 letters, digits, `_` or `-`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_any_text() {
        for text in ["", "a", "ünïcødé/数据 😀.*>"] {
            assert_eq!(unhex(&hex(text.as_bytes())).unwrap(), text.as_bytes());
            assert!(is_hex_of(&hex(text.as_bytes()), text.as_bytes()));
        }
        assert!(unhex("abc").is_none() && unhex("zz").is_none());
        assert!(!is_hex_of("6162", b"ab "));
        assert!(!is_hex_of("6163", b"ab"));
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(validate_prefix("es_test-1").is_ok());
        for bad in ["", "a.b", "a b", "a*", &"x".repeat(33)] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_tell_their_parts_apart() {
        // The parts are length-prefixed: moving a byte from one to the
        // next is another key.
        assert_ne!(key_hash(&[b"ab", b"c"]), key_hash(&[b"a", b"bc"]));
        assert_eq!(key_hash(&[b"ab", b"c"]), key_hash(&[b"ab", b"c"]));
        assert_eq!(key_hash(&[b"x"]).len(), 32);
    }
}
