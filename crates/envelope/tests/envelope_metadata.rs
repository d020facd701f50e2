//! Metadata getters, setters, copy-on-write and envelopes built from typed events.

use syncbus_envelope::{
    Bytes, EntityId, Envelope, Event, EventId, EventType, Headers, Metadata, Timestamp, Topic,
};

#[test]
fn new_metadata_has_only_id_and_type() {
    let m = Metadata::new(EventType::from_static("a.b"));
    assert_eq!(m.event_type().as_str(), "a.b");
    assert!(m.id().timestamp_ms().is_some());
    assert_eq!(m.topic(), None);
    assert_eq!(m.source(), None);
    assert_eq!(m.entity_id(), None);
    assert_eq!(m.version(), None);
    assert_eq!(m.correlation_id(), None);
    assert_eq!(m.causation_id(), None);
    assert!(m.headers().is_empty());
    assert_eq!(m.content_type(), None);
    assert_eq!(
        m.time(),
        Some(Timestamp::from_unix_millis(m.id().timestamp_ms().unwrap()))
    );
}

#[test]
fn setters_and_builders_agree() {
    let id = EventId::parse("e-1").unwrap();
    let t = Timestamp::from_unix_nanos(5);
    let mut headers = Headers::new();
    headers.insert("k", "v").unwrap();

    let built = Metadata::new(EventType::from_static("a.b"))
        .with_id(id.clone())
        .with_topic(Topic::from_static("t"))
        .with_source("/s")
        .with_time(t)
        .with_entity_id(Some(EntityId::from(1u32)))
        .with_version(Some(2))
        .with_correlation_id(Some(EventId::from_u128(3)))
        .with_causation_id(Some(EventId::from_u128(4)))
        .with_headers(headers.clone())
        .with_content_type("text/plain");

    let mut set = Metadata::new(EventType::from_static("a.b"));
    set.set_id(id.clone());
    set.set_topic(Topic::from_static("t"));
    set.set_source("/s");
    set.set_time(t);
    set.set_entity_id(Some(EntityId::from(1u32)));
    set.set_version(Some(2));
    set.set_correlation_id(Some(EventId::from_u128(3)));
    set.set_causation_id(Some(EventId::from_u128(4)));
    set.set_headers(headers);
    set.set_content_type("text/plain");

    assert_eq!(built, set);
    assert_eq!(built.id(), &id);
    assert_eq!(built.time(), Some(t));
    assert_eq!(built.headers().get("k"), Some("v"));
    assert_eq!(built.correlation_id(), Some(&EventId::from_u128(3)));
    assert_eq!(built.causation_id(), Some(&EventId::from_u128(4)));

    set.set_entity_id(None);
    set.set_version(None);
    set.set_correlation_id(None);
    set.set_causation_id(None);
    assert_eq!(set.entity_id(), None);
    assert_eq!(set.version(), None);
    assert_eq!(set.correlation_id(), None);
    assert_eq!(set.causation_id(), None);
}

#[test]
fn clones_are_copy_on_write() {
    let original = Metadata::new(EventType::from_static("a.b")).with_source("/one");
    let mut copy = original.clone();
    copy.set_source("/two");
    copy.headers_mut().insert("k", "v").unwrap();
    assert_eq!(original.source(), Some("/one"));
    assert!(original.headers().is_empty());
    assert_eq!(copy.source(), Some("/two"));
    assert_ne!(original, copy);
}

#[test]
fn equality_compares_what_getters_return() {
    let m = Metadata::new(EventType::from_static("a.b"));
    // Setting the time the id already carries changes nothing observable.
    let same_time = m.clone().with_time(m.time().unwrap());
    assert_eq!(m, same_time);
    // Nor does clearing rare fields that were never set.
    let cleared = m
        .clone()
        .with_correlation_id(None)
        .with_headers(Headers::new());
    assert_eq!(m, cleared);
    let other_time = m.clone().with_time(Timestamp::from_unix_nanos(1));
    assert_ne!(m, other_time);
}

#[test]
fn debug_lists_set_fields_only() {
    let m = Metadata::new(EventType::from_static("a.b"))
        .with_id(EventId::parse("x").unwrap())
        .with_topic(Topic::from_static("t"));
    assert_eq!(
        format!("{m:?}"),
        r#"Metadata { id: EventId("x"), event_type: EventType("a.b"), topic: "t" }"#
    );
}

#[derive(Clone, Debug, PartialEq)]
struct Moved {
    entity: &'static str,
}

impl Event for Moved {
    const TYPE: &'static str = "fleet.truck.moved";

    fn entity_id(&self) -> Option<EntityId> {
        Some(EntityId::new(self.entity).unwrap())
    }
}

#[test]
fn from_event_fills_metadata() {
    let a = Envelope::from_event(Moved { entity: "truck-7" });
    let b = Envelope::from_event(Moved { entity: "truck-7" });
    assert!(b.id() > a.id());
    let m = a.meta();
    assert_eq!(m.event_type().as_str(), Moved::TYPE);
    assert_eq!(m.topic().map(Topic::as_str), Some(Moved::TYPE)); // TOPIC defaults to TYPE
    assert_eq!(m.entity_id().map(EntityId::as_str), Some("truck-7"));
    assert_eq!(m.version(), None);
    assert_eq!(a.payload(), &Moved { entity: "truck-7" });
}

#[test]
fn envelope_accessors() {
    let mut env = Envelope::new(
        Metadata::new(EventType::from_static("a.b")),
        Bytes::from_static(b"1"),
    );
    env.meta_mut().set_topic(Topic::from_static("x"));
    *env.payload_mut() = Bytes::from_static(b"2");
    let id = env.id().clone();
    let mapped = env.clone().map_payload(|b| b.len());
    assert_eq!(mapped.payload(), &1);
    assert_eq!(mapped.id(), &id);
    let (meta, payload) = env.clone().into_parts();
    assert_eq!(meta.topic().map(Topic::as_str), Some("x"));
    assert_eq!(payload, Bytes::from_static(b"2"));
    assert_eq!(env.into_payload(), Bytes::from_static(b"2"));
}

#[test]
fn version_round_trips_at_the_edges() {
    use syncbus_envelope::{EventType, Metadata};
    let mut m = Metadata::new(EventType::from_static("a.b"));
    assert_eq!(m.version(), None);
    for v in [0, 1, 41, u64::MAX - 1, u64::MAX, 7] {
        m.set_version(Some(v));
        assert_eq!(m.version(), Some(v));
    }
    m.set_version(Some(u64::MAX));
    m.set_version(None);
    assert_eq!(m.version(), None, "clearing after MAX clears the flag too");
    let a = Metadata::new(EventType::from_static("a.b")).with_version(Some(u64::MAX));
    let mut b = a.clone();
    assert_eq!(a, b);
    b.set_version(Some(u64::MAX - 1));
    assert_ne!(a, b);
}

#[test]
fn envelope_stays_small_enough_to_move_inline() {
    // The hot paths move envelopes through queues: past 128 bytes the compiler calls memmove.
    assert!(std::mem::size_of::<syncbus_envelope::Metadata>() <= 112);
    assert!(std::mem::size_of::<syncbus_envelope::EventId>() <= 24);
}
