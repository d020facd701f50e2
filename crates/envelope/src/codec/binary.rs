//! Compact binary format: one version byte, then a postcard-encoded record.
//!
//! Version 1 record, in field order: id, type, topic, source, explicit time (unix nanos),
//! entity id, entity version, correlation id, causation id, content type, headers, payload.
//! Ids are a tag (0 = UUID as 16 big-endian bytes, 1 = text). New fields mean a new version
//! byte; decoders reject versions they do not know.

use bytes::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::cloudevents::header_error;
use crate::{
    DecodeError, EncodeError, EntityId, Envelope, EventId, EventType, Limits, Metadata, Timestamp,
    Topic,
};

/// The compact binary codec, for storage and syncbus-to-syncbus links.
///
/// The first byte is the format version (currently 1); the rest is a [postcard] record.
/// Keeps every metadata field exactly, including an explicit time, and the payload as
/// raw bytes whatever its content type.
///
/// [postcard]: https://docs.rs/postcard
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{Binary, Bytes, Envelope, EventType, Limits, Metadata};
///
/// let env = Envelope::new(
///     Metadata::new(EventType::from_static("sensor.read")).with_content_type("application/octet-stream"),
///     Bytes::from_static(&[1, 2, 3]),
/// );
/// let bytes = Binary::encode(&env)?;
/// assert_eq!(bytes[0], 1);
/// assert_eq!(Binary::decode(&bytes, &Limits::default())?, env);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Binary;

const VERSION: u8 = 1;

impl Binary {
    /// Encodes an envelope.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Binary, Bytes, Envelope, EventType, Metadata};
    ///
    /// let env = Envelope::new(Metadata::new(EventType::from_static("a.b")), Bytes::new());
    /// assert!(Binary::encode(&env)?.len() < 40);
    /// # Ok::<(), syncbus_envelope::EncodeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`EncodeError::Serialize`] if postcard fails, which does not happen for envelopes
    /// built through this crate's API.
    pub fn encode(env: &Envelope<Bytes>) -> Result<Vec<u8>, EncodeError> {
        let m = env.meta();
        let headers: Vec<(&str, &str)> = m.headers().iter().collect();
        let wire = WireV1 {
            id: WireId::from(m.id()),
            event_type: m.event_type().as_str(),
            topic: m.topic().map(Topic::as_str),
            source: m.source(),
            time: m.explicit_time().map(Timestamp::as_unix_nanos),
            entity_id: m.entity_id().map(EntityId::as_str),
            version: m.version(),
            correlation_id: m.correlation_id().map(WireId::from),
            causation_id: m.causation_id().map(WireId::from),
            content_type: m.content_type(),
            headers,
            payload: RawBytes(env.payload()),
        };
        let mut out = Vec::with_capacity(64 + env.payload().len());
        out.push(VERSION);
        postcard::to_extend(&wire, out).map_err(|e| EncodeError::Serialize {
            source: Box::new(e),
        })
    }

    /// Decodes an envelope.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Binary, Bytes, Envelope, EventType, Limits, Metadata};
    ///
    /// let env = Envelope::new(Metadata::new(EventType::from_static("a.b")), Bytes::from_static(b"{}"));
    /// let back = Binary::decode(&Binary::encode(&env)?, &Limits::default())?;
    /// assert_eq!(back.id(), env.id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnsupportedVersion`] for an unknown version byte,
    /// [`DecodeError::Malformed`] for truncated or trailing data, and the size and validity
    /// errors of [`DecodeError`] for values over [`Limits`] or not valid for their field.
    ///
    /// ```
    /// use syncbus_envelope::{Binary, DecodeError, Limits};
    ///
    /// assert_eq!(Binary::decode(&[9, 0], &Limits::default()), Err(DecodeError::UnsupportedVersion(9)));
    /// ```
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Envelope<Bytes>, DecodeError> {
        limits.check_input(bytes.len())?;
        let (&version, body) = bytes
            .split_first()
            .ok_or_else(|| DecodeError::malformed("empty input"))?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let (wire, rest): (WireV1<'_>, _) =
            postcard::take_from_bytes(body).map_err(DecodeError::malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::malformed(format_args!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        wire.into_envelope(limits)
    }
}

#[derive(Serialize, Deserialize)]
struct WireV1<'a> {
    #[serde(borrow)]
    id: WireId<'a>,
    event_type: &'a str,
    topic: Option<&'a str>,
    source: Option<&'a str>,
    time: Option<i64>,
    entity_id: Option<&'a str>,
    version: Option<u64>,
    #[serde(borrow)]
    correlation_id: Option<WireId<'a>>,
    #[serde(borrow)]
    causation_id: Option<WireId<'a>>,
    content_type: Option<&'a str>,
    #[serde(borrow)]
    headers: Vec<(&'a str, &'a str)>,
    #[serde(borrow)]
    payload: RawBytes<'a>,
}

#[derive(Serialize, Deserialize)]
enum WireId<'a> {
    Uuid([u8; 16]),
    Text(&'a str),
}

impl<'a> From<&'a EventId> for WireId<'a> {
    fn from(id: &'a EventId) -> Self {
        match id.as_u128() {
            Some(v) => WireId::Uuid(v.to_be_bytes()),
            None => WireId::Text(id.as_text()),
        }
    }
}

impl WireId<'_> {
    fn into_id(self, attr: &'static str) -> Result<EventId, DecodeError> {
        match self {
            WireId::Uuid(b) => Ok(EventId::from_u128(u128::from_be_bytes(b))),
            // A text id that looks like a UUID would parse as one; it cannot come from
            // `encode`, so refuse it rather than change the id's form.
            WireId::Text(s) => match EventId::parse(s) {
                Ok(id) if id.as_u128().is_none() => Ok(id),
                Ok(_) => Err(DecodeError::invalid(attr, "uuid stored as text")),
                Err(e) => Err(DecodeError::invalid(attr, e)),
            },
        }
    }
}

/// A byte slice written as one length-prefixed blob and borrowed back out on decode.
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawBytes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for BytesVisitor<'a> {
            type Value = RawBytes<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }

            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<RawBytes<'a>, E> {
                Ok(RawBytes(v))
            }
        }

        deserializer.deserialize_bytes(BytesVisitor(std::marker::PhantomData))
    }
}

impl WireV1<'_> {
    fn into_envelope(self, limits: &Limits) -> Result<Envelope<Bytes>, DecodeError> {
        if self.payload.0.len() > limits.max_payload_bytes {
            return Err(DecodeError::PayloadTooLarge {
                len: self.payload.0.len(),
                max: limits.max_payload_bytes,
            });
        }
        let max_headers = limits.header_count_max();
        if self.headers.len() > max_headers {
            return Err(DecodeError::TooManyHeaders {
                count: self.headers.len(),
                max: max_headers,
            });
        }
        let event_type =
            EventType::new(self.event_type).map_err(|e| DecodeError::invalid("type", e))?;
        let entity_id = self
            .entity_id
            .map(|s| EntityId::new(s).map_err(|e| DecodeError::invalid("entityid", e)))
            .transpose()?;
        let mut meta = Metadata::with_parts(
            self.id.into_id("id")?,
            event_type,
            self.topic
                .map(|s| Topic::new(s).map_err(|e| DecodeError::invalid("topic", e)))
                .transpose()?,
            entity_id,
            self.version,
        );
        if let Some(source) = self.source {
            meta.set_source(source);
        }
        if let Some(nanos) = self.time {
            meta.set_time(Timestamp::from_unix_nanos(nanos));
        }
        if let Some(id) = self.correlation_id {
            meta.set_correlation_id(Some(id.into_id("correlationid")?));
        }
        if let Some(id) = self.causation_id {
            meta.set_causation_id(Some(id.into_id("causationid")?));
        }
        if let Some(ct) = self.content_type {
            meta.set_content_type(ct);
        }
        if !self.headers.is_empty() {
            let max_value = limits.header_value_max();
            let headers = meta.headers_mut();
            for (name, value) in self.headers {
                if value.len() > max_value {
                    return Err(DecodeError::HeaderTooLarge {
                        name: name.to_owned(),
                        len: value.len(),
                        max: max_value,
                    });
                }
                if headers
                    .insert(name, value)
                    .map_err(|e| header_error(name, e))?
                    .is_some()
                {
                    return Err(DecodeError::malformed(format_args!(
                        "duplicate header {name:?}"
                    )));
                }
            }
        }
        Ok(Envelope::new(meta, Bytes::copy_from_slice(self.payload.0)))
    }
}
