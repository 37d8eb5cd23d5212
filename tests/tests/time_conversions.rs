//! `Timestamp` to and from `time`, `chrono` and `jiff` (features of the
//! same names): exact to the microsecond, finer parts rounded towards the
//! past, values outside the narrower ranges refused by name.

use es_core::Timestamp;
use es_core::time_conversions::TimestampOutOfRange;

/// Microsecond values around the epoch, today, and far from both.
const SAMPLES: [i64; 7] = [
    0,
    1,
    -1,
    1_795_363_445_123_456,
    -86_400_000_001,
    253_402_207_199_999_999, // 9999-12-30T21:59:59.999999Z, near the end of jiff's range
    -62_135_596_800_000_000, // 0001-01-01T00:00:00Z
];

#[test]
fn time_round_trips_and_refuses_what_it_cannot_hold() {
    for micros in SAMPLES {
        let t = Timestamp::from_micros(micros);
        let other = time::OffsetDateTime::try_from(t).expect("in range");
        assert_eq!(Timestamp::from(other), t);
        assert_eq!(other.unix_timestamp_nanos(), i128::from(micros) * 1_000);
    }
    // An offset is only a way of writing the instant.
    let paris = time::macros::datetime!(2026-12-01 20:00:00.000_001_999 +1);
    assert_eq!(Timestamp::from(paris).to_string(), "2026-12-01T19:00:00.000001Z");
    // Rounded towards the past before the epoch too.
    let before = time::OffsetDateTime::from_unix_timestamp_nanos(-1).expect("valid");
    assert_eq!(Timestamp::from(before).as_micros(), -1);
    let far = Timestamp::from_micros(i64::MAX);
    assert_eq!(
        time::OffsetDateTime::try_from(far),
        Err(TimestampOutOfRange(i64::MAX, "time::OffsetDateTime"))
    );
}

#[test]
fn chrono_round_trips_and_refuses_what_it_cannot_hold() {
    for micros in SAMPLES {
        let t = Timestamp::from_micros(micros);
        let other = chrono::DateTime::<chrono::Utc>::try_from(t).expect("in range");
        assert_eq!(Timestamp::from(other), t);
        assert_eq!(other.timestamp_micros(), micros);
    }
    let fixed = chrono::DateTime::parse_from_rfc3339("2026-12-01T20:00:00.000001999+01:00").expect("parses");
    assert_eq!(Timestamp::from(fixed).to_string(), "2026-12-01T19:00:00.000001Z");
    let before = chrono::DateTime::from_timestamp_nanos(-1);
    assert_eq!(Timestamp::from(before).as_micros(), -1);
    let err = chrono::DateTime::<chrono::Utc>::try_from(Timestamp::from_micros(i64::MIN)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "timestamp {} (microseconds since the Unix epoch) is outside the range of chrono::DateTime<Utc>",
            i64::MIN
        )
    );
}

#[test]
fn jiff_round_trips_and_refuses_what_it_cannot_hold() {
    for micros in SAMPLES {
        let t = Timestamp::from_micros(micros);
        let other = jiff::Timestamp::try_from(t).expect("in range");
        assert_eq!(Timestamp::from(other), t);
        assert_eq!(other.as_microsecond(), micros);
    }
    let later: jiff::Timestamp = "2026-12-01T20:00:00.000001999+01:00".parse().expect("parses");
    assert_eq!(Timestamp::from(later).to_string(), "2026-12-01T19:00:00.000001Z");
    let before = jiff::Timestamp::from_nanosecond(-1).expect("valid");
    assert_eq!(Timestamp::from(before).as_micros(), -1);
    assert_eq!(
        jiff::Timestamp::try_from(Timestamp::from_micros(i64::MAX)),
        Err(TimestampOutOfRange(i64::MAX, "jiff::Timestamp"))
    );
}
