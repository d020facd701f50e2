//! What a handler returns when it fails, and how the layers classify it.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a handler failed, and whether trying again may help.
///
/// The layers decide on the kind alone: retry only retries [`is_retryable`] errors, the
/// dead-letter layer records the error chain. Nothing downcasts.
///
/// [`is_retryable`]: HandlerError::is_retryable
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_workflow::{ErrorKind, HandlerError};
///
/// let e = HandlerError::retryable("inventory service returned 503")
///     .retry_after(Duration::from_secs(2));
/// assert!(e.is_retryable());
/// assert_eq!(e.retry_after_hint(), Some(Duration::from_secs(2)));
///
/// let e = HandlerError::permanent("order has no lines");
/// assert_eq!(e.kind(), ErrorKind::Permanent);
/// assert!(!e.is_retryable());
/// ```
#[derive(Debug)]
pub struct HandlerError {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// The kind of a [`HandlerError`].
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{ErrorKind, HandlerError};
/// let e = HandlerError::new(ErrorKind::Timeout, "ledger did not answer in 2 s");
/// assert_eq!(e.kind(), ErrorKind::Timeout);
/// assert!(e.kind().is_retryable());
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
    /// use syncbus_workflow::ErrorKind;
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
    /// assert_eq!(syncbus_workflow::ErrorKind::CircuitOpen.as_str(), "circuit_open");
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
    /// use syncbus_workflow::ErrorKind;
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

impl HandlerError {
    /// An error of `kind` with a message.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::{ErrorKind, HandlerError};
    /// let e = HandlerError::new(ErrorKind::Timeout, "ledger did not answer");
    /// assert!(e.is_retryable());
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> HandlerError {
        HandlerError {
            kind,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// A transient failure: the retry layer tries again.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_workflow::HandlerError::retryable("busy").is_retryable());
    /// ```
    pub fn retryable(message: impl Into<String>) -> HandlerError {
        HandlerError::new(ErrorKind::Retryable, message)
    }

    /// A failure no retry can fix: the event goes to dead letters.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!syncbus_workflow::HandlerError::permanent("no such sku").is_retryable());
    /// ```
    pub fn permanent(message: impl Into<String>) -> HandlerError {
        HandlerError::new(ErrorKind::Permanent, message)
    }

    /// Asks the retry layer to wait at least `after` before the next attempt (an HTTP
    /// `Retry-After`, a rate limit's reset time).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let e = syncbus_workflow::HandlerError::retryable("429").retry_after(Duration::from_secs(30));
    /// assert_eq!(e.retry_after_hint(), Some(Duration::from_secs(30)));
    /// ```
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Attaches the underlying cause; it shows in [`chain`](Self::chain) and `source()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::HandlerError;
    /// let io = std::io::Error::other("connection reset");
    /// let e = HandlerError::retryable("charge failed").with_source(io);
    /// assert_eq!(e.chain(), vec!["charge failed".to_string(), "connection reset".to_string()]);
    /// ```
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::{ErrorKind, HandlerError};
    /// assert_eq!(HandlerError::permanent("x").kind(), ErrorKind::Permanent);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether another attempt may succeed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::HandlerError;
    /// assert!(HandlerError::retryable("x").is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The delay the handler asked for, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::HandlerError;
    /// assert_eq!(HandlerError::retryable("x").retry_after_hint(), None);
    /// ```
    pub fn retry_after_hint(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The message, without the kind.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::HandlerError;
    /// assert_eq!(HandlerError::permanent("bad sku").message(), "bad sku");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message followed by every cause's text, outermost first: what the dead-letter
    /// store records.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::HandlerError;
    /// assert_eq!(HandlerError::permanent("bad sku").chain(), vec!["bad sku".to_string()]);
    /// ```
    pub fn chain(&self) -> Vec<String> {
        let mut out = vec![self.message.clone()];
        let mut next = StdError::source(self);
        while let Some(e) = next {
            out.push(e.to_string());
            next = e.source();
        }
        out
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.kind, self.message)
    }
}

impl StdError for HandlerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Classifies any error at the `?`: `.retryable()?` or `.permanent()?`.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{HandlerError, ResultExt};
///
/// fn parse(qty: &str) -> Result<u32, HandlerError> {
///     let n: u32 = qty.parse().permanent()?;
///     Ok(n)
/// }
/// assert_eq!(parse("3").unwrap(), 3);
/// let e = parse("three").unwrap_err();
/// assert!(!e.is_retryable());
/// assert_eq!(e.message(), "invalid digit found in string");
/// ```
pub trait ResultExt<T> {
    /// Maps the error to a [`ErrorKind::Retryable`] [`HandlerError`].
    ///
    /// # Errors
    ///
    /// The mapped error.
    fn retryable(self) -> Result<T, HandlerError>;
    /// Maps the error to a [`ErrorKind::Permanent`] [`HandlerError`].
    ///
    /// # Errors
    ///
    /// The mapped error.
    fn permanent(self) -> Result<T, HandlerError>;
}

impl<T, E> ResultExt<T> for Result<T, E>
where
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    fn retryable(self) -> Result<T, HandlerError> {
        self.map_err(|e| classify(ErrorKind::Retryable, e.into()))
    }

    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(|e| classify(ErrorKind::Permanent, e.into()))
    }
}

fn classify(kind: ErrorKind, e: Box<dyn StdError + Send + Sync>) -> HandlerError {
    // The cause's own sources stay reachable through `source()`; its text is the message.
    let message = e.to_string();
    match e.source() {
        Some(_) => HandlerError {
            kind,
            message,
            retry_after: None,
            source: Some(Box::new(Chained(e))),
        },
        None => HandlerError::new(kind, message),
    }
}

/// Keeps a cause's sources reachable without repeating its own message in the chain.
#[derive(Debug)]
struct Chained(Box<dyn StdError + Send + Sync>);

impl fmt::Display for Chained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.source() {
            Some(s) => fmt::Display::fmt(s, f),
            None => fmt::Display::fmt(&self.0, f),
        }
    }
}

impl StdError for Chained {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source().and_then(|s| s.source())
    }
}
