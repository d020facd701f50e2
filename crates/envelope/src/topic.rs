//! Topics, wildcard patterns and their validation.
//!
//! The rules follow NATS subjects:
//!
//! - A topic is one or more dot-separated tokens, such as `orders.eu.created`.
//! - A token is one or more printable ASCII characters (`0x21..=0x7E`) other than `.`, `*`
//!   and `>`. Empty tokens (leading, trailing or doubled dots) are rejected.
//! - A topic or pattern is at most [`Topic::MAX_LEN`] bytes and [`Topic::MAX_TOKENS`] tokens.
//! - A pattern may also use two wildcard tokens: `*` matches exactly one token and `>`
//!   matches one or more trailing tokens, so it may only be the last token. A wildcard is
//!   always a whole token: `a*`, `*b` and `a>` are rejected.
//!
//! Validation is a single pass over the bytes, by the rules in `syncbus-names` (which
//! `#[derive(Event)]` also checks at compile time). Values of up to 23 bytes are stored
//! inline and never allocate.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use smol_str::SmolStr;

use syncbus_names::{check_pattern, check_topic, TOPIC_MAX_LEN, TOPIC_MAX_TOKENS};

use crate::name_error::NameError;

/// The string conversions and formatting `Topic` and `Pattern` share.
macro_rules! string_newtype_impls {
    ($name:ident, $check:path) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name))
                    .field(&self.as_str())
                    .finish()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        // Sound because the derived `Hash`, `Eq` and `Ord` delegate to `SmolStr`, which
        // hashes and compares as `str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl FromStr for $name {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                $name::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                $check(&s)?;
                Ok($name(SmolStr::from(s)))
            }
        }
    };
}

const MAX_LEN: usize = TOPIC_MAX_LEN;
const MAX_TOKENS: usize = TOPIC_MAX_TOKENS;

/// A concrete topic that events are published to, such as `orders.eu.created`.
///
/// A topic is a list of dot-separated tokens and contains no wildcard. See
/// [`Pattern`] for the wildcard forms used when subscribing.
///
/// `Topic` hashes, compares and orders exactly like its string, and implements
/// [`Borrow<str>`], so a `HashMap<Topic, _>` can be queried with a `&str`.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use syncbus_envelope::Topic;
///
/// let topic = Topic::new("orders.eu.created")?;
/// assert_eq!(topic.as_str(), "orders.eu.created");
/// assert_eq!(topic.tokens().collect::<Vec<_>>(), ["orders", "eu", "created"]);
/// assert_eq!(topic.to_string(), "orders.eu.created");
///
/// // Other ways in: `parse`, `try_from` and, for literals, `from_static`.
/// let parsed: Topic = "orders.eu.created".parse()?;
/// assert_eq!(parsed, topic);
/// assert_eq!(Topic::try_from(String::from("orders.eu.created"))?, topic);
///
/// // Look up by `&str` without building a `Topic`.
/// let mut counts = HashMap::new();
/// counts.insert(topic, 1);
/// assert_eq!(counts.get("orders.eu.created"), Some(&1));
/// # Ok::<(), syncbus_envelope::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(SmolStr);

impl Topic {
    /// The maximum length of a topic or pattern, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Topic;
    ///
    /// assert!(Topic::new("a".repeat(Topic::MAX_LEN)).is_ok());
    /// assert!(Topic::new("a".repeat(Topic::MAX_LEN + 1)).is_err());
    /// ```
    pub const MAX_LEN: usize = MAX_LEN;

    /// The maximum number of tokens in a topic or pattern.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Topic;
    ///
    /// assert!(Topic::new(vec!["a"; Topic::MAX_TOKENS].join(".")).is_ok());
    /// assert!(Topic::new(vec!["a"; Topic::MAX_TOKENS + 1].join(".")).is_err());
    /// ```
    pub const MAX_TOKENS: usize = MAX_TOKENS;

    /// Validates `s` and makes a topic of it.
    ///
    /// Strings of up to 23 bytes are stored inline, without allocating.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{NameError, NameReason, Topic};
    ///
    /// let topic = Topic::new("orders.created")?;
    /// assert_eq!(topic.as_str(), "orders.created");
    ///
    /// let err = Topic::new("orders..created").unwrap_err();
    /// assert_eq!(err.reason(), &NameReason::EmptyToken { index: 1, byte: 7 });
    /// let err = Topic::new("orders.*").unwrap_err();
    /// assert_eq!(err.reason(), &NameReason::WildcardInTopic { byte: 7 });
    /// # Ok::<(), NameError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Returns a [`NameError`] saying what is wrong and where when `s` is empty, too long,
    /// has too many tokens, an empty token, a character outside printable ASCII, or a
    /// wildcard (`*` or `>`).
    pub fn new(s: impl AsRef<str>) -> Result<Topic, NameError> {
        let s = s.as_ref();
        check_topic(s)?;
        Ok(Topic(SmolStr::new(s)))
    }

    /// Makes a topic from a string literal, without allocating.
    ///
    /// Meant for topics written in the source; use [`Topic::new`] for anything else.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Topic;
    ///
    /// const ORDERS_CREATED: &str = "orders.created";
    /// let topic = Topic::from_static(ORDERS_CREATED);
    /// assert_eq!(topic.as_str(), ORDERS_CREATED);
    /// ```
    ///
    /// # Panics
    ///
    /// Panics with the [`NameError`] message if `s` is not a valid topic.
    ///
    /// ```should_panic
    /// # use syncbus_envelope::Topic;
    /// let _ = Topic::from_static("orders..created"); // empty token
    /// ```
    #[track_caller]
    pub fn from_static(s: &'static str) -> Topic {
        match check_topic(s) {
            Ok(()) => Topic(SmolStr::new_static(s)),
            Err(e) => panic!("{e}"),
        }
    }

    /// Wraps a static topic whose validity was checked at compile time.
    pub(crate) const fn from_static_unchecked(s: &'static str) -> Topic {
        Topic(SmolStr::new_static(s))
    }

    /// The literal pattern's topic, when `pattern` has no wildcard (the same string).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Pattern, Topic};
    ///
    /// assert_eq!(Topic::of_literal(&Pattern::from_static("orders.eu")), Some(Topic::from_static("orders.eu")));
    /// assert_eq!(Topic::of_literal(&Pattern::from_static("orders.*")), None);
    /// ```
    pub fn of_literal(pattern: &Pattern) -> Option<Topic> {
        // Topic rules are pattern rules minus the wildcards.
        pattern.is_literal().then(|| Topic(pattern.0.clone()))
    }

    /// Returns the topic as a string slice.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Topic;
    ///
    /// assert_eq!(Topic::from_static("orders.created").as_str(), "orders.created");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the topic as the underlying [`SmolStr`], which is cheap to clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Topic;
    ///
    /// let topic = Topic::from_static("orders.created");
    /// assert_eq!(topic.as_smol_str(), "orders.created");
    /// ```
    pub fn as_smol_str(&self) -> &SmolStr {
        &self.0
    }

    /// Returns an iterator over the topic's tokens, in order.
    ///
    /// There is always at least one token and none is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Topic;
    ///
    /// let topic = Topic::from_static("orders.eu.created");
    /// assert_eq!(topic.tokens().collect::<Vec<_>>(), ["orders", "eu", "created"]);
    /// assert_eq!(topic.tokens().count(), 3);
    /// ```
    pub fn tokens(&self) -> std::str::Split<'_, char> {
        self.0.split('.')
    }
}

string_newtype_impls!(Topic, check_topic);

/// A topic pattern for subscribing, such as `orders.*.created` or `orders.>`.
///
/// A pattern has the same shape as a [`Topic`], but a token may also be a wildcard:
///
/// - `*` matches exactly one token: `orders.*` matches `orders.created` but neither
///   `orders` nor `orders.eu.created`.
/// - `>` matches one or more trailing tokens and must be the last token: `orders.>`
///   matches `orders.created` and `orders.eu.created` but not `orders`. The pattern `>`
///   matches every topic.
///
/// A pattern without wildcards is *literal* and matches only the equal topic. Every
/// topic converts into the literal pattern for itself.
///
/// Like [`Topic`], `Pattern` hashes, compares and orders exactly like its string and
/// implements [`Borrow<str>`].
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{Pattern, Topic};
///
/// let pattern = Pattern::new("orders.*.created")?;
/// assert!(pattern.matches(&Topic::new("orders.eu.created")?));
/// assert!(!pattern.matches(&Topic::new("orders.created")?));
///
/// let all_orders: Pattern = "orders.>".parse()?;
/// assert!(all_orders.matches_str("orders.eu.created"));
/// assert!(!all_orders.matches_str("orders"));
///
/// let literal = Pattern::from(Topic::from_static("orders.created"));
/// assert!(literal.is_literal());
/// assert_eq!(literal.to_string(), "orders.created");
/// # Ok::<(), syncbus_envelope::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern(SmolStr);

impl Pattern {
    /// Validates `s` and makes a pattern of it.
    ///
    /// Strings of up to 23 bytes are stored inline, without allocating.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{NameReason, Pattern};
    ///
    /// assert!(Pattern::new("orders.*.created").is_ok());
    /// assert!(Pattern::new(">").is_ok());
    /// let err = Pattern::new("orders.>.created").unwrap_err();
    /// assert!(matches!(err.reason(), NameReason::MisplacedWildcard { byte: 7, .. }));
    /// assert_eq!(Pattern::new("orders*").unwrap_err().position(), Some(6));
    /// ```
    ///
    /// # Errors
    ///
    /// Returns a [`NameError`] saying what is wrong and where when `s` is empty, too long,
    /// has too many tokens, an empty token, a character outside printable ASCII, a wildcard
    /// that is not a whole token, or a `>` that is not the last token.
    pub fn new(s: impl AsRef<str>) -> Result<Pattern, NameError> {
        let s = s.as_ref();
        check_pattern(s)?;
        Ok(Pattern(SmolStr::new(s)))
    }

    /// Makes a pattern from a string literal, without allocating.
    ///
    /// Meant for patterns written in the source; use [`Pattern::new`] for anything else.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Pattern;
    ///
    /// let pattern = Pattern::from_static("orders.>");
    /// assert!(pattern.matches_str("orders.eu.created"));
    /// ```
    ///
    /// # Panics
    ///
    /// Panics with the [`NameError`] message if `s` is not a valid pattern.
    ///
    /// ```should_panic
    /// # use syncbus_envelope::Pattern;
    /// let _ = Pattern::from_static("orders.>.created"); // `>` must be last
    /// ```
    #[track_caller]
    pub fn from_static(s: &'static str) -> Pattern {
        match check_pattern(s) {
            Ok(()) => Pattern(SmolStr::new_static(s)),
            Err(e) => panic!("{e}"),
        }
    }

    /// Returns the pattern as a string slice.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Pattern;
    ///
    /// assert_eq!(Pattern::from_static("orders.*").as_str(), "orders.*");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the pattern as the underlying [`SmolStr`], which is cheap to clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Pattern;
    ///
    /// let pattern = Pattern::from_static("orders.*");
    /// assert_eq!(pattern.as_smol_str(), "orders.*");
    /// ```
    pub fn as_smol_str(&self) -> &SmolStr {
        &self.0
    }

    /// Returns an iterator over the pattern's tokens, wildcards included, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Pattern;
    ///
    /// let pattern = Pattern::from_static("orders.*.>");
    /// assert_eq!(pattern.tokens().collect::<Vec<_>>(), ["orders", "*", ">"]);
    /// ```
    pub fn tokens(&self) -> std::str::Split<'_, char> {
        self.0.split('.')
    }

    /// Returns `true` if the pattern has no wildcard, so it matches only the equal topic.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Pattern;
    ///
    /// assert!(Pattern::from_static("orders.created").is_literal());
    /// assert!(!Pattern::from_static("orders.*").is_literal());
    /// assert!(!Pattern::from_static("orders.>").is_literal());
    /// ```
    pub fn is_literal(&self) -> bool {
        // Validation only lets `*` and `>` in as whole wildcard tokens.
        !self.0.bytes().any(|b| b == b'*' || b == b'>')
    }

    /// Returns `true` if the pattern matches `topic`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::{Pattern, Topic};
    ///
    /// let created = Topic::from_static("orders.created");
    /// let eu_created = Topic::from_static("orders.eu.created");
    ///
    /// let one = Pattern::from_static("orders.*");
    /// assert!(one.matches(&created));
    /// assert!(!one.matches(&eu_created));
    ///
    /// let rest = Pattern::from_static("orders.>");
    /// assert!(rest.matches(&created));
    /// assert!(rest.matches(&eu_created));
    /// assert!(!rest.matches(&Topic::from_static("orders")));
    /// ```
    pub fn matches(&self, topic: &Topic) -> bool {
        self.matches_str(topic.as_str())
    }

    /// Returns `true` if the pattern matches the topic string `topic`.
    ///
    /// `topic` is assumed to be a valid topic and is not validated. For any other string
    /// the result is unspecified, but this never panics.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_envelope::Pattern;
    ///
    /// let pattern = Pattern::from_static("*.*.created");
    /// assert!(pattern.matches_str("orders.eu.created"));
    /// assert!(!pattern.matches_str("orders.created"));
    /// assert!(Pattern::from_static(">").matches_str("anything.at.all"));
    /// ```
    pub fn matches_str(&self, topic: &str) -> bool {
        let mut topic_tokens = topic.split('.');
        for pattern_token in self.tokens() {
            match (pattern_token, topic_tokens.next()) {
                (_, None) => return false,
                (">", Some(_)) => return true,
                ("*", Some(_)) => {}
                (literal, Some(token)) if literal == token => {}
                _ => return false,
            }
        }
        topic_tokens.next().is_none()
    }
}

string_newtype_impls!(Pattern, check_pattern);

impl From<Topic> for Pattern {
    /// A topic is the literal pattern that matches only itself.
    fn from(topic: Topic) -> Pattern {
        // Topic rules are pattern rules minus the wildcards, so no check is needed.
        Pattern(topic.0)
    }
}
