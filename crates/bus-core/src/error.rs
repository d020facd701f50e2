use std::error::Error;
use std::fmt;

use syncbus_envelope::NameError;

/// A publish that did not go through. The event comes back, so nothing is lost.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{Bus, PublishError};
/// # #[derive(Clone, Debug, PartialEq)] struct Ping(u32);
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// let bus = Bus::new();
/// bus.blocking_shutdown(Duration::from_secs(1));
/// match bus.blocking_publish(Ping(7)) {
///     Err(PublishError::Closed(event)) => assert_eq!(event, Ping(7)),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[non_exhaustive]
pub enum PublishError<T> {
    /// The bus is shut down.
    Closed(T),
    /// A subscription with the `Reject` overflow policy is full. Subscriptions that had room
    /// received the event; publishing it again may deliver it to them twice.
    Full(T),
    /// The topic name is not valid.
    InvalidTopic(T, NameError),
    /// A subscription with the `Block` policy is full, and waiting for room here would stall
    /// the tokio runtime that has to make it (`blocking_publish` on a current-thread
    /// runtime). Use `publish(..).await` from async code.
    WouldBlock(T),
}

impl<T> PublishError<T> {
    /// The event that was not published.
    pub fn into_inner(self) -> T {
        match self {
            PublishError::Closed(t)
            | PublishError::Full(t)
            | PublishError::WouldBlock(t)
            | PublishError::InvalidTopic(t, _) => t,
        }
    }

    /// Borrows the event that was not published.
    pub fn event(&self) -> &T {
        match self {
            PublishError::Closed(t)
            | PublishError::Full(t)
            | PublishError::WouldBlock(t)
            | PublishError::InvalidTopic(t, _) => t,
        }
    }
}

impl<T> fmt::Debug for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Closed(_) => f.write_str("Closed(..)"),
            PublishError::Full(_) => f.write_str("Full(..)"),
            PublishError::InvalidTopic(_, e) => write!(f, "InvalidTopic(.., {e:?})"),
            PublishError::WouldBlock(_) => f.write_str("WouldBlock(..)"),
        }
    }
}

impl<T> fmt::Display for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Closed(_) => f.write_str("publish on a closed bus"),
            PublishError::Full(_) => f.write_str("a subscription's queue is full"),
            PublishError::InvalidTopic(_, e) => write!(f, "invalid topic: {e}"),
            PublishError::WouldBlock(_) => f.write_str(
                "a subscription's queue is full and waiting here would stall the async runtime; \
                 use publish(..).await",
            ),
        }
    }
}

impl<T> Error for PublishError<T> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PublishError::InvalidTopic(_, e) => Some(e),
            _ => None,
        }
    }
}

/// A subscription or consumer that could not be created.
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bus, SubscribeError};
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// let bus = Bus::new();
/// let err = bus.subscribe::<Ping>("orders.>.eu").unwrap_err();
/// assert!(matches!(err, SubscribeError::InvalidPattern(_)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The pattern is not valid.
    InvalidPattern(NameError),
    /// The bus is shut down.
    Closed,
    /// An async handler needs a tokio runtime, and none is running on this thread.
    NoRuntime,
    /// A worker thread could not be started.
    Spawn(std::io::Error),
    /// A setting is out of range.
    InvalidConfig(&'static str),
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::InvalidPattern(e) => write!(f, "invalid pattern: {e}"),
            SubscribeError::Closed => f.write_str("subscribe on a closed bus"),
            SubscribeError::NoRuntime => {
                f.write_str("async handlers need a tokio runtime: subscribe from inside one")
            }
            SubscribeError::Spawn(e) => write!(f, "could not start a worker thread: {e}"),
            SubscribeError::InvalidConfig(what) => write!(f, "invalid configuration: {what}"),
        }
    }
}

impl Error for SubscribeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SubscribeError::InvalidPattern(e) => Some(e),
            SubscribeError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

impl From<NameError> for SubscribeError {
    fn from(e: NameError) -> Self {
        SubscribeError::InvalidPattern(e)
    }
}
