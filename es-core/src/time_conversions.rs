//! Conversions between [the `Timestamp` type](crate::Timestamp) and the date-time types of `time`,
//! `chrono` and `jiff`, each behind the feature of the same name.
//!
//! A `Timestamp` counts microseconds since the Unix epoch in an `i64`
//! (about ±292,000 years). Converting from the others drops what is finer
//! than a microsecond (rounding towards the past) and always succeeds:
//! their ranges fit. Converting to them fails with
//! [`TimestampOutOfRange`] where their range is narrower (`time` and `jiff`
//! stop at the years ±9999, `chrono` at about ±262,000).

#[cfg(any(feature = "time", feature = "chrono", feature = "jiff"))]
use crate::Timestamp;

/// A [timestamp](crate::Timestamp) outside the range of the date-time type it was converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timestamp {0} (microseconds since the Unix epoch) is outside the range of {1}")]
pub struct TimestampOutOfRange(pub i64, pub &'static str);

/// Microseconds from whole seconds and the nanoseconds after them
/// (`nanos` in `0..1_000_000_000`).
#[cfg(any(feature = "time", feature = "chrono"))]
fn micros(seconds: i64, nanos: u32) -> i64 {
    seconds * 1_000_000 + i64::from(nanos / 1_000)
}

#[cfg(feature = "time")]
impl From<time::OffsetDateTime> for Timestamp {
    fn from(t: time::OffsetDateTime) -> Self {
        let t = t.to_offset(time::UtcOffset::UTC);
        Timestamp::from_micros(micros(t.unix_timestamp(), t.nanosecond()))
    }
}

#[cfg(feature = "time")]
impl TryFrom<Timestamp> for time::OffsetDateTime {
    type Error = TimestampOutOfRange;

    fn try_from(t: Timestamp) -> Result<Self, Self::Error> {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.as_micros()) * 1_000)
            .map_err(|_| TimestampOutOfRange(t.as_micros(), "time::OffsetDateTime"))
    }
}

#[cfg(feature = "chrono")]
impl<Tz: chrono::TimeZone> From<chrono::DateTime<Tz>> for Timestamp {
    fn from(t: chrono::DateTime<Tz>) -> Self {
        Timestamp::from_micros(micros(t.timestamp(), t.timestamp_subsec_nanos()))
    }
}

#[cfg(feature = "chrono")]
impl TryFrom<Timestamp> for chrono::DateTime<chrono::Utc> {
    type Error = TimestampOutOfRange;

    fn try_from(t: Timestamp) -> Result<Self, Self::Error> {
        chrono::DateTime::from_timestamp_micros(t.as_micros())
            .ok_or(TimestampOutOfRange(t.as_micros(), "chrono::DateTime<Utc>"))
    }
}

#[cfg(feature = "jiff")]
impl From<jiff::Timestamp> for Timestamp {
    fn from(t: jiff::Timestamp) -> Self {
        // `as_microsecond` rounds towards zero; towards the past instead,
        // as the other conversions do.
        let micros = t.as_microsecond();
        let below = jiff::Timestamp::from_microsecond(micros).is_ok_and(|m| m > t);
        Timestamp::from_micros(micros - i64::from(below))
    }
}

#[cfg(feature = "jiff")]
impl TryFrom<Timestamp> for jiff::Timestamp {
    type Error = TimestampOutOfRange;

    fn try_from(t: Timestamp) -> Result<Self, Self::Error> {
        jiff::Timestamp::from_microsecond(t.as_micros())
            .map_err(|_| TimestampOutOfRange(t.as_micros(), "jiff::Timestamp"))
    }
}
