//! Bus → JetStream: a bus subscription that publishes every matching event and counts it
//! once its PubAck is in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use syncbus_core::{Bus, Bytes, Envelope, Event, SubscribeError, Subscription};

use crate::publisher::NatsPublisher;

/// Lanes of the forwarding subscription: one entity's events go through one lane, in
/// publish order, each awaiting its PubAck; entities run in parallel.
const LANES: usize = 64;

/// Forwards bus events on topics matching a pattern to the stream, as a keyed bus
/// subscription (one entity's events published one after the other, in bus order, so they
/// reach the stream in that order).
///
/// An event counts in [`published`](Self::published) once the stream acknowledged it. One
/// whose publish failed for good (no PubAck within the retry span, or refused) is counted in
/// [`failed`](Self::failed), logged at ERROR, and counted as a handler failure in the
/// subscription's metrics; it is never silent. The bus hands events to the subscription
/// before they reach the stream: a process that must not lose an event across a crash
/// writes it to its outbox first (`Relay` publishes it onto the bus after the commit, and
/// this forwards it).
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata, Topic};
/// use syncbus_nats::{NatsBridge, NatsConfig};
///
/// let bus = Bus::new();
/// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
/// let outbound = bridge.forward(&bus, "orders.>")?;
/// let meta = Metadata::new(EventType::new("order.placed")?).with_topic(Topic::from_static("orders.placed"));
/// bus.publish_envelope(Envelope::new(meta, Bytes::from_static(b"{}"))).await?;
/// while outbound.published() < 1 {
///     tokio::time::sleep(Duration::from_millis(5)).await;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping an Outbound stops forwarding bus events"]
pub struct Outbound {
    subscription: Subscription,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    published: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicU64,
}

impl Outbound {
    /// Forwards events published as bytes (`Envelope<Bytes>`) on topics matching `pattern`.
    ///
    /// # Errors
    ///
    /// [`SubscribeError`] for a bad pattern, a closed bus, or no tokio runtime.
    ///
    /// # Examples
    ///
    /// See [`Outbound`].
    pub fn bytes(
        bus: &Bus,
        pattern: &str,
        publisher: NatsPublisher,
    ) -> Result<Outbound, SubscribeError> {
        Outbound::start::<Bytes>(bus, pattern, publisher, Ok)
    }

    /// Forwards typed events `E` on topics matching `pattern`, serialized with the envelope's
    /// JSON payload encoding (`Envelope::to_bytes_payload`).
    ///
    /// # Errors
    ///
    /// As [`bytes`](Self::bytes).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_core::{Bus, Event};
    /// use syncbus_nats::{NatsBridge, NatsConfig, Outbound};
    ///
    /// #[derive(Clone, Debug, serde::Serialize)]
    /// struct Shipped { order: u64 }
    /// impl Event for Shipped { const TYPE: &'static str = "order.shipped"; const TOPIC: &'static str = "orders.shipped"; }
    ///
    /// let bus = Bus::new();
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// let outbound = Outbound::typed::<Shipped>(&bus, "orders.*", bridge.publisher())?;
    /// bus.publish(Shipped { order: 7 }).await?;
    /// # let _ = outbound;
    /// # Ok(()) }
    /// ```
    pub fn typed<E: Event + serde::Serialize>(
        bus: &Bus,
        pattern: &str,
        publisher: NatsPublisher,
    ) -> Result<Outbound, SubscribeError> {
        Outbound::start::<E>(bus, pattern, publisher, |env| {
            env.to_bytes_payload().map_err(|e| e.to_string())
        })
    }

    fn start<P: syncbus_core::Payload>(
        bus: &Bus,
        pattern: &str,
        publisher: NatsPublisher,
        to_bytes: fn(Envelope<P>) -> Result<Envelope<Bytes>, String>,
    ) -> Result<Outbound, SubscribeError> {
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let subscription = bus
            .subscribe::<P>(pattern)?
            .name(format!("nats-outbound {pattern}"))
            .keyed(LANES)
            .queued_async(move |env: Envelope<P>| {
                let (publisher, counts) = (publisher.clone(), c.clone());
                async move {
                    let id = env.id().clone();
                    let result = match to_bytes(env) {
                        Ok(bytes) => publisher.publish(bytes).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    match &result {
                        Ok(p) if p.duplicate => counts.duplicates.fetch_add(1, Ordering::Relaxed),
                        Ok(_) => counts.published.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            tracing::error!(event = %id, error = %e, "nats outbound: publish failed");
                            counts.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    result.map(|_| ())
                }
            })?;
        Ok(Outbound {
            subscription,
            counts,
        })
    }

    /// Events the stream acknowledged as new.
    ///
    /// # Examples
    ///
    /// See [`Outbound`].
    pub fn published(&self) -> u64 {
        self.counts.published.load(Ordering::Relaxed)
    }

    /// Events the stream acknowledged as duplicates (their id was in the duplicate window).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_core::Bus;
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// let outbound = bridge.forward(&Bus::new(), "orders.>")?;
    /// assert_eq!((outbound.duplicates(), outbound.failed()), (0, 0));
    /// # Ok(()) }
    /// ```
    pub fn duplicates(&self) -> u64 {
        self.counts.duplicates.load(Ordering::Relaxed)
    }

    /// Events whose publish failed for good (each also logged at ERROR).
    ///
    /// # Examples
    ///
    /// See [`duplicates`](Self::duplicates).
    pub fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Relaxed)
    }

    /// The underlying bus subscription (its metrics, its pattern).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_core::Bus;
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// let outbound = bridge.forward(&Bus::new(), "orders.>")?;
    /// assert_eq!(outbound.subscription().pattern().as_str(), "orders.>");
    /// # Ok(()) }
    /// ```
    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// Stops forwarding, waiting up to `timeout` for queued events to be published. Returns
    /// `true` if the queue drained. Blocks the thread: call it from `spawn_blocking`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use syncbus_core::Bus;
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// let outbound = bridge.forward(&Bus::new(), "orders.>")?;
    /// assert!(tokio::task::spawn_blocking(move || outbound.stop(Duration::from_secs(5))).await?);
    /// # Ok(()) }
    /// ```
    pub fn stop(self, timeout: std::time::Duration) -> bool {
        self.subscription.unsubscribe_and_wait(timeout)
    }
}
