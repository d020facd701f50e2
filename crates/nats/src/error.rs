//! One error type per operation: setting up, publishing, fetching and settling.

use std::error::Error as StdError;
use std::fmt;

use syncbus_envelope::{Bytes, Envelope};

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why [`NatsBridge::connect`](crate::NatsBridge::connect) failed.
///
/// # Examples
///
/// ```
/// use syncbus_nats::{NatsConfig, SetupError};
/// let err = NatsConfig::new("nats://127.0.0.1:4222", "bad.name").check().unwrap_err();
/// assert!(matches!(err, SetupError::Invalid(_)));
/// assert!(err.to_string().contains("stream name"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A setting is out of range or a name is not allowed.
    #[error("invalid nats setting: {0}")]
    Invalid(String),
    /// The server could not be reached.
    #[error("cannot connect to {url}")]
    Connect {
        /// The server address.
        url: String,
        /// What the client said.
        #[source]
        source: BoxError,
    },
    /// The stream or the durable consumer could not be looked up or created.
    #[error("cannot set up {what}")]
    JetStream {
        /// The stream or consumer it was about.
        what: String,
        /// What the server said.
        #[source]
        source: BoxError,
    },
}

/// What kind of failure a [`PublishError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// The envelope could not be encoded (too many or too large headers, for instance).
    Encode,
    /// The publish buffer was full and the overflow policy is `Reject`.
    Full,
    /// No PubAck came within the retry span: the event may or may not be in the stream; a
    /// later publish of the same event id is dropped by the stream's duplicate window if it
    /// is.
    NoAck,
    /// The server refused the message (no stream on the subject, a limit, a bad subject).
    Rejected,
    /// The bridge is closed.
    Closed,
}

/// A publish that did not count as done; hands the envelope back.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::{Bytes, Envelope, EventType, Metadata};
/// use syncbus_nats::{PublishError, PublishErrorKind};
/// let env = Envelope::new(Metadata::new(EventType::new("a.b")?), Bytes::new());
/// let err = PublishError::new(PublishErrorKind::Full, "publish buffer full", env.clone());
/// assert_eq!(err.kind(), PublishErrorKind::Full);
/// assert_eq!(err.into_envelope().id(), env.id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PublishError {
    kind: PublishErrorKind,
    message: String,
    source: Option<BoxError>,
    envelope: Envelope<Bytes>,
}

impl PublishError {
    /// A publish error of `kind`, handing `envelope` back.
    ///
    /// # Examples
    ///
    /// See [`PublishError`].
    pub fn new(
        kind: PublishErrorKind,
        message: impl Into<String>,
        envelope: Envelope<Bytes>,
    ) -> PublishError {
        PublishError {
            kind,
            message: message.into(),
            source: None,
            envelope,
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> PublishError {
        self.source = Some(source.into());
        self
    }

    /// What kind of failure it is.
    ///
    /// # Examples
    ///
    /// See [`PublishError`].
    pub fn kind(&self) -> PublishErrorKind {
        self.kind
    }

    /// The envelope that was not published (or not confirmed).
    ///
    /// # Examples
    ///
    /// See [`PublishError`].
    pub fn envelope(&self) -> &Envelope<Bytes> {
        &self.envelope
    }

    /// Takes the envelope back.
    ///
    /// # Examples
    ///
    /// See [`PublishError`].
    pub fn into_envelope(self) -> Envelope<Bytes> {
        self.envelope
    }
}

impl fmt::Debug for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .field("event", self.envelope.id())
            .finish()
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "publish of event {} failed: {}",
            self.envelope.id(),
            self.message
        )
    }
}

impl StdError for PublishError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A fetch or a settle of the JetStream source that failed.
///
/// # Examples
///
/// ```
/// use syncbus_nats::SourceError;
/// let err = SourceError::Settle { what: "ack", source: "timed out".into() };
/// assert_eq!(err.to_string(), "ack failed");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Asking the server for messages failed (disconnected, the consumer was deleted).
    #[error("fetch from the durable consumer failed")]
    Fetch(#[source] BoxError),
    /// An ack, nak, term or in-progress was not confirmed.
    #[error("{what} failed")]
    Settle {
        /// Which settle.
        what: &'static str,
        /// What the client or server said.
        #[source]
        source: BoxError,
    },
}
