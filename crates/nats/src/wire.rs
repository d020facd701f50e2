//! An envelope as a JetStream message: the codec's bytes in the body, the routing metadata
//! in headers, the event id as `Nats-Msg-Id`.

use async_nats::HeaderMap;
use syncbus_envelope::{Binary, Bytes, CloudEventsJson, DecodeError, Envelope, Limits};

use crate::config::Codec;

/// The header naming the body's codec (CloudEvents' NATS binding).
const CONTENT_TYPE: &str = "Content-Type";

/// The header with the syncbus topic (written with
/// [`NatsConfig::routing_headers`](crate::NatsConfig::routing_headers)).
pub const TOPIC_HEADER: &str = "Syncbus-Topic";
/// The header with the entity id, when the event has one (written with
/// [`NatsConfig::routing_headers`](crate::NatsConfig::routing_headers)).
pub const ENTITY_HEADER: &str = "Syncbus-Entity";
/// The header with the entity version, when the event has one (written with
/// [`NatsConfig::routing_headers`](crate::NatsConfig::routing_headers)).
pub const VERSION_HEADER: &str = "Syncbus-Version";

/// The body and headers of `env`: always `Nats-Msg-Id`, the `Content-Type` that names the
/// codec (and marks a structured CloudEvent, CloudEvents' NATS binding) and `ce-type`; the
/// routing headers when `routing` is on.
pub(crate) fn encode(
    env: &Envelope<Bytes>,
    codec: Codec,
    routing: bool,
) -> Result<(HeaderMap, Bytes), String> {
    let body = match codec {
        Codec::Binary => Binary::encode(env),
        Codec::Json => CloudEventsJson::encode(env),
    }
    .map_err(|e| e.to_string())?;
    let meta = env.meta();
    let mut headers = HeaderMap::new();
    let id = meta.id().to_string();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    // The rest of the metadata (the id again as `ce-id`, the source, times, headers) is in
    // the body only: each header is allocations per message and bytes on the wire.
    headers.insert(CONTENT_TYPE, codec.content_type());
    headers.insert("ce-type", meta.event_type().as_str());
    if routing {
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
    }
    Ok((headers, Bytes::from(body)))
}

/// The envelope in a message: the codec its `Content-Type` names (without one, JSON if the
/// body opens with `{`, binary otherwise).
pub(crate) fn decode(
    headers: Option<&HeaderMap>,
    body: &[u8],
    limits: &Limits,
) -> Result<Envelope<Bytes>, DecodeError> {
    let named = headers
        .and_then(|h| h.get(CONTENT_TYPE))
        .and_then(|v| Codec::from_content_type(v.as_str()))
        .map(|c| c == Codec::Json);
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

    /// An envelope with a topic, an entity id and a version.
    fn sample() -> Envelope<Bytes> {
        let meta = Metadata::new(EventType::new("order.placed").unwrap())
            .with_topic(Topic::from_static("orders.placed"))
            .with_entity_id(Some(EntityId::new("o-1").unwrap()))
            .with_version(Some(3));
        Envelope::new(meta, Bytes::from_static(b"{\"n\":1}"))
    }

    #[test]
    fn both_codecs_round_trip_with_headers() {
        let env = sample();
        for codec in [Codec::Binary, Codec::Json] {
            let (headers, body) = encode(&env, codec, true).unwrap();
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
    fn by_default_three_headers_and_the_content_type_names_the_codec() {
        let env = sample();
        for codec in [Codec::Binary, Codec::Json] {
            let (headers, body) = encode(&env, codec, false).unwrap();
            assert_eq!(headers.iter().count(), 3, "{headers:?}");
            assert_eq!(headers.get("ce-type").unwrap().as_str(), "order.placed");
            assert!(headers.get(TOPIC_HEADER).is_none());
            assert_eq!(
                headers.get(CONTENT_TYPE).unwrap().as_str(),
                codec.content_type()
            );
            let back = decode(Some(&headers), &body, &Limits::default()).unwrap();
            assert_eq!(back.id(), env.id());
        }
        // A JSON body under a binary content type is read as binary: the header decides.
        let (_, json) = encode(&env, Codec::Json, false).unwrap();
        let (binary_headers, _) = encode(&env, Codec::Binary, false).unwrap();
        assert!(decode(Some(&binary_headers), &json, &Limits::default()).is_err());
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(decode(None, b"\x00\x01garbage", &Limits::default()).is_err());
        assert!(decode(None, b"{not json", &Limits::default()).is_err());
    }
}
