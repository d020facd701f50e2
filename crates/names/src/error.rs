//! One error for every validated name: topics, patterns, event types, entity ids, event ids,
//! header names, and the plain names of consumers, members and checkpoints.
//!
//! Each validator answers the same two questions: *what* was refused ([`NameKind`]) and
//! *where and why* ([`NameReason`], which carries the byte offset or token index). The
//! message quotes the rejected string (cut short when it is too long), so a person can find
//! and fix it.

use std::error::Error;
use std::fmt;

/// Longest plain name (consumer, member, checkpoint), in bytes.
const PLAIN_MAX_LEN: usize = 256;

/// How much of an over-long input an error keeps, in characters.
const TOO_LONG_PREFIX_CHARS: usize = 32;

/// Which kind of name was refused.
///
/// # Examples
///
/// ```
/// use syncbus_names::{check_event_type, NameKind};
///
/// let err = check_event_type("").unwrap_err();
/// assert_eq!(err.kind(), NameKind::EventType);
/// assert_eq!(NameKind::EventType.to_string(), "event type");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameKind {
    /// A topic (`Topic`).
    Topic,
    /// A topic pattern (`Pattern`).
    Pattern,
    /// An event type (`EventType`).
    EventType,
    /// An entity id (`EntityId`).
    EntityId,
    /// A foreign (non-UUID) event id (`EventId`).
    EventId,
    /// A header name (see `Headers`).
    HeaderName,
    /// A consumer's name (durable consumers, subscriptions).
    Consumer,
    /// A member of a consumer group.
    Member,
    /// A checkpoint's name.
    Checkpoint,
    /// A header value (a CloudEvents extension attribute's value, `ExtensionValue`).
    HeaderValue,
    /// An absolute URI (the CloudEvents `URI` type: `dataschema`, URI extensions).
    Uri,
    /// A URI-reference (the CloudEvents `URI-reference` type: `source`, URI-reference
    /// extensions).
    UriReference,
}

impl NameKind {
    /// The kind as it reads in a message: `topic`, `event type`, `header name`, ...
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_names::NameKind;
    ///
    /// assert_eq!(NameKind::HeaderName.as_str(), "header name");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Topic => "topic",
            NameKind::Pattern => "pattern",
            NameKind::EventType => "event type",
            NameKind::EntityId => "entity id",
            NameKind::EventId => "event id",
            NameKind::HeaderName => "header name",
            NameKind::Consumer => "consumer name",
            NameKind::Member => "member name",
            NameKind::Checkpoint => "checkpoint name",
            NameKind::HeaderValue => "header value",
            NameKind::Uri => "uri",
            NameKind::UriReference => "uri reference",
        }
    }
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with a name, and where.
///
/// # Examples
///
/// ```
/// use syncbus_names::{check_topic, NameReason};
///
/// let err = check_topic("orders..created").unwrap_err();
/// assert_eq!(err.reason(), &NameReason::EmptyToken { index: 1, byte: 7 });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameReason {
    /// The name is empty.
    Empty,
    /// The name is longer than allowed.
    TooLong {
        /// Its length, in bytes.
        len: usize,
        /// The largest length allowed, in bytes.
        max: usize,
    },
    /// The name has more dot-separated tokens than allowed (topics and patterns).
    TooManyTokens {
        /// Its token count.
        count: usize,
        /// The most tokens allowed.
        max: usize,
    },
    /// A token is empty: the name starts or ends with a dot, or has two dots in a row.
    EmptyToken {
        /// The index of the empty token, counting from 0.
        index: usize,
        /// The byte offset where the empty token is.
        byte: usize,
    },
    /// A character is not allowed in this kind of name.
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        byte: usize,
        /// What is allowed instead.
        rule: &'static str,
    },
    /// A topic holds a wildcard (`*` or `>`); only patterns may.
    WildcardInTopic {
        /// The byte offset of the wildcard.
        byte: usize,
    },
    /// A pattern uses a wildcard wrongly: not a whole token (`a*`), or a `>` that is not the
    /// last token.
    MisplacedWildcard {
        /// The byte offset of the wildcard.
        byte: usize,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The name is reserved (header names that are CloudEvents or syncbus attributes).
    Reserved,
}

/// Why a string is not a valid name of some kind: the one error every name validator
/// returns.
///
/// It says what was refused ([`kind`](Self::kind)), why and where
/// ([`reason`](Self::reason), [`position`](Self::position)), and quotes the rejected
/// string ([`input`](Self::input), cut to 32 characters and `...` when too long).
///
/// # Examples
///
/// ```
/// use syncbus_names::{check_topic, NameKind, NameReason};
///
/// let err = check_topic("orders.eu created").unwrap_err();
/// assert_eq!(err.kind(), NameKind::Topic);
/// assert_eq!(err.position(), Some(9));
/// assert!(matches!(err.reason(), NameReason::InvalidChar { ch: ' ', .. }));
/// assert_eq!(
///     err.to_string(),
///     r#"invalid character ' ' at byte 9 in topic "orders.eu created": only printable ascii is allowed"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NameError {
    kind: NameKind,
    reason: NameReason,
    input: String,
}

impl NameError {
    /// An error of `kind` for `input`. An input of more than 32 characters is kept cut short
    /// for [`NameReason::TooLong`].
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_names::{NameError, NameKind, NameReason};
    ///
    /// let err = NameError::new(NameKind::Consumer, NameReason::Reserved, "system");
    /// assert_eq!(err.to_string(), r#"consumer name "system" is reserved"#);
    /// ```
    pub fn new(kind: NameKind, reason: NameReason, input: &str) -> NameError {
        let input = match reason {
            NameReason::TooLong { .. } => too_long_prefix(input),
            _ => input.to_owned(),
        };
        NameError {
            kind,
            reason,
            input,
        }
    }

    /// Which kind of name was refused.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_names::{check_pattern, NameKind};
    ///
    /// assert_eq!(check_pattern("a.>.b").unwrap_err().kind(), NameKind::Pattern);
    /// ```
    pub fn kind(&self) -> NameKind {
        self.kind
    }

    /// What is wrong with it.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_names::{check_event_type, NameReason};
    ///
    /// assert_eq!(check_event_type("").unwrap_err().reason(), &NameReason::Empty);
    /// ```
    pub fn reason(&self) -> &NameReason {
        &self.reason
    }

    /// The rejected string (its first 32 characters and `...` when it was too long).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_names::check_topic;
    ///
    /// assert_eq!(check_topic("a..b").unwrap_err().input(), "a..b");
    /// ```
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The byte offset of the problem, when it has one place.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_names::{check_event_type, check_pattern};
    ///
    /// assert_eq!(check_pattern("orders*").unwrap_err().position(), Some(6));
    /// assert_eq!(check_event_type("a b").unwrap_err().position(), Some(1));
    /// assert_eq!(check_event_type("").unwrap_err().position(), None);
    /// ```
    pub fn position(&self) -> Option<usize> {
        match self.reason {
            NameReason::EmptyToken { byte, .. }
            | NameReason::InvalidChar { byte, .. }
            | NameReason::WildcardInTopic { byte }
            | NameReason::MisplacedWildcard { byte, .. } => Some(byte),
            NameReason::Empty
            | NameReason::TooLong { .. }
            | NameReason::TooManyTokens { .. }
            | NameReason::Reserved => None,
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, input) = (self.kind, &self.input);
        match &self.reason {
            NameReason::Empty => write!(f, "{kind} is empty"),
            NameReason::TooLong { len, max } => {
                write!(
                    f,
                    "{kind} {input:?} is {len} bytes long, the maximum is {max}"
                )
            }
            NameReason::TooManyTokens { count, max } => {
                write!(
                    f,
                    "{kind} {input:?} has {count} tokens, the maximum is {max}"
                )
            }
            NameReason::EmptyToken { index, .. } => {
                write!(f, "empty token at index {index} in {kind} {input:?}")
            }
            NameReason::InvalidChar { ch, byte, rule } => {
                write!(
                    f,
                    "invalid character {ch:?} at byte {byte} in {kind} {input:?}: {rule}"
                )
            }
            NameReason::WildcardInTopic { byte } => {
                let wildcard = input.get(*byte..).and_then(|s| s.chars().next());
                let wildcard = wildcard.unwrap_or('*');
                write!(
                    f,
                    "wildcard {wildcard:?} at byte {byte} in {kind} {input:?}: only patterns may contain wildcards"
                )
            }
            NameReason::MisplacedWildcard { byte, rule } => {
                write!(
                    f,
                    "misplaced wildcard at byte {byte} in {kind} {input:?}: {rule}"
                )
            }
            NameReason::Reserved => write!(f, "{kind} {input:?} is reserved"),
        }
    }
}

impl Error for NameError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        None
    }
}

/// Checks a plain name (a consumer, member or checkpoint name): 1 to 256 bytes, any
/// characters.
///
/// # Examples
///
/// ```
/// use syncbus_names::{check_plain_name, NameKind, NameReason};
///
/// assert!(check_plain_name(NameKind::Consumer, "billing").is_ok());
/// let err = check_plain_name(NameKind::Checkpoint, "").unwrap_err();
/// assert_eq!(err.reason(), &NameReason::Empty);
/// assert_eq!(err.to_string(), "checkpoint name is empty");
/// ```
///
/// # Errors
///
/// A [`NameError`] of `kind` when `name` is empty or longer than 256 bytes.
pub fn check_plain_name(kind: NameKind, name: &str) -> Result<(), NameError> {
    check_len(kind, name, PLAIN_MAX_LEN)
}

/// Checks the length rule every name shares: 1 to `max` bytes.
///
/// # Examples
///
/// ```
/// use syncbus_names::{check_len, NameKind, NameReason};
///
/// assert!(check_len(NameKind::HeaderName, "traceparent", 64).is_ok());
/// let err = check_len(NameKind::HeaderName, &"x".repeat(65), 64).unwrap_err();
/// assert_eq!(err.reason(), &NameReason::TooLong { len: 65, max: 64 });
/// ```
///
/// # Errors
///
/// A [`NameError`] of `kind` with [`NameReason::Empty`] or [`NameReason::TooLong`].
pub fn check_len(kind: NameKind, s: &str, max: usize) -> Result<(), NameError> {
    match len_problem(s, max) {
        Some(reason) => Err(NameError::new(kind, reason, s)),
        None => Ok(()),
    }
}

/// What is wrong with the length of `s`, if anything; usable at compile time.
pub(crate) const fn len_problem(s: &str, max: usize) -> Option<NameReason> {
    if s.is_empty() {
        return Some(NameReason::Empty);
    }
    if s.len() > max {
        return Some(NameReason::TooLong { len: s.len(), max });
    }
    None
}

fn too_long_prefix(s: &str) -> String {
    match s.char_indices().nth(TOO_LONG_PREFIX_CHARS) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_owned(),
    }
}
