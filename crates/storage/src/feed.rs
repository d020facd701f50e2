//! Recording bus traffic into an [`EventLog`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use syncbus_core::{
    Bus, Bytes, Envelope, Event, EventId, SubscribeError, Subscription, TapPayload, Tapped,
};

use crate::into_arc::IntoArc;
use crate::EventLog;

/// A bus subscription that appends every matching event to a log, in publish order, so a
/// [`DurableConsumer`](crate::DurableConsumer) can read it: bytes events
/// ([`bytes`](Self::bytes)), one typed event type ([`typed`](Self::typed)), or every event
/// whatever its type, through a tap ([`tap`](Self::tap)).
///
/// The subscription is queued with one async worker: `publish` returns before the append, so
/// an event is durable only some time after publishing returns. A publisher that needs "Ok
/// means stored" calls [`EventLog::append`] itself. An append that fails is counted in
/// [`failed`](Self::failed), logged with `tracing` at ERROR, and counted as a handler
/// failure in the subscription's metrics; it is never silent.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata};
/// use syncbus_storage::{EventLog, LogFeed, MemoryStore};
///
/// let bus = Bus::new();
/// let log = Arc::new(MemoryStore::new());
/// let feed = LogFeed::bytes(&bus, "orders.>", log.clone())?;
/// let meta = Metadata::new(EventType::new("order.placed").unwrap()).with_topic(syncbus_envelope::Topic::from_static("orders.placed"));
/// bus.blocking_publish_envelope(Envelope::new(meta, Bytes::from_static(b"{}"))).unwrap();
/// while feed.appended() < 1 {
///     tokio::time::sleep(Duration::from_millis(5)).await;
/// }
/// assert_eq!(log.read(0, 10).await?.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
#[must_use = "dropping a LogFeed stops appending bus events to the log"]
pub struct LogFeed {
    subscription: Subscription,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    appended: AtomicU64,
    failed: AtomicU64,
}

impl LogFeed {
    /// Records events published as bytes (`Envelope<Bytes>`) on topics matching `pattern`.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_core::{Bus, SubscribeError};
    /// use syncbus_storage::{LogFeed, MemoryStore};
    /// let bus = Bus::new();
    /// assert!(LogFeed::bytes(&bus, "orders.>", MemoryStore::new()).is_ok());
    /// let bad = LogFeed::bytes(&bus, "orders..x", MemoryStore::new());
    /// assert!(matches!(bad, Err(SubscribeError::InvalidPattern(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`SubscribeError`] for a bad pattern, a closed bus, or no tokio runtime.
    pub fn bytes(
        bus: &Bus,
        pattern: &str,
        log: impl IntoArc<dyn EventLog>,
    ) -> Result<LogFeed, SubscribeError> {
        LogFeed::start::<Bytes>(bus, pattern, log.into_arc(), Ok)
    }

    /// Records typed events `E` on topics matching `pattern`, serialized with the envelope's
    /// JSON payload encoding (`Envelope::to_bytes_payload`).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use syncbus_core::{Bus, Event};
    /// use syncbus_storage::{EventLog, LogFeed, MemoryStore};
    ///
    /// #[derive(Clone, Debug, serde::Serialize)]
    /// struct Shipped { order: u64 }
    /// impl Event for Shipped { const TYPE: &'static str = "order.shipped"; const TOPIC: &'static str = "orders.shipped"; }
    ///
    /// let bus = Bus::new();
    /// let log = Arc::new(MemoryStore::new());
    /// let feed = LogFeed::typed::<Shipped>(&bus, "orders.*", log.clone())?;
    /// bus.publish(Shipped { order: 7 }).await.unwrap();
    /// while feed.appended() < 1 {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// let stored = &log.read(0, 1).await?[0].envelope;
    /// assert_eq!(stored.meta().event_type().as_str(), "order.shipped");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`bytes`](Self::bytes).
    pub fn typed<E: Event + Serialize>(
        bus: &Bus,
        pattern: &str,
        log: impl IntoArc<dyn EventLog>,
    ) -> Result<LogFeed, SubscribeError> {
        LogFeed::start::<E>(bus, pattern, log.into_arc(), |env| {
            env.to_bytes_payload().map_err(|e| e.to_string())
        })
    }

    /// Records every event on topics matching `pattern`, whatever its payload type, through
    /// a tap ([`Bus::tap`]): bytes envelopes as they are, typed events encoded by their
    /// [`Event::encode`] (JSON with `Encoded::json`, the same bytes [`typed`](Self::typed)
    /// stores). No type has to be listed, and events relayed from an outbox as bytes are
    /// recorded too.
    ///
    /// The feed's tap is a [`receiver`](syncbus_core::TapBuilder::receiver): an event it
    /// took counts in the publish's `Ok(n)`, as with [`bytes`](Self::bytes) and
    /// [`typed`](Self::typed) feeds, because it is then in the log. So the outbox relay
    /// marks sent an event only this feed took: it is stored, for a durable consumer to
    /// read.
    ///
    /// An event whose type does not encode (its `Event::encode` is the default, `None`)
    /// has no payload to store, and a log entry without one would not decode for any
    /// consumer: it is **not appended**, but counted in [`failed`](Self::failed), logged at
    /// ERROR with its id, type and the fix (override `Event::encode`), and counted as a
    /// handler failure of the subscription. A failed encoding is treated the same way.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use syncbus_core::{Bus, Bytes, Encoded, EncodeError, Envelope, Event, EventType, Metadata, Topic};
    /// use syncbus_storage::{EventLog, LogFeed, MemoryStore};
    ///
    /// #[derive(Clone, Debug, serde::Serialize)]
    /// struct Shipped { order: u64 }
    /// impl Event for Shipped {
    ///     const TYPE: &'static str = "order.shipped";
    ///     const TOPIC: &'static str = "orders.shipped";
    ///     fn encode(&self) -> Option<Result<Encoded, EncodeError>> { Some(Encoded::json(self)) }
    /// }
    ///
    /// let bus = Bus::new();
    /// let log = Arc::new(MemoryStore::new());
    /// let feed = LogFeed::tap(&bus, "orders.>", log.clone())?;
    /// assert_eq!(bus.publish(Shipped { order: 7 }).await?, 1); // the feed is a receiver
    /// let meta = Metadata::new(EventType::new("order.paid")?).with_topic(Topic::new("orders.paid")?);
    /// bus.publish_envelope(Envelope::new(meta, Bytes::from_static(b"{}"))).await?;
    /// while feed.appended() < 2 {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// let stored = log.read(0, 10).await?;
    /// assert_eq!(stored[0].envelope.payload().as_ref(), br#"{"order":7}"#);
    /// assert_eq!(stored[1].envelope.meta().event_type().as_str(), "order.paid");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`bytes`](Self::bytes).
    pub fn tap(
        bus: &Bus,
        pattern: &str,
        log: impl IntoArc<dyn EventLog>,
    ) -> Result<LogFeed, SubscribeError> {
        let log = log.into_arc();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let subscription = bus
            .tap(pattern)?
            .name(format!("log-feed {pattern}"))
            .receiver()
            .queued_async(move |tapped: Tapped| {
                let (log, counts) = (log.clone(), c.clone());
                async move {
                    let id = tapped.id().clone();
                    let bytes = tapped.into_envelope().map_err(|t| unstorable(&t));
                    append(&*log, &counts, id, bytes).await
                }
            })?;
        Ok(LogFeed {
            subscription,
            counts,
        })
    }

    fn start<P: syncbus_core::Payload>(
        bus: &Bus,
        pattern: &str,
        log: Arc<dyn EventLog>,
        to_bytes: fn(Envelope<P>) -> Result<Envelope<Bytes>, String>,
    ) -> Result<LogFeed, SubscribeError> {
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let subscription = bus
            .subscribe::<P>(pattern)?
            .name(format!("log-feed {pattern}"))
            .workers(1)
            .queued_async(move |env: Envelope<P>| {
                let (log, counts) = (log.clone(), c.clone());
                async move {
                    let id = env.id().clone();
                    append(&*log, &counts, id, to_bytes(env)).await
                }
            })?;
        Ok(LogFeed {
            subscription,
            counts,
        })
    }

    /// Events appended so far.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_core::Bus;
    /// use syncbus_storage::{LogFeed, MemoryStore};
    /// let feed = LogFeed::bytes(&Bus::new(), ">", MemoryStore::new())?;
    /// assert_eq!(feed.appended(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn appended(&self) -> u64 {
        self.counts.appended.load(Ordering::Relaxed)
    }

    /// Events whose append failed (each also logged at ERROR).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_core::Bus;
    /// use syncbus_storage::{LogFeed, MemoryStore};
    /// let feed = LogFeed::bytes(&Bus::new(), ">", MemoryStore::new())?;
    /// assert_eq!(feed.failed(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Relaxed)
    }

    /// The underlying bus subscription (its metrics, its pattern).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_core::Bus;
    /// use syncbus_storage::{LogFeed, MemoryStore};
    /// let feed = LogFeed::bytes(&Bus::new(), "a.>", MemoryStore::new())?;
    /// assert_eq!(feed.subscription().pattern().as_str(), "a.>");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// Stops recording, waiting up to `timeout` for queued events to be appended. Returns
    /// `true` if the queue drained.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use syncbus_core::Bus;
    /// use syncbus_storage::{LogFeed, MemoryStore};
    /// let feed = LogFeed::bytes(&Bus::new(), ">", MemoryStore::new())?;
    /// assert!(tokio::task::spawn_blocking(move || feed.stop(Duration::from_secs(1))).await?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn stop(self, timeout: std::time::Duration) -> bool {
        self.subscription.unsubscribe_and_wait(timeout)
    }
}

/// Appends one event (or records why it could not be) and counts the outcome.
async fn append(
    log: &dyn EventLog,
    counts: &Counts,
    id: EventId,
    bytes: Result<Envelope<Bytes>, String>,
) -> Result<(), String> {
    let result = match bytes {
        Ok(bytes) => log.append(bytes).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match &result {
        Ok(_) => counts.appended.fetch_add(1, Ordering::Relaxed),
        Err(e) => {
            tracing::error!(event = %id, error = %e, "log feed: append failed");
            counts.failed.fetch_add(1, Ordering::Relaxed)
        }
    };
    result.map(|_| ())
}

/// Why a tapped event cannot be stored: it has no payload.
#[cold]
fn unstorable(tapped: &Tapped) -> String {
    let event_type = tapped.meta().event_type();
    let rust_type = tapped.payload_type();
    match tapped.payload() {
        TapPayload::Failed(e) => {
            let cause = std::error::Error::source(&**e).map(|s| format!(": {s}"));
            format!(
                "event type {event_type} ({rust_type}) did not encode: {e}{}",
                cause.unwrap_or_default()
            )
        }
        _ => format!(
            "event type {event_type} ({rust_type}) has no payload to store: its Event::encode \
             returns None; override it, e.g. with Some(Encoded::json(self)) for a Serialize type"
        ),
    }
}
