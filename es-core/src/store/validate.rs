//! What every store checks before it writes or reads: the same limits and
//! the same errors everywhere.

use super::{AppendRequest, FOREIGN, MAX_AGGREGATE_ID, MAX_AGGREGATE_TYPE, MAX_COMMAND_ID, MAX_EVENT_NAME};
use crate::envelope::StreamId;
use crate::error::StoreError;

/// Checks a text a store keeps as an id or name: not empty (where
/// `required`), at most `max` bytes, no NUL character (which PostgreSQL's
/// `TEXT` cannot hold). Every store checks the same way, so an id that one
/// store keeps, all do.
#[inline]
fn check_text(store: &'static str, what: &str, text: &str, max: usize, required: bool) -> Result<(), StoreError> {
    // Ids and names are short: a plain loop beats a `memchr` call here, and
    // this runs on every append.
    if (!required || !text.is_empty()) && text.len() <= max && !has_nul(text.as_bytes()) {
        return Ok(());
    }
    invalid_text(store, what, text, max, required)
}

/// Whether `bytes` holds a zero byte, eight at a time.
#[inline]
fn has_nul(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_in = |word: [u8; 8]| {
        let x = u64::from_le_bytes(word);
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if zero_in(word) {
            return true;
        }
    }
    // The tail: the last eight bytes again when there are eight (no copy
    // of a short piece into a word, which costs a library call and a stalled
    // load), else byte by byte.
    match bytes.len().checked_sub(8) {
        Some(start) if !chunks.remainder().is_empty() => {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[start..]);
            zero_in(word)
        }
        Some(_) => false,
        None => bytes.contains(&0),
    }
}

#[cold]
#[inline(never)]
fn invalid_text(store: &'static str, what: &str, text: &str, max: usize, required: bool) -> Result<(), StoreError> {
    let problem = if required && text.is_empty() {
        Some("is empty".to_owned())
    } else if text.len() > max {
        Some(format!("is {} bytes long; the limit is {max}", text.len()))
    } else if text.contains('\0') {
        Some("holds a NUL character".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => {
            let shown: String = text.chars().take(40).collect();
            let more = if shown.len() < text.len() { "…" } else { "" };
            Err(StoreError::Invalid {
                store,
                detail: format!("{what} {:?}{more}: it {problem}", shown),
            })
        }
    }
}

/// Checks that `stream`'s aggregate type and id can be stored.
pub fn validate_stream(store: &'static str, stream: &StreamId) -> Result<(), StoreError> {
    check_text(
        store,
        "the aggregate type",
        stream.aggregate_type(),
        MAX_AGGREGATE_TYPE,
        true,
    )?;
    check_text(
        store,
        "the aggregate id",
        stream.aggregate_id(),
        MAX_AGGREGATE_ID,
        false,
    )
}

/// Checks that a data subject (whose key seals personal data) can be stored.
pub fn validate_subject(store: &'static str, subject: &str) -> Result<(), StoreError> {
    check_text(store, "the data subject", subject, MAX_AGGREGATE_ID, true)
}

/// Checks that a command id can be stored.
pub fn validate_command_id(store: &'static str, command_id: &str) -> Result<(), StoreError> {
    check_text(store, "the command id", command_id, MAX_COMMAND_ID, true)
}

/// Checks everything an append stores as text: its stream, command id and
/// event names. Stores call it before writing.
pub fn validate_append(store: &'static str, request: &AppendRequest<'_>) -> Result<(), StoreError> {
    validate_stream(store, request.stream)?;
    if let Some(id) = request.command_id {
        validate_command_id(store, id)?;
    }
    for event in request.events {
        validate_event_name(store, event.name)?;
    }
    Ok(())
}

/// Checks that an event name can be stored: a text as [`validate_stream`]
/// checks, and not [`FOREIGN`], which marks entries of the log that are
/// not events.
#[inline]
pub fn validate_event_name(store: &'static str, name: &str) -> Result<(), StoreError> {
    check_text(store, "the event name", name, MAX_EVENT_NAME, true)?;
    if name == FOREIGN {
        return Err(StoreError::Invalid {
            store,
            detail: format!("the event name {FOREIGN:?}: it marks entries of the log that are not events"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::has_nul;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn has_nul_finds_a_zero_byte_anywhere(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(has_nul(&bytes), bytes.contains(&0));
        }

        #[test]
        fn has_nul_sees_a_zero_at_each_position(len in 1usize..40, at in 0usize..40) {
            let mut bytes = vec![0xffu8; len];
            bytes[at % len] = 0;
            prop_assert!(has_nul(&bytes));
            bytes[at % len] = 0x80;
            prop_assert!(!has_nul(&bytes));
        }
    }
}
