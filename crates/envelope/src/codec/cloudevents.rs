//! CloudEvents 1.0 JSON, structured mode: any spec-valid event in, the same event out.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use super::base64;
use crate::extension::parse_i32;
use crate::headers::{validate_attribute_name, SYNCBUS_ATTRIBUTES};
use crate::metadata::{DataForm, TimeSlot};
use crate::name_error::{find_non_ce_char, CE_STRING_RULE};
use crate::uri::{check_uri, check_uri_reference};
use crate::{
    DecodeError, EncodeError, EntityId, Envelope, EventId, EventType, ExtensionKind,
    ExtensionValue, HeaderError, Headers, Limits, Metadata, Timestamp, Topic,
};

/// The CloudEvents 1.0 JSON codec (structured content mode).
///
/// See the [JSON event format] spec. Decoding accepts exactly the events the spec allows
/// (within [`Limits`]) and keeps them exactly; encoding writes only spec-valid events.
///
/// [JSON event format]: https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md
///
/// # Attributes
///
/// | CloudEvents | syncbus | written | read |
/// | --- | --- | --- | --- |
/// | `specversion` | | `"1.0"` | must be `"1.0"` |
/// | `id` | [`Metadata::id`] | its text, byte for byte | any non-empty `String` up to 256 bytes |
/// | `source` | [`Metadata::source`] | the source, or [`CloudEventsJson::DEFAULT_SOURCE`] when none | a non-empty URI-reference; the default reads back as none |
/// | `type` | [`Metadata::event_type`] | as is | any non-empty `String` up to 256 bytes |
/// | `subject` | [`Metadata::subject`] | when set | a non-empty `String` |
/// | `time` | [`Metadata::time`] | when there is one, RFC 3339 in UTC | RFC 3339, years 0000 to 9999, leap seconds kept; absent stays absent |
/// | `datacontenttype` | [`Metadata::content_type`] | when set | a media type (RFC 2046) |
/// | `dataschema` | [`Metadata::dataschema`] | when set | an absolute URI |
/// | `topic` | [`Metadata::topic`] | when set | a string that is a [`Topic`] |
/// | `entityid` | [`Metadata::entity_id`] | when set | a string that is an [`EntityId`] |
/// | `entityversion` | [`Metadata::version`] | an integer up to `i32::MAX`, above it a string of decimal digits (CloudEvents integers are 32-bit) | the same two forms |
/// | `correlationid`, `causationid` | [`Metadata::correlation_id`], [`Metadata::causation_id`] | as text | a string that is an [`EventId`] |
/// | any other extension | one [`Headers`] entry | by its [`ExtensionKind`]: integers and booleans as JSON ones, the rest as strings | a string, an integer in the int32 range or a boolean |
///
/// A `null` attribute counts as absent. A syncbus attribute whose value is not in the form
/// syncbus writes (an integer `entityid`, a `topic` that is no topic, a string
/// `entityversion` of `"7"`) is another system's extension that happens to share the name:
/// it is kept as a header of that name and of its own type, and goes out unchanged.
///
/// # Data
///
/// Data keeps its form: JSON stays JSON (the exact text of `data`), text stays a string,
/// bytes stay `data_base64`, empty stays empty (`"data":""`, `"data_base64":""` and no data
/// at all are three different events, and each comes back out as it came). For an envelope
/// made here the encoder picks the form from the content type:
///
/// - a JSON type (none, `application/json`, `text/json`, any `+json`): `data` as JSON; with no
///   content type a payload that is not exactly one JSON value goes in `data_base64`;
/// - a text type (`text/*`, `application/xml`, any `+xml`): `data` as a string when the
///   payload is UTF-8, else `data_base64`;
/// - any other type: `data_base64`. An empty payload writes no data.
///
/// # Foreign names
///
/// Names from other systems are taken as CloudEvents allows them, not mapped: a `type` with
/// spaces or non-ASCII characters is the [`EventType`] it reads, and a `subject` is kept as
/// text. Only what syncbus cannot hold is refused, with a [`DecodeError`] naming the
/// attribute: an `id` or `type` over 256 bytes, extension names over
/// [`Headers::MAX_NAME_LEN`]. An inbound event routes on its `topic`; to route one that has
/// none by its type or subject, make the topic with [`Topic::new`], which refuses a name that
/// is no topic (non-ASCII, spaces, wildcards, over 256 bytes or 32 tokens) with a
/// [`NameError`](crate::NameError). No name is ever rewritten, and nothing panics.
///
/// ```
/// use syncbus_envelope::{CloudEventsJson, Limits, NameReason, Topic};
///
/// let json = r#"{"specversion":"1.0","id":"x 1","source":"/s","type":"commande passée"}"#;
/// let env = CloudEventsJson::decode(json.as_bytes(), &Limits::default())?;
/// assert_eq!(env.meta().event_type().as_str(), "commande passée");
/// assert_eq!(env.meta().topic(), None);
/// let err = Topic::new(env.meta().event_type().as_str()).unwrap_err();
/// assert!(matches!(err.reason(), NameReason::InvalidChar { ch: ' ', .. }));
/// # Ok::<(), syncbus_envelope::DecodeError>(())
/// ```
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
    ///
    /// let meta = Metadata::new(EventType::from_static("note.taken")).with_content_type("text/plain");
    /// let env = Envelope::new(meta, Bytes::from_static(b"hello"));
    /// let json = String::from_utf8(CloudEventsJson::encode(&env)?)?;
    /// assert!(json.ends_with(r#""data":"hello"}"#));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`EncodeError::InvalidJsonPayload`] if the content type is JSON but the payload is
    /// not valid JSON (with no content type, such a payload goes out as `data_base64`), and
    /// [`EncodeError::InvalidAttribute`] for metadata that would make an invalid event: a
    /// `source` that is no URI-reference, an empty `subject` or one with a control
    /// character, a `dataschema` that is no absolute URI, a content type that is no media
    /// type.
    ///
    /// ```
    /// use syncbus_envelope::{Bytes, CloudEventsJson, EncodeError, Envelope, EventType, Metadata};
    ///
    /// let env = Envelope::new(Metadata::new(EventType::from_static("a.b")).with_source("not a uri"), Bytes::new());
    /// assert!(matches!(CloudEventsJson::encode(&env), Err(EncodeError::InvalidAttribute { attribute: "source", .. })));
    /// ```
    pub fn encode(env: &Envelope<Bytes>) -> Result<Vec<u8>, EncodeError> {
        let meta = env.meta();
        let payload = env.payload();
        check_for_encode(meta)?;
        let data = choose_data(meta.data_form(), meta.content_type(), payload)?;
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
    /// use syncbus_envelope::{CloudEventsJson, ExtensionKind, Limits};
    ///
    /// let json = br#"{
    ///     "specversion": "1.0",
    ///     "id": "A234-1234-1234",
    ///     "source": "https://example.com/shop",
    ///     "type": "com.example.order.placed",
    ///     "subject": "order-42",
    ///     "time": "2024-05-01T14:30:00+02:00",
    ///     "tenant": "acme",
    ///     "priority": 5,
    ///     "data": {"total": 12}
    /// }"#;
    /// let env = CloudEventsJson::decode(json, &Limits::default())?;
    /// assert_eq!(env.meta().source(), Some("https://example.com/shop"));
    /// assert_eq!(env.meta().subject(), Some("order-42"));
    /// assert_eq!(env.meta().time().unwrap().to_string(), "2024-05-01T12:30:00Z");
    /// assert_eq!(env.meta().headers().get("priority"), Some("5"));
    /// assert_eq!(env.meta().headers().value("priority").map(|v| v.kind()), Some(ExtensionKind::Integer));
    /// assert_eq!(env.payload().as_ref(), br#"{"total": 12}"#);
    /// # Ok::<(), syncbus_envelope::DecodeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] naming the first problem found: input over the size limit, input
    /// that is not a JSON object, a missing required attribute, an attribute the spec does
    /// not allow (wrong JSON type, empty where it must not be, not a URI or media type or
    /// timestamp where it must be, an integer outside the int32 range, a character the
    /// `String` type disallows), a `specversion` other than `1.0`, or headers or payload
    /// over [`Limits`].
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

/// What a content type says about the payload.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ContentKind {
    Json,
    Text,
    Other,
}

/// JSON: none, `application/json`, `text/json` or a `+json` suffix; text: `text/*`,
/// `application/xml` or a `+xml` suffix; ignoring parameters and case.
fn content_kind(ct: Option<&str>) -> ContentKind {
    let Some(ct) = ct else {
        return ContentKind::Json;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let suffix = |s: &str| {
        essence
            .get(essence.len().saturating_sub(s.len())..)
            .is_some_and(|e| e.eq_ignore_ascii_case(s))
    };
    if essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/json")
        || suffix("+json")
    {
        ContentKind::Json
    } else if essence
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("text/"))
        || essence.eq_ignore_ascii_case("application/xml")
        || suffix("+xml")
    {
        ContentKind::Text
    } else {
        ContentKind::Other
    }
}

/// The payload as one JSON value, if it is exactly that (no whitespace around it).
fn exactly_json(payload: &[u8]) -> Option<&RawValue> {
    match serde_json::from_slice::<&RawValue>(payload) {
        Ok(raw) if raw.get().len() == payload.len() => Some(raw),
        _ => None,
    }
}

/// The form the encoder picks for an envelope made here.
fn auto_form(ct: Option<&str>, payload: &[u8]) -> Result<DataForm, EncodeError> {
    if payload.is_empty() {
        return Ok(DataForm::Absent);
    }
    Ok(match content_kind(ct) {
        ContentKind::Json if exactly_json(payload).is_some() => DataForm::Json,
        ContentKind::Json if ct.is_none() => DataForm::Binary,
        ContentKind::Json => {
            let e = serde_json::from_slice::<&RawValue>(payload)
                .err()
                .map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .unwrap_or_else(|| "whitespace around the json value".into());
            return Err(EncodeError::InvalidJsonPayload {
                content_type: ct.map(str::to_owned),
                source: e,
            });
        }
        ContentKind::Text if std::str::from_utf8(payload).is_ok() => DataForm::Text,
        ContentKind::Text | ContentKind::Other => DataForm::Binary,
    })
}

fn choose_data<'a>(
    form: DataForm,
    ct: Option<&str>,
    payload: &'a [u8],
) -> Result<Data<'a>, EncodeError> {
    let form = match form {
        DataForm::Auto => auto_form(ct, payload)?,
        // A payload changed after decoding may no longer fit its form: pick afresh.
        DataForm::Absent if !payload.is_empty() => auto_form(ct, payload)?,
        DataForm::Json if exactly_json(payload).is_none() => auto_form(ct, payload)?,
        DataForm::Text if std::str::from_utf8(payload).is_err() => DataForm::Binary,
        form => form,
    };
    Ok(match form {
        DataForm::Json => match exactly_json(payload) {
            Some(raw) => Data::Json(raw),
            None => Data::Base64(payload),
        },
        DataForm::Text => match std::str::from_utf8(payload) {
            Ok(s) => Data::Text(s),
            Err(_) => Data::Base64(payload),
        },
        DataForm::Binary => Data::Base64(payload),
        DataForm::Absent | DataForm::Auto => Data::None,
    })
}

/// Refuses metadata that would make an invalid event.
fn check_for_encode(m: &Metadata) -> Result<(), EncodeError> {
    let invalid = |attribute: &'static str, reason: String| EncodeError::InvalidAttribute {
        attribute,
        reason,
    };
    if let Some(source) = m.source().filter(|s| !s.is_empty()) {
        check_uri_reference(source).map_err(|e| invalid("source", e.to_string()))?;
    }
    if let Some(subject) = m.subject() {
        check_ce_text(subject).map_err(|r| invalid("subject", r))?;
    }
    if let Some(schema) = m.dataschema() {
        check_uri(schema).map_err(|e| invalid("dataschema", e.to_string()))?;
    }
    if let Some(ct) = m.content_type() {
        check_media_type(ct).map_err(|r| invalid("datacontenttype", r.to_owned()))?;
    }
    Ok(())
}

/// A non-empty CloudEvents `String`.
fn check_ce_text(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    match find_non_ce_char(s) {
        Some((byte, ch)) => Err(format!(
            "invalid character {ch:?} at byte {byte}: {CE_STRING_RULE}"
        )),
        None => Ok(()),
    }
}

/// A media type as RFC 2045 / 2046 write it: `type/subtype`, then `; name=value`
/// parameters, values tokens or quoted strings; spaces allowed around `;` and at the end.
pub(crate) fn check_media_type(ct: &str) -> Result<(), &'static str> {
    fn token(b: &[u8], i: &mut usize) -> bool {
        let start = *i;
        while b
            .get(*i)
            .is_some_and(|&c| c.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&c))
        {
            *i += 1;
        }
        *i > start
    }
    fn spaces(b: &[u8], i: &mut usize) {
        while matches!(b.get(*i), Some(b' ' | b'\t')) {
            *i += 1;
        }
    }
    let b = ct.as_bytes();
    let mut i = 0;
    if !token(b, &mut i) || b.get(i) != Some(&b'/') {
        return Err("expected a media type such as 'application/json' (rfc 2046)");
    }
    i += 1;
    if !token(b, &mut i) {
        return Err("expected a subtype after '/' (rfc 2046)");
    }
    loop {
        spaces(b, &mut i);
        match b.get(i) {
            None => return Ok(()),
            Some(b';') => i += 1,
            Some(_) => return Err("expected ';' before a media type parameter"),
        }
        spaces(b, &mut i);
        if !token(b, &mut i) || b.get(i) != Some(&b'=') {
            return Err("a media type parameter is 'name=value'");
        }
        i += 1;
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err("unterminated quoted parameter value"),
                    Some(b'"') => break,
                    Some(b'\\') if i + 1 < b.len() => i += 2,
                    Some(&c) if c == b'\t' || (c >= 0x20 && c != 0x7f) => i += 1,
                    Some(_) => return Err("invalid character in a quoted parameter value"),
                }
            }
            i += 1;
        } else if !token(b, &mut i) {
            return Err("a media type parameter needs a value");
        }
    }
}

enum Data<'a> {
    None,
    Json(&'a RawValue),
    Text(&'a str),
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

/// A number or boolean written as its JSON text.
struct JsonLiteral<'a>(&'a str);

impl Serialize for JsonLiteral<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            "true" => serializer.serialize_bool(true),
            "false" => serializer.serialize_bool(false),
            n => serializer.serialize_i32(parse_i32(n).unwrap_or_default()),
        }
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
        if let Some(subject) = m.subject() {
            map.serialize_entry("subject", subject)?;
        }
        if let Some(time) = m.time() {
            map.serialize_entry("time", &time)?;
        }
        if let Some(ct) = m.content_type() {
            map.serialize_entry("datacontenttype", ct)?;
        }
        if let Some(schema) = m.dataschema() {
            map.serialize_entry("dataschema", schema)?;
        }
        if let Some(topic) = m.topic() {
            map.serialize_entry("topic", topic.as_str())?;
        }
        if let Some(entity) = m.entity_id() {
            map.serialize_entry("entityid", entity)?;
        }
        match m.version() {
            Some(v) if v <= i32::MAX as u64 => map.serialize_entry("entityversion", &v)?,
            Some(v) => map.serialize_entry("entityversion", &v.to_string())?,
            None => {}
        }
        if let Some(id) = m.correlation_id() {
            map.serialize_entry("correlationid", id)?;
        }
        if let Some(id) = m.causation_id() {
            map.serialize_entry("causationid", id)?;
        }
        for (name, value) in m.headers().iter_values() {
            if SYNCBUS_ATTRIBUTES.contains(&name) && field_is_set(m, name) {
                // Cannot happen through the API (setting the field drops the header); two
                // members of one name would make invalid JSON.
                continue;
            }
            match value.kind() {
                ExtensionKind::Integer | ExtensionKind::Boolean => {
                    map.serialize_entry(name, &JsonLiteral(value.as_str()))?
                }
                _ => map.serialize_entry(name, value.as_str())?,
            }
        }
        match self.data {
            Data::None => {}
            Data::Json(raw) => map.serialize_entry("data", raw)?,
            Data::Text(text) => map.serialize_entry("data", text)?,
            Data::Base64(bytes) => map.serialize_entry("data_base64", &Base64Str(bytes))?,
        }
        map.end()
    }
}

fn field_is_set(m: &Metadata, name: &str) -> bool {
    match name {
        "topic" => m.topic().is_some(),
        "entityid" => m.entity_id().is_some(),
        "entityversion" => m.version().is_some(),
        "correlationid" => m.correlation_id().is_some(),
        "causationid" => m.causation_id().is_some(),
        _ => false,
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

/// The content of a JSON string.
fn json_str<'a>(attr: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, DecodeError> {
    if kind(raw) != b'"' {
        return Err(DecodeError::invalid(attr, "expected a string"));
    }
    match serde_json::from_str::<&'a str>(raw.get()) {
        Ok(s) => Ok(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .map(Cow::Owned)
            .map_err(|e| DecodeError::invalid(attr, e)),
    }
}

/// A CloudEvents `String`: a JSON string without the characters the type disallows.
fn string<'a>(attr: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, DecodeError> {
    let s = json_str(attr, raw)?;
    if let Some((byte, ch)) = find_non_ce_char(&s) {
        return Err(DecodeError::invalid(
            attr,
            format_args!("invalid character {ch:?} at byte {byte}: {CE_STRING_RULE}"),
        ));
    }
    Ok(s)
}

/// A non-empty CloudEvents `String`.
fn non_empty<'a>(attr: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, DecodeError> {
    let s = string(attr, raw)?;
    if s.is_empty() {
        return Err(DecodeError::invalid(attr, "must be a non-empty string"));
    }
    Ok(s)
}

/// An extension attribute's value: a string, an int32 or a boolean.
fn extension_value(attr: &str, raw: &RawValue) -> Result<ExtensionValue, DecodeError> {
    match kind(raw) {
        b'"' => {
            ExtensionValue::string(string(attr, raw)?).map_err(|e| DecodeError::invalid(attr, e))
        }
        b't' | b'f' => serde_json::from_str::<bool>(raw.get())
            .map(ExtensionValue::from)
            .map_err(|e| DecodeError::invalid(attr, e)),
        b'{' | b'[' => Err(DecodeError::invalid(
            attr,
            "extension attributes must be strings, integers or booleans",
        )),
        _ => parse_i32(raw.get())
            .map(ExtensionValue::from)
            .ok_or_else(|| {
                DecodeError::invalid(
                    attr,
                    format_args!(
                        "{} is not a cloudevents integer (a whole number in the int32 range)",
                        raw.get()
                    ),
                )
            }),
    }
}

#[derive(Default)]
struct Found<'a> {
    specversion: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    source: Option<&'a RawValue>,
    event_type: Option<&'a RawValue>,
    subject: Option<&'a RawValue>,
    time: Option<&'a RawValue>,
    content_type: Option<&'a RawValue>,
    dataschema: Option<&'a RawValue>,
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
            "subject" => &mut f.subject,
            "time" => &mut f.time,
            "datacontenttype" => &mut f.content_type,
            "dataschema" => &mut f.dataschema,
            "topic" => &mut f.topic,
            "entityid" => &mut f.entity_id,
            "entityversion" => &mut f.version,
            "correlationid" => &mut f.correlation_id,
            "causationid" => &mut f.causation_id,
            "data" => &mut f.data,
            "data_base64" => &mut f.data_base64,
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
    let specversion = json_str("specversion", specversion)?;
    if specversion != SPEC_VERSION {
        return Err(DecodeError::UnsupportedSpecVersion(
            specversion.into_owned(),
        ));
    }
    let id = non_empty("id", f.id.ok_or(DecodeError::MissingAttribute("id"))?)?;
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
    check_uri_reference(&source).map_err(|e| DecodeError::invalid("source", e))?;
    let event_type = non_empty(
        "type",
        f.event_type.ok_or(DecodeError::MissingAttribute("type"))?,
    )?;
    let event_type = EventType::new(&*event_type).map_err(|e| DecodeError::invalid("type", e))?;

    // Foreign attributes under syncbus names: kept as headers of their own type.
    let mut foreign: Vec<(&'static str, ExtensionValue)> = Vec::new();
    let mut keep_foreign = |name: &'static str, raw: &RawValue| -> Result<(), DecodeError> {
        foreign.push((name, extension_value(name, raw)?));
        Ok(())
    };

    let mut topic = None;
    if let Some(raw) = f.topic {
        match kind(raw) {
            b'"' => match Topic::new(&*string("topic", raw)?) {
                Ok(t) => topic = Some(t),
                Err(_) => keep_foreign("topic", raw)?,
            },
            _ => keep_foreign("topic", raw)?,
        }
    }
    let mut entity_id = None;
    if let Some(raw) = f.entity_id {
        match kind(raw) {
            b'"' => match EntityId::new(&*string("entityid", raw)?) {
                Ok(e) => entity_id = Some(e),
                Err(_) => keep_foreign("entityid", raw)?,
            },
            _ => keep_foreign("entityid", raw)?,
        }
    }
    let mut version = None;
    if let Some(raw) = f.version {
        version = read_version(raw)?;
        if version.is_none() {
            keep_foreign("entityversion", raw)?;
        }
    }
    let mut ids = [None, None];
    for (slot, (attr, raw)) in ids.iter_mut().zip([
        ("correlationid", f.correlation_id),
        ("causationid", f.causation_id),
    ]) {
        let Some(raw) = raw else { continue };
        match kind(raw) {
            b'"' => match EventId::parse(&string(attr, raw)?) {
                Ok(id) => *slot = Some(id),
                // Empty or over the length limit: another system's attribute.
                Err(_) => keep_foreign(attr, raw)?,
            },
            _ => keep_foreign(attr, raw)?,
        }
    }

    let mut meta = Metadata::with_parts(id, event_type, topic, entity_id, version);
    if source != CloudEventsJson::DEFAULT_SOURCE {
        meta.set_source(&*source);
    }
    if let Some(raw) = f.subject {
        meta.set_subject(&*non_empty("subject", raw)?);
    }
    match f.time {
        Some(raw) => {
            let time = Timestamp::parse_rfc3339(&string("time", raw)?)
                .map_err(|e| DecodeError::invalid("time", e))?;
            // The id already carries this time; storing it again would only allocate.
            let from_id = meta.id().timestamp_ms().map(Timestamp::from_unix_millis);
            if from_id != Some(time) {
                meta.set_time(time);
            }
        }
        // Absent stays absent, even for an id that carries a time.
        None if meta.id().timestamp_ms().is_some() => meta.set_time_slot(TimeSlot::Absent),
        None => {}
    }
    if let Some(raw) = f.content_type {
        let ct = string("datacontenttype", raw)?;
        check_media_type(&ct).map_err(|r| DecodeError::invalid("datacontenttype", r))?;
        meta.set_content_type(&*ct);
    }
    if let Some(raw) = f.dataschema {
        let schema = string("dataschema", raw)?;
        check_uri(&schema).map_err(|e| DecodeError::invalid("dataschema", e))?;
        meta.set_dataschema(&*schema);
    }
    let [correlation_id, causation_id] = ids;
    meta.set_correlation_id(correlation_id);
    meta.set_causation_id(causation_id);

    let max_headers = limits.header_count_max();
    let count = f.extensions.len() + foreign.len() + skipped;
    if count > max_headers {
        return Err(DecodeError::TooManyHeaders {
            count,
            max: max_headers,
        });
    }
    if !f.extensions.is_empty() || !foreign.is_empty() {
        let max_value = limits.header_value_max();
        let mut headers = Headers::new();
        let named = f
            .extensions
            .into_iter()
            .map(|(name, raw)| {
                validate_attribute_name(&name).map_err(|e| DecodeError::invalid(&*name, e))?;
                let value = extension_value(&name, raw)?;
                Ok((name, value))
            })
            .chain(foreign.into_iter().map(|(n, v)| Ok((Cow::Borrowed(n), v))));
        for item in named {
            let (name, value) = item?;
            if value.as_str().len() > max_value {
                return Err(DecodeError::HeaderTooLarge {
                    name: name.into_owned(),
                    len: value.as_str().len(),
                    max: max_value,
                });
            }
            headers
                .insert_foreign(&name, value)
                .map_err(|e| header_error(&name, e))?;
        }
        meta.set_headers(headers);
    }

    let (payload, form) = match (f.data, f.data_base64) {
        (Some(_), Some(_)) => {
            return Err(DecodeError::malformed(
                "both data and data_base64 are present",
            ))
        }
        (Some(raw), None) => {
            if content_kind(meta.content_type()) != ContentKind::Json && kind(raw) == b'"' {
                // A non-JSON payload given as a JSON string holds the text itself.
                let text = json_str("data", raw)?;
                check_payload(text.len(), limits)?;
                (Bytes::copy_from_slice(text.as_bytes()), DataForm::Text)
            } else {
                check_payload(raw.get().len(), limits)?;
                (Bytes::copy_from_slice(raw.get().as_bytes()), DataForm::Json)
            }
        }
        (None, Some(raw)) => {
            let encoded = json_str("data_base64", raw)?;
            let unpadded = encoded.trim_end_matches('=');
            check_payload(base64::decoded_len_max(unpadded.len()), limits)?;
            let bytes = base64::decode(encoded.as_bytes())
                .map_err(|e| DecodeError::invalid("data_base64", e))?;
            (Bytes::from(bytes), DataForm::Binary)
        }
        (None, None) => (Bytes::new(), DataForm::Absent),
    };
    // Remember the form only where the encoder would not pick it by itself.
    if auto_form(meta.content_type(), &payload).ok() != Some(form) {
        meta.set_data_form(form);
    }
    Ok(Envelope::new(meta, payload))
}

/// `entityversion` in a form syncbus writes: an integer from 0 to `i32::MAX`, or a string of
/// decimal digits above it. `None` for any other value (another system's attribute).
fn read_version(raw: &RawValue) -> Result<Option<u64>, DecodeError> {
    match kind(raw) {
        b'"' => {
            let s = json_str("entityversion", raw)?;
            let canonical = !s.starts_with('0') && s.bytes().all(|c| c.is_ascii_digit());
            Ok(s.parse::<u64>()
                .ok()
                .filter(|&v| canonical && v > i32::MAX as u64))
        }
        b'-' | b'0'..=b'9' => {
            let n = parse_i32(raw.get()).ok_or_else(|| {
                DecodeError::invalid(
                    "entityversion",
                    format_args!(
                        "{} is not a cloudevents integer (a whole number in the int32 range); \
                         versions above it are written as strings",
                        raw.get()
                    ),
                )
            })?;
            Ok(u64::try_from(n).ok())
        }
        _ => Ok(None),
    }
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
    use super::{check_media_type, content_kind, ContentKind};

    #[test]
    fn content_kinds() {
        for ct in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/cloudevents+json"),
            Some("application/vnd.api+json"),
            Some("text/json"),
        ] {
            assert_eq!(content_kind(ct), ContentKind::Json, "{ct:?}");
        }
        for ct in [
            "text/plain",
            "text/xml",
            "application/xml",
            "application/atom+xml",
            "TEXT/CSV",
        ] {
            assert_eq!(content_kind(Some(ct)), ContentKind::Text, "{ct:?}");
        }
        for ct in [
            "application/octet-stream",
            "json",
            "application/jsonx",
            "image/png",
        ] {
            assert_eq!(content_kind(Some(ct)), ContentKind::Other, "{ct:?}");
        }
    }

    #[test]
    fn media_types() {
        for ok in [
            "application/json",
            "text/plain; charset=utf-8",
            "text/plain;charset=UTF-8",
            "multipart/form-data; boundary=\"a b;c\"",
            "application/vnd.api+json ",
            "a/b ; x=1 ; y=2",
        ] {
            assert_eq!(check_media_type(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "json",
            "text/",
            "/plain",
            "text/plain;",
            "text/plain; charset",
            "text plain",
            "text/plain; a=\"x",
            "a/b c",
        ] {
            assert!(check_media_type(bad).is_err(), "{bad:?}");
        }
    }
}
