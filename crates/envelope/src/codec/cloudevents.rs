//! CloudEvents 1.0 JSON, structured mode.
//!
//! Attribute mapping, encoding side (decoding reverses it):
//!
//! - `specversion` is `"1.0"`; `id`, `type` and `time` come from the metadata; `time` is the
//!   explicit time, else the time carried by a UUIDv7 id, and is left out when neither exists.
//! - `source` is the metadata's source, or [`CloudEventsJson::DEFAULT_SOURCE`] when none (or
//!   an empty one) is set, and decodes back to none.
//! - extension attributes `topic`, `entityid`, `entityversion` (a JSON integer),
//!   `correlationid` and `causationid`; each header is one more string extension attribute.
//! - `datacontenttype` is written when set. An empty payload is left out. A JSON content
//!   type (`application/json`, anything `+json`) puts the payload in `data` as JSON; with no
//!   content type, a payload that is exactly one JSON value goes in `data` and any other in
//!   `data_base64` (so an event read from `data_base64` without a `datacontenttype` can be
//!   forwarded); any other content type puts it in `data_base64`.
//! - Decoding refuses an empty `source`: CloudEvents 1.0 requires a non-empty
//!   URI-reference.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use super::base64;
use crate::{
    DecodeError, EncodeError, EntityId, Envelope, EventId, EventType, HeaderError, Headers, Limits,
    Metadata, Timestamp, Topic,
};

/// The CloudEvents 1.0 JSON codec (structured content mode).
///
/// See the [JSON event format] spec. Headers become extension attributes; on decode, any
/// extension attribute holding a string, number or boolean becomes a header (numbers and
/// booleans as their JSON text), and a `null` attribute counts as absent.
///
/// [JSON event format]: https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{Bytes, CloudEventsJson, Envelope, EventId, EventType, Limits, Metadata, Topic};
///
/// let meta = Metadata::new(EventType::from_static("shop.order.placed"))
///     .with_id(EventId::parse("A234-1234-1234")?)
///     .with_source("/shop")
///     .with_topic(Topic::new("shop.orders")?);
/// let env = Envelope::new(meta, Bytes::from_static(br#"{"total":12}"#));
///
/// let json = CloudEventsJson::encode(&env)?;
/// assert_eq!(
///     std::str::from_utf8(&json)?,
///     r#"{"specversion":"1.0","id":"A234-1234-1234","source":"/shop","type":"shop.order.placed","topic":"shop.orders","data":{"total":12}}"#
/// );
/// assert_eq!(CloudEventsJson::decode(&json, &Limits::default())?, env);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CloudEventsJson;

const SPEC_VERSION: &str = "1.0";

impl CloudEventsJson {
    /// The `source` written when the metadata has none. Decoding maps it back to none.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::CloudEventsJson;
    ///
    /// assert_eq!(CloudEventsJson::DEFAULT_SOURCE, "/syncbus");
    /// ```
    pub const DEFAULT_SOURCE: &'static str = "/syncbus";

    /// Encodes an envelope as a CloudEvents JSON object.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Bytes, CloudEventsJson, Envelope, EventType, Metadata};
    ///
    /// let meta = Metadata::new(EventType::from_static("file.stored")).with_content_type("application/octet-stream");
    /// let env = Envelope::new(meta, Bytes::from_static(&[0xde, 0xad]));
    /// let json = String::from_utf8(CloudEventsJson::encode(&env)?)?;
    /// assert!(json.ends_with(r#""data_base64":"3q0="}"#));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`EncodeError::InvalidJsonPayload`] if the content type is JSON but the payload is
    /// not valid JSON. With no content type, a payload that is not JSON goes out as
    /// `data_base64` instead of failing.
    pub fn encode(env: &Envelope<Bytes>) -> Result<Vec<u8>, EncodeError> {
        let meta = env.meta();
        let payload = env.payload();
        let data = if payload.is_empty() {
            Data::None
        } else if meta.content_type().is_none() {
            // No content type: JSON if the payload is exactly one JSON value (so decoding
            // gives the same bytes back), else base64, as an event decoded from
            // `data_base64` without a `datacontenttype` holds.
            match serde_json::from_slice::<&RawValue>(payload) {
                Ok(raw) if raw.get().len() == payload.len() => Data::Json(raw),
                _ => Data::Base64(payload),
            }
        } else if is_json_content_type(meta.content_type()) {
            let raw: &RawValue =
                serde_json::from_slice(payload).map_err(|e| EncodeError::InvalidJsonPayload {
                    content_type: meta.content_type().map(str::to_owned),
                    source: Box::new(e),
                })?;
            Data::Json(raw)
        } else {
            Data::Base64(payload)
        };
        let mut out = Vec::with_capacity(256 + payload.len() + payload.len() / 3);
        serde_json::to_writer(&mut out, &Wire { meta, data }).map_err(|e| {
            EncodeError::Serialize {
                source: Box::new(e),
            }
        })?;
        Ok(out)
    }

    /// Decodes a CloudEvents JSON object.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{CloudEventsJson, Limits};
    ///
    /// let json = br#"{
    ///     "specversion": "1.0",
    ///     "id": "A234-1234-1234",
    ///     "source": "https://example.com/shop",
    ///     "type": "com.example.order.placed",
    ///     "time": "2024-05-01T14:30:00+02:00",
    ///     "tenant": "acme",
    ///     "priority": 5,
    ///     "data": {"total": 12}
    /// }"#;
    /// let env = CloudEventsJson::decode(json, &Limits::default())?;
    /// assert_eq!(env.meta().source(), Some("https://example.com/shop"));
    /// assert_eq!(env.meta().time().unwrap().to_string(), "2024-05-01T12:30:00Z");
    /// assert_eq!(env.meta().headers().get("priority"), Some("5"));
    /// assert_eq!(env.payload().as_ref(), br#"{"total": 12}"#);
    /// # Ok::<(), syncbus_envelope::DecodeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] naming the first problem found: input over the size limit, input
    /// that is not a JSON object, a missing or mistyped attribute, an empty `source`, a
    /// `specversion` other than `1.0`, or headers or payload over [`Limits`].
    ///
    /// ```
    /// use syncbus_envelope::{CloudEventsJson, DecodeError, Limits};
    ///
    /// let err = CloudEventsJson::decode(br#"{"specversion":"0.3"}"#, &Limits::default()).unwrap_err();
    /// assert_eq!(err, DecodeError::UnsupportedSpecVersion("0.3".into()));
    /// ```
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Envelope<Bytes>, DecodeError> {
        limits.check_input(bytes.len())?;
        let RawEvent(attrs, skipped) =
            serde_json::from_slice(bytes).map_err(DecodeError::malformed)?;
        decode_attrs(attrs, skipped, limits)
    }
}

/// Whether a content type means the payload is JSON: none, `application/json`, or any
/// `+json` structured syntax suffix, ignoring parameters and case.
fn is_json_content_type(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return true };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .get(essence.len().saturating_sub(5)..)
            .is_some_and(|s| s.eq_ignore_ascii_case("+json"))
}

enum Data<'a> {
    None,
    Json(&'a RawValue),
    Base64(&'a [u8]),
}

struct Wire<'a> {
    meta: &'a Metadata,
    data: Data<'a>,
}

struct Base64Str<'a>(&'a [u8]);

impl Serialize for Base64Str<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = Vec::new();
        base64::encode_into(self.0, &mut out);
        // The base64 alphabet is ASCII.
        serializer.serialize_str(std::str::from_utf8(&out).unwrap_or_default())
    }
}

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.meta;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("specversion", SPEC_VERSION)?;
        map.serialize_entry("id", m.id())?;
        // An empty source is not a valid CloudEvents source: written as no source.
        map.serialize_entry(
            "source",
            m.source()
                .filter(|s| !s.is_empty())
                .unwrap_or(CloudEventsJson::DEFAULT_SOURCE),
        )?;
        map.serialize_entry("type", m.event_type())?;
        if let Some(time) = m.time() {
            map.serialize_entry("time", &time)?;
        }
        if let Some(ct) = m.content_type() {
            map.serialize_entry("datacontenttype", ct)?;
        }
        if let Some(topic) = m.topic() {
            map.serialize_entry("topic", topic.as_str())?;
        }
        if let Some(entity) = m.entity_id() {
            map.serialize_entry("entityid", entity)?;
        }
        if let Some(version) = m.version() {
            map.serialize_entry("entityversion", &version)?;
        }
        if let Some(id) = m.correlation_id() {
            map.serialize_entry("correlationid", id)?;
        }
        if let Some(id) = m.causation_id() {
            map.serialize_entry("causationid", id)?;
        }
        for (name, value) in m.headers() {
            map.serialize_entry(name, value)?;
        }
        match self.data {
            Data::None => {}
            Data::Json(raw) => map.serialize_entry("data", raw)?,
            Data::Base64(bytes) => map.serialize_entry("data_base64", &Base64Str(bytes))?,
        }
        map.end()
    }
}

/// Most members kept from one object: every standard and syncbus attribute plus the most
/// headers any envelope can hold, plus one so that going over is noticed. Members past this
/// are only counted, which keeps the duplicate check cheap on hostile input.
const MAX_KEPT: usize = RESERVED_COUNT + Headers::MAX_LEN + 1;
const RESERVED_COUNT: usize = 15;

/// A JSON object's members in input order, values left unparsed, and how many extension
/// attributes past [`MAX_KEPT`] were skipped.
struct RawEvent<'a>(Vec<(Cow<'a, str>, &'a RawValue)>, usize);

impl<'de> Deserialize<'de> for RawEvent<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;

        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawEvent<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cloudevents json object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvent<'de>, A::Error> {
                let mut attrs: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::with_capacity(16);
                let mut skipped = 0;
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    if attrs.len() == MAX_KEPT {
                        map.next_value::<de::IgnoredAny>()?;
                        skipped += usize::from(!is_standard(&key.0));
                        continue;
                    }
                    let value: &'de RawValue = map.next_value()?;
                    if attrs.iter().any(|(k, _)| *k == key.0) {
                        return Err(de::Error::custom(format_args!(
                            "duplicate attribute {:?}",
                            key.0
                        )));
                    }
                    attrs.push((key.0, value));
                }
                Ok(RawEvent(attrs, skipped))
            }
        }

        deserializer.deserialize_map(RawVisitor)
    }
}

/// A map key, borrowed from the input unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an attribute name")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The JSON kind of a raw value, from its first byte (serde_json trims whitespace).
fn kind(raw: &RawValue) -> u8 {
    raw.get().as_bytes().first().copied().unwrap_or(b'n')
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

fn string<'a>(attr: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, DecodeError> {
    if kind(raw) != b'"' {
        return Err(DecodeError::invalid(attr, "expected a string"));
    }
    let s: Cow<'a, str> = match serde_json::from_str::<&'a str>(raw.get()) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(
            serde_json::from_str::<String>(raw.get()).map_err(|e| DecodeError::invalid(attr, e))?,
        ),
    };
    Ok(s)
}

#[derive(Default)]
struct Found<'a> {
    specversion: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    source: Option<&'a RawValue>,
    event_type: Option<&'a RawValue>,
    time: Option<&'a RawValue>,
    content_type: Option<&'a RawValue>,
    topic: Option<&'a RawValue>,
    entity_id: Option<&'a RawValue>,
    version: Option<&'a RawValue>,
    correlation_id: Option<&'a RawValue>,
    causation_id: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
    data_base64: Option<&'a RawValue>,
    extensions: Vec<(Cow<'a, str>, &'a RawValue)>,
}

fn decode_attrs(
    attrs: Vec<(Cow<'_, str>, &RawValue)>,
    skipped: usize,
    limits: &Limits,
) -> Result<Envelope<Bytes>, DecodeError> {
    let mut f = Found::default();
    if skipped > 0 {
        // Only possible with more extension attributes than any envelope can hold.
        let count = attrs.iter().filter(|(k, _)| !is_standard(k)).count() + skipped;
        return Err(DecodeError::TooManyHeaders {
            count,
            max: limits.header_count_max(),
        });
    }
    for (name, raw) in attrs {
        // A null attribute is the same as an absent one.
        if is_null(raw) && name != "data" {
            continue;
        }
        let slot = match &*name {
            "specversion" => &mut f.specversion,
            "id" => &mut f.id,
            "source" => &mut f.source,
            "type" => &mut f.event_type,
            "time" => &mut f.time,
            "datacontenttype" => &mut f.content_type,
            "topic" => &mut f.topic,
            "entityid" => &mut f.entity_id,
            "entityversion" => &mut f.version,
            "correlationid" => &mut f.correlation_id,
            "causationid" => &mut f.causation_id,
            "data" => &mut f.data,
            "data_base64" => &mut f.data_base64,
            // Standard attributes syncbus has no field for; dropped rather than turned into
            // headers, which may not take reserved names.
            "subject" | "dataschema" => continue,
            _ => {
                f.extensions.push((name, raw));
                continue;
            }
        };
        *slot = Some(raw);
    }

    let specversion = f
        .specversion
        .ok_or(DecodeError::MissingAttribute("specversion"))?;
    let specversion = string("specversion", specversion)?;
    if specversion != SPEC_VERSION {
        return Err(DecodeError::UnsupportedSpecVersion(
            specversion.into_owned(),
        ));
    }
    let id = string("id", f.id.ok_or(DecodeError::MissingAttribute("id"))?)?;
    let id = EventId::parse(&id).map_err(|e| DecodeError::invalid("id", e))?;
    let source = string(
        "source",
        f.source.ok_or(DecodeError::MissingAttribute("source"))?,
    )?;
    if source.is_empty() {
        return Err(DecodeError::invalid(
            "source",
            "must be a non-empty URI-reference (CloudEvents 1.0)",
        ));
    }
    let event_type = string(
        "type",
        f.event_type.ok_or(DecodeError::MissingAttribute("type"))?,
    )?;
    let event_type = EventType::new(&*event_type).map_err(|e| DecodeError::invalid("type", e))?;

    let topic = f
        .topic
        .map(|raw| {
            string("topic", raw)
                .and_then(|s| Topic::new(&*s).map_err(|e| DecodeError::invalid("topic", e)))
        })
        .transpose()?;
    let entity_id = f
        .entity_id
        .map(|raw| {
            string("entityid", raw)
                .and_then(|s| EntityId::new(&*s).map_err(|e| DecodeError::invalid("entityid", e)))
        })
        .transpose()?;
    let version = f
        .version
        .map(|raw| {
            serde_json::from_str::<u64>(raw.get()).map_err(|_| {
                DecodeError::invalid("entityversion", "expected a non-negative integer")
            })
        })
        .transpose()?;

    let mut meta = Metadata::with_parts(id, event_type, topic, entity_id, version);
    if source != CloudEventsJson::DEFAULT_SOURCE {
        meta.set_source(&*source);
    }
    if let Some(raw) = f.time {
        let time = Timestamp::parse_rfc3339(&string("time", raw)?)
            .map_err(|e| DecodeError::invalid("time", e))?;
        // The id already carries this time; storing it again would only allocate.
        if meta.time() != Some(time) {
            meta.set_time(time);
        }
    }
    if let Some(raw) = f.content_type {
        meta.set_content_type(&*string("datacontenttype", raw)?);
    }
    for (attr, slot) in [
        ("correlationid", f.correlation_id),
        ("causationid", f.causation_id),
    ] {
        if let Some(raw) = slot {
            let id =
                EventId::parse(&string(attr, raw)?).map_err(|e| DecodeError::invalid(attr, e))?;
            if attr == "correlationid" {
                meta.set_correlation_id(Some(id));
            } else {
                meta.set_causation_id(Some(id));
            }
        }
    }

    let max_headers = limits.header_count_max();
    let count = f.extensions.len() + skipped;
    if count > max_headers {
        return Err(DecodeError::TooManyHeaders {
            count,
            max: max_headers,
        });
    }
    if !f.extensions.is_empty() {
        let max_value = limits.header_value_max();
        let headers = meta.headers_mut();
        for (name, raw) in f.extensions {
            let value = match kind(raw) {
                b'"' => string(&name, raw)?,
                b'{' | b'[' => {
                    return Err(DecodeError::invalid(
                        name,
                        "extension attributes must be strings, numbers or booleans",
                    ))
                }
                _ => Cow::Borrowed(raw.get()),
            };
            if value.len() > max_value {
                return Err(DecodeError::HeaderTooLarge {
                    name: name.into_owned(),
                    len: value.len(),
                    max: max_value,
                });
            }
            headers
                .insert(&*name, &*value)
                .map_err(|e| header_error(&name, e))?;
        }
    }

    let payload = match (f.data, f.data_base64) {
        (Some(_), Some(_)) => {
            return Err(DecodeError::malformed(
                "both data and data_base64 are present",
            ))
        }
        (Some(raw), None) => {
            let json = is_json_content_type(meta.content_type());
            if !json && kind(raw) == b'"' {
                // A non-JSON payload given as a JSON string holds the text itself.
                let text = string("data", raw)?;
                check_payload(text.len(), limits)?;
                Bytes::copy_from_slice(text.as_bytes())
            } else {
                check_payload(raw.get().len(), limits)?;
                Bytes::copy_from_slice(raw.get().as_bytes())
            }
        }
        (None, Some(raw)) => {
            let encoded = string("data_base64", raw)?;
            let unpadded = encoded.trim_end_matches('=');
            check_payload(base64::decoded_len_max(unpadded.len()), limits)?;
            Bytes::from(
                base64::decode(encoded.as_bytes())
                    .map_err(|e| DecodeError::invalid("data_base64", e))?,
            )
        }
        (None, None) => Bytes::new(),
    };
    Ok(Envelope::new(meta, payload))
}

fn is_standard(name: &str) -> bool {
    matches!(
        name,
        "specversion"
            | "id"
            | "source"
            | "type"
            | "subject"
            | "time"
            | "datacontenttype"
            | "dataschema"
            | "data"
            | "data_base64"
            | "topic"
            | "entityid"
            | "entityversion"
            | "correlationid"
            | "causationid"
    )
}

fn check_payload(len: usize, limits: &Limits) -> Result<(), DecodeError> {
    if len > limits.max_payload_bytes {
        return Err(DecodeError::PayloadTooLarge {
            len,
            max: limits.max_payload_bytes,
        });
    }
    Ok(())
}

/// Maps a header refusal met while decoding to the decode error for it.
pub(crate) fn header_error(name: &str, e: HeaderError) -> DecodeError {
    match e {
        HeaderError::TooMany { max } => DecodeError::TooManyHeaders {
            count: max + 1,
            max,
        },
        HeaderError::ValueTooLong { len, max, .. } => DecodeError::HeaderTooLarge {
            name: name.to_owned(),
            len,
            max,
        },
        other => DecodeError::invalid(name, other),
    }
}

#[cfg(test)]
mod tests {
    use super::is_json_content_type;

    #[test]
    fn json_content_types() {
        for ct in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/cloudevents+json"),
            Some("application/vnd.api+json"),
        ] {
            assert!(is_json_content_type(ct), "{ct:?}");
        }
        for ct in [
            "text/plain",
            "application/octet-stream",
            "json",
            "application/jsonx",
        ] {
            assert!(!is_json_content_type(Some(ct)), "{ct:?}");
        }
    }
}
