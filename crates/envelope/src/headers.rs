//! User headers carried next to the standard metadata.

use std::error::Error;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use smol_str::SmolStr;

use crate::name_error::{check_len, NameError, NameKind, NameReason};

/// Attribute names that CloudEvents or syncbus already use; a header cannot take them.
const RESERVED: &[&str] = &[
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
    "topic",
    "entityid",
    "entityversion",
    "correlationid",
    "causationid",
];

/// A small map of user headers, kept sorted by name.
///
/// Each header travels as its own CloudEvents extension attribute, so names follow the
/// CloudEvents naming rule: 1 to 20 characters of `a-z` and `0-9`, and not one of the names
/// CloudEvents or syncbus already use (`id`, `type`, `topic`, `entityid`, ...). Values are
/// any string of up to 4096 bytes. A map holds at most 64 headers.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::Headers;
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
/// # Ok::<(), syncbus_envelope::HeaderError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Headers {
    entries: Vec<(SmolStr, SmolStr)>,
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

    /// Longest header name, in characters.
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
    pub const MAX_NAME_LEN: usize = 20;

    /// Longest header value, in bytes.
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
        }
    }

    /// Sets a header, returning the value it replaces.
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
    /// [`HeaderError`] if the name breaks the naming rule or is reserved, the value is longer
    /// than [`Headers::MAX_VALUE_LEN`], or the map already holds [`Headers::MAX_LEN`] other
    /// headers. The map is unchanged on error.
    ///
    /// ```
    /// use syncbus_envelope::{HeaderError, Headers};
    ///
    /// let mut headers = Headers::new();
    /// assert!(matches!(headers.insert("Tenant", "x"), Err(HeaderError::InvalidName(_))));
    /// let Err(HeaderError::InvalidName(err)) = headers.insert("topic", "x") else { panic!() };
    /// assert_eq!(err.to_string(), r#"header name "topic" is reserved"#);
    /// ```
    pub fn insert(
        &mut self,
        name: impl AsRef<str>,
        value: impl AsRef<str>,
    ) -> Result<Option<SmolStr>, HeaderError> {
        let (name, value) = (name.as_ref(), value.as_ref());
        validate_name(name)?;
        if value.len() > Self::MAX_VALUE_LEN {
            return Err(HeaderError::ValueTooLong {
                name: name.to_owned(),
                len: value.len(),
                max: Self::MAX_VALUE_LEN,
            });
        }
        match self.find(name) {
            Ok(i) => Ok(Some(std::mem::replace(
                &mut self.entries[i].1,
                SmolStr::new(value),
            ))),
            Err(i) => {
                if self.entries.len() >= Self::MAX_LEN {
                    return Err(HeaderError::TooMany { max: Self::MAX_LEN });
                }
                self.entries
                    .insert(i, (SmolStr::new(name), SmolStr::new(value)));
                Ok(None)
            }
        }
    }

    /// The value of a header.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Headers;
    ///
    /// let mut headers = Headers::new();
    /// headers.insert("tenant", "acme")?;
    /// assert_eq!(headers.get("tenant"), Some("acme"));
    /// assert_eq!(headers.get("region"), None);
    /// # Ok::<(), syncbus_envelope::HeaderError>(())
    /// ```
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).ok().map(|i| self.entries[i].1.as_str())
    }

    /// Removes a header, returning its value.
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
        Some(self.entries.remove(i).1)
    }

    /// Iterates over `(name, value)` pairs in name order.
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

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }
}

/// Checks a header name against the CloudEvents extension naming rule and the reserved list.
pub(crate) fn validate_name(name: &str) -> Result<(), NameError> {
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
    if RESERVED.contains(&name) {
        return Err(NameError::new(kind, NameReason::Reserved, name));
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
        std::slice::Iter<'a, (SmolStr, SmolStr)>,
        fn(&'a (SmolStr, SmolStr)) -> (&'a str, &'a str),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
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
                f.write_str("a map of header names to string values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut headers = Headers::new();
                while let Some((k, v)) = map.next_entry::<SmolStr, SmolStr>()? {
                    if headers.insert(&k, &v).map_err(de::Error::custom)?.is_some() {
                        return Err(de::Error::custom(format_args!("duplicate header {k:?}")));
                    }
                }
                Ok(headers)
            }
        }

        deserializer.deserialize_map(HeadersVisitor)
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
    /// The name breaks the naming rule (1 to 20 characters of `a-z0-9`), or is a CloudEvents
    /// or syncbus attribute name ([`NameReason::Reserved`]).
    InvalidName(NameError),
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
            HeaderError::InvalidName(e) => e.fmt(f),
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
            HeaderError::InvalidName(e) => Some(e),
            _ => None,
        }
    }
}

impl From<NameError> for HeaderError {
    fn from(e: NameError) -> Self {
        HeaderError::InvalidName(e)
    }
}
