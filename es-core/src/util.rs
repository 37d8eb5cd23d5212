//! Small helpers with no better home.

use std::any::TypeId;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Lower-case hex of `bytes`: how fingerprints, links, signatures and
/// bytes that are not text are written out.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The bytes `text` writes as hex digits (either case), or `None` for an
/// odd length or any other character (a sign included).
pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

/// FNV-1a, 64 bits, over `parts`: a hash whose value is fixed by its
/// definition (stored fingerprints, partitions), unlike `std`'s.
pub(crate) fn fnv1a64<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    parts.into_iter().flatten().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// 128 random bits from rand's thread-local generator: ChaCha12, seeded
/// from the operating system and reseeded as it goes, a cryptographically
/// secure source as RFC 9562 asks of a UUID's random bits.
pub(crate) fn random_u128() -> u128 {
    rand::random()
}

/// 64 random bits from the same generator as [`random_u128`].
pub(crate) fn random_u64() -> u64 {
    rand::random()
}

/// Hashes a `TypeId`, which is a hash already, by keeping its bits.
#[derive(Default)]
pub(crate) struct TypeIdHasher(u64);

impl Hasher for TypeIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }

    fn write_u128(&mut self, n: u128) {
        self.0 ^= n as u64 ^ (n >> 64) as u64;
    }
}

/// A map keyed by type, for per-aggregate caches and services.
pub(crate) type TypeMap<V> = HashMap<TypeId, V, BuildHasherDefault<TypeIdHasher>>;

/// A `HashMap` with a fast hasher seeded per map (foldhash), for keys a
/// user may choose: stream ids, aggregate ids, event ids.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Whether two string slices share an element; usable in constants, so the
/// `Event` derive can refuse two variants with one stored name at compile time.
pub const fn names_overlap(a: &[&str], b: &[&str]) -> bool {
    let mut i = 0;
    while i < a.len() {
        let mut j = 0;
        while j < b.len() {
            if str_eq(a[i], b[j]) {
                return true;
            }
            j += 1;
        }
        i += 1;
    }
    false
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The index of the first of `earlier` that shares a name with `names`, and
/// the shared name.
pub const fn first_overlap<'a>(earlier: &[&[&str]], names: &[&'a str]) -> Option<(usize, &'a str)> {
    let mut i = 0;
    while i < earlier.len() {
        let mut j = 0;
        while j < names.len() {
            if contains(earlier[i], names[j]) {
                return Some((i, names[j]));
            }
            j += 1;
        }
        i += 1;
    }
    None
}

const fn contains(names: &[&str], name: &str) -> bool {
    let mut i = 0;
    while i < names.len() {
        if str_eq(names[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

/// A message assembled in a constant, so a compile-time check can name what
/// it found (a constant cannot `format!`). Holds up to 1 KiB; what does not
/// fit is cut at a character boundary.
pub struct ConstMessage {
    buf: [u8; 1024],
    len: usize,
}

impl ConstMessage {
    /// An empty message.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        ConstMessage { buf: [0; 1024], len: 0 }
    }

    /// Appends `s`.
    pub const fn push(mut self, s: &str) -> Self {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() && self.len < self.buf.len() {
            self.buf[self.len] = bytes[i];
            self.len += 1;
            i += 1;
        }
        self
    }

    /// The message so far.
    pub const fn as_str(&self) -> &str {
        let (text, _) = self.buf.split_at(self.len);
        match core::str::from_utf8(text) {
            Ok(s) => s,
            Err(e) => {
                let (valid, _) = text.split_at(e.valid_up_to());
                match core::str::from_utf8(valid) {
                    Ok(s) => s,
                    Err(_) => "",
                }
            }
        }
    }
}

/// The text a panic was raised with (its `&str` or `String` payload).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match payload.downcast_ref::<&str>() {
        Some(s) => (*s).to_owned(),
        None => match payload.downcast_ref::<String>() {
            Some(s) => s.clone(),
            None => "a panic without a message".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bits_differ() {
        let a = random_u128();
        let b = random_u128();
        assert_ne!(a, b);
        assert_ne!(a >> 64, a & u128::from(u64::MAX));
    }

    #[test]
    fn overlap_is_exact_string_equality() {
        const A: &[&str] = &["x.opened", "x.closed"];
        assert!(names_overlap(A, &["x.closed"]));
        assert!(!names_overlap(A, &["x.close", "X.opened"]));
        assert_eq!(first_overlap(&[&["a"], &["b"]], &["c", "b"]), Some((1, "b")));
        assert_eq!(first_overlap(&[&["a"], &["b"]], &["c"]), None);
        const FOUND: Option<(usize, &str)> = first_overlap(&[A], &["x.opened"]);
        assert_eq!(FOUND, Some((0, "x.opened")));
    }

    #[test]
    fn const_messages_join_and_cut_at_a_character() {
        const M: ConstMessage = ConstMessage::new().push("name `").push("a.b").push("`");
        assert_eq!(M.as_str(), "name `a.b`");
        let long = "é".repeat(600);
        let cut = ConstMessage::new().push("x").push(&long);
        assert_eq!(cut.as_str().len(), 1023);
        assert!(cut.as_str().starts_with("xé"));
    }
}
