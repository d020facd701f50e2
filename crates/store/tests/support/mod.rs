//! Helpers shared by the store tests.
#![allow(dead_code, unreachable_pub)]

pub mod contract;

use syncbus_core::{Bytes, EntityId, Envelope, EventType, Metadata};

/// An envelope on `topic` whose payload is `n` as text, with an entity id and a header, so
/// a round trip checks more than the payload.
pub fn env(topic: &str, n: u64) -> Envelope<Bytes> {
    let mut meta = Metadata::new(EventType::new("test.event").unwrap())
        .with_topic(syncbus_envelope::Topic::new(topic).unwrap())
        .with_entity_id(Some(EntityId::from(n % 7)))
        .with_version(Some(n));
    meta.headers_mut().insert("n", n.to_string()).unwrap();
    Envelope::new(meta, Bytes::from(n.to_string()))
}

/// The number an [`env`] carries.
pub fn num(env: &Envelope<Bytes>) -> u64 {
    std::str::from_utf8(env.payload()).unwrap().parse().unwrap()
}
