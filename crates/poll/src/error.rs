//! [`PollError`]: why one poll failed.

use std::time::Duration;

use syncbus_storage::StoreError;

/// Why one poll (or the store behind the poller) failed. The poller backs off on every one
/// of them and polls again; [`retry_after`](Self::retry_after) is honoured when the upstream
/// named a time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_poll::PollError;
/// let e = PollError::Throttled { status: 429, retry_after: Some(Duration::from_secs(2)) };
/// assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
/// assert_eq!(e.to_string(), "throttled (status 429), retry after 2s");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// 429 or 503: the upstream asked to wait (`Retry-After`, when it said how long).
    #[error("throttled (status {status}){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs_f64())).unwrap_or_default())]
    Throttled {
        /// The HTTP status.
        status: u16,
        /// The upstream's `Retry-After`, as a delay.
        retry_after: Option<Duration>,
    },
    /// Any other status that is not 2xx or 304.
    #[error("unexpected status {status}: {excerpt}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body (512 bytes at most).
        excerpt: String,
    },
    /// The request did not finish within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connecting, sending or reading failed.
    #[error("transport: {0}")]
    Transport(#[source] reqwest::Error),
    /// The body is larger than the configured limit.
    #[error("body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(#[source] serde_json::Error),
    /// The body or an item lacks a field the mapping needs, or has it with the wrong type.
    #[error("item {index}: {problem}")]
    Item {
        /// The item's position in the page (`usize::MAX` for the page itself).
        index: usize,
        /// What is missing or wrong, naming the JSON pointer.
        problem: String,
    },
    /// The page is not shaped as the source expects (no items array, a cursor that is not
    /// text).
    #[error("malformed page: {0}")]
    Page(String),
    /// Reading or writing the cursor failed.
    #[error("checkpoint: {0}")]
    Store(#[from] StoreError),
    /// A source of your own failed.
    #[error("{0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl PollError {
    /// Wraps an error of a source of your own.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_poll::PollError;
    /// let e = PollError::other(std::io::Error::other("upstream down"));
    /// assert_eq!(e.to_string(), "upstream down");
    /// ```
    pub fn other(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PollError {
        PollError::Other(e.into())
    }

    /// How long the upstream asked to wait, if it did.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_poll::PollError;
    /// assert_eq!(PollError::Page("no items".into()).retry_after(), None);
    /// ```
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            PollError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
