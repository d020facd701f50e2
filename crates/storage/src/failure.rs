//! How a handler failed, as the workflow layers decide on it and dead letters record it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a handler failed: the kind of the workflow crate's `HandlerError`, and what a
/// [`DeadLetterRecord`](crate::DeadLetterRecord) keeps of it.
///
/// # Examples
///
/// ```
/// use syncbus_storage::ErrorKind;
/// assert!(ErrorKind::Timeout.is_retryable());
/// assert_eq!(ErrorKind::parse(ErrorKind::Decode.as_str()), Some(ErrorKind::Decode));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A transient failure (a timeout downstream, a 503): retried with backoff.
    Retryable,
    /// Retrying cannot help (bad data, a rule violated): straight to dead letters.
    Permanent,
    /// The attempt took longer than its timeout: retried.
    Timeout,
    /// The handler panicked. Treated as permanent: a bug does not fix itself on retry;
    /// the event is dead-lettered and can be redriven after the fix.
    Panicked,
    /// The circuit breaker is open and its policy dead-letters rather than waits: not
    /// retried.
    CircuitOpen,
    /// A follow-up event could not be published (a full queue): retried.
    Emit,
    /// The event could not be decoded for this handler (a redriven or stored envelope whose
    /// payload is not the handler's type): permanent.
    Decode,
}

impl ErrorKind {
    /// Whether an error of this kind is worth another attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_storage::ErrorKind;
    /// assert!(ErrorKind::Timeout.is_retryable());
    /// assert!(!ErrorKind::Panicked.is_retryable());
    /// ```
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Retryable | ErrorKind::Timeout | ErrorKind::Emit
        )
    }

    /// The kind's name as stored in dead letters: `retryable`, `permanent`, `timeout`, ...
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_storage::ErrorKind::CircuitOpen.as_str(), "circuit_open");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Panicked => "panicked",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Emit => "emit",
            ErrorKind::Decode => "decode",
        }
    }

    /// Parses [`as_str`](Self::as_str) back; `None` for an unknown name.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_storage::ErrorKind;
    /// assert_eq!(ErrorKind::parse("timeout"), Some(ErrorKind::Timeout));
    /// assert_eq!(ErrorKind::parse("bogus"), None);
    /// ```
    pub fn parse(s: &str) -> Option<ErrorKind> {
        Some(match s {
            "retryable" => ErrorKind::Retryable,
            "permanent" => ErrorKind::Permanent,
            "timeout" => ErrorKind::Timeout,
            "panicked" => ErrorKind::Panicked,
            "circuit_open" => ErrorKind::CircuitOpen,
            "emit" => ErrorKind::Emit,
            "decode" => ErrorKind::Decode,
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
