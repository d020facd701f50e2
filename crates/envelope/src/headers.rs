//! User headers carried next to the standard metadata.

use std::error::Error;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use smol_str::SmolStr;

use crate::name_error::{check_len, NameError, NameKind, NameReason};
use crate::{ExtensionKind, ExtensionValue};

/// The attributes CloudEvents defines; never a header.
const SPEC_ATTRIBUTES: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

/// The extension attributes syncbus reads into [`Metadata`](crate::Metadata) fields.
pub(crate) const SYNCBUS_ATTRIBUTES: &[&str] = &[
    "topic",
    "entityid",
    "entityversion",
    "correlationid",
    "causationid",
];

/// A small map of user headers, kept sorted by name.
///
/// Each header travels as its own CloudEvents extension attribute, so names follow the
/// CloudEvents naming rule: `a-z` and `0-9` only, 1 to [`Headers::MAX_NAME_LEN`] characters
/// (CloudEvents advises at most 20 but requires no limit), and not one of the names
/// CloudEvents or syncbus already use (`id`, `type`, `topic`, `entityid`, ...). Each value
/// is an [`ExtensionValue`] of one of the CloudEvents types, up to 4096 bytes of text;
/// [`insert`](Headers::insert) makes a `String` one. A map holds at most 64 headers.
///
/// One exception to the reserved names: an event from another system may use a syncbus
/// name with a value syncbus does not read (an integer `entityid`, a `topic` that is no
/// topic). Decoding keeps such an attribute as a header of that name, so it goes out again
/// unchanged; setting the [`Metadata`](crate::Metadata) field of that name drops it.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{ExtensionValue, Headers};
///
/// let mut headers = Headers::new();
/// headers.insert("tenant", "acme")?;
/// headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?;
/// assert_eq!(headers.get("tenant"), Some("acme"));
/// assert_eq!(headers.len(), 2);
///
/// // Iteration is in name order.
/// let names: Vec<&str> = headers.iter().map(|(name, _)| name).collect();
/// assert_eq!(names, ["tenant", "traceparent"]);
///
/// // Typed values keep their CloudEvents type; `get` reads any value as text.
/// headers.insert_value("priority", ExtensionValue::from(5))?;
/// assert_eq!(headers.get("priority"), Some("5"));
/// assert_eq!(headers.value("priority").and_then(ExtensionValue::as_integer), Some(5));
/// # Ok::<(), syncbus_envelope::HeaderError>(())
/// ```
#[derive(Clone, Default)]
pub struct Headers {
    entries: Vec<(SmolStr, ExtensionValue)>,
    /// A decoder may have put a syncbus attribute's name here (only `insert_foreign` can):
    /// until then, the metadata's setters need not look for one to drop.
    foreign: bool,
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.entries == other.entries
    }
}

impl Eq for Headers {}

impl std::hash::Hash for Headers {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.entries.hash(state);
    }
}

impl Headers {
    /// Most headers one map can hold.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Headers;
    ///
    /// assert_eq!(Headers::MAX_LEN, 64);
    /// ```
    pub const MAX_LEN: usize = 64;

    /// Longest header name, in characters. CloudEvents advises names of at most 20
    /// characters but requires no limit; this one only bounds memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Headers;
    ///
    /// let mut headers = Headers::new();
    /// assert!(headers.insert("a".repeat(Headers::MAX_NAME_LEN), "v").is_ok());
    /// assert!(headers.insert("a".repeat(Headers::MAX_NAME_LEN + 1), "v").is_err());
    /// ```
    pub const MAX_NAME_LEN: usize = 256;

    /// Longest header value, in bytes of its text.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Headers;
    ///
    /// let mut headers = Headers::new();
    /// assert!(headers.insert("big", "x".repeat(Headers::MAX_VALUE_LEN + 1)).is_err());
    /// ```
    pub const MAX_VALUE_LEN: usize = 4096;

    /// An empty map; does not allocate.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Headers;
    ///
    /// assert!(Headers::new().is_empty());
    /// ```
    pub const fn new() -> Self {
        Headers {
            entries: Vec::new(),
            foreign: false,
        }
    }

    /// Sets a header to a `String` value, returning the text of the value it replaces.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Headers;
    ///
    /// let mut headers = Headers::new();
    /// assert_eq!(headers.insert("tenant", "acme")?, None);
    /// assert_eq!(headers.insert("tenant", "globex")?.as_deref(), Some("acme"));
    /// assert_eq!(headers.get("tenant"), Some("globex"));
    /// # Ok::<(), syncbus_envelope::HeaderError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`HeaderError`] if the name breaks the naming rule or is reserved, the value holds a
    /// character the CloudEvents `String` type disallows (a control character or a Unicode
    /// noncharacter) or is longer than [`Headers::MAX_VALUE_LEN`], or the map already holds
    /// [`Headers::MAX_LEN`] other headers. The map is unchanged on error.
    ///
    /// ```
    /// use syncbus_envelope::{HeaderError, Headers};
    ///
    /// let mut headers = Headers::new();
    /// assert!(matches!(headers.insert("Tenant", "x"), Err(HeaderError::InvalidName(_))));
    /// let Err(HeaderError::InvalidName(err)) = headers.insert("topic", "x") else { panic!() };
    /// assert_eq!(err.to_string(), r#"header name "topic" is reserved"#);
    /// assert!(matches!(headers.insert("note", "a\u{0}b"), Err(HeaderError::InvalidValue(_))));
    /// ```
    pub fn insert(
        &mut self,
        name: impl AsRef<str>,
        value: impl AsRef<str>,
    ) -> Result<Option<SmolStr>, HeaderError> {
        let name = name.as_ref();
        validate_name(name)?;
        let value = ExtensionValue::string(value).map_err(HeaderError::InvalidValue)?;
        Ok(self.put(name, value)?.map(|old| old.text().clone()))
    }

    /// Sets a header to a typed value, returning the value it replaces.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionKind, ExtensionValue, Headers};
    ///
    /// let mut headers = Headers::new();
    /// headers.insert_value("retries", ExtensionValue::from(3))?;
    /// headers.insert_value("home", ExtensionValue::uri("https://example.com")?)?;
    /// assert_eq!(headers.value("home").map(ExtensionValue::kind), Some(ExtensionKind::Uri));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`insert`](Headers::insert), less the character check the value passed already.
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionValue, HeaderError, Headers};
    ///
    /// let big = ExtensionValue::binary(&[0; 4096]);
    /// assert!(matches!(Headers::new().insert_value("blob", big), Err(HeaderError::ValueTooLong { .. })));
    /// ```
    pub fn insert_value(
        &mut self,
        name: impl AsRef<str>,
        value: ExtensionValue,
    ) -> Result<Option<ExtensionValue>, HeaderError> {
        let name = name.as_ref();
        validate_name(name)?;
        self.put(name, value)
    }

    /// Sets a header that may carry a syncbus attribute name (decoders only: a foreign
    /// attribute whose value syncbus does not read).
    pub(crate) fn insert_foreign(
        &mut self,
        name: &str,
        value: ExtensionValue,
    ) -> Result<Option<ExtensionValue>, HeaderError> {
        if SYNCBUS_ATTRIBUTES.contains(&name) {
            self.foreign = true;
        } else {
            validate_name(name)?;
        }
        self.put(name, value)
    }

    fn put(
        &mut self,
        name: &str,
        value: ExtensionValue,
    ) -> Result<Option<ExtensionValue>, HeaderError> {
        if value.as_str().len() > Self::MAX_VALUE_LEN {
            return Err(HeaderError::ValueTooLong {
                name: name.to_owned(),
                len: value.as_str().len(),
                max: Self::MAX_VALUE_LEN,
            });
        }
        match self.find(name) {
            Ok(i) => Ok(Some(std::mem::replace(&mut self.entries[i].1, value))),
            Err(i) => {
                if self.entries.len() >= Self::MAX_LEN {
                    return Err(HeaderError::TooMany { max: Self::MAX_LEN });
                }
                self.entries.insert(i, (SmolStr::new(name), value));
                Ok(None)
            }
        }
    }

    /// The text of a header's value, whatever its type (an integer in decimal, a boolean as
    /// `true` or `false`, binary data as base64, ...).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionValue, Headers};
    ///
    /// let mut headers = Headers::new();
    /// headers.insert("tenant", "acme")?;
    /// headers.insert_value("sampled", ExtensionValue::from(true))?;
    /// assert_eq!(headers.get("tenant"), Some("acme"));
    /// assert_eq!(headers.get("sampled"), Some("true"));
    /// assert_eq!(headers.get("region"), None);
    /// # Ok::<(), syncbus_envelope::HeaderError>(())
    /// ```
    pub fn get(&self, name: &str) -> Option<&str> {
        self.value(name).map(ExtensionValue::as_str)
    }

    /// The typed value of a header.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionKind, ExtensionValue, Headers};
    ///
    /// let mut headers = Headers::new();
    /// headers.insert_value("attempt", ExtensionValue::from(2))?;
    /// assert_eq!(headers.value("attempt").map(ExtensionValue::kind), Some(ExtensionKind::Integer));
    /// # Ok::<(), syncbus_envelope::HeaderError>(())
    /// ```
    pub fn value(&self, name: &str) -> Option<&ExtensionValue> {
        self.find(name).ok().map(|i| &self.entries[i].1)
    }

    /// Removes a header, returning the text of its value.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Headers;
    ///
    /// let mut headers = Headers::new();
    /// headers.insert("tenant", "acme")?;
    /// assert_eq!(headers.remove("tenant").as_deref(), Some("acme"));
    /// assert!(headers.is_empty());
    /// # Ok::<(), syncbus_envelope::HeaderError>(())
    /// ```
    pub fn remove(&mut self, name: &str) -> Option<SmolStr> {
        let i = self.find(name).ok()?;
        Some(self.entries.remove(i).1.text().clone())
    }

    /// Iterates over `(name, value text)` pairs in name order.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Headers;
    ///
    /// let mut headers = Headers::new();
    /// headers.insert("b", "2")?;
    /// headers.insert("a", "1")?;
    /// assert_eq!(headers.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
    /// # Ok::<(), syncbus_envelope::HeaderError>(())
    /// ```
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Iterates over `(name, typed value)` pairs in name order.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionKind, ExtensionValue, Headers};
    ///
    /// let mut headers = Headers::new();
    /// headers.insert_value("n", ExtensionValue::from(1))?;
    /// headers.insert("s", "x")?;
    /// let kinds: Vec<_> = headers.iter_values().map(|(name, v)| (name, v.kind())).collect();
    /// assert_eq!(kinds, [("n", ExtensionKind::Integer), ("s", ExtensionKind::String)]);
    /// # Ok::<(), syncbus_envelope::HeaderError>(())
    /// ```
    pub fn iter_values(&self) -> impl ExactSizeIterator<Item = (&str, &ExtensionValue)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of headers.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Headers;
    ///
    /// let mut headers = Headers::new();
    /// headers.insert("a", "1")?;
    /// assert_eq!(headers.len(), 1);
    /// # Ok::<(), syncbus_envelope::HeaderError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Headers;
    ///
    /// assert!(Headers::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a syncbus attribute's name may be among the names (see `insert_foreign`).
    pub(crate) fn may_hold_foreign(&self) -> bool {
        self.foreign
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }
}

/// Checks a name against the CloudEvents attribute naming rule only.
pub(crate) fn validate_attribute_name(name: &str) -> Result<(), NameError> {
    let kind = NameKind::HeaderName;
    check_len(kind, name, Headers::MAX_NAME_LEN)?;
    if let Some((byte, ch)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
    {
        let rule = "only the characters a-z and 0-9 are allowed";
        return Err(NameError::new(
            kind,
            NameReason::InvalidChar { ch, byte, rule },
            name,
        ));
    }
    Ok(())
}

/// Checks a header name against the CloudEvents extension naming rule and the reserved list.
pub(crate) fn validate_name(name: &str) -> Result<(), NameError> {
    validate_attribute_name(name)?;
    if SPEC_ATTRIBUTES.contains(&name) || SYNCBUS_ATTRIBUTES.contains(&name) {
        return Err(NameError::new(
            NameKind::HeaderName,
            NameReason::Reserved,
            name,
        ));
    }
    Ok(())
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (SmolStr, ExtensionValue)>,
        fn(&'a (SmolStr, ExtensionValue)) -> (&'a str, &'a str),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Serialized as a map of names to JSON values, as CloudEvents JSON writes them: integers
/// and booleans as JSON numbers and booleans, every other kind as a string (so, read back, a
/// URI, timestamp or binary value becomes a string).
impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter_values() {
            match v.kind() {
                ExtensionKind::Integer => map.serialize_entry(k, &v.as_integer())?,
                ExtensionKind::Boolean => map.serialize_entry(k, &v.as_bool())?,
                _ => map.serialize_entry(k, v.as_str())?,
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;

        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = Headers;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of header names to strings, integers or booleans")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut headers = Headers::new();
                while let Some((k, v)) = map.next_entry::<SmolStr, Scalar>()? {
                    let value = match v {
                        Scalar::Bool(b) => ExtensionValue::from(b),
                        Scalar::Int(n) => ExtensionValue::from(n),
                        Scalar::Str(s) => ExtensionValue::string(&s).map_err(de::Error::custom)?,
                    };
                    if headers
                        .insert_foreign(&k, value)
                        .map_err(de::Error::custom)?
                        .is_some()
                    {
                        return Err(de::Error::custom(format_args!("duplicate header {k:?}")));
                    }
                }
                Ok(headers)
            }
        }

        deserializer.deserialize_map(HeadersVisitor)
    }
}

/// A header value as serde reads it.
enum Scalar {
    Bool(bool),
    Int(i32),
    Str(SmolStr),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a 32-bit integer or a boolean")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                i32::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom(format_args!("integer {v} is outside the int32 range")))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i32::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom(format_args!("integer {v} is outside the int32 range")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(SmolStr::new(v)))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Why a header was refused.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{HeaderError, Headers};
///
/// let err = Headers::new().insert("tenant", "x".repeat(5000)).unwrap_err();
/// assert!(matches!(err, HeaderError::ValueTooLong { len: 5000, .. }));
/// assert_eq!(err.to_string(), r#"value of header "tenant" is 5000 bytes long, at most 4096 are allowed"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The name breaks the naming rule (1 to [`Headers::MAX_NAME_LEN`] characters of
    /// `a-z0-9`), or is a CloudEvents or syncbus attribute name ([`NameReason::Reserved`]).
    InvalidName(NameError),
    /// The value holds a character the CloudEvents `String` type disallows.
    InvalidValue(NameError),
    /// The value is too long.
    ValueTooLong {
        /// The header's name.
        name: String,
        /// Length of the value, in bytes.
        len: usize,
        /// Largest length allowed, in bytes.
        max: usize,
    },
    /// The map already holds as many headers as it may.
    TooMany {
        /// Most headers allowed.
        max: usize,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::InvalidName(e) | HeaderError::InvalidValue(e) => e.fmt(f),
            HeaderError::ValueTooLong { name, len, max } => write!(
                f,
                "value of header {name:?} is {len} bytes long, at most {max} are allowed"
            ),
            HeaderError::TooMany { max } => {
                write!(f, "too many headers, at most {max} are allowed")
            }
        }
    }
}

impl Error for HeaderError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            HeaderError::InvalidName(e) | HeaderError::InvalidValue(e) => Some(e),
            _ => None,
        }
    }
}

impl From<NameError> for HeaderError {
    fn from(e: NameError) -> Self {
        HeaderError::InvalidName(e)
    }
}
