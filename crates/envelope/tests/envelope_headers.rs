//! Headers naming rules and limits.

use syncbus_envelope::{HeaderError, Headers, NameKind, NameReason};

const RESERVED: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "topic",
    "entityid",
    "entityversion",
    "correlationid",
    "causationid",
];

#[test]
fn insert_get_replace_remove() {
    let mut h = Headers::new();
    assert!(h.is_empty());
    assert_eq!(h.insert("tenant", "acme").unwrap(), None);
    assert_eq!(h.get("tenant"), Some("acme"));
    assert_eq!(
        h.insert("tenant", "globex").unwrap().as_deref(),
        Some("acme")
    );
    assert_eq!(h.len(), 1);
    assert_eq!(h.get("tenant"), Some("globex"));
    assert_eq!(h.get("region"), None);
    assert_eq!(h.remove("tenant").as_deref(), Some("globex"));
    assert_eq!(h.remove("tenant"), None);
    assert!(h.is_empty());
}

#[test]
fn iteration_is_in_name_order_and_equality_ignores_insert_order() {
    let mut a = Headers::new();
    a.insert("zeta", "1").unwrap();
    a.insert("alpha", "2").unwrap();
    a.insert("m2", "3").unwrap();
    let mut b = Headers::new();
    b.insert("m2", "3").unwrap();
    b.insert("alpha", "2").unwrap();
    b.insert("zeta", "1").unwrap();
    assert_eq!(a, b);
    assert_eq!(
        a.iter().collect::<Vec<_>>(),
        [("alpha", "2"), ("m2", "3"), ("zeta", "1")]
    );
}

#[test]
fn names_follow_cloudevents_rules() {
    let mut h = Headers::new();
    h.insert("a", "").unwrap();
    h.insert("abc123", "").unwrap();
    // CloudEvents advises at most 20 characters but requires no limit.
    h.insert("x".repeat(21), "").unwrap();
    h.insert("x".repeat(Headers::MAX_NAME_LEN), "").unwrap();
    for bad in [
        "",
        "Tenant",
        "trace-id",
        "trace_id",
        "é",
        "a b",
        &"x".repeat(Headers::MAX_NAME_LEN + 1),
    ] {
        assert!(
            matches!(h.insert(bad, "v"), Err(HeaderError::InvalidName(ref e)) if e.input().starts_with(bad.get(..20).unwrap_or(bad)) && e.kind() == NameKind::HeaderName),
            "{bad:?}"
        );
    }
    for &name in RESERVED.iter().chain(["data_base64"].iter()) {
        // data_base64 has an underscore, so it fails the character rule first.
        let err = h.insert(name, "v").unwrap_err();
        assert!(
            matches!(err, HeaderError::InvalidName(_)),
            "{name}: {err:?}"
        );
    }
    for &name in RESERVED {
        match h.insert(name, "v") {
            Err(HeaderError::InvalidName(e)) => {
                assert_eq!(
                    (e.kind(), e.reason(), e.input()),
                    (NameKind::HeaderName, &NameReason::Reserved, name)
                );
                assert_eq!(e.to_string(), format!("header name {name:?} is reserved"));
            }
            other => panic!("{name}: expected a reserved name, got {other:?}"),
        }
    }
    let Err(HeaderError::InvalidName(e)) = h.insert("Tenant", "v") else {
        panic!("an upper-case name is refused");
    };
    assert_eq!(e.position(), Some(0));
    assert_eq!(
        e.to_string(),
        r#"invalid character 'T' at byte 0 in header name "Tenant": only the characters a-z and 0-9 are allowed"#
    );
    assert_eq!(h.len(), 4);
}

#[test]
fn value_length_is_limited() {
    let mut h = Headers::new();
    h.insert("ok", "v".repeat(4096)).unwrap();
    assert_eq!(
        h.insert("big", "v".repeat(4097)),
        Err(HeaderError::ValueTooLong {
            name: "big".into(),
            len: 4097,
            max: 4096
        })
    );
    assert_eq!(h.get("big"), None);
}

#[test]
fn at_most_64_headers() {
    let mut h = Headers::new();
    for i in 0..Headers::MAX_LEN {
        h.insert(format!("h{i}"), "v").unwrap();
    }
    assert_eq!(h.len(), 64);
    assert_eq!(
        h.insert("one", "more"),
        Err(HeaderError::TooMany { max: 64 })
    );
    // Replacing an existing header is still fine when full.
    assert_eq!(h.insert("h0", "w").unwrap().as_deref(), Some("v"));
    assert_eq!(h.len(), 64);
}

#[test]
fn serde_round_trip_and_validation() {
    let mut h = Headers::new();
    h.insert("tenant", "acme").unwrap();
    h.insert("n", "1").unwrap();
    let json = serde_json::to_string(&h).unwrap();
    assert_eq!(json, r#"{"n":"1","tenant":"acme"}"#);
    assert_eq!(serde_json::from_str::<Headers>(&json).unwrap(), h);
    assert!(serde_json::from_str::<Headers>(r#"{"Bad":"x"}"#).is_err());
    assert!(serde_json::from_str::<Headers>(r#"{"id":"x"}"#).is_err());
    assert!(serde_json::from_str::<Headers>(r#"{"a":"x","a":"y"}"#).is_err());
}

#[test]
fn error_messages_are_lowercase_without_period() {
    let errors = [
        Headers::new().insert("A", "v").unwrap_err(),
        Headers::new().insert("id", "v").unwrap_err(),
        Headers::new().insert("", "v").unwrap_err(),
        Headers::new()
            .insert("x".repeat(Headers::MAX_NAME_LEN + 1), "v")
            .unwrap_err(),
        Headers::new().insert("note", "a\u{0}").unwrap_err(),
        HeaderError::ValueTooLong {
            name: "a".into(),
            len: 5000,
            max: 4096,
        },
        HeaderError::TooMany { max: 64 },
    ];
    for e in errors {
        let msg = e.to_string();
        assert!(msg.starts_with(|c: char| c.is_lowercase()), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
    }
    assert_eq!(
        HeaderError::TooMany { max: 64 }.to_string(),
        "too many headers, at most 64 are allowed"
    );
}

#[test]
fn debug_shows_a_map() {
    let mut h = Headers::new();
    h.insert("a", "1").unwrap();
    assert_eq!(format!("{h:?}"), r#"{"a": "1"}"#);
}
