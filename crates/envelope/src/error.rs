//! Errors of encoding and decoding envelopes.

use std::error::Error;
use std::fmt;

use crate::EventType;

/// Why an envelope could not be encoded.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{Bytes, CloudEventsJson, EncodeError, Envelope, EventType, Metadata};
///
/// // The content type says JSON, so the payload must be JSON.
/// let meta = Metadata::new(EventType::from_static("a.b")).with_content_type("application/json");
/// let env = Envelope::new(meta, Bytes::from_static(b"not json"));
/// let err = CloudEventsJson::encode(&env).unwrap_err();
/// assert!(matches!(err, EncodeError::InvalidJsonPayload { .. }));
/// assert!(std::error::Error::source(&err).is_some());
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum EncodeError {
    /// The content type says JSON (`application/json` or a `+json` type) but the payload is
    /// not valid JSON. (With no content type, such a payload goes out as `data_base64`.)
    InvalidJsonPayload {
        /// The content type.
        content_type: Option<String>,
        /// The JSON parser's complaint.
        source: Box<dyn Error + Send + Sync + 'static>,
    },
    /// The metadata would make an invalid CloudEvent: a `source` that is no URI-reference,
    /// a `dataschema` that is no absolute URI, a content type that is no media type, an empty
    /// `subject` or one with a character the CloudEvents `String` type disallows.
    InvalidAttribute {
        /// The CloudEvents attribute.
        attribute: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The serializer failed, for example on a payload type whose `Serialize` impl errors.
    Serialize {
        /// The serializer's error.
        source: Box<dyn Error + Send + Sync + 'static>,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::InvalidJsonPayload {
                content_type: Some(ct),
                ..
            } => write!(
                f,
                "payload is not valid json but its content type is {ct:?}"
            ),
            EncodeError::InvalidJsonPayload { .. } => {
                f.write_str("payload is not valid json; set a content type for non-json payloads")
            }
            EncodeError::InvalidAttribute { attribute, reason } => {
                write!(f, "cannot encode attribute {attribute:?}: {reason}")
            }
            EncodeError::Serialize { .. } => f.write_str("failed to serialize event"),
        }
    }
}

impl Error for EncodeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            EncodeError::InvalidJsonPayload { source, .. } | EncodeError::Serialize { source } => {
                Some(source.as_ref())
            }
            EncodeError::InvalidAttribute { .. } => None,
        }
    }
}

/// Why bytes could not be decoded into an envelope, or a payload into an event.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{CloudEventsJson, DecodeError, Limits};
///
/// let err = CloudEventsJson::decode(br#"{"specversion":"1.0","type":"a.b","source":"/x"}"#, &Limits::default())
///     .unwrap_err();
/// assert_eq!(err, DecodeError::MissingAttribute("id"));
/// assert_eq!(err.to_string(), "missing required attribute \"id\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is not well-formed: not JSON, not a JSON object, truncated or trailing
    /// binary data, and the like.
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
    /// A required attribute is absent.
    MissingAttribute(&'static str),
    /// An attribute has the wrong JSON type or an invalid value.
    InvalidAttribute {
        /// The attribute's name.
        attribute: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CloudEvents `specversion` is not `1.0`.
    UnsupportedSpecVersion(String),
    /// The binary format version byte is not one this crate reads (1 and 2).
    UnsupportedVersion(u8),
    /// More headers (extension attributes) than the limit allows.
    TooManyHeaders {
        /// Headers found.
        count: usize,
        /// Most allowed.
        max: usize,
    },
    /// A header value is longer than the limit allows.
    HeaderTooLarge {
        /// The header's name.
        name: String,
        /// Length of the value, in bytes.
        len: usize,
        /// Largest length allowed, in bytes.
        max: usize,
    },
    /// The payload is larger than the limit allows.
    PayloadTooLarge {
        /// Payload size, in bytes (for base64 data, the size it decodes to).
        len: usize,
        /// Largest size allowed, in bytes.
        max: usize,
    },
    /// The whole input is larger than the payload limit plus 64 KiB for metadata; rejected
    /// before parsing.
    InputTooLarge {
        /// Input size, in bytes.
        len: usize,
        /// Largest size allowed, in bytes.
        max: usize,
    },
    /// The envelope holds a different event type than the one asked for.
    WrongType {
        /// The type asked for.
        expected: &'static str,
        /// The type the envelope holds.
        found: EventType,
    },
}

impl DecodeError {
    pub(crate) fn malformed(reason: impl fmt::Display) -> Self {
        DecodeError::Malformed {
            reason: reason.to_string(),
        }
    }

    pub(crate) fn invalid(attribute: impl Into<String>, reason: impl fmt::Display) -> Self {
        DecodeError::InvalidAttribute {
            attribute: attribute.into(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed { reason } => write!(f, "malformed input: {reason}"),
            DecodeError::MissingAttribute(name) => {
                write!(f, "missing required attribute {name:?}")
            }
            DecodeError::InvalidAttribute { attribute, reason } => {
                write!(f, "invalid attribute {attribute:?}: {reason}")
            }
            DecodeError::UnsupportedSpecVersion(v) => {
                write!(
                    f,
                    "unsupported cloudevents specversion {v:?}, expected \"1.0\""
                )
            }
            DecodeError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported binary format version {v}, supported are 1 and 2"
                )
            }
            DecodeError::TooManyHeaders { count, max } => {
                write!(f, "{count} headers, at most {max} are allowed")
            }
            DecodeError::HeaderTooLarge { name, len, max } => write!(
                f,
                "header {name:?} is {len} bytes long, at most {max} are allowed"
            ),
            DecodeError::PayloadTooLarge { len, max } => {
                write!(f, "payload is {len} bytes, at most {max} are allowed")
            }
            DecodeError::InputTooLarge { len, max } => {
                write!(f, "input is {len} bytes, at most {max} are allowed")
            }
            DecodeError::WrongType { expected, found } => {
                write!(
                    f,
                    "expected event type {expected:?}, found {:?}",
                    found.as_str()
                )
            }
        }
    }
}

impl Error for DecodeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        None
    }
}
