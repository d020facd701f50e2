//! An envelope as a JetStream message: the codec's bytes in the body, the routing metadata
//! in headers, the event id as `Nats-Msg-Id`.

use async_nats::HeaderMap;
use syncbus_envelope::{Binary, Bytes, CloudEventsJson, DecodeError, Envelope, Limits};

use crate::config::Codec;

/// The header naming the body's codec.
pub const CODEC_HEADER: &str = "Syncbus-Codec";
/// The header with the syncbus topic.
pub const TOPIC_HEADER: &str = "Syncbus-Topic";
/// The header with the entity id, when the event has one.
pub const ENTITY_HEADER: &str = "Syncbus-Entity";
/// The header with the entity version, when the event has one.
pub const VERSION_HEADER: &str = "Syncbus-Version";

/// The body and headers of `env`.
pub(crate) fn encode(env: &Envelope<Bytes>, codec: Codec) -> Result<(HeaderMap, Bytes), String> {
    let body = match codec {
        Codec::Binary => Binary::encode(env),
        Codec::Json => CloudEventsJson::encode(env),
    }
    .map_err(|e| e.to_string())?;
    let meta = env.meta();
    let mut headers = HeaderMap::new();
    let id = meta.id().to_string();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    // What routing and NATS tools need without decoding the body, and the content type that
    // marks a structured CloudEvent (CloudEvents' NATS binding); the rest of the metadata
    // (the id again as `ce-id`, the source, times, headers) is in the body only: each header
    // is an allocation per message and bytes on the wire.
    headers.insert(CODEC_HEADER, codec.header_value());
    headers.insert("Content-Type", codec.content_type());
    headers.insert("ce-type", meta.event_type().as_str());
    if let Some(topic) = meta.topic() {
        headers.insert(TOPIC_HEADER, topic.as_str());
    }
    if let Some(entity) = meta.entity_id() {
        // Header values cannot hold line breaks; the body keeps the exact id either way.
        if !entity.as_str().contains(['\r', '\n']) {
            headers.insert(ENTITY_HEADER, entity.as_str());
        }
    }
    if let Some(version) = meta.version() {
        headers.insert(VERSION_HEADER, version.to_string().as_str());
    }
    Ok((headers, Bytes::from(body)))
}

/// The envelope in a message: the codec the header names (JSON if the body opens with `{`
/// when there is no header, binary otherwise).
pub(crate) fn decode(
    headers: Option<&HeaderMap>,
    body: &[u8],
    limits: &Limits,
) -> Result<Envelope<Bytes>, DecodeError> {
    let named = headers
        .and_then(|h| h.get(CODEC_HEADER))
        .map(|v| v.as_str() == Codec::Json.header_value());
    let json = named.unwrap_or_else(|| body.first() == Some(&b'{'));
    if json {
        CloudEventsJson::decode(body, limits)
    } else {
        Binary::decode(body, limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncbus_envelope::{EntityId, EventType, Metadata, Topic};

    #[test]
    fn both_codecs_round_trip_with_headers() {
        let meta = Metadata::new(EventType::new("order.placed").unwrap())
            .with_topic(Topic::from_static("orders.placed"))
            .with_entity_id(Some(EntityId::new("o-1").unwrap()))
            .with_version(Some(3));
        let env = Envelope::new(meta, Bytes::from_static(b"{\"n\":1}"));
        for codec in [Codec::Binary, Codec::Json] {
            let (headers, body) = encode(&env, codec).unwrap();
            assert_eq!(
                headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .unwrap()
                    .as_str(),
                env.id().to_string()
            );
            assert_eq!(headers.get(TOPIC_HEADER).unwrap().as_str(), "orders.placed");
            assert_eq!(headers.get(ENTITY_HEADER).unwrap().as_str(), "o-1");
            assert_eq!(headers.get(VERSION_HEADER).unwrap().as_str(), "3");
            let back = decode(Some(&headers), &body, &Limits::default()).unwrap();
            assert_eq!(back.id(), env.id());
            assert_eq!(back.payload(), env.payload());
            assert_eq!(back.meta().version(), Some(3));
            let sniffed = decode(None, &body, &Limits::default()).unwrap();
            assert_eq!(sniffed.id(), env.id());
        }
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(decode(None, b"\x00\x01garbage", &Limits::default()).is_err());
        assert!(decode(None, b"{not json", &Limits::default()).is_err());
    }
}
