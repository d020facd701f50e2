//! The errors of building and running a topology.

use std::error::Error as StdError;
use std::fmt;

use syncbus_storage::StoreError;

/// A boxed error from a source, a delivery or the bus.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A window, watermark or runner setting that cannot work.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_stream::{ConfigError, Windows};
///
/// let err = Windows::tumbling(Duration::ZERO).unwrap_err();
/// assert!(matches!(err, ConfigError::Zero { .. }));
/// assert_eq!(err.to_string(), "window size must be at least one millisecond");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be at least a millisecond was shorter.
    Zero {
        /// Which setting.
        what: &'static str,
    },
    /// A duration too long to count in milliseconds of an `i64` (some 292 million years).
    TooLong {
        /// Which setting.
        what: &'static str,
    },
    /// A hopping window advancing by more than its size would skip events.
    AdvanceExceedsSize {
        /// The window size in milliseconds.
        size_ms: i64,
        /// The advance in milliseconds.
        advance_ms: i64,
    },
    /// A count that must be at least one was zero.
    ZeroCount {
        /// Which setting.
        what: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero { what } => write!(f, "{what} must be at least one millisecond"),
            ConfigError::TooLong { what } => {
                write!(f, "{what} is too long to count in milliseconds")
            }
            ConfigError::AdvanceExceedsSize {
                size_ms,
                advance_ms,
            } => write!(
                f,
                "a hopping window advancing by {advance_ms} ms skips events: its size is only {size_ms} ms"
            ),
            ConfigError::ZeroCount { what } => write!(f, "{what} must be at least one"),
        }
    }
}

impl StdError for ConfigError {}

/// What stopped a running topology, or a checkpoint that could not be read or written.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{ConfigError, StreamError};
///
/// let err = StreamError::from(ConfigError::ZeroCount { what: "batch" });
/// assert_eq!(err.to_string(), "bad stream setting: batch must be at least one");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamError {
    /// A setting that cannot work.
    Config(ConfigError),
    /// The source failed to hand out deliveries.
    Source(BoxError),
    /// A delivery could not be settled (acked after its checkpoint).
    Settle(BoxError),
    /// An output could not be published to the bus.
    Publish(BoxError),
    /// The checkpoint store failed.
    Store(StoreError),
    /// A checkpoint could not be encoded (a key or a value whose `Serialize` fails).
    Encode(BoxError),
    /// The stored checkpoint is not one this topology can restore: another shape, another
    /// version, or bytes that do not decode.
    Checkpoint(String),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Config(e) => write!(f, "bad stream setting: {e}"),
            StreamError::Source(e) => write!(f, "the source failed: {e}"),
            StreamError::Settle(e) => write!(f, "a delivery could not be acked: {e}"),
            StreamError::Publish(e) => write!(f, "an output could not be published: {e}"),
            StreamError::Store(e) => write!(f, "the checkpoint store failed: {e}"),
            StreamError::Encode(e) => write!(f, "the state could not be encoded: {e}"),
            StreamError::Checkpoint(why) => write!(f, "the checkpoint cannot be restored: {why}"),
        }
    }
}

impl StdError for StreamError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            StreamError::Config(e) => Some(e),
            StreamError::Source(e)
            | StreamError::Settle(e)
            | StreamError::Publish(e)
            | StreamError::Encode(e) => Some(&**e),
            StreamError::Store(e) => Some(e),
            StreamError::Checkpoint(_) => None,
        }
    }
}

impl From<ConfigError> for StreamError {
    fn from(e: ConfigError) -> Self {
        StreamError::Config(e)
    }
}

impl From<StoreError> for StreamError {
    fn from(e: StoreError) -> Self {
        StreamError::Store(e)
    }
}
