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
    /// No subscription took the event: one with the `Reject` overflow policy was full (or,
    /// for `try_publish`, a `Block` one). Publishing it again is safe.
    Full(T),
    /// Some subscriptions (or taps) took the event and others refused it (full, or would
    /// block). The [`PartialPublish`] says which; retry for the refusers only, with
    /// [`Bus::try_publish_to_only`](crate::Bus::try_publish_to_only), so the others do not
    /// get it twice.
    Partial(T, PartialPublish),
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
            | PublishError::Partial(t, _)
            | PublishError::WouldBlock(t)
            | PublishError::InvalidTopic(t, _) => t,
        }
    }

    /// Borrows the event that was not published.
    pub fn event(&self) -> &T {
        match self {
            PublishError::Closed(t)
            | PublishError::Full(t)
            | PublishError::Partial(t, _)
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
            PublishError::Partial(_, p) => write!(f, "Partial(.., {p:?})"),
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
            PublishError::Partial(_, p) => write!(
                f,
                "published to {} subscription(s), refused by {} whose queue is full",
                p.took.len(),
                p.refused.len()
            ),
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

/// Which subscriptions took a publish that others refused, by
/// [`Subscription::id`](crate::Subscription::id) (a consumer has one too, inside the bus).
///
/// Returned in [`PublishError::Partial`]. An all-or-nothing multi-subscription publish is
/// not offered: an inline handler has run and a lock-free queue has taken the event before
/// a later subscription refuses, and neither can be undone; so the error says who has it,
/// and a retry targets the rest.
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bus, Event, Overflow, PublishError};
/// # #[derive(Clone, Debug, PartialEq)] struct Ping(u32);
/// # impl Event for Ping { const TYPE: &'static str = "ping"; }
///
/// let bus = Bus::new();
/// let roomy = bus.subscribe::<Ping>("ping")?.inline(|_| {})?;
/// let (tx, rx) = std::sync::mpsc::channel::<()>();
/// let rx = std::sync::Mutex::new(rx);
/// let tight = bus.subscribe::<Ping>("ping")?
///     .capacity(1)
///     .overflow(Overflow::Reject)
///     .queued(move |_| { let _ = rx.lock().unwrap().recv(); })?;
/// bus.try_publish(Ping(0))?; // the worker takes it and waits
/// while tight.metrics().pending > 0 { std::thread::yield_now(); }
/// bus.try_publish(Ping(1))?; // fills the one slot
/// match bus.try_publish(Ping(2)) {
///     Err(PublishError::Partial(event, partial)) => {
///         assert_eq!(partial.took, [roomy.id()]);
///         assert_eq!(partial.refused, [tight.id()]);
///         drop(tx); // let the worker go
///         // Retry for the refusers only, once they have room: the inline one has it.
///         let n = loop {
///             match bus.try_publish_to_only("ping", event.clone(), &partial.refused) {
///                 Err(PublishError::Full(_)) => std::thread::yield_now(),
///                 other => break other?,
///             }
///         };
///         assert_eq!(n, 1);
///         assert_eq!(roomy.metrics().delivered, 3);
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartialPublish {
    /// The subscriptions that took the event, in subscription order (taps made
    /// [`receiver`](crate::TapBuilder::receiver)s among them).
    pub took: Vec<u64>,
    /// The subscriptions and taps that refused it, in subscription order.
    pub refused: Vec<u64>,
    /// The taps that took it and only observe (not counted as receivers), in subscription
    /// order. They have it too: a retry skips them. `took` empty with `observed` not means
    /// no subscription received the event, only taps saw it.
    pub observed: Vec<u64>,
}

impl PartialPublish {
    pub(crate) fn new(took: Vec<u64>, refused: Vec<u64>, observed: Vec<u64>) -> Self {
        PartialPublish {
            took,
            refused,
            observed,
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
