//! Topic and pattern validation and matching, through the public API.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use syncbus_core::{NameError, NameKind, NameReason, Pattern, Topic};

// ---------------------------------------------------------------------------------------
// Reference models
// ---------------------------------------------------------------------------------------

/// Token-by-token recursive matcher, written independently of `Pattern::matches`.
fn naive_matches(pattern: &[&str], topic: &[&str]) -> bool {
    match (pattern, topic) {
        ([], []) => true,
        ([">"], [_, ..]) => true,
        (["*", p_rest @ ..], [_, t_rest @ ..]) => naive_matches(p_rest, t_rest),
        ([p, p_rest @ ..], [t, t_rest @ ..]) => p == t && naive_matches(p_rest, t_rest),
        _ => false,
    }
}

fn naive_matches_str(pattern: &str, topic: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let topic: Vec<&str> = topic.split('.').collect();
    naive_matches(&pattern, &topic)
}

/// The validation rules, written as plainly as possible.
fn reference_valid(s: &str, is_pattern: bool) -> bool {
    if s.is_empty() || s.len() > 256 {
        return false;
    }
    let tokens: Vec<&str> = s.split('.').collect();
    if tokens.len() > 32 {
        return false;
    }
    let last = tokens.len() - 1;
    tokens.iter().enumerate().all(|(i, token)| match *token {
        "*" => is_pattern,
        ">" => is_pattern && i == last,
        _ => {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| ('!'..='~').contains(&c) && !matches!(c, '.' | '*' | '>'))
        }
    })
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// A tiny alphabet, so random patterns and topics match often.
const TOKENS: &[&str] = &["a", "b", "c"];

fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 1..=6).prop_map(|t| t.join("."))
}

fn pattern_strategy() -> impl Strategy<Value = String> {
    let token = prop_oneof![3 => prop::sample::select(TOKENS), 1 => Just("*")];
    (prop::collection::vec(token, 0..=6), any::<bool>()).prop_filter_map(
        "empty pattern",
        |(mut tokens, tail)| {
            if tail {
                tokens.push(">");
            }
            (!tokens.is_empty()).then(|| tokens.join("."))
        },
    )
}

/// Short strings over characters that exercise every rule.
fn short_string_strategy() -> impl Strategy<Value = String> {
    const CHARS: &[char] = &[
        'a', 'a', 'b', '~', '!', '.', '.', '*', '*', '>', '>', ' ', '\t', '\u{7f}', 'é', '😀',
    ];
    prop::collection::vec(prop::sample::select(CHARS), 0..=10)
        .prop_map(|chars| chars.into_iter().collect())
}

/// Long dotted strings around the length and token-count limits.
fn long_string_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z]{1,12}", 20..=40).prop_map(|t| t.join("."))
}

fn any_string_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        short_string_strategy(),
        long_string_strategy(),
        pattern_strategy()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn matches_agrees_with_naive_matcher(pattern in pattern_strategy(), topic in topic_strategy()) {
        let p = Pattern::new(&pattern).unwrap();
        let t = Topic::new(&topic).unwrap();
        let expected = naive_matches_str(&pattern, &topic);
        prop_assert_eq!(p.matches(&t), expected, "{} vs {}", pattern, topic);
        prop_assert_eq!(p.matches_str(&topic), expected, "{} vs {}", pattern, topic);
    }

    #[test]
    fn validation_agrees_with_reference(s in any_string_strategy()) {
        let topic = Topic::new(&s);
        let pattern = Pattern::new(&s);
        prop_assert_eq!(topic.is_ok(), reference_valid(&s, false), "topic {:?}: {:?}", s, topic);
        prop_assert_eq!(pattern.is_ok(), reference_valid(&s, true), "pattern {:?}: {:?}", s, pattern);

        // A string is a topic exactly when it is a literal pattern.
        let literal = pattern.as_ref().is_ok_and(Pattern::is_literal);
        prop_assert_eq!(topic.is_ok(), literal, "{:?}", s);

        if let Ok(topic) = topic {
            prop_assert_eq!(topic.as_str(), s.as_str());
            prop_assert_eq!(topic.to_string(), s.clone());
            prop_assert_eq!(topic.tokens().collect::<Vec<_>>(), s.split('.').collect::<Vec<_>>());
            prop_assert_eq!(Topic::try_from(s.clone()), Ok(topic.clone()));
            prop_assert!(Pattern::from(topic.clone()).matches(&topic));
        }
        if let Ok(pattern) = pattern {
            prop_assert_eq!(pattern.as_str(), s.as_str());
            prop_assert_eq!(Pattern::try_from(s.clone()), Ok(pattern));
        }
    }

    #[test]
    fn ordering_and_equality_follow_the_string(a in topic_strategy(), b in topic_strategy()) {
        let (ta, tb) = (Topic::new(&a).unwrap(), Topic::new(&b).unwrap());
        prop_assert_eq!(ta.cmp(&tb), a.cmp(&b));
        prop_assert_eq!(ta == tb, a == b);
        let (pa, pb) = (Pattern::from(ta), Pattern::from(tb));
        prop_assert_eq!(pa.cmp(&pb), a.cmp(&b));
    }
}

// ---------------------------------------------------------------------------------------
// Matching examples
// ---------------------------------------------------------------------------------------

#[track_caller]
fn check(pattern: &str, matching: &[&str], not_matching: &[&str]) {
    let p = Pattern::new(pattern).unwrap();
    for topic in matching {
        assert!(
            p.matches(&Topic::new(topic).unwrap()),
            "{pattern} should match {topic}"
        );
        assert!(p.matches_str(topic), "{pattern} should match {topic}");
    }
    for topic in not_matching {
        assert!(
            !p.matches(&Topic::new(topic).unwrap()),
            "{pattern} should not match {topic}"
        );
        assert!(!p.matches_str(topic), "{pattern} should not match {topic}");
    }
}

#[test]
fn single_token_wildcard() {
    check(
        "orders.*",
        &["orders.created", "orders.x"],
        &["orders.eu.created", "orders", "users.created"],
    );
    check(
        "*.created",
        &["orders.created"],
        &["orders.eu.created", "created", "orders.updated"],
    );
    check(
        "orders.*.created",
        &["orders.eu.created"],
        &["orders.created", "orders.eu.us.created"],
    );
    check("*", &["orders", "x"], &["orders.created"]);
    check("*.*", &["a.b", "orders.created"], &["a", "a.b.c"]);
    check("*.*.*", &["a.b.c"], &["a.b", "a.b.c.d"]);
}

#[test]
fn tail_wildcard() {
    check(
        "orders.>",
        &["orders.created", "orders.eu.created", "orders.a.b.c.d"],
        &["orders", "users.created"],
    );
    check(">", &["a", "orders.created", "a.b.c.d.e"], &[]);
    check("*.>", &["a.b", "a.b.c"], &["a"]);
    check(
        "orders.*.>",
        &["orders.eu.created", "orders.eu.x.y"],
        &["orders.eu", "orders"],
    );
}

#[test]
fn literal_patterns_match_only_the_equal_topic() {
    check(
        "orders.created",
        &["orders.created"],
        &["orders", "orders.created.eu", "orders.updated"],
    );
    check("orders", &["orders"], &["orders.created", "order"]);

    let p = Pattern::from_static("orders.created");
    assert!(p.is_literal());
    let from_topic = Pattern::from(Topic::from_static("orders.created"));
    assert!(from_topic.is_literal());
    assert_eq!(from_topic, p);
    assert!(!Pattern::from_static("orders.*").is_literal());
    assert!(!Pattern::from_static(">").is_literal());
}

// ---------------------------------------------------------------------------------------
// Accepted shapes and limits
// ---------------------------------------------------------------------------------------

#[test]
fn accepts_every_printable_ascii_token_character() {
    let chars: String = ('!'..='~')
        .filter(|c| !matches!(c, '.' | '*' | '>'))
        .collect();
    let topic = Topic::new(&chars).unwrap();
    assert_eq!(topic.as_str(), chars);
    assert_eq!(
        Topic::new(format!("{chars}.{chars}"))
            .unwrap()
            .tokens()
            .count(),
        2
    );
}

#[test]
fn length_limit_is_inclusive() {
    let at_limit = "a".repeat(Topic::MAX_LEN);
    assert_eq!(Topic::MAX_LEN, 256);
    assert!(Topic::new(&at_limit).is_ok());
    assert!(Pattern::new(&at_limit).is_ok());
    let over = "a".repeat(Topic::MAX_LEN + 1);
    let too_long = NameReason::TooLong { len: 257, max: 256 };
    assert_eq!(why(Topic::new(&over)).1, too_long);
    assert_eq!(why(Pattern::new(&over)).1, too_long);
}

#[test]
fn token_limit_is_inclusive() {
    assert_eq!(Topic::MAX_TOKENS, 32);
    let at_limit = vec!["a"; 32].join(".");
    assert!(Topic::new(&at_limit).is_ok());
    assert!(Pattern::new(format!("{}.>", vec!["*"; 31].join("."))).is_ok());
    let over = vec!["a"; 33].join(".");
    assert_eq!(
        why(Topic::new(&over)).1,
        NameReason::TooManyTokens { count: 33, max: 32 }
    );
}

// ---------------------------------------------------------------------------------------
// Every error reason, with its message
// ---------------------------------------------------------------------------------------

/// The kind, reason and quoted input of a refusal, for comparing in one `assert_eq!`.
fn why<T: std::fmt::Debug>(r: Result<T, NameError>) -> (NameKind, NameReason, String) {
    let e = r.unwrap_err();
    (e.kind(), e.reason().clone(), e.input().to_owned())
}

#[test]
fn empty() {
    assert_eq!(
        why(Topic::new("")),
        (NameKind::Topic, NameReason::Empty, String::new())
    );
    assert_eq!(
        why(Pattern::new("")),
        (NameKind::Pattern, NameReason::Empty, String::new())
    );
    assert_eq!(Topic::new("").unwrap_err().to_string(), "topic is empty");
    assert_eq!(
        Pattern::new("").unwrap_err().to_string(),
        "pattern is empty"
    );
}

#[test]
fn too_long() {
    let input = format!("orders.{}", "x".repeat(300));
    let err = Topic::new(&input).unwrap_err();
    assert_eq!(
        why(Err::<(), _>(err.clone())),
        (
            NameKind::Topic,
            NameReason::TooLong { len: 307, max: 256 },
            format!("orders.{}...", "x".repeat(25))
        )
    );
    assert_eq!(err.position(), None);
    assert_eq!(
        err.to_string(),
        format!(
            "topic \"orders.{}...\" is 307 bytes long, the maximum is 256",
            "x".repeat(25)
        )
    );

    // Non-ASCII input is cut at a character boundary.
    let err = Topic::new("é".repeat(200)).unwrap_err();
    assert_eq!(err.reason(), &NameReason::TooLong { len: 400, max: 256 });
    assert_eq!(err.input(), format!("{}...", "é".repeat(32)));
}

#[test]
fn too_many_tokens() {
    let input = vec!["a"; 40].join(".");
    let err = Pattern::new(&input).unwrap_err();
    assert_eq!(
        why(Err::<(), _>(err.clone())),
        (
            NameKind::Pattern,
            NameReason::TooManyTokens { count: 40, max: 32 },
            input.clone()
        )
    );
    assert_eq!(
        err.to_string(),
        format!("pattern {input:?} has 40 tokens, the maximum is 32")
    );
}

#[test]
fn empty_token() {
    let err = Topic::new("a..b").unwrap_err();
    assert_eq!(
        why(Err::<(), _>(err.clone())),
        (
            NameKind::Topic,
            NameReason::EmptyToken { index: 1, byte: 2 },
            "a..b".into()
        )
    );
    assert_eq!(err.position(), Some(2));
    assert_eq!(err.to_string(), r#"empty token at index 1 in topic "a..b""#);

    for (input, index, byte) in [(".a", 0, 0), ("a.b.", 2, 4), (".", 0, 0)] {
        assert_eq!(
            why(Topic::new(input)).1,
            NameReason::EmptyToken { index, byte },
            "{input}"
        );
    }
    for (input, index, byte) in [("a.*.", 2, 4), ("*..>", 1, 2)] {
        assert_eq!(
            why(Pattern::new(input)).1,
            NameReason::EmptyToken { index, byte },
            "{input}"
        );
    }
}

#[test]
fn invalid_char() {
    const PRINTABLE: &str = "only printable ascii is allowed";
    let err = Topic::new("orders.eu created").unwrap_err();
    assert_eq!(
        why(Err::<(), _>(err.clone())),
        (
            NameKind::Topic,
            NameReason::InvalidChar {
                ch: ' ',
                byte: 9,
                rule: PRINTABLE
            },
            "orders.eu created".into()
        )
    );
    assert_eq!(
        err.to_string(),
        r#"invalid character ' ' at byte 9 in topic "orders.eu created": only printable ascii is allowed"#
    );

    let err = Pattern::new("café.*").unwrap_err();
    assert_eq!(
        why(Err::<(), _>(err.clone())),
        (
            NameKind::Pattern,
            NameReason::InvalidChar {
                ch: 'é',
                byte: 3,
                rule: PRINTABLE
            },
            "café.*".into()
        )
    );
    assert_eq!(
        err.to_string(),
        r#"invalid character 'é' at byte 3 in pattern "café.*": only printable ascii is allowed"#
    );

    let err = Topic::new("a\tb").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid character '\t' at byte 1 in topic "a\tb": only printable ascii is allowed"#
    );
    for (input, ch) in [("a\u{7f}", '\u{7f}'), ("a\0", '\0')] {
        assert_eq!(
            why(Topic::new(input)).1,
            NameReason::InvalidChar {
                ch,
                byte: 1,
                rule: PRINTABLE
            }
        );
    }
}

#[test]
fn wildcard_in_topic() {
    let err = Topic::new("orders.*").unwrap_err();
    assert_eq!(
        why(Err::<(), _>(err.clone())),
        (
            NameKind::Topic,
            NameReason::WildcardInTopic { byte: 7 },
            "orders.*".into()
        )
    );
    assert_eq!(
        err.to_string(),
        r#"wildcard '*' at byte 7 in topic "orders.*": only patterns may contain wildcards"#
    );

    let err = Topic::new("orders.>").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"wildcard '>' at byte 7 in topic "orders.>": only patterns may contain wildcards"#
    );
    assert_eq!(
        why(Topic::new("ord*ers")).1,
        NameReason::WildcardInTopic { byte: 3 }
    );
    assert_eq!(
        why(Topic::new("a>")).1,
        NameReason::WildcardInTopic { byte: 1 }
    );
}

#[test]
fn wildcard_misuse() {
    const WHOLE: &str = "a wildcard must be a whole token";
    const LAST: &str = "'>' must be the last token";
    let err = Pattern::new("orders*").unwrap_err();
    assert_eq!(
        why(Err::<(), _>(err.clone())),
        (
            NameKind::Pattern,
            NameReason::MisplacedWildcard {
                byte: 6,
                rule: WHOLE
            },
            "orders*".into()
        )
    );
    assert_eq!(
        err.to_string(),
        r#"misplaced wildcard at byte 6 in pattern "orders*": a wildcard must be a whole token"#
    );

    let err = Pattern::new("orders.>.created").unwrap_err();
    assert_eq!(
        err.reason(),
        &NameReason::MisplacedWildcard {
            byte: 7,
            rule: LAST
        }
    );
    assert_eq!(
        err.to_string(),
        r#"misplaced wildcard at byte 7 in pattern "orders.>.created": '>' must be the last token"#
    );

    for (input, byte) in [
        ("*b", 0),
        ("a.*b", 2),
        ("a>", 1),
        (">a", 0),
        ("**", 0),
        ("*>", 0),
        ("a.b*.c", 3),
    ] {
        assert_eq!(
            why(Pattern::new(input)).1,
            NameReason::MisplacedWildcard { byte, rule: WHOLE },
            "{input}"
        );
    }
    assert_eq!(
        why(Pattern::new(">.>")).1,
        NameReason::MisplacedWildcard {
            byte: 0,
            rule: LAST
        }
    );
}

#[test]
#[should_panic(expected = r#"empty token at index 1 in topic "orders..created""#)]
fn topic_from_static_panics_with_the_error_message() {
    let _ = Topic::from_static("orders..created");
}

#[test]
#[should_panic(expected = r#"misplaced wildcard at byte 6 in pattern "orders>""#)]
fn pattern_from_static_panics_with_the_error_message() {
    let _ = Pattern::from_static("orders>");
}

// ---------------------------------------------------------------------------------------
// Trait impls
// ---------------------------------------------------------------------------------------

#[test]
fn conversions_and_formatting() {
    let topic: Topic = "orders.created".parse().unwrap();
    assert_eq!(Topic::try_from("orders.created").unwrap(), topic);
    assert_eq!(
        Topic::try_from(String::from("orders.created")).unwrap(),
        topic
    );
    assert_eq!(Topic::from_static("orders.created"), topic);
    assert_eq!(topic.as_ref(), "orders.created");
    assert_eq!(topic.as_smol_str(), "orders.created");
    assert_eq!(topic.to_string(), "orders.created");
    assert_eq!(format!("{topic:?}"), r#"Topic("orders.created")"#);
    assert!("orders..created".parse::<Topic>().is_err());
    assert!(Topic::try_from(String::from("a.*")).is_err());

    let pattern: Pattern = "orders.*".parse().unwrap();
    assert_eq!(Pattern::try_from("orders.*").unwrap(), pattern);
    assert_eq!(
        Pattern::try_from(String::from("orders.*")).unwrap(),
        pattern
    );
    assert_eq!(pattern.as_ref(), "orders.*");
    assert_eq!(pattern.to_string(), "orders.*");
    assert_eq!(format!("{pattern:?}"), r#"Pattern("orders.*")"#);
    assert_eq!(pattern.tokens().collect::<Vec<_>>(), ["orders", "*"]);
    assert!(Pattern::try_from(String::from("orders.>.x")).is_err());
}

#[test]
fn maps_can_be_queried_by_str() {
    let mut topics = HashMap::new();
    topics.insert(Topic::from_static("orders.created"), 1);
    assert_eq!(topics.get("orders.created"), Some(&1));
    assert_eq!(topics.get("orders.updated"), None);

    let mut patterns = HashMap::new();
    patterns.insert(Pattern::from_static("orders.>"), 2);
    assert_eq!(patterns.get("orders.>"), Some(&2));

    let set: BTreeSet<Topic> = ["b", "a.b", "a"]
        .into_iter()
        .map(|s| Topic::new(s).unwrap())
        .collect();
    assert!(set.contains("a.b"));
    assert_eq!(
        set.iter().map(Topic::as_str).collect::<Vec<_>>(),
        ["a", "a.b", "b"]
    );
}

#[test]
fn public_types_are_send_sync_and_static() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_send_sync::<Topic>();
    assert_send_sync::<Pattern>();
    assert_error::<NameError>();
}
