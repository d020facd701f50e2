//! Recording bus traffic into an [`EventLog`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use syncbus_core::{Bus, Bytes, Envelope, Event, SubscribeError, Subscription};

use crate::into_arc::IntoArc;
use crate::EventLog;

/// A bus subscription that appends every matching event to a log, in publish order, so a
/// [`DurableConsumer`](crate::DurableConsumer) can read it.
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
                    let result = match to_bytes(env) {
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
