//! EventType and EntityId validation.

use proptest::prelude::*;
use syncbus_envelope::{EntityId, EventType, NameError, NameKind, NameReason};

/// The kind and reason of a refusal, for comparing in one `assert_eq!`.
fn why<T: std::fmt::Debug>(r: Result<T, NameError>) -> (NameKind, NameReason) {
    let e = r.unwrap_err();
    (e.kind(), e.reason().clone())
}

#[test]
fn event_type_accepts_printable_ascii() {
    for s in [
        "a",
        "shop.order.placed",
        "com.example/v1:Thing_Done!",
        "~",
        &"x".repeat(256),
    ] {
        let t = EventType::new(s).unwrap();
        assert_eq!(t.as_str(), s);
        assert_eq!(t.to_string(), s);
    }
}

#[test]
fn event_type_rejects_bad_names() {
    let kind = NameKind::EventType;
    assert_eq!(why(EventType::new("")), (kind, NameReason::Empty));
    assert_eq!(
        why(EventType::new("x".repeat(257))),
        (kind, NameReason::TooLong { len: 257, max: 256 })
    );
    // CloudEvents allows any non-empty string as a type: spaces and non-ASCII are kept.
    for s in ["a b", "café", "注文.作成", " "] {
        assert_eq!(EventType::new(s).unwrap().as_str(), s);
    }
    for (s, ch, position) in [
        ("a\tb", '\t', 1),
        ("x\u{7f}", '\u{7f}', 1),
        ("\n", '\n', 0),
        ("é\u{9f}", '\u{9f}', 2),
        ("a\u{ffff}", '\u{ffff}', 1),
    ] {
        let err = EventType::new(s).unwrap_err();
        assert_eq!(err.kind(), kind, "{s:?}");
        assert!(
            matches!(err.reason(), NameReason::InvalidChar { ch: c, byte, .. } if *c == ch && *byte == position),
            "{s:?}: {err:?}"
        );
    }
}

#[test]
fn event_type_from_static_works_in_const() {
    const T: EventType = EventType::from_static("shop.order.placed");
    assert_eq!(T, EventType::new("shop.order.placed").unwrap());
}

#[test]
#[should_panic(expected = "invalid event type")]
fn event_type_from_static_panics_on_invalid() {
    let _ = EventType::from_static("no spaces allowed");
}

#[test]
fn entity_id_allows_spaces_and_unicode_but_not_controls() {
    for s in ["order 42", "ключ", "a/b#c", "\u{a0}x", &"x".repeat(256)] {
        assert_eq!(EntityId::new(s).unwrap().as_str(), s);
    }
    let kind = NameKind::EntityId;
    assert_eq!(why(EntityId::new("")), (kind, NameReason::Empty));
    assert_eq!(
        why(EntityId::new("x".repeat(257))),
        (kind, NameReason::TooLong { len: 257, max: 256 })
    );
    for (s, ch, position) in [
        ("a\nb", '\n', 1),
        ("\u{0}", '\0', 0),
        ("ab\u{7f}", '\u{7f}', 2),
        ("é\u{85}", '\u{85}', 2),
    ] {
        let err = EntityId::new(s).unwrap_err();
        assert_eq!(
            (err.kind(), err.position()),
            (kind, Some(position)),
            "{s:?}"
        );
        assert!(
            matches!(err.reason(), NameReason::InvalidChar { ch: c, .. } if *c == ch),
            "{s:?}: {err:?}"
        );
    }
}

#[test]
#[should_panic(expected = "invalid entity id")]
fn entity_id_from_static_panics_on_control_char() {
    let _ = EntityId::from_static("a\u{85}");
}

#[test]
fn entity_id_from_integers() {
    assert_eq!(EntityId::from(0u64).as_str(), "0");
    assert_eq!(EntityId::from(u64::MAX).as_str(), u64::MAX.to_string());
    assert_eq!(EntityId::from(u32::MAX).as_str(), u32::MAX.to_string());
    assert_eq!(EntityId::from(i64::MIN).as_str(), i64::MIN.to_string());
    assert_eq!(EntityId::from(-1i64).as_str(), "-1");
    assert_eq!(EntityId::from(42i64), EntityId::new("42").unwrap());
}

#[test]
fn names_serialize_as_strings_and_validate_on_deserialize() {
    let t = EventType::from_static("a.b");
    assert_eq!(serde_json::to_string(&t).unwrap(), "\"a.b\"");
    assert_eq!(serde_json::from_str::<EventType>("\"a.b\"").unwrap(), t);
    assert!(serde_json::from_str::<EventType>("\"a\\tb\"").is_err());
    assert!(serde_json::from_str::<EventType>("\"\"").is_err());

    let e = EntityId::from(7u32);
    assert_eq!(serde_json::to_string(&e).unwrap(), "\"7\"");
    assert_eq!(serde_json::from_str::<EntityId>("\"7\"").unwrap(), e);
    assert!(serde_json::from_str::<EntityId>("\"a\\u0001\"").is_err());
}

#[test]
fn debug_and_errors_read_well() {
    assert_eq!(
        format!("{:?}", EventType::from_static("a.b")),
        "EventType(\"a.b\")"
    );
    assert_eq!(format!("{:?}", EntityId::from(3u32)), "EntityId(\"3\")");
    assert_eq!(
        EventType::new("").unwrap_err().to_string(),
        "event type is empty"
    );
    assert_eq!(
        EventType::new("a\tb").unwrap_err().to_string(),
        r#"invalid character '\t' at byte 1 in event type "a\tb": control characters and unicode noncharacters are not allowed"#
    );
    assert_eq!(
        EntityId::new("x".repeat(300)).unwrap_err().to_string(),
        format!(
            "entity id \"{}...\" is 300 bytes long, the maximum is 256",
            "x".repeat(32)
        )
    );
}

proptest! {
    #[test]
    fn entity_id_from_any_integer_is_its_decimal(u in any::<u64>(), i in any::<i64>(), w in any::<u32>()) {
        prop_assert_eq!(EntityId::from(u).as_str().to_owned(), u.to_string());
        prop_assert_eq!(EntityId::from(i).as_str().to_owned(), i.to_string());
        prop_assert_eq!(EntityId::from(w), EntityId::new(w.to_string()).unwrap());
    }

    #[test]
    fn event_type_validation_matches_rule(s in "\\PC{0,8}|[!-~]{1,300}|.{1,8}") {
        let noncharacter = |c: char| (0xFDD0..=0xFDEF).contains(&u32::from(c)) || u32::from(c) & 0xFFFE == 0xFFFE;
        let ok = !s.is_empty()
            && s.len() <= 256
            && !s.chars().any(|c| c.is_control() || noncharacter(c));
        prop_assert_eq!(EventType::new(&s).is_ok(), ok);
    }

    #[test]
    fn integer_entity_ids_match_to_string(n: i64, u: u64) {
        let (a, b) = (EntityId::from(n), EntityId::from(u));
        prop_assert_eq!(a.as_str(), n.to_string());
        prop_assert_eq!(b.as_str(), u.to_string());
    }
}
