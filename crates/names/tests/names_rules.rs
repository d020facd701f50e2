//! The rules: each `is_valid_*` (compile time) agrees with its `check_*` (run time), and the
//! refusals say what and where.

use syncbus_names::{
    check_event_type, check_pattern, check_topic, is_valid_event_type, is_valid_topic, NameKind,
    NameReason, EVENT_TYPE_MAX_LEN, TOPIC_MAX_LEN, TOPIC_MAX_TOKENS,
};

fn samples() -> Vec<String> {
    let mut v: Vec<String> = [
        "a",
        "a.b",
        "",
        ".",
        "a.",
        ".a",
        "a..b",
        "a.*",
        "*",
        ">",
        "a.>",
        "a.>.b",
        "a*",
        "*b",
        "a b",
        "é",
        "a\t",
        "~!.#$",
        "a\u{7f}",
        "a\u{85}",
        "shop.order.placed",
        "x.é.y",
    ]
    .map(String::from)
    .into();
    v.push("a".repeat(TOPIC_MAX_LEN));
    v.push("a".repeat(TOPIC_MAX_LEN + 1));
    v.push(vec!["a"; TOPIC_MAX_TOKENS].join("."));
    v.push(vec!["a"; TOPIC_MAX_TOKENS + 1].join("."));
    v.push("e".repeat(EVENT_TYPE_MAX_LEN + 1));
    v
}

#[test]
fn const_checks_agree_with_runtime_checks() {
    for s in samples() {
        assert_eq!(is_valid_topic(&s), check_topic(&s).is_ok(), "topic {s:?}");
        assert_eq!(
            is_valid_event_type(&s),
            check_event_type(&s).is_ok(),
            "type {s:?}"
        );
    }
}

#[test]
fn topics_refuse_what_patterns_allow_only_as_whole_tokens() {
    assert_eq!(
        check_topic("a.*").unwrap_err().reason(),
        &NameReason::WildcardInTopic { byte: 2 }
    );
    assert!(check_pattern("a.*").is_ok());
    assert!(check_pattern("a.>").is_ok());
    assert!(matches!(
        check_pattern("a*").unwrap_err().reason(),
        NameReason::MisplacedWildcard { byte: 1, .. }
    ));
    assert_eq!(
        check_topic("a.").unwrap_err().reason(),
        &NameReason::EmptyToken { index: 1, byte: 2 }
    );
    let err = check_topic(&vec!["a"; 33].join(".")).unwrap_err();
    assert_eq!(
        err.reason(),
        &NameReason::TooManyTokens { count: 33, max: 32 }
    );
}

#[test]
fn a_refused_character_is_reported_whole_at_its_byte() {
    let err = check_event_type("shop.ordér").unwrap_err();
    assert_eq!(err.kind(), NameKind::EventType);
    assert!(matches!(
        err.reason(),
        NameReason::InvalidChar {
            ch: 'é',
            byte: 8,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        r#"invalid character 'é' at byte 8 in event type "shop.ordér": only printable ascii without spaces is allowed"#
    );
    let err = check_topic("a.😀").unwrap_err();
    assert!(matches!(
        err.reason(),
        NameReason::InvalidChar {
            ch: '😀',
            byte: 2,
            ..
        }
    ));
}
