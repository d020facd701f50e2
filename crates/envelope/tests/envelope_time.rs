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
fn fraction_beyond_nanos_is_truncated() {
    let t = Timestamp::parse_rfc3339("1970-01-01T00:00:00.1234567899Z").unwrap();
    assert_eq!(t.as_unix_nanos(), 123_456_789);
}

#[test]
fn leap_seconds_are_kept() {
    let leap = Timestamp::parse_rfc3339("2016-12-31T23:59:60Z").unwrap();
    assert!(leap.is_leap_second());
    assert_eq!(leap.to_string(), "2016-12-31T23:59:60Z");
    let with_fraction = Timestamp::parse_rfc3339("2016-12-31T23:59:60.123Z").unwrap();
    assert_eq!(with_fraction.to_string(), "2016-12-31T23:59:60.123Z");
    // Offsets move whole minutes, so the leap second stays second 60 in UTC.
    let offset = Timestamp::parse_rfc3339("2017-01-01T05:29:60.5+05:30").unwrap();
    assert_eq!(offset.to_string(), "2016-12-31T23:59:60.500Z");
    // It sorts between second 59 and the next minute.
    let before = Timestamp::parse_rfc3339("2016-12-31T23:59:59.999999999Z").unwrap();
    let after = Timestamp::parse_rfc3339("2017-01-01T00:00:00Z").unwrap();
    assert!(before < leap && leap < with_fraction && with_fraction < after);
    // In nanoseconds it is the last one of second 59.
    assert_eq!(leap.as_unix_nanos(), before.as_unix_nanos());
}

#[test]
fn every_rfc3339_year_is_in_range() {
    for s in [
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "1600-02-29T12:00:00.5Z",
        "2262-04-11T23:47:16.854775808Z",
        "9999-12-31T23:59:59.999999999Z",
        "9999-12-31T23:59:60Z",
    ] {
        let t = Timestamp::parse_rfc3339(s).unwrap();
        assert_eq!(t.to_string(), s.replace(".5Z", ".500Z"));
    }
    assert_eq!(
        Timestamp::parse_rfc3339("0001-01-01T00:00:00Z")
            .unwrap()
            .as_unix_secs(),
        -62_135_596_800
    );
    // Out of range only where an offset moves the time out of years 0000 to 9999 in UTC.
    for s in ["0000-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01"] {
        assert_eq!(
            Timestamp::parse_rfc3339(s),
            Err(TimeError::OutOfRange),
            "{s}"
        );
    }
    assert!(Timestamp::parse_rfc3339("0000-01-01T00:00:00-00:01").is_ok());
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
        Timestamp::parse_rfc3339("9999-12-31T23:00:00-01:00"),
        Err(TimeError::OutOfRange)
    );
}

#[test]
fn millis_and_now() {
    assert_eq!(Timestamp::from_unix_millis(1).as_unix_nanos(), 1_000_000);
    assert_eq!(Timestamp::from_unix_millis(u64::MAX), Timestamp::MAX);
    assert_eq!(
        Timestamp::from_unix_millis(u64::MAX).as_unix_nanos(),
        i64::MAX
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
    fn any_instant_in_range_round_trips(secs in -62_167_219_200i64..=253_402_300_799, nanos in 0u32..1_000_000_000) {
        let text = format_utc(secs, nanos);
        let parsed = Timestamp::parse_rfc3339(&text).unwrap();
        prop_assert_eq!((parsed.as_unix_secs(), parsed.subsec_nanos()), (secs, nanos));
        prop_assert_eq!(Timestamp::parse_rfc3339(&parsed.to_string()), Ok(parsed));
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,40}") {
        let _ = Timestamp::parse_rfc3339(&s);
    }
}

/// RFC 3339 in UTC from unix seconds, through an independent civil-date computation.
fn format_utc(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}
