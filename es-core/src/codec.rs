//! Turning events and snapshots into bytes and back.
//!
//! Stores keep bytes and names, never domain types; a [`Codec`] is the one
//! place where the two meet. [`Json`] is the default because a stored event
//! stays readable in the database for as long as it is kept. `Binary`
//! (feature `binary`) trades that for size and speed.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::BoxError;

/// A serde format that encodes events and snapshots.
///
/// Implement it to plug in another format; the store records only the bytes,
/// so every process reading a store must use the codec that wrote it.
pub trait Codec: Clone + Send + Sync + 'static {
    /// A short name used in error messages, such as `"json"`.
    const NAME: &'static str;

    /// Encodes `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;

    /// Encodes `value` at the end of `out`, leaving what `out` held before
    /// in place. The dispatcher encodes a command's events this way, into a
    /// buffer it reuses; the default goes through [`encode`](Self::encode).
    /// On an error, what `out` holds is unspecified.
    fn encode_into<T: Serialize + ?Sized>(&self, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(&self.encode(value)?);
        Ok(())
    }

    /// Decodes a value of type `T` from `bytes`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{codec} codec could not {operation} `{type_name}`: {source}")]
pub struct CodecError {
    /// [`Codec::NAME`] of the codec that failed.
    pub codec: &'static str,
    /// `"encode"` or `"decode"`.
    pub operation: &'static str,
    /// The Rust type being encoded or decoded.
    pub type_name: &'static str,
    /// What the format reported.
    #[source]
    pub source: BoxError,
}

impl CodecError {
    /// Builds an encoding error for a value of type `T`.
    pub fn encode<T: ?Sized>(codec: &'static str, source: impl Into<BoxError>) -> Self {
        CodecError {
            codec,
            operation: "encode",
            type_name: std::any::type_name::<T>(),
            source: source.into(),
        }
    }

    /// Builds a decoding error for a value of type `T`.
    pub fn decode<T: ?Sized>(codec: &'static str, source: impl Into<BoxError>) -> Self {
        CodecError {
            codec,
            operation: "decode",
            type_name: std::any::type_name::<T>(),
            source: source.into(),
        }
    }
}

/// JSON through `serde_json`: the default codec, readable in the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

impl Codec for Json {
    const NAME: &'static str = "json";

    #[inline]
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        // Most events are small; a small first buffer keeps allocations in
        // the allocator's fast size classes and stored payloads compact.
        let mut buf = Vec::with_capacity(32);
        self.encode_into(value, &mut buf)?;
        Ok(buf)
    }

    #[inline]
    fn encode_into<T: Serialize + ?Sized>(&self, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(|e| CodecError::encode::<T>(Self::NAME, e))
    }

    #[inline]
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::decode::<T>(Self::NAME, e))
    }
}

/// A compact binary codec built on [postcard](https://docs.rs/postcard).
///
/// Postcard is not self-describing: a field added to an event changes how
/// every later field is read. Give each such change a new event version
/// (`#[event(version = 2)]`) and keep the old shape decodable, or stay with
/// [`Json`], which tolerates added optional fields.
#[cfg(feature = "binary")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Binary;

#[cfg(feature = "binary")]
impl Codec for Binary {
    const NAME: &'static str = "binary";

    #[inline]
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        postcard::to_stdvec(value).map_err(|e| CodecError::encode::<T>(Self::NAME, e))
    }

    #[inline]
    fn encode_into<T: Serialize + ?Sized>(&self, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        postcard::to_extend(value, std::mem::take(out))
            .map(|extended| *out = extended)
            .map_err(|e| CodecError::encode::<T>(Self::NAME, e))
    }

    #[inline]
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        postcard::from_bytes(bytes).map_err(|e| CodecError::decode::<T>(Self::NAME, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        text: String,
        amount: u64,
    }

    #[test]
    fn json_round_trip_and_error_names_the_type() {
        let value = Sample {
            text: "é €".into(),
            amount: 7,
        };
        let bytes = Json.encode(&value).unwrap();
        assert_eq!(std::str::from_utf8(&bytes).unwrap(), r#"{"text":"é €","amount":7}"#);
        assert_eq!(Json.decode::<Sample>(&bytes).unwrap(), value);
        let err = Json.decode::<Sample>(b"{").unwrap_err();
        assert_eq!(err.operation, "decode");
        assert!(
            err.to_string()
                .starts_with("json codec could not decode `es_core::codec::tests::Sample`")
        );
    }

    #[cfg(feature = "binary")]
    #[test]
    fn binary_round_trip() {
        let value = Sample {
            text: "x".into(),
            amount: 300,
        };
        let bytes = Binary.encode(&value).unwrap();
        assert_eq!(bytes, vec![1, b'x', 0xac, 0x02]);
        assert_eq!(Binary.decode::<Sample>(&bytes).unwrap(), value);
    }
}
