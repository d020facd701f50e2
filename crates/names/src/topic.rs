//! The topic and pattern rules, which follow NATS subjects:
//!
//! - A topic is one or more dot-separated tokens, such as `orders.eu.created`.
//! - A token is one or more printable ASCII characters (`0x21..=0x7E`) other than `.`, `*`
//!   and `>`. Empty tokens (leading, trailing or doubled dots) are refused.
//! - A topic or pattern is at most 256 bytes and 32 tokens.
//! - A pattern may also use two wildcard tokens: `*` matches exactly one token and `>`
//!   matches one or more trailing tokens, so it may only be the last token. A wildcard is
//!   always a whole token: `a*`, `*b` and `a>` are refused.
//!
//! Checking is a single pass over the bytes that stops at the first problem, scanning left
//! to right; the token count is checked last.

use crate::error::{len_problem, NameError, NameKind, NameReason};
use crate::utf8::char_at;

/// The maximum length of a topic or pattern, in bytes.
pub const TOPIC_MAX_LEN: usize = 256;

/// The maximum number of tokens in a topic or pattern.
pub const TOPIC_MAX_TOKENS: usize = 32;

const PARTIAL_WILDCARD: &str = "a wildcard must be a whole token";
const TAIL_NOT_LAST: &str = "'>' must be the last token";
const PRINTABLE: &str = "only printable ascii is allowed";

/// Checks a topic, such as `orders.eu.created`: dot-separated non-empty tokens of printable
/// ASCII, no wildcard, at most 256 bytes and 32 tokens.
///
/// # Examples
///
/// ```
/// use syncbus_names::{check_topic, NameReason};
///
/// assert!(check_topic("orders.eu.created").is_ok());
/// let err = check_topic("orders..created").unwrap_err();
/// assert_eq!(err.reason(), &NameReason::EmptyToken { index: 1, byte: 7 });
/// ```
///
/// # Errors
///
/// A [`NameError`] of kind [`NameKind::Topic`] saying what is wrong and where when `s` is
/// empty, too long, has too many tokens, an empty token, a character outside printable
/// ASCII, or a wildcard (`*` or `>`).
pub fn check_topic(s: &str) -> Result<(), NameError> {
    check(s, NameKind::Topic)
}

/// Checks a pattern, such as `orders.*.created` or `orders.>`: a topic whose tokens may also
/// be the wildcards `*` (one token) and `>` (the rest, last only).
///
/// # Examples
///
/// ```
/// use syncbus_names::{check_pattern, NameReason};
///
/// assert!(check_pattern(">").is_ok());
/// let err = check_pattern("orders.>.created").unwrap_err();
/// assert!(matches!(err.reason(), NameReason::MisplacedWildcard { byte: 7, .. }));
/// ```
///
/// # Errors
///
/// A [`NameError`] of kind [`NameKind::Pattern`] saying what is wrong and where when `s` is
/// empty, too long, has too many tokens, an empty token, a character outside printable
/// ASCII, a wildcard that is not a whole token, or a `>` that is not the last token.
pub fn check_pattern(s: &str) -> Result<(), NameError> {
    check(s, NameKind::Pattern)
}

/// Whether `s` is a valid topic (see [`check_topic`]); usable at compile time.
///
/// # Examples
///
/// ```
/// use syncbus_names::is_valid_topic;
///
/// const OK: bool = is_valid_topic("orders.placed");
/// assert!(OK);
/// assert!(!is_valid_topic("orders.>"));
/// ```
pub const fn is_valid_topic(s: &str) -> bool {
    problem(s, false).is_none()
}

fn check(s: &str, kind: NameKind) -> Result<(), NameError> {
    match problem(s, matches!(kind, NameKind::Pattern)) {
        Some(reason) => Err(NameError::new(kind, reason, s)),
        None => Ok(()),
    }
}

/// The first thing wrong with `s` as a topic, or as a pattern when `pattern`.
const fn problem(s: &str, pattern: bool) -> Option<NameReason> {
    if let Some(reason) = len_problem(s, TOPIC_MAX_LEN) {
        return Some(reason);
    }
    let bytes = s.as_bytes();
    let mut token_start = 0;
    let mut token_index = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'.' => {
                if i == token_start {
                    return Some(NameReason::EmptyToken {
                        index: token_index,
                        byte: i,
                    });
                }
                token_start = i + 1;
                token_index += 1;
            }
            b'*' | b'>' => {
                if !pattern {
                    return Some(NameReason::WildcardInTopic { byte: i });
                }
                let has_next = i + 1 < bytes.len();
                if i != token_start || (has_next && bytes[i + 1] != b'.') {
                    return Some(NameReason::MisplacedWildcard {
                        byte: i,
                        rule: PARTIAL_WILDCARD,
                    });
                }
                if b == b'>' && has_next {
                    return Some(NameReason::MisplacedWildcard {
                        byte: i,
                        rule: TAIL_NOT_LAST,
                    });
                }
            }
            0x21..=0x7E => {}
            _ => {
                // Every byte before `i` is ASCII, so `i` starts a character.
                return Some(NameReason::InvalidChar {
                    ch: char_at(s, i),
                    byte: i,
                    rule: PRINTABLE,
                });
            }
        }
        i += 1;
    }
    if token_start == bytes.len() {
        return Some(NameReason::EmptyToken {
            index: token_index,
            byte: token_start,
        });
    }
    let count = token_index + 1;
    if count > TOPIC_MAX_TOKENS {
        return Some(NameReason::TooManyTokens {
            count,
            max: TOPIC_MAX_TOKENS,
        });
    }
    None
}
