//! Typed values of CloudEvents extension attributes (syncbus headers).

use std::fmt;

use smol_str::SmolStr;

use crate::codec::base64;
use crate::name_error::{check_ce_string, NameError, NameKind, NameReason};
use crate::uri::{check_uri, check_uri_reference};
use crate::Timestamp;

/// The CloudEvents 1.0 type of an extension attribute's value.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{ExtensionKind, ExtensionValue};
///
/// assert_eq!(ExtensionValue::from(5).kind(), ExtensionKind::Integer);
/// assert_eq!(ExtensionKind::UriRef.to_string(), "URI-reference");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ExtensionKind {
    /// A `String`: any text without control characters or Unicode noncharacters.
    String,
    /// An `Integer`: a signed 32-bit integer.
    Integer,
    /// A `Boolean`.
    Boolean,
    /// A `URI`: an absolute URI (RFC 3986).
    Uri,
    /// A `URI-reference`: a URI or a relative reference (RFC 3986).
    UriRef,
    /// A `Timestamp`: an RFC 3339 date and time.
    Timestamp,
    /// A `Binary`: bytes, written as base64 (RFC 4648).
    Binary,
}

impl ExtensionKind {
    /// The CloudEvents name of the type.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::ExtensionKind;
    ///
    /// assert_eq!(ExtensionKind::Timestamp.as_str(), "Timestamp");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ExtensionKind::String => "String",
            ExtensionKind::Integer => "Integer",
            ExtensionKind::Boolean => "Boolean",
            ExtensionKind::Uri => "URI",
            ExtensionKind::UriRef => "URI-reference",
            ExtensionKind::Timestamp => "Timestamp",
            ExtensionKind::Binary => "Binary",
        }
    }

    /// The kind's tag in the binary format.
    pub(crate) fn tag(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_tag(tag: u8) -> Option<ExtensionKind> {
        [
            ExtensionKind::String,
            ExtensionKind::Integer,
            ExtensionKind::Boolean,
            ExtensionKind::Uri,
            ExtensionKind::UriRef,
            ExtensionKind::Timestamp,
            ExtensionKind::Binary,
        ]
        .get(usize::from(tag))
        .copied()
    }
}

impl fmt::Display for ExtensionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value of one extension attribute: its CloudEvents type and its text.
///
/// Every value is kept as the text CloudEvents writes for it (the JSON string's content, or
/// the JSON number or boolean), so [`Headers::get`](crate::Headers::get) reads any value as
/// text and a value from another system goes out again exactly as it came. In JSON only
/// strings, integers and booleans can be told apart, so a `URI`, `URI-reference`,
/// `Timestamp` or `Binary` value decoded from JSON reads as a `String`; the binary codec
/// keeps every kind.
///
/// Two values are equal when kind and text are.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{ExtensionKind, ExtensionValue, Timestamp};
///
/// let n = ExtensionValue::from(-7);
/// assert_eq!((n.kind(), n.as_str(), n.as_integer()), (ExtensionKind::Integer, "-7", Some(-7)));
///
/// let on = ExtensionValue::from(true);
/// assert_eq!(on.as_bool(), Some(true));
///
/// let at = ExtensionValue::from(Timestamp::from_unix_millis(1_500));
/// assert_eq!(at.as_str(), "1970-01-01T00:00:01.500Z");
/// assert_eq!(at.as_timestamp(), Some(Timestamp::from_unix_millis(1_500)));
///
/// let blob = ExtensionValue::binary(&[0xde, 0xad]);
/// assert_eq!((blob.as_str(), blob.to_binary()), ("3q0=", Some(vec![0xde, 0xad])));
///
/// let schema = ExtensionValue::uri("https://example.com/s.json")?;
/// assert_eq!(schema.kind(), ExtensionKind::Uri);
/// # Ok::<(), syncbus_envelope::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ExtensionValue {
    kind: ExtensionKind,
    text: SmolStr,
}

impl ExtensionValue {
    /// A `String` value.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::ExtensionValue;
    ///
    /// assert_eq!(ExtensionValue::string("acme ünd co")?.as_str(), "acme ünd co");
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`NameError`] of kind [`NameKind::HeaderValue`] for a control character or a
    /// Unicode noncharacter, which the CloudEvents `String` type disallows.
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionValue, NameReason};
    ///
    /// let err = ExtensionValue::string("a\nb").unwrap_err();
    /// assert!(matches!(err.reason(), NameReason::InvalidChar { ch: '\n', byte: 1, .. }));
    /// ```
    pub fn string(s: impl AsRef<str>) -> Result<ExtensionValue, NameError> {
        let s = s.as_ref();
        check_ce_string(NameKind::HeaderValue, s)?;
        Ok(ExtensionValue {
            kind: ExtensionKind::String,
            text: SmolStr::new(s),
        })
    }

    /// A `URI` value: an absolute URI.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::ExtensionValue;
    ///
    /// assert!(ExtensionValue::uri("urn:isbn:0451450523").is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// A [`NameError`] of kind [`NameKind::Uri`] if `s` is not an absolute URI.
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionValue, NameKind};
    ///
    /// assert_eq!(ExtensionValue::uri("/relative").unwrap_err().kind(), NameKind::Uri);
    /// ```
    pub fn uri(s: impl AsRef<str>) -> Result<ExtensionValue, NameError> {
        let s = s.as_ref();
        check_uri(s)?;
        Ok(ExtensionValue {
            kind: ExtensionKind::Uri,
            text: SmolStr::new(s),
        })
    }

    /// A `URI-reference` value: a URI or a relative reference.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::ExtensionValue;
    ///
    /// assert!(ExtensionValue::uri_ref("../orders/42").is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// A [`NameError`] of kind [`NameKind::UriReference`] if `s` is not a URI-reference.
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionValue, NameKind};
    ///
    /// assert_eq!(ExtensionValue::uri_ref("a b").unwrap_err().kind(), NameKind::UriReference);
    /// ```
    pub fn uri_ref(s: impl AsRef<str>) -> Result<ExtensionValue, NameError> {
        let s = s.as_ref();
        check_uri_reference(s)?;
        Ok(ExtensionValue {
            kind: ExtensionKind::UriRef,
            text: SmolStr::new(s),
        })
    }

    /// A `Binary` value; its text is the base64 form.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::ExtensionValue;
    ///
    /// assert_eq!(ExtensionValue::binary(b"hi").as_str(), "aGk=");
    /// ```
    pub fn binary(bytes: &[u8]) -> ExtensionValue {
        let mut out = Vec::new();
        base64::encode_into(bytes, &mut out);
        ExtensionValue {
            kind: ExtensionKind::Binary,
            // The base64 alphabet is ASCII.
            text: SmolStr::new(std::str::from_utf8(&out).unwrap_or_default()),
        }
    }

    /// A value of `kind` from the text CloudEvents writes for it, kept as given: a string,
    /// an integer in decimal, `true` or `false`, a URI, a URI-reference, an RFC 3339
    /// timestamp, or base64.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionKind, ExtensionValue};
    ///
    /// let t = ExtensionValue::parse(ExtensionKind::Timestamp, "2024-05-01T14:30:00+02:00")?;
    /// assert_eq!(t.as_str(), "2024-05-01T14:30:00+02:00");
    /// assert_eq!(t.as_timestamp().map(|t| t.to_string()).as_deref(), Some("2024-05-01T12:30:00Z"));
    /// assert_eq!(ExtensionValue::parse(ExtensionKind::Integer, "42")?, ExtensionValue::from(42));
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`NameError`] if the text is not a value of `kind`: of kind
    /// [`NameKind::HeaderValue`] except for URIs ([`NameKind::Uri`],
    /// [`NameKind::UriReference`]).
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionKind, ExtensionValue};
    ///
    /// assert!(ExtensionValue::parse(ExtensionKind::Integer, "2147483648").is_err());
    /// assert!(ExtensionValue::parse(ExtensionKind::Boolean, "yes").is_err());
    /// assert!(ExtensionValue::parse(ExtensionKind::Binary, "not base64!").is_err());
    /// ```
    pub fn parse(kind: ExtensionKind, text: &str) -> Result<ExtensionValue, NameError> {
        let invalid = |rule: &'static str| {
            let reason = NameReason::InvalidChar {
                ch: text.chars().next().unwrap_or('\0'),
                byte: 0,
                rule,
            };
            NameError::new(NameKind::HeaderValue, reason, text)
        };
        match kind {
            ExtensionKind::String => return ExtensionValue::string(text),
            ExtensionKind::Uri => return ExtensionValue::uri(text),
            ExtensionKind::UriRef => return ExtensionValue::uri_ref(text),
            ExtensionKind::Integer => {
                let n = parse_i32(text).ok_or_else(|| {
                    invalid("an integer is decimal digits with an optional '-', in the int32 range")
                })?;
                return Ok(ExtensionValue::from(n));
            }
            ExtensionKind::Boolean => match text {
                "true" | "false" => {}
                _ => return Err(invalid("a boolean is 'true' or 'false'")),
            },
            ExtensionKind::Timestamp => {
                Timestamp::parse_rfc3339(text)
                    .map_err(|_| invalid("a timestamp is rfc 3339 text, in years 0000 to 9999"))?;
            }
            ExtensionKind::Binary => {
                base64::decode(text.as_bytes())
                    .map_err(|_| invalid("binary data is base64 (rfc 4648) text"))?;
            }
        }
        Ok(ExtensionValue {
            kind,
            text: SmolStr::new(text),
        })
    }

    /// The value's CloudEvents type.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionKind, ExtensionValue};
    ///
    /// assert_eq!(ExtensionValue::from(false).kind(), ExtensionKind::Boolean);
    /// ```
    pub fn kind(&self) -> ExtensionKind {
        self.kind
    }

    /// The value's text, as CloudEvents writes it.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::ExtensionValue;
    ///
    /// assert_eq!(ExtensionValue::from(12).as_str(), "12");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn text(&self) -> &SmolStr {
        &self.text
    }

    /// The integer, for an `Integer` value.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::ExtensionValue;
    ///
    /// assert_eq!(ExtensionValue::from(i32::MIN).as_integer(), Some(i32::MIN));
    /// assert_eq!(ExtensionValue::string("12")?.as_integer(), None);
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    pub fn as_integer(&self) -> Option<i32> {
        match self.kind {
            ExtensionKind::Integer => parse_i32(&self.text),
            _ => None,
        }
    }

    /// The boolean, for a `Boolean` value.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::ExtensionValue;
    ///
    /// assert_eq!(ExtensionValue::from(true).as_bool(), Some(true));
    /// ```
    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            ExtensionKind::Boolean => Some(&*self.text == "true"),
            _ => None,
        }
    }

    /// The time, for a `Timestamp` value.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionValue, Timestamp};
    ///
    /// let t = Timestamp::from_unix_millis(0);
    /// assert_eq!(ExtensionValue::from(t).as_timestamp(), Some(t));
    /// ```
    pub fn as_timestamp(&self) -> Option<Timestamp> {
        match self.kind {
            ExtensionKind::Timestamp => Timestamp::parse_rfc3339(&self.text).ok(),
            _ => None,
        }
    }

    /// The bytes, for a `Binary` value (decoded from the base64 text, so it allocates).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::ExtensionValue;
    ///
    /// assert_eq!(ExtensionValue::binary(&[1, 2, 3]).to_binary(), Some(vec![1, 2, 3]));
    /// ```
    pub fn to_binary(&self) -> Option<Vec<u8>> {
        match self.kind {
            ExtensionKind::Binary => base64::decode(self.text.as_bytes()).ok(),
            _ => None,
        }
    }
}

/// A decimal `i32` literal: an optional '-', then digits without a leading zero (JSON's
/// integer grammar).
pub(crate) fn parse_i32(s: &str) -> Option<i32> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|c| c.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    s.parse().ok()
}

impl From<i32> for ExtensionValue {
    /// An `Integer` value.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::ExtensionValue;
    ///
    /// assert_eq!(ExtensionValue::from(3).as_integer(), Some(3));
    /// ```
    fn from(n: i32) -> Self {
        let mut buf = [0u8; 11];
        let mut i = buf.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            i -= 1;
            buf[i] = b'-';
        }
        ExtensionValue {
            kind: ExtensionKind::Integer,
            // Only ASCII digits and '-' were written; 11 bytes fit inline.
            text: SmolStr::new(std::str::from_utf8(&buf[i..]).unwrap_or_default()),
        }
    }
}

impl From<bool> for ExtensionValue {
    /// A `Boolean` value.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::ExtensionValue;
    ///
    /// assert_eq!(ExtensionValue::from(false).as_str(), "false");
    /// ```
    fn from(b: bool) -> Self {
        ExtensionValue {
            kind: ExtensionKind::Boolean,
            text: SmolStr::new_static(if b { "true" } else { "false" }),
        }
    }
}

impl From<Timestamp> for ExtensionValue {
    /// A `Timestamp` value, written in UTC.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{ExtensionValue, Timestamp};
    ///
    /// assert_eq!(ExtensionValue::from(Timestamp::from_unix_millis(0)).as_str(), "1970-01-01T00:00:00Z");
    /// ```
    fn from(t: Timestamp) -> Self {
        ExtensionValue {
            kind: ExtensionKind::Timestamp,
            text: SmolStr::new(t.to_string()),
        }
    }
}

impl fmt::Display for ExtensionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ExtensionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({:?})", self.kind, self.text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_json_grammar() {
        for (s, n) in [
            ("0", Some(0)),
            ("-0", Some(0)),
            ("2147483647", Some(i32::MAX)),
        ] {
            assert_eq!(parse_i32(s), n, "{s}");
        }
        for s in [
            "",
            "-",
            "01",
            "+1",
            "1.0",
            "1e3",
            "2147483648",
            " 1",
            "-2147483649",
        ] {
            assert_eq!(parse_i32(s), None, "{s}");
        }
        assert_eq!(parse_i32("-2147483648"), Some(i32::MIN));
    }

    #[test]
    fn kinds_have_distinct_tags() {
        for tag in 0..7 {
            assert_eq!(
                ExtensionKind::from_tag(tag).map(ExtensionKind::tag),
                Some(tag)
            );
        }
        assert_eq!(ExtensionKind::from_tag(7), None);
    }

    #[test]
    fn from_i32_matches_display() {
        for n in [0, 1, -1, 42, i32::MIN, i32::MAX] {
            assert_eq!(ExtensionValue::from(n).as_str(), n.to_string());
        }
    }
}
