//! CloudEvents JSON and binary codecs: round trips, limits and every decode error.

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use syncbus_envelope::{
    Binary, Bytes, CloudEventsJson, DecodeError, EncodeError, EntityId, Envelope, Event, EventId,
    EventType, ExtensionValue, Headers, Limits, Metadata, NameKind, NameReason, Timestamp, Topic,
};

fn full_meta() -> Metadata {
    let mut headers = Headers::new();
    headers.insert("tenant", "acme").unwrap();
    headers
        .insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
    Metadata::new(EventType::from_static("shop.order.placed"))
        .with_topic(Topic::from_static("shop.orders.eu"))
        .with_source("https://shop.example.com/checkout")
        .with_time(Timestamp::from_unix_nanos(1_714_566_600_123_456_789))
        .with_entity_id(Some(EntityId::new("order-42").unwrap()))
        .with_version(Some(u64::MAX))
        .with_correlation_id(Some(EventId::parse("conversation:7").unwrap()))
        .with_causation_id(Some(EventId::new()))
        .with_headers(headers)
        .with_content_type("application/json")
}

fn minimal_meta() -> Metadata {
    Metadata::new(EventType::from_static("t"))
}

fn json_round_trip(env: &Envelope<Bytes>) -> Envelope<Bytes> {
    let bytes = CloudEventsJson::encode(env).unwrap();
    CloudEventsJson::decode(&bytes, &Limits::default()).unwrap()
}

fn binary_round_trip(env: &Envelope<Bytes>) -> Envelope<Bytes> {
    let bytes = Binary::encode(env).unwrap();
    Binary::decode(&bytes, &Limits::default()).unwrap()
}

fn assert_round_trips(env: &Envelope<Bytes>) {
    assert_eq!(&json_round_trip(env), env, "cloudevents json");
    assert_eq!(&binary_round_trip(env), env, "binary");
}

/// A valid CloudEvents object to break in one place at a time.
fn valid_json() -> Value {
    json!({
        "specversion": "1.0",
        "id": "A234-1234-1234",
        "source": "/shop",
        "type": "shop.order.placed",
        "entityversion": 3,
        "data": {"total": 12}
    })
}

fn decode_value(v: &Value) -> Result<Envelope<Bytes>, DecodeError> {
    CloudEventsJson::decode(&serde_json::to_vec(v).unwrap(), &Limits::default())
}

fn invalid_attribute(result: Result<Envelope<Bytes>, DecodeError>) -> String {
    match result {
        Err(DecodeError::InvalidAttribute { attribute, .. }) => attribute,
        other => panic!("expected InvalidAttribute, got {other:?}"),
    }
}

#[test]
fn full_metadata_json_payload_round_trips() {
    let env = Envelope::new(
        full_meta(),
        Bytes::from_static(br#"{"total":1999,"items":[1,2]}"#),
    );
    assert_round_trips(&env);
    let back = json_round_trip(&env);
    assert_eq!(back.meta().time(), env.meta().time());
    assert_eq!(back.meta().headers().get("tenant"), Some("acme"));
    assert_eq!(back.meta().version(), Some(u64::MAX));
}

#[test]
fn minimal_metadata_round_trips() {
    for payload in [&b""[..], b"null", b"17", br#""text""#, b"[]"] {
        assert_round_trips(&Envelope::new(
            minimal_meta(),
            Bytes::copy_from_slice(payload),
        ));
    }
}

#[test]
fn non_json_payload_uses_base64_and_round_trips() {
    let payload: Vec<u8> = (0..=255).collect();
    for ct in [
        "application/octet-stream",
        "text/plain; charset=utf-8",
        "image/png",
    ] {
        let env = Envelope::new(
            full_meta().with_content_type(ct),
            Bytes::from(payload.clone()),
        );
        assert_round_trips(&env);
        let json: Value = serde_json::from_slice(&CloudEventsJson::encode(&env).unwrap()).unwrap();
        assert!(json.get("data").is_none());
        assert!(json["data_base64"]
            .as_str()
            .unwrap()
            .starts_with("AAECAwQF"));
    }
}

#[test]
fn data_base64_without_content_type_round_trips() {
    // Spec-valid: `datacontenttype` is optional, and binary data goes in `data_base64`.
    let mut v = valid_json();
    v.as_object_mut().unwrap().remove("data");
    v["data_base64"] = json!("3q2+7w==");
    let env = decode_value(&v).unwrap();
    assert_eq!(env.meta().content_type(), None);
    assert_eq!(env.payload().as_ref(), &[0xde, 0xad, 0xbe, 0xef]);

    // It can be forwarded: encoded again as `data_base64`, and decoded to the same event.
    let json: Value = serde_json::from_slice(&CloudEventsJson::encode(&env).unwrap()).unwrap();
    assert_eq!(json["data_base64"], "3q2+7w==");
    assert!(json.get("data").is_none());
    assert!(json.get("datacontenttype").is_none());
    assert_round_trips(&env);

    // Bytes that are JSON with whitespace around it would lose it in `data`: base64 keeps it.
    let env = Envelope::new(minimal_meta(), Bytes::from_static(b" {\"a\":1}\n"));
    let json: Value = serde_json::from_slice(&CloudEventsJson::encode(&env).unwrap()).unwrap();
    assert!(json.get("data_base64").is_some());
    assert_round_trips(&env);
    // Exactly one JSON value still goes in `data`.
    let env = Envelope::new(minimal_meta(), Bytes::from_static(br#"{"a":1}"#));
    let json: Value = serde_json::from_slice(&CloudEventsJson::encode(&env).unwrap()).unwrap();
    assert_eq!(json["data"], json!({"a": 1}));
    assert_round_trips(&env);
}

#[test]
fn empty_source_is_refused() {
    let mut v = valid_json();
    v["source"] = json!("");
    match decode_value(&v) {
        Err(DecodeError::InvalidAttribute { attribute, reason }) => {
            assert_eq!(attribute, "source");
            assert!(reason.contains("non-empty URI-reference"), "{reason}");
        }
        other => panic!("expected InvalidAttribute for source, got {other:?}"),
    }
    // Encoding never writes one: an empty source goes out as the default, read back as none.
    let env = Envelope::new(minimal_meta().with_source(""), Bytes::new());
    let json: Value = serde_json::from_slice(&CloudEventsJson::encode(&env).unwrap()).unwrap();
    assert_eq!(json["source"], CloudEventsJson::DEFAULT_SOURCE);
    assert_eq!(json_round_trip(&env).meta().source(), None);
}

#[test]
fn json_suffix_content_types_embed_data() {
    let env = Envelope::new(
        minimal_meta().with_content_type("application/cloudevents+json"),
        Bytes::from_static(br#"{"a":1}"#),
    );
    let json: Value = serde_json::from_slice(&CloudEventsJson::encode(&env).unwrap()).unwrap();
    assert_eq!(json["data"], json!({"a": 1}));
    assert_round_trips(&env);
}

#[test]
fn encoded_attributes_match_the_cloudevents_spec() {
    let meta = full_meta();
    let env = Envelope::new(meta.clone(), Bytes::from_static(b"{}"));
    let json: Value = serde_json::from_slice(&CloudEventsJson::encode(&env).unwrap()).unwrap();
    assert_eq!(json["specversion"], "1.0");
    assert_eq!(json["id"], meta.id().to_string());
    assert_eq!(json["source"], "https://shop.example.com/checkout");
    assert_eq!(json["type"], "shop.order.placed");
    assert_eq!(json["time"], "2024-05-01T12:30:00.123456789Z");
    assert_eq!(json["datacontenttype"], "application/json");
    assert_eq!(json["topic"], "shop.orders.eu");
    assert_eq!(json["entityid"], "order-42");
    // Above i32::MAX a version is no CloudEvents integer: it goes out as a string.
    assert_eq!(json["entityversion"], json!(u64::MAX.to_string()));
    assert_eq!(json["correlationid"], "conversation:7");
    assert_eq!(
        json["causationid"],
        meta.causation_id().unwrap().to_string()
    );
    assert_eq!(json["tenant"], "acme");
    assert_eq!(json["data"], json!({}));
}

#[test]
fn minimal_encoding_uses_defaults() {
    let meta = minimal_meta();
    let json: Value = serde_json::from_slice(
        &CloudEventsJson::encode(&Envelope::new(meta.clone(), Bytes::new())).unwrap(),
    )
    .unwrap();
    assert_eq!(json["source"], CloudEventsJson::DEFAULT_SOURCE);
    // The time carried by the UUIDv7 id is written out for other consumers.
    assert_eq!(json["time"], meta.time().unwrap().to_string());
    assert!(json.get("data").is_none());
    assert!(json.get("datacontenttype").is_none());
    assert_eq!(json.as_object().unwrap().len(), 5);
}

#[test]
fn foreign_cloudevent_decodes() {
    let input = br#"{
        "specversion" : "1.0",
        "type" : "com.github.pull_request.opened",
        "source" : "https://github.com/cloudevents/spec/pull",
        "subject" : "123",
        "id" : "A234-1234-1234",
        "time" : "2018-04-05T17:31:00Z",
        "comexampleextension1" : "value",
        "comexampleothervalue" : 5,
        "flag" : true,
        "nothing" : null,
        "datacontenttype" : "text/xml",
        "data" : "<much wow=\"xml\"/>"
    }"#;
    let env = CloudEventsJson::decode(input, &Limits::default()).unwrap();
    let m = env.meta();
    assert_eq!(m.id().to_string(), "A234-1234-1234");
    assert_eq!(m.event_type().as_str(), "com.github.pull_request.opened");
    assert_eq!(m.source(), Some("https://github.com/cloudevents/spec/pull"));
    assert_eq!(
        m.time(),
        Some(Timestamp::parse_rfc3339("2018-04-05T17:31:00Z").unwrap())
    );
    assert_eq!(m.content_type(), Some("text/xml"));
    assert_eq!(m.headers().get("comexampleextension1"), Some("value"));
    assert_eq!(m.headers().get("comexampleothervalue"), Some("5"));
    assert_eq!(m.headers().get("flag"), Some("true"));
    assert_eq!(m.headers().get("nothing"), None);
    assert_eq!(m.headers().len(), 3);
    assert_eq!(m.topic(), None);
    assert_eq!(env.payload().as_ref(), br#"<much wow="xml"/>"#);
}

#[test]
fn json_data_is_kept_verbatim() {
    let input =
        br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data": { "b" : [1, 2.50] } }"#;
    let env = CloudEventsJson::decode(input, &Limits::default()).unwrap();
    assert_eq!(env.payload().as_ref(), br#"{ "b" : [1, 2.50] }"#);
}

#[test]
fn default_source_decodes_to_none() {
    let env = Envelope::new(minimal_meta(), Bytes::new());
    assert_eq!(json_round_trip(&env).meta().source(), None);
}

// ---- decode errors -------------------------------------------------------------------------

#[test]
fn malformed_json_is_rejected() {
    for input in [
        &b"{not json"[..],
        b"",
        b"[1,2]",
        b"\"str\"",
        b"{\"id\":\"1\"",
        b"{} {}",
    ] {
        assert!(
            matches!(
                CloudEventsJson::decode(input, &Limits::default()),
                Err(DecodeError::Malformed { .. })
            ),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn missing_required_attributes_are_named() {
    for attr in ["specversion", "id", "source", "type"] {
        let mut v = valid_json();
        v.as_object_mut().unwrap().remove(attr);
        assert_eq!(decode_value(&v), Err(DecodeError::MissingAttribute(attr)));
        // A null attribute counts as absent.
        v[attr] = Value::Null;
        assert_eq!(decode_value(&v), Err(DecodeError::MissingAttribute(attr)));
    }
}

#[test]
fn wrongly_typed_attributes_are_rejected() {
    let cases = [
        ("id", json!(5)),
        ("id", json!("")),
        ("id", json!("a\u{1}b")),
        ("source", json!(["/a"])),
        ("source", json!("not a uri")),
        ("type", json!(true)),
        ("type", json!("")),
        ("type", json!("a\u{7f}")),
        ("specversion", json!(1.0)),
        ("entityversion", json!(1.5)),
        ("entityversion", json!(4_294_967_296u64)),
        ("entityid", json!("a\u{1}b")),
        ("topic", json!({})),
        ("time", json!("yesterday")),
        ("time", json!(1_700_000_000)),
        ("causationid", json!([12])),
        ("datacontenttype", json!(false)),
        ("datacontenttype", json!("")),
        ("datacontenttype", json!("json")),
        ("dataschema", json!("/relative")),
        ("dataschema", json!("")),
        ("subject", json!(5)),
        ("subject", json!("")),
        ("data_base64", json!("not base64!")),
        ("tenant", json!({"nested": 1})),
        ("tags", json!(["a"])),
        ("prio", json!(1.5)),
        ("prio", json!(2_147_483_648u64)),
        ("prio", json!(-2_147_483_649i64)),
        ("BadName", json!("x")),
        ("note", json!("bell\u{7}")),
    ];
    for (attr, value) in cases {
        let mut v = valid_json();
        if attr == "data_base64" {
            v.as_object_mut().unwrap().remove("data");
        }
        v[attr] = value.clone();
        assert_eq!(
            invalid_attribute(decode_value(&v)),
            attr,
            "{attr} = {value}"
        );
    }
}

#[test]
fn unsupported_specversion() {
    let mut v = valid_json();
    v["specversion"] = json!("0.3");
    assert_eq!(
        decode_value(&v),
        Err(DecodeError::UnsupportedSpecVersion("0.3".into()))
    );
}

#[test]
fn duplicate_attributes_and_double_data_are_malformed() {
    let dup = br#"{"specversion":"1.0","id":"1","id":"2","source":"/s","type":"t"}"#;
    assert!(matches!(
        CloudEventsJson::decode(dup, &Limits::default()),
        Err(DecodeError::Malformed { .. })
    ));
    let mut v = valid_json();
    v["data_base64"] = json!("AA==");
    assert!(matches!(
        decode_value(&v),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn too_many_headers() {
    let mut v = valid_json();
    for i in 0..65 {
        v[format!("h{i}")] = json!("x");
    }
    assert_eq!(
        decode_value(&v),
        Err(DecodeError::TooManyHeaders { count: 65, max: 64 })
    );

    // Far more members than any envelope can hold are counted, not kept.
    let mut v = valid_json();
    for i in 0..10_000 {
        v[format!("h{i}")] = json!(i);
    }
    assert_eq!(
        decode_value(&v),
        Err(DecodeError::TooManyHeaders {
            count: 10_000,
            max: 64
        })
    );

    // A tighter limit applies to both codecs.
    let limits = Limits {
        max_headers: 1,
        ..Limits::default()
    };
    let env = Envelope::new(full_meta(), Bytes::new());
    let expected = Err(DecodeError::TooManyHeaders { count: 2, max: 1 });
    assert_eq!(
        CloudEventsJson::decode(&CloudEventsJson::encode(&env).unwrap(), &limits),
        expected
    );
    assert_eq!(
        Binary::decode(&Binary::encode(&env).unwrap(), &limits),
        expected
    );
}

#[test]
fn header_too_large() {
    let mut v = valid_json();
    v["big"] = json!("x".repeat(5000));
    assert_eq!(
        decode_value(&v),
        Err(DecodeError::HeaderTooLarge {
            name: "big".into(),
            len: 5000,
            max: 4096
        })
    );

    let limits = Limits {
        max_header_value_bytes: 3,
        ..Limits::default()
    };
    let env = Envelope::new(full_meta(), Bytes::new());
    let expected = Err(DecodeError::HeaderTooLarge {
        name: "tenant".into(),
        len: 4,
        max: 3,
    });
    assert_eq!(
        CloudEventsJson::decode(&CloudEventsJson::encode(&env).unwrap(), &limits),
        expected
    );
    assert_eq!(
        Binary::decode(&Binary::encode(&env).unwrap(), &limits),
        expected
    );
}

#[test]
fn payload_over_limit() {
    let limits = Limits {
        max_payload_bytes: 16,
        ..Limits::default()
    };
    let json_payload = Bytes::from(format!("\"{}\"", "x".repeat(30)));
    let env = Envelope::new(minimal_meta(), json_payload);
    let expected = Err(DecodeError::PayloadTooLarge { len: 32, max: 16 });
    assert_eq!(
        CloudEventsJson::decode(&CloudEventsJson::encode(&env).unwrap(), &limits),
        expected
    );
    assert_eq!(
        Binary::decode(&Binary::encode(&env).unwrap(), &limits),
        expected
    );

    let env = Envelope::new(
        minimal_meta().with_content_type("application/octet-stream"),
        Bytes::from(vec![7u8; 17]),
    );
    let expected = Err(DecodeError::PayloadTooLarge { len: 17, max: 16 });
    assert_eq!(
        CloudEventsJson::decode(&CloudEventsJson::encode(&env).unwrap(), &limits),
        expected
    );
    assert_eq!(
        Binary::decode(&Binary::encode(&env).unwrap(), &limits),
        expected
    );

    // Exactly at the limit is fine.
    let env = Envelope::new(
        minimal_meta().with_content_type("application/octet-stream"),
        Bytes::from(vec![7u8; 16]),
    );
    assert!(CloudEventsJson::decode(&CloudEventsJson::encode(&env).unwrap(), &limits).is_ok());
    assert!(Binary::decode(&Binary::encode(&env).unwrap(), &limits).is_ok());
}

#[test]
fn oversized_input_is_rejected_before_parsing() {
    let limits = Limits {
        max_payload_bytes: 10,
        ..Limits::default()
    };
    let max = 10 + 64 * 1024;
    // Not even valid JSON: the size check comes first.
    let input = vec![b'x'; max + 1];
    let expected = Err(DecodeError::InputTooLarge { len: max + 1, max });
    assert_eq!(CloudEventsJson::decode(&input, &limits), expected);
    assert_eq!(Binary::decode(&input, &limits), expected);
}

#[test]
fn binary_truncated_input_is_malformed() {
    let env = Envelope::new(full_meta(), Bytes::from_static(b"{\"a\":1}"));
    let bytes = Binary::encode(&env).unwrap();
    for len in 0..bytes.len() {
        assert!(
            matches!(
                Binary::decode(&bytes[..len], &Limits::default()),
                Err(DecodeError::Malformed { .. })
            ),
            "prefix of {len} bytes"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        Binary::decode(&trailing, &Limits::default()),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn binary_garbage_is_rejected() {
    let garbage = [
        1u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    assert!(matches!(
        Binary::decode(&garbage, &Limits::default()),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn binary_unknown_version() {
    let env = Envelope::new(minimal_meta(), Bytes::new());
    let mut bytes = Binary::encode(&env).unwrap();
    assert_eq!(bytes[0], 2);
    for v in [0u8, 3, 255] {
        bytes[0] = v;
        assert_eq!(
            Binary::decode(&bytes, &Limits::default()),
            Err(DecodeError::UnsupportedVersion(v))
        );
    }
}

#[test]
fn binary_version_1_is_still_read() {
    // A record as version 1 wrote it (postcard): stored events stay readable.
    let mut v1 = vec![1u8, 0];
    v1.extend_from_slice(&0x0190_1234_5678_7abc_8def_0123_4567_89abu128.to_be_bytes());
    v1.extend_from_slice(&[3, b'a', b'.', b'b']); // type
    v1.extend_from_slice(&[1, 1, b't']); // topic
    v1.push(0); // source
    v1.extend_from_slice(&[1, 0xD0, 0x0F]); // time: 1000 ns, zigzag varint
    v1.push(0); // entity id
    v1.extend_from_slice(&[1, 3]); // version
    v1.extend_from_slice(&[1, 1, 1, b'c']); // correlation id: text "c"
    v1.push(0); // causation id
    v1.extend_from_slice(&[1, 10]);
    v1.extend_from_slice(b"text/plain");
    v1.extend_from_slice(&[1, 6]);
    v1.extend_from_slice(b"tenant");
    v1.push(4);
    v1.extend_from_slice(b"acme");
    v1.extend_from_slice(&[2, b'h', b'i']);
    let env = Binary::decode(&v1, &Limits::default()).unwrap();
    let m = env.meta();
    assert_eq!(
        m.id().as_u128(),
        Some(0x0190_1234_5678_7abc_8def_0123_4567_89ab)
    );
    assert_eq!(m.event_type().as_str(), "a.b");
    assert_eq!(m.topic().map(Topic::as_str), Some("t"));
    assert_eq!(m.time(), Some(Timestamp::from_unix_nanos(1000)));
    assert_eq!(m.version(), Some(3));
    assert_eq!(
        m.correlation_id().map(ToString::to_string).as_deref(),
        Some("c")
    );
    assert_eq!(m.content_type(), Some("text/plain"));
    assert_eq!(m.headers().get("tenant"), Some("acme"));
    assert_eq!(env.payload().as_ref(), b"hi");
    // Written again, it is version 2.
    let v2 = Binary::encode(&env).unwrap();
    assert_eq!(v2[0], 2);
    assert_eq!(Binary::decode(&v2, &Limits::default()).unwrap(), env);
}

#[test]
fn binary_invalid_event_type_is_rejected() {
    // Encode with a type whose bytes we can find and corrupt in place.
    let env = Envelope::new(
        Metadata::new(EventType::from_static("zzzzzz")),
        Bytes::new(),
    );
    let mut bytes = Binary::encode(&env).unwrap();
    let at = bytes.windows(6).position(|w| w == b"zzzzzz").unwrap();
    bytes[at + 2] = 0x01;
    match Binary::decode(&bytes, &Limits::default()) {
        Err(DecodeError::InvalidAttribute { attribute, .. }) => assert_eq!(attribute, "type"),
        other => panic!("expected InvalidAttribute, got {other:?}"),
    }
}

#[test]
fn an_invalid_topic_is_a_decode_error_in_both_codecs() {
    // CloudEvents: a `topic` that is no topic is another system's attribute of that name:
    // kept as it came, never routed on.
    for foreign in [json!("orders..eu"), json!("orders.*"), json!(7)] {
        let mut v = valid_json();
        v["topic"] = foreign.clone();
        let env = decode_value(&v).unwrap();
        assert_eq!(env.meta().topic(), None);
        let out: Value = serde_json::from_slice(&CloudEventsJson::encode(&env).unwrap()).unwrap();
        assert_eq!(out["topic"], foreign);
    }

    // Binary: corrupt a valid topic in place into a wildcard.
    let env = Envelope::new(
        Metadata::new(EventType::from_static("a.b")).with_topic(Topic::from_static("qqqqqq")),
        Bytes::new(),
    );
    let mut bytes = Binary::encode(&env).unwrap();
    let at = bytes.windows(6).position(|w| w == b"qqqqqq").unwrap();
    bytes[at + 2] = b'*';
    match Binary::decode(&bytes, &Limits::default()) {
        Err(DecodeError::InvalidAttribute { attribute, reason }) => {
            assert_eq!(attribute, "topic");
            assert!(
                reason.contains("only patterns may contain wildcards"),
                "{reason}"
            );
        }
        other => panic!("expected InvalidAttribute, got {other:?}"),
    }
    // The error a Topic gives is the one the decoder wraps.
    let err = Topic::new("qq*qqq").unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (NameKind::Topic, &NameReason::WildcardInTopic { byte: 2 })
    );
}

// ---- encode errors -------------------------------------------------------------------------

#[test]
fn invalid_json_payload_under_json_content_type() {
    for meta in [
        minimal_meta().with_content_type("application/json"),
        minimal_meta().with_content_type("application/vnd.api+json"),
    ] {
        let ct = meta.content_type().map(str::to_owned);
        let env = Envelope::new(meta, Bytes::from_static(b"{oops"));
        match CloudEventsJson::encode(&env) {
            Err(EncodeError::InvalidJsonPayload { content_type, .. }) => {
                assert_eq!(content_type, ct)
            }
            other => panic!("expected InvalidJsonPayload, got {other:?}"),
        }
    }
    // With no content type, a payload that is not JSON goes out as base64 instead.
    let env = Envelope::new(minimal_meta(), Bytes::from_static(b"{oops"));
    assert_round_trips(&env);
    // Binary does not care what the payload holds.
    let env = Envelope::new(minimal_meta(), Bytes::from_static(b"{oops"));
    assert_round_trips_binary_only(&env);
}

fn assert_round_trips_binary_only(env: &Envelope<Bytes>) {
    assert_eq!(&binary_round_trip(env), env);
}

// ---- typed payloads ------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: u64,
    total_cents: u64,
}

impl Event for OrderPlaced {
    const TYPE: &'static str = "shop.order.placed";
    const TOPIC: &'static str = "shop.orders";

    fn entity_id(&self) -> Option<EntityId> {
        Some(EntityId::from(self.order_id))
    }

    fn version(&self) -> Option<u64> {
        Some(1)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Refunded;

impl Event for Refunded {
    const TYPE: &'static str = "shop.order.refunded";
}

#[test]
fn typed_event_through_both_codecs() {
    let typed = Envelope::from_event(OrderPlaced {
        order_id: 42,
        total_cents: 1999,
    });
    assert_eq!(typed.meta().topic().map(Topic::as_str), Some("shop.orders"));
    assert_eq!(typed.meta().entity_id(), Some(&EntityId::from(42u64)));
    assert_eq!(typed.meta().version(), Some(1));
    let raw = typed.to_bytes_payload().unwrap();
    assert_eq!(raw.meta().content_type(), Some("application/json"));
    for decoded in [json_round_trip(&raw), binary_round_trip(&raw)] {
        let back = decoded.decode_payload::<OrderPlaced>().unwrap();
        assert_eq!(back.payload(), typed.payload());
        assert_eq!(back.id(), typed.id());
    }
}

#[test]
fn decode_payload_checks_type_and_json() {
    let raw = Envelope::from_event(OrderPlaced {
        order_id: 1,
        total_cents: 2,
    })
    .to_bytes_payload()
    .unwrap();
    assert_eq!(
        raw.decode_payload::<Refunded>().unwrap_err(),
        DecodeError::WrongType {
            expected: "shop.order.refunded",
            found: EventType::from_static("shop.order.placed"),
        }
    );
    let bad = Envelope::new(
        raw.meta().clone(),
        Bytes::from_static(b"{\"order_id\":\"x\"}"),
    );
    assert!(matches!(
        bad.decode_payload::<OrderPlaced>(),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn decode_error_messages_are_lowercase_without_period() {
    let errors = [
        DecodeError::Malformed { reason: "x".into() },
        DecodeError::MissingAttribute("id"),
        DecodeError::InvalidAttribute {
            attribute: "id".into(),
            reason: "x".into(),
        },
        DecodeError::UnsupportedSpecVersion("0.3".into()),
        DecodeError::UnsupportedVersion(2),
        DecodeError::TooManyHeaders { count: 65, max: 64 },
        DecodeError::HeaderTooLarge {
            name: "a".into(),
            len: 2,
            max: 1,
        },
        DecodeError::PayloadTooLarge { len: 2, max: 1 },
        DecodeError::InputTooLarge { len: 2, max: 1 },
        DecodeError::WrongType {
            expected: "a",
            found: EventType::from_static("b"),
        },
    ];
    for e in errors {
        let msg = e.to_string();
        assert!(
            msg.starts_with(|c: char| c.is_lowercase() || c.is_ascii_digit()),
            "{msg}"
        );
        assert!(!msg.ends_with('.'), "{msg}");
    }
}

// ---- properties ----------------------------------------------------------------------------

fn arb_id() -> impl Strategy<Value = EventId> {
    prop_oneof![
        any::<u128>().prop_map(EventId::from_u128),
        Just(()).prop_map(|_| EventId::new()),
        "\\PC{1,40}".prop_map(|s| EventId::parse(&s).unwrap()),
        any::<u128>().prop_map(|v| EventId::parse(&format!("{v:032X}")).unwrap()),
    ]
}

/// Header values CloudEvents JSON can tell apart: strings, integers, booleans.
fn arb_json_value() -> impl Strategy<Value = ExtensionValue> {
    prop_oneof![
        "\\PC{0,30}".prop_map(|s| ExtensionValue::string(s).unwrap()),
        any::<i32>().prop_map(ExtensionValue::from),
        any::<bool>().prop_map(ExtensionValue::from),
    ]
}

/// Header values of every CloudEvents type.
fn arb_any_value() -> impl Strategy<Value = ExtensionValue> {
    prop_oneof![
        arb_json_value(),
        "https://[a-z]{1,10}\\.example/[a-z0-9/]{0,10}"
            .prop_map(|s| ExtensionValue::uri(s).unwrap()),
        "[a-z0-9/.]{0,12}".prop_map(|s| ExtensionValue::uri_ref(s).unwrap()),
        any::<i64>().prop_map(|n| ExtensionValue::from(Timestamp::from_unix_nanos(n))),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|b| ExtensionValue::binary(&b)),
    ]
}

fn arb_headers_of(value: BoxedStrategy<ExtensionValue>) -> impl Strategy<Value = Headers> {
    proptest::collection::btree_map("[a-z0-9]{1,30}", value, 0..6).prop_map(|m| {
        let mut h = Headers::new();
        for (k, v) in m {
            // Reserved names are refused; skipping them keeps the rest.
            let _ = h.insert_value(k, v);
        }
        h
    })
}

fn arb_json() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("\\PC{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .prop_map(|v| serde_json::to_vec(&v).unwrap())
}

fn arb_time() -> impl Strategy<Value = Option<Option<Timestamp>>> {
    proptest::option::of(proptest::option::of(prop_oneof![
        any::<i64>().prop_map(Timestamp::from_unix_nanos),
        (
            Timestamp::MIN.as_unix_secs()..=Timestamp::MAX.as_unix_secs(),
            0u32..1_000_000_000
        )
            .prop_map(|(s, n)| unix_parts(s, n)),
    ]))
}

/// A timestamp anywhere in years 0000 to 9999, from unix seconds and nanoseconds, through
/// its RFC 3339 text.
fn unix_parts(secs: i64, nanos: u32) -> Timestamp {
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    Timestamp::parse_rfc3339(&format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    ))
    .unwrap()
}

fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn arb_meta_with(values: BoxedStrategy<ExtensionValue>) -> impl Strategy<Value = Metadata> {
    (
        (
            arb_id(),
            "\\PC{1,40}",
            proptest::option::of("[!-)+,\\-/-=?-~]{1,12}(\\.[!-)+,\\-/-=?-~]{1,12}){0,3}"),
            proptest::option::of(
                "(https://[a-z]{1,8}\\.example)?/[a-z0-9._~-]{0,12}(/[a-z0-9]{1,8}(%20[a-z]{1,3})?){0,2}"
                    .prop_filter("default source", |s| s != "/syncbus"),
            ),
            proptest::option::of("\\PC{1,20}"),
            proptest::option::of("(https://example\\.com/|urn:schema:)[a-z0-9/]{1,12}"),
            arb_time(),
        ),
        (
            proptest::option::of("\\PC{1,30}"),
            proptest::option::of(any::<u64>()),
            proptest::option::of(arb_id()),
            proptest::option::of(arb_id()),
            arb_headers_of(values),
        ),
    )
        .prop_map(
            |(
                (id, event_type, topic, source, subject, dataschema, time),
                (entity_id, version, correlation_id, causation_id, headers),
            )| {
                let mut m = Metadata::new(EventType::new(event_type).unwrap())
                    .with_id(id)
                    .with_entity_id(entity_id.map(|e| EntityId::new(e).unwrap()))
                    .with_version(version)
                    .with_correlation_id(correlation_id)
                    .with_causation_id(causation_id)
                    .with_headers(headers);
                if let Some(topic) = topic {
                    m.set_topic(Topic::new(topic).unwrap());
                }
                if let Some(source) = source {
                    m.set_source(source);
                }
                if let Some(subject) = subject {
                    m.set_subject(subject);
                }
                if let Some(schema) = dataschema {
                    m.set_dataschema(schema);
                }
                match time {
                    Some(Some(t)) => m.set_time(t),
                    Some(None) => m.clear_time(),
                    None => {}
                }
                m
            },
        )
}

fn arb_envelope_with(
    values: BoxedStrategy<ExtensionValue>,
) -> impl Strategy<Value = Envelope<Bytes>> {
    let json_payload = (
        proptest::option::of(prop_oneof![Just("application/json"), Just("text/json")]),
        prop_oneof![Just(Vec::new()), arb_json()],
    );
    let text_payload = (
        prop_oneof![Just("text/plain; charset=utf-8"), Just("application/xml")].prop_map(Some),
        "\\PC{0,40}".prop_map(String::into_bytes),
    );
    let other_payload = (
        proptest::option::of(prop_oneof![
            Just("application/octet-stream"),
            Just("text/plain")
        ]),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(ct, p)| (Some(ct.unwrap_or("application/x-protobuf")), p));
    (
        arb_meta_with(values),
        prop_oneof![json_payload, text_payload, other_payload],
    )
        .prop_map(|(mut meta, (ct, payload))| {
            if let Some(ct) = ct {
                meta.set_content_type(ct);
            }
            Envelope::new(meta, Bytes::from(payload))
        })
}

fn arb_envelope() -> impl Strategy<Value = Envelope<Bytes>> {
    arb_envelope_with(arb_json_value().boxed())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_envelope_round_trips_through_both_codecs(env in arb_envelope()) {
        let json = CloudEventsJson::encode(&env).unwrap();
        prop_assert_eq!(&CloudEventsJson::decode(&json, &Limits::default()).unwrap(), &env);
        let bin = Binary::encode(&env).unwrap();
        prop_assert_eq!(&Binary::decode(&bin, &Limits::default()).unwrap(), &env);
    }

    #[test]
    fn binary_keeps_every_header_type(env in arb_envelope_with(arb_any_value().boxed())) {
        let bin = Binary::encode(&env).unwrap();
        let back = Binary::decode(&bin, &Limits::default()).unwrap();
        prop_assert_eq!(&back, &env);
        for ((_, a), (_, b)) in back.meta().headers().iter_values().zip(env.meta().headers().iter_values()) {
            prop_assert_eq!(a.kind(), b.kind());
        }
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = CloudEventsJson::decode(&bytes, &Limits::default());
        let _ = Binary::decode(&bytes, &Limits::default());
        let mut versioned = bytes.clone();
        versioned.insert(0, 1);
        let _ = Binary::decode(&versioned, &Limits::default());
    }

    #[test]
    fn binary_decoder_never_panics_on_corrupted_envelopes(env in arb_envelope(), at in any::<prop::sample::Index>(), byte: u8) {
        let mut bin = Binary::encode(&env).unwrap();
        let i = at.index(bin.len());
        bin[i] = byte;
        let _ = Binary::decode(&bin, &Limits::default());
    }
}
