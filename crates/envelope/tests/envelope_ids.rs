//! EventId generation, parsing and formatting.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use syncbus_envelope::{EventId, NameKind, NameReason};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn new_ids_strictly_increase_on_one_thread() {
    let mut prev = EventId::new();
    for _ in 0..100_000 {
        let next = EventId::new();
        assert!(next > prev, "{next} is not after {prev}");
        assert!(next.as_u128().unwrap() > prev.as_u128().unwrap());
        prev = next;
    }
}

#[test]
fn new_ids_are_unique_across_threads_and_increase_per_thread() {
    const PER_THREAD: usize = 100_000;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let ids: Vec<u128> = (0..PER_THREAD)
                    .map(|_| EventId::new().as_u128().unwrap())
                    .collect();
                assert!(ids.windows(2).all(|w| w[0] < w[1]));
                ids
            })
        })
        .collect();
    let mut all = HashSet::with_capacity(4 * PER_THREAD);
    for h in handles {
        for id in h.join().unwrap() {
            assert!(all.insert(id), "duplicate id {id:x}");
        }
    }
    assert_eq!(all.len(), 4 * PER_THREAD);
}

#[test]
fn new_ids_are_rfc9562_v7() {
    for _ in 0..1000 {
        let v = EventId::new().as_u128().unwrap();
        assert_eq!((v >> 76) & 0xF, 7, "version");
        assert_eq!((v >> 62) & 0b11, 0b10, "variant");
    }
}

/// How far an id's time may trail the system clock: a few ticks of the shared clock, plus
/// scheduling delays on a loaded machine.
const CLOCK_SLACK_MS: u64 = 100;

#[test]
fn v7_timestamp_is_close_to_now() {
    let before = now_ms();
    let id = EventId::new();
    let after = now_ms();
    let ts = id.timestamp_ms().unwrap();
    // Ids read a shared clock refreshed every millisecond: it may trail by a few ticks.
    assert!(
        ts + CLOCK_SLACK_MS >= before && ts <= after,
        "{before} <= {ts} <= {after}"
    );
}

#[test]
fn timestamp_stays_accurate_for_a_thread_that_makes_few_ids() {
    let _ = EventId::new();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let before = now_ms();
    let ts = EventId::new().timestamp_ms().unwrap();
    assert!(
        ts + CLOCK_SLACK_MS >= before,
        "stale timestamp {ts} < {before}"
    );
}

#[test]
fn timestamp_only_for_v7() {
    let v4 = EventId::parse("9b2f7f4e-3c2a-4d7e-9a1b-0c2d3e4f5a6b").unwrap();
    assert_eq!(v4.timestamp_ms(), None);
    assert_eq!(EventId::parse("foreign").unwrap().timestamp_ms(), None);
    let v7 = EventId::from_u128(0x0190_1234_5678_7abc_8def_0123_4567_89ab);
    assert_eq!(v7.timestamp_ms(), Some(0x0190_1234_5678));
}

#[test]
fn default_is_a_fresh_id() {
    let a = EventId::default();
    let b = EventId::default();
    assert_ne!(a, b);
    assert!(a.timestamp_ms().is_some());
}

#[test]
fn only_the_canonical_uuid_form_is_stored_compactly_and_every_form_keeps_its_text() {
    let canonical = "01901234-5678-7abc-8def-0123456789ab";
    let value = 0x0190_1234_5678_7abc_8def_0123_4567_89ab;
    let id = EventId::parse(canonical).unwrap();
    assert_eq!(id.as_u128(), Some(value));
    assert_eq!(id, EventId::from_u128(value));
    for form in [
        "01901234-5678-7ABC-8DEF-0123456789AB",
        "0190123456787abc8def0123456789ab",
        "0190123456787ABC8DEF0123456789AB",
    ] {
        let other = EventId::parse(form).unwrap();
        // An id is an opaque string: another spelling is another id, kept byte for byte.
        assert_eq!(other.to_string(), form);
        assert_eq!(other.as_u128(), None, "{form}");
        assert_ne!(other, id);
        // The UUID it spells can still be read out.
        assert_eq!(other.uuid(), Some(value), "{form}");
        assert_eq!(other.timestamp_ms(), None, "{form}");
    }
}

#[test]
fn braced_and_urn_forms_stay_text() {
    for s in [
        "{01901234-5678-7abc-8def-0123456789ab}",
        "urn:uuid:01901234-5678-7abc-8def-0123456789ab",
        // 36 characters but not a UUID.
        "01901234-5678-7abc-8def-0123456789ag",
    ] {
        let id = EventId::parse(s).unwrap();
        assert_eq!(id.as_u128(), None, "{s}");
        assert_eq!(id.to_string(), s);
    }
}

#[test]
fn foreign_ids_round_trip() {
    for s in ["A234-1234-1234", "order/42#1", "ü-7", "x", &"y".repeat(256)] {
        let id: EventId = s.parse().unwrap();
        assert_eq!(id.to_string(), s);
        assert_eq!(EventId::parse(&id.to_string()).unwrap(), id);
    }
}

#[test]
fn invalid_foreign_ids_are_rejected() {
    let err = EventId::parse("").unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (NameKind::EventId, &NameReason::Empty)
    );
    let err = EventId::parse(&"y".repeat(257)).unwrap_err();
    assert_eq!(err.reason(), &NameReason::TooLong { len: 257, max: 256 });
    for (s, ch, position) in [
        ("ab\t", '\t', 2),
        ("\nab", '\n', 0),
        ("a\u{0}", '\0', 1),
        ("a\u{7f}", '\u{7f}', 1),
        ("é\u{85}", '\u{85}', 2),
        ("a\u{fdd0}", '\u{fdd0}', 1),
        ("a\u{1fffe}", '\u{1fffe}', 1),
    ] {
        let err = EventId::parse(s).unwrap_err();
        assert_eq!(
            (err.kind(), err.position()),
            (NameKind::EventId, Some(position)),
            "{s:?}"
        );
        assert!(
            matches!(err.reason(), NameReason::InvalidChar { ch: c, .. } if *c == ch),
            "{s:?}: {err:?}"
        );
    }
}

#[test]
fn any_cloudevents_string_is_an_id() {
    // The spec allows any non-empty string: spaces, other whitespace, non-ASCII.
    for s in ["a b", " lead", "a\u{2003}b", "注文-42", "emoji 🎉"] {
        let id = EventId::parse(s).unwrap();
        assert_eq!(id.to_string(), s);
        assert_eq!(id.as_u128(), None);
    }
}

#[test]
fn id_error_messages() {
    assert_eq!(
        EventId::parse("").unwrap_err().to_string(),
        "event id is empty"
    );
    assert_eq!(
        EventId::parse(&"y".repeat(300)).unwrap_err().to_string(),
        format!(
            "event id \"{}...\" is 300 bytes long, the maximum is 256",
            "y".repeat(32)
        )
    );
}

#[test]
fn uuids_sort_before_text_ids() {
    let uuid = EventId::from_u128(u128::MAX);
    let text = EventId::parse("0").unwrap();
    assert!(uuid < text);
}

#[test]
fn debug_is_readable() {
    let id = EventId::from_u128(0x0190_1234_5678_7abc_8def_0123_4567_89ab);
    assert_eq!(
        format!("{id:?}"),
        "EventId(01901234-5678-7abc-8def-0123456789ab)"
    );
    assert_eq!(
        format!("{:?}", EventId::parse("x-1").unwrap()),
        "EventId(\"x-1\")"
    );
}

#[test]
fn serde_uses_the_string_form() {
    let id = EventId::from_u128(0x0190_1234_5678_7abc_8def_0123_4567_89ab);
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, "\"01901234-5678-7abc-8def-0123456789ab\"");
    assert_eq!(serde_json::from_str::<EventId>(&json).unwrap(), id);
    let text: EventId = serde_json::from_str("\"abc\"").unwrap();
    assert_eq!(text, EventId::parse("abc").unwrap());
    assert_eq!(
        serde_json::from_str::<EventId>("\"a b\"")
            .unwrap()
            .to_string(),
        "a b"
    );
    assert!(serde_json::from_str::<EventId>("\"a\\u0001\"").is_err());
    assert!(serde_json::from_str::<EventId>("17").is_err());
}

proptest! {
    #[test]
    fn any_uuid_round_trips(v: u128) {
        let id = EventId::from_u128(v);
        prop_assert_eq!(EventId::parse(&id.to_string()).unwrap(), id.clone());
        prop_assert_eq!(id.as_u128(), Some(v));
    }

    #[test]
    fn any_valid_text_round_trips(s in "\\PC{1,64}") {
        let id = EventId::parse(&s).unwrap();
        prop_assert_eq!(id.to_string(), s);
        prop_assert_eq!(EventId::parse(&id.to_string()).unwrap(), id);
    }
}
