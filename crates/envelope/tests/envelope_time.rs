//! Timestamp RFC 3339 formatting and parsing.

use proptest::prelude::*;
use syncbus_envelope::{TimeError, Timestamp};

#[test]
fn display_uses_utc_and_minimal_fraction() {
    let cases = [
        (0, "1970-01-01T00:00:00Z"),
        (1_000_000, "1970-01-01T00:00:00.001Z"),
        (1_000, "1970-01-01T00:00:00.000001Z"),
        (1, "1970-01-01T00:00:00.000000001Z"),
        (-1, "1969-12-31T23:59:59.999999999Z"),
        (951_782_400_000_000_000, "2000-02-29T00:00:00Z"),
        (i64::MAX, "2262-04-11T23:47:16.854775807Z"),
        (i64::MIN, "1677-09-21T00:12:43.145224192Z"),
    ];
    for (nanos, text) in cases {
        let t = Timestamp::from_unix_nanos(nanos);
        assert_eq!(t.to_string(), text);
        assert_eq!(Timestamp::parse_rfc3339(text), Ok(t));
    }
}

#[test]
fn parses_offsets_and_variants() {
    let utc = Timestamp::parse_rfc3339("2024-05-01T12:30:00Z").unwrap();
    for s in [
        "2024-05-01T14:30:00+02:00",
        "2024-05-01T07:30:00-05:00",
        "2024-05-01t12:30:00z",
        "2024-05-01 12:30:00Z",
        "2024-05-01T12:30:00.000Z",
        "2024-05-01T12:30:00+00:00",
        "2024-05-01T12:30:00-00:00",
        "2024-05-02T00:00:00+11:30",
    ] {
        assert_eq!(Timestamp::parse_rfc3339(s), Ok(utc), "{s}");
    }
    assert_eq!(utc.as_unix_nanos(), 1_714_566_600_000_000_000);
}

#[test]
fn fraction_beyond_nanos_is_truncated_and_leap_second_clamped() {
    let t = Timestamp::parse_rfc3339("1970-01-01T00:00:00.1234567899Z").unwrap();
    assert_eq!(t.as_unix_nanos(), 123_456_789);
    let leap = Timestamp::parse_rfc3339("2016-12-31T23:59:60Z").unwrap();
    assert_eq!(leap.to_string(), "2016-12-31T23:59:59.999999999Z");
}

#[test]
fn rejects_malformed_text() {
    for s in [
        "",
        "2024-05-01",
        "2024-05-01T12:30:00",
        "2024-05-01T12:30Z",
        "2024-5-01T12:30:00Z",
        "2024-05-01T12:30:00.Z",
        "2024-05-01T12:30:00+0200",
        "2024-05-01T12:30:00+24:00",
        "2024-13-01T12:30:00Z",
        "2024-00-01T12:30:00Z",
        "2023-02-29T12:30:00Z",
        "2024-04-31T12:30:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:60:00Z",
        "2024-05-01T12:30:61Z",
        "2024-05-01T12:30:00Z ",
        "2024-05-01T12:30:00ZZ",
        "２024-05-01T12:30:00Z",
    ] {
        assert!(
            matches!(
                Timestamp::parse_rfc3339(s),
                Err(TimeError::Malformed { .. })
            ),
            "{s:?}"
        );
    }
    assert_eq!(
        Timestamp::parse_rfc3339("1600-01-01T00:00:00Z"),
        Err(TimeError::OutOfRange)
    );
    assert_eq!(
        Timestamp::parse_rfc3339("2262-04-11T23:47:16.854775808Z"),
        Err(TimeError::OutOfRange)
    );
}

#[test]
fn millis_and_now() {
    assert_eq!(Timestamp::from_unix_millis(1).as_unix_nanos(), 1_000_000);
    assert_eq!(
        Timestamp::from_unix_millis(u64::MAX),
        Timestamp::from_unix_nanos(i64::MAX)
    );
    let a = Timestamp::now();
    let b = Timestamp::now();
    assert!(b >= a);
    assert!(a > Timestamp::parse_rfc3339("2024-01-01T00:00:00Z").unwrap());
}

#[test]
fn serde_and_debug() {
    let t = Timestamp::from_unix_millis(1_500);
    assert_eq!(
        serde_json::to_string(&t).unwrap(),
        "\"1970-01-01T00:00:01.500Z\""
    );
    assert_eq!(
        serde_json::from_str::<Timestamp>("\"1970-01-01T01:00:01.5+01:00\"").unwrap(),
        t
    );
    assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    assert_eq!(format!("{t:?}"), "Timestamp(1970-01-01T00:00:01.500Z)");
}

proptest! {
    #[test]
    fn display_parse_round_trip(n: i64) {
        let t = Timestamp::from_unix_nanos(n);
        prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Ok(t));
    }

    #[test]
    fn offsets_shift_by_exactly_the_offset(n in -4_000_000_000_000_000_000i64..4_000_000_000_000_000_000, h in 0u32..24, m in 0u32..60, neg: bool) {
        let t = Timestamp::from_unix_nanos(n);
        let utc = t.to_string();
        let offset_secs = i64::from(h * 3600 + m * 60) * if neg { -1 } else { 1 };
        // Render the local wall-clock time for the offset, then parse it back.
        let local = Timestamp::from_unix_nanos(n + offset_secs * 1_000_000_000).to_string();
        let with_offset = format!("{}{}{:02}:{:02}", &local[..local.len() - 1], if neg { '-' } else { '+' }, h, m);
        prop_assert_eq!(Timestamp::parse_rfc3339(&with_offset), Ok(t), "{} vs {}", utc, with_offset);
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,40}") {
        let _ = Timestamp::parse_rfc3339(&s);
    }
}
