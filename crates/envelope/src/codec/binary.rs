//! Compact binary format: one version byte, then a postcard-encoded record.
//!
//! Version 2 record, in field order: id, type, topic, source, subject, time, entity id,
//! entity version, correlation id, causation id, content type, data schema, data form,
//! headers, payload. Ids are a tag (0 = UUID as 16 big-endian bytes, 1 = text). The time is
//! a tag (0 = the id's, 1 = unix seconds and nanoseconds, 2 = none). Each header is its
//! name, its [`ExtensionKind`](crate::ExtensionKind) tag and its text. The data form (0 =
//! chosen by the encoder, 1 = none, 2 = JSON, 3 = text, 4 = base64) is how CloudEvents JSON
//! writes the payload.
//!
//! Version 1 (no subject, data schema, data form or header kinds; times as `i64` unix nanos)
//! is still read, so stored events stay readable; it is never written. New fields mean a new
//! version byte; decoders reject versions they do not know.

use bytes::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::cloudevents::header_error;
use crate::metadata::{DataForm, TimeSlot};
use crate::{
    DecodeError, EncodeError, EntityId, Envelope, EventId, EventType, ExtensionKind,
    ExtensionValue, Headers, Limits, Metadata, Timestamp, Topic,
};

/// The compact binary codec, for storage and syncbus-to-syncbus links.
///
/// The first byte is the format version (currently 2; version 1 is still read); the rest is
/// a [postcard] record. Keeps every metadata field exactly (an explicit time or none, header
/// types, the form CloudEvents JSON gave the payload), and the payload as raw bytes whatever
/// its content type.
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
/// assert_eq!(bytes[0], 2);
/// assert_eq!(Binary::decode(&bytes, &Limits::default())?, env);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Binary;

const VERSION: u8 = 2;

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
        let headers: Vec<(&str, u8, &str)> = m
            .headers()
            .iter_values()
            .map(|(name, v)| (name, v.kind().tag(), v.as_str()))
            .collect();
        let wire = WireV2 {
            id: WireId::from(m.id()),
            event_type: m.event_type().as_str(),
            topic: m.topic().map(Topic::as_str),
            source: m.source(),
            subject: m.subject(),
            time: match m.time_slot() {
                TimeSlot::FromId => WireTime::FromId,
                TimeSlot::At(t) => {
                    let (secs, nanos) = t.to_parts();
                    WireTime::At(secs, nanos)
                }
                TimeSlot::Absent => WireTime::Absent,
            },
            entity_id: m.entity_id().map(EntityId::as_str),
            version: m.version(),
            correlation_id: m.correlation_id().map(WireId::from),
            causation_id: m.causation_id().map(WireId::from),
            content_type: m.content_type(),
            dataschema: m.dataschema(),
            data_form: form_tag(m.data_form()),
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
    /// [`DecodeError::UnsupportedVersion`] for a version byte other than 1 or 2,
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
        match version {
            1 => take_all::<WireV1<'_>>(body)?
                .into_v2()
                .into_envelope(limits),
            VERSION => take_all::<WireV2<'_>>(body)?.into_envelope(limits),
            other => Err(DecodeError::UnsupportedVersion(other)),
        }
    }
}

fn take_all<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeError> {
    let (wire, rest): (T, _) = postcard::take_from_bytes(body).map_err(DecodeError::malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::malformed(format_args!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(wire)
}

fn form_tag(form: DataForm) -> u8 {
    match form {
        DataForm::Auto => 0,
        DataForm::Absent => 1,
        DataForm::Json => 2,
        DataForm::Text => 3,
        DataForm::Binary => 4,
    }
}

fn form_from_tag(tag: u8) -> Option<DataForm> {
    Some(match tag {
        0 => DataForm::Auto,
        1 => DataForm::Absent,
        2 => DataForm::Json,
        3 => DataForm::Text,
        4 => DataForm::Binary,
        _ => return None,
    })
}

#[derive(Serialize, Deserialize)]
struct WireV2<'a> {
    #[serde(borrow)]
    id: WireId<'a>,
    event_type: &'a str,
    topic: Option<&'a str>,
    source: Option<&'a str>,
    subject: Option<&'a str>,
    time: WireTime,
    entity_id: Option<&'a str>,
    version: Option<u64>,
    #[serde(borrow)]
    correlation_id: Option<WireId<'a>>,
    #[serde(borrow)]
    causation_id: Option<WireId<'a>>,
    content_type: Option<&'a str>,
    dataschema: Option<&'a str>,
    data_form: u8,
    #[serde(borrow)]
    headers: Vec<(&'a str, u8, &'a str)>,
    #[serde(borrow)]
    payload: RawBytes<'a>,
}

#[derive(Serialize, Deserialize)]
enum WireTime {
    FromId,
    At(i64, u32),
    Absent,
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

impl<'a> WireV1<'a> {
    /// A version 1 record as version 2 writes it: every header a string, the time explicit
    /// or the id's.
    fn into_v2(self) -> WireV2<'a> {
        WireV2 {
            id: self.id,
            event_type: self.event_type,
            topic: self.topic,
            source: self.source,
            subject: None,
            time: match self.time {
                Some(nanos) => {
                    let (secs, nanos) = Timestamp::from_unix_nanos(nanos).to_parts();
                    WireTime::At(secs, nanos)
                }
                None => WireTime::FromId,
            },
            entity_id: self.entity_id,
            version: self.version,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            content_type: self.content_type,
            dataschema: None,
            data_form: 0,
            headers: self
                .headers
                .into_iter()
                .map(|(name, value)| (name, ExtensionKind::String.tag(), value))
                .collect(),
            payload: self.payload,
        }
    }
}

impl WireV2<'_> {
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
        if let Some(subject) = self.subject {
            meta.set_subject(subject);
        }
        match self.time {
            WireTime::FromId => {}
            WireTime::At(secs, nanos) => meta.set_time(
                Timestamp::from_parts(secs, nanos)
                    .ok_or_else(|| DecodeError::invalid("time", "out of range"))?,
            ),
            WireTime::Absent => meta.set_time_slot(TimeSlot::Absent),
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
        if let Some(schema) = self.dataschema {
            meta.set_dataschema(schema);
        }
        meta.set_data_form(
            form_from_tag(self.data_form)
                .ok_or_else(|| DecodeError::malformed("unknown data form"))?,
        );
        if !self.headers.is_empty() {
            let max_value = limits.header_value_max();
            let mut headers = Headers::new();
            for (name, tag, text) in self.headers {
                if text.len() > max_value {
                    return Err(DecodeError::HeaderTooLarge {
                        name: name.to_owned(),
                        len: text.len(),
                        max: max_value,
                    });
                }
                let kind = ExtensionKind::from_tag(tag)
                    .ok_or_else(|| DecodeError::invalid(name, "unknown header kind"))?;
                let value =
                    ExtensionValue::parse(kind, text).map_err(|e| DecodeError::invalid(name, e))?;
                let shadows_field = match name {
                    "topic" => meta.topic().is_some(),
                    "entityid" => meta.entity_id().is_some(),
                    "entityversion" => meta.version().is_some(),
                    "correlationid" => meta.correlation_id().is_some(),
                    "causationid" => meta.causation_id().is_some(),
                    _ => false,
                };
                if shadows_field {
                    return Err(DecodeError::malformed(format_args!(
                        "header {name:?} next to the field of that name"
                    )));
                }
                if headers
                    .insert_foreign(name, value)
                    .map_err(|e| header_error(name, e))?
                    .is_some()
                {
                    return Err(DecodeError::malformed(format_args!(
                        "duplicate header {name:?}"
                    )));
                }
            }
            meta.set_headers(headers);
        }
        Ok(Envelope::new(meta, Bytes::copy_from_slice(self.payload.0)))
    }
}
