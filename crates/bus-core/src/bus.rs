//! The bus handle: publish, subscribe, consume, shut down.

use std::sync::Arc;
use std::time::Duration;

use syncbus_envelope::{Envelope, Event, NameError, Pattern, Payload, Topic};

use crate::dispatch::{
    deliver_all_async, dispatch, finish_publish, no_topic, outcome, publish_event, start_publish,
    unrouted, Started,
};
use crate::error::{PublishError, SubscribeError};
use crate::hub::Hub;
use crate::metrics::BusMetrics;
use crate::publisher::Publisher;
use crate::pull::{Consumer, ConsumerConfig};
use crate::settled::{wait_settled, Busy, Unsettled};
use crate::shutdown::{self, ShutdownReport};
use crate::sink::{Pack, Wait};
use crate::subscription::SubscribeBuilder;
use crate::tap::TapBuilder;

/// An in-process event bus. Cheap to clone: clones share one bus.
///
/// Events are routed by topic (`orders.eu.created`) to subscriptions whose pattern matches
/// (`orders.*.created`, `orders.>`) and whose payload type is the published type. Publishing
/// never takes a lock; see the crate docs for delivery, ordering and overflow semantics.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use syncbus_core::{Bus, Event};
///
/// #[derive(Clone, Debug)]
/// struct OrderPlaced { total_cents: u64 }
/// impl Event for OrderPlaced { const TYPE: &'static str = "orders.placed"; }
///
/// let bus = Bus::new();
/// let revenue = Arc::new(AtomicU64::new(0));
/// let r = revenue.clone();
/// let _sub = bus.subscribe::<OrderPlaced>("orders.*")?.inline(move |env| {
///     r.fetch_add(env.payload().total_cents, Ordering::Relaxed);
/// })?;
/// bus.blocking_publish(OrderPlaced { total_cents: 1250 })?;
/// assert_eq!(revenue.load(Ordering::Relaxed), 1250);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Bus {
    hub: Arc<Hub>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    /// Creates a bus with no subscriptions.
    ///
    /// # Examples
    ///
    /// ```
    /// let bus = syncbus_core::Bus::new();
    /// assert!(!bus.is_closed());
    /// ```
    pub fn new() -> Bus {
        Bus {
            hub: Arc::new(Hub::new()),
        }
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    ///
    /// # Examples
    ///
    /// ```
    /// let bus = syncbus_core::Bus::new();
    /// bus.blocking_shutdown(std::time::Duration::from_millis(10));
    /// assert!(bus.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.hub.is_closed()
    }

    /// Publishes a typed event on its default topic, [`Event::TOPIC`], awaiting room in full
    /// [`Overflow::Block`](crate::Overflow::Block) queues.
    ///
    /// Returns the number of subscriptions that took the event. No subscriber is not an error.
    /// Inline handlers run before it returns. From a thread outside a runtime use
    /// [`blocking_publish`](Self::blocking_publish); to never wait, [`try_publish`](Self::try_publish).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Ping>("ping")?.capacity(4).queued_async(|_| async {})?;
    /// for _ in 0..100 {
    ///     bus.publish(Ping).await?; // waits while the task drains the queue
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PublishError::Closed`] after shutdown, [`PublishError::Full`] when a `Reject`
    /// subscription is full and no other took the event, [`PublishError::Partial`] when
    /// others did (it names both sides), [`PublishError::InvalidTopic`] if `E::TOPIC` is not
    /// a valid topic. The event is handed back in each case.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits for room drops the event: subscriptions earlier in
    /// the route may have received it, later ones not.
    pub async fn publish<E: Event>(&self, event: E) -> Result<usize, PublishError<E>> {
        self.publish_to(E::TOPIC, event).await
    }

    /// Publishes a typed event on `topic`; see [`publish`](Self::publish).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Ping>("pings.*")?.inline(|env| {
    ///     assert_eq!(env.meta().topic().map(|t| t.as_str()), Some("pings.eu"));
    /// })?;
    /// assert_eq!(bus.publish_to("pings.eu", Ping).await?, 1);
    /// assert!(bus.publish_to("pings..eu", Ping).await.is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    ///
    /// # Cancel safety
    ///
    /// As [`publish`](Self::publish).
    pub async fn publish_to<E: Event>(
        &self,
        topic: &str,
        event: E,
    ) -> Result<usize, PublishError<E>> {
        if self.is_closed() {
            return Err(PublishError::Closed(event));
        }
        let mut event = Some(event);
        let mut slot = None;
        // Up to the first full queue without a suspension point, on the borrowed route.
        let started = self.hub.router.with_route(topic, |route| {
            let event = event.take()?;
            Some(start_publish(&self.hub, route, event, &mut slot))
        });
        let result = match started {
            Ok(Some(Started::Done(result))) => result,
            Ok(Some(Started::Paused(paused))) => finish_publish(&self.hub, &mut slot, paused).await,
            // The closure runs once, and only when the topic is valid.
            Ok(None) => Ok(0),
            Err(e) => {
                return match event {
                    Some(event) => Err(PublishError::InvalidTopic(event, e)),
                    None => Ok(0),
                }
            }
        };
        outcome(result, &mut slot)
    }

    /// Publishes a typed event on its default topic without ever waiting: a full queue with
    /// the [`Overflow::Block`](crate::Overflow::Block) policy refuses it like `Reject` would.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event, PublishError};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let (release, wait) = std::sync::mpsc::channel::<()>();
    /// let wait = std::sync::Mutex::new(wait);
    /// let sub = bus.subscribe::<Ping>("ping")?.capacity(1).queued(move |_| {
    ///     let _ = wait.lock().unwrap().recv(); // hold the worker until released
    /// })?;
    /// bus.try_publish(Ping)?;                  // the worker takes it and waits
    /// while sub.metrics().pending > 0 {
    ///     std::thread::yield_now();
    /// }
    /// bus.try_publish(Ping)?;                  // fills the queue (capacity 1)
    /// assert!(matches!(bus.try_publish(Ping), Err(PublishError::Full(Ping))));
    /// drop(release);                           // let the worker go
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    #[inline]
    pub fn try_publish<E: Event>(&self, event: E) -> Result<usize, PublishError<E>> {
        self.publish_with(E::TOPIC, event, Wait::Never, None)
    }

    /// Publishes a typed event on `topic` without ever waiting; see
    /// [`try_publish`](Self::try_publish).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Ping>("pings.*")?.inline(|_| {})?;
    /// assert_eq!(bus.try_publish_to("pings.eu", Ping)?, 1);
    /// assert!(bus.try_publish_to("pings.>", Ping).is_err()); // not a topic
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    #[inline]
    pub fn try_publish_to<E: Event>(
        &self,
        topic: &str,
        event: E,
    ) -> Result<usize, PublishError<E>> {
        self.publish_with(topic, event, Wait::Never, None)
    }

    /// Publishes a typed event on its default topic, blocking the thread while a full
    /// [`Overflow::Block`](crate::Overflow::Block) queue has no room.
    ///
    /// For threads outside an async runtime. On a multi-thread tokio runtime the wait moves
    /// off the worker (`block_in_place`); on a current-thread runtime a queue drained by tasks
    /// refuses with [`PublishError::WouldBlock`] instead of stalling it: use
    /// [`publish`](Self::publish) there.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// #[derive(Clone, Debug)]
    /// struct Ping;
    /// impl Event for Ping { const TYPE: &'static str = "ping"; }
    ///
    /// let bus = Bus::new();
    /// assert_eq!(bus.blocking_publish(Ping).unwrap(), 0);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish), plus [`PublishError::WouldBlock`] as above.
    #[inline]
    pub fn blocking_publish<E: Event>(&self, event: E) -> Result<usize, PublishError<E>> {
        self.blocking_publish_to(E::TOPIC, event)
    }

    /// Publishes a typed event on `topic`, blocking the thread while a full `Block` queue has
    /// no room; see [`blocking_publish`](Self::blocking_publish).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Ping>("pings.*").unwrap().inline(|env| {
    ///     assert_eq!(env.meta().topic().map(|t| t.as_str()), Some("pings.eu"));
    /// }).unwrap();
    /// assert_eq!(bus.blocking_publish_to("pings.eu", Ping).unwrap(), 1);
    /// assert!(bus.blocking_publish_to("pings..eu", Ping).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As [`blocking_publish`](Self::blocking_publish).
    #[inline]
    pub fn blocking_publish_to<E: Event>(
        &self,
        topic: &str,
        event: E,
    ) -> Result<usize, PublishError<E>> {
        self.publish_with(topic, event, Wait::Block, None)
    }

    /// Publishes a typed event on `topic` to the subscriptions named in `only` (by
    /// [`Subscription::id`](crate::Subscription::id)) and no others, without ever waiting:
    /// the retry after a [`PublishError::Partial`], for the subscriptions that refused.
    /// Named subscriptions that are gone or do not match are skipped.
    ///
    /// # Examples
    ///
    /// See [`PartialPublish`](crate::PartialPublish) for the retry; on its own:
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let a = bus.subscribe::<Ping>("ping")?.inline(|_| {})?;
    /// let b = bus.subscribe::<Ping>("ping")?.inline(|_| {})?;
    /// assert_eq!(bus.try_publish_to_only("ping", Ping, &[b.id()])?, 1);
    /// assert_eq!((a.metrics().delivered, b.metrics().delivered), (0, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`try_publish`](Self::try_publish), for the named subscriptions.
    pub fn try_publish_to_only<E: Event>(
        &self,
        topic: &str,
        event: E,
        only: &[u64],
    ) -> Result<usize, PublishError<E>> {
        self.publish_with(topic, event, Wait::Never, Some(only))
    }

    fn publish_with<E: Event>(
        &self,
        topic: &str,
        event: E,
        wait: Wait,
        only: Option<&[u64]>,
    ) -> Result<usize, PublishError<E>> {
        if self.is_closed() {
            return Err(PublishError::Closed(event));
        }
        let mut event = Some(event);
        let mut slot = None;
        let routed = self
            .hub
            .router
            .with_route(topic, |route| match event.take() {
                Some(event) => {
                    publish_event(&self.hub, route.map(|r| &**r), event, &mut slot, wait, only)
                }
                None => Ok(0),
            });
        match routed {
            Ok(result) => outcome(result, &mut slot),
            Err(e) => match event {
                Some(event) => Err(PublishError::InvalidTopic(event, e)),
                None => Ok(0),
            },
        }
    }

    /// Publishes a ready-made envelope (typed or bytes) on the topic in its metadata,
    /// awaiting room in full [`Overflow::Block`](crate::Overflow::Block) queues.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata, Topic};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Bytes>("raw.>")?.capacity(2).queued_async(|_| async {})?;
    /// for _ in 0..10 {
    ///     let meta = Metadata::new(EventType::new("thing.happened")?).with_topic(Topic::from_static("raw.things"));
    ///     bus.publish_envelope(Envelope::new(meta, Bytes::from_static(b"{}"))).await?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish); an envelope without a topic is
    /// [`PublishError::InvalidTopic`] with [`NameReason::Empty`](crate::NameReason::Empty).
    ///
    /// # Cancel safety
    ///
    /// As [`publish`](Self::publish).
    pub async fn publish_envelope<P: Payload>(
        &self,
        envelope: Envelope<P>,
    ) -> Result<usize, PublishError<Envelope<P>>> {
        if self.is_closed() {
            return Err(PublishError::Closed(envelope));
        }
        // The topic was validated when it was made: route it without parsing it again.
        let route = match envelope.meta().topic() {
            None => return Err(no_topic(envelope)),
            Some(topic) => self.hub.router.with_topic_route(topic, |r| r.cloned()),
        };
        let taps;
        let group = match route.as_deref().map(|r| (r, r.group::<P>())) {
            Some((_, Some(group))) => group,
            Some((r, None)) => match r.taps_only::<P>() {
                Some(group) => {
                    taps = group;
                    &taps
                }
                None => return unrouted(&self.hub).map_err(|refused| refused.error(envelope)),
            },
            None => return unrouted(&self.hub).map_err(|refused| refused.error(envelope)),
        };
        let mut slot = Some(envelope);
        match (
            deliver_all_async(&self.hub, group, &mut slot, Pack::Whole).await,
            slot,
        ) {
            (Ok(n), _) => Ok(n),
            (Err(refused), Some(env)) => Err(refused.error(env)),
            (Err(_), None) => Ok(0),
        }
    }

    /// Publishes a ready-made envelope without ever waiting; see
    /// [`try_publish`](Self::try_publish).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata, Topic};
    ///
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Bytes>("raw.>")?.inline(|_| {})?;
    /// let meta = Metadata::new(EventType::new("thing.happened")?).with_topic(Topic::from_static("raw.things"));
    /// assert_eq!(bus.try_publish_envelope(Envelope::new(meta, Bytes::from_static(b"{}")))?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`publish_envelope`](Self::publish_envelope).
    pub fn try_publish_envelope<P: Payload>(
        &self,
        envelope: Envelope<P>,
    ) -> Result<usize, PublishError<Envelope<P>>> {
        self.publish_envelope_with(envelope, Wait::Never)
    }

    /// Publishes a ready-made envelope, blocking the thread while a full `Block` queue has no
    /// room; see [`blocking_publish`](Self::blocking_publish).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata, Topic};
    ///
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Bytes>("raw.>").unwrap().inline(|env| {
    ///     assert_eq!(env.payload().as_ref(), b"{}");
    /// }).unwrap();
    /// let meta = Metadata::new(EventType::new("thing.happened").unwrap()).with_topic(Topic::from_static("raw.things"));
    /// assert_eq!(bus.blocking_publish_envelope(Envelope::new(meta, Bytes::from_static(b"{}"))).unwrap(), 1);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`blocking_publish`](Self::blocking_publish); an envelope without a topic is
    /// [`PublishError::InvalidTopic`] with [`NameReason::Empty`](crate::NameReason::Empty).
    pub fn blocking_publish_envelope<P: Payload>(
        &self,
        envelope: Envelope<P>,
    ) -> Result<usize, PublishError<Envelope<P>>> {
        self.publish_envelope_with(envelope, Wait::Block)
    }

    fn publish_envelope_with<P: Payload>(
        &self,
        envelope: Envelope<P>,
        wait: Wait,
    ) -> Result<usize, PublishError<Envelope<P>>> {
        if self.is_closed() {
            return Err(PublishError::Closed(envelope));
        }
        // The topic was validated when it was made: route it without parsing it again.
        let Some(topic) = envelope.meta().topic().cloned() else {
            return Err(no_topic(envelope));
        };
        let mut slot = Some(envelope);
        let routed = self.hub.router.with_topic_route(&topic, |route| {
            match route.map(|r| (r, r.group::<P>())) {
                Some((_, Some(group))) => {
                    dispatch(&self.hub, group, &mut slot, Pack::Whole, wait, None)
                }
                Some((r, None)) => match r.taps_only::<P>() {
                    Some(taps) => dispatch(&self.hub, &taps, &mut slot, Pack::Whole, wait, None),
                    None => unrouted(&self.hub),
                },
                None => unrouted(&self.hub),
            }
        });
        match (routed, slot) {
            (Ok(n), _) => Ok(n),
            (Err(refused), Some(env)) => Err(refused.error(env)),
            (Err(_), None) => Ok(0),
        }
    }

    /// A publisher bound to one topic and event type. It caches the route, so a publish
    /// through it skips the topic lookup until subscriptions change.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Tick(u64);
    /// # impl Event for Tick { const TYPE: &'static str = "clock.tick"; }
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Tick>("clock.>").unwrap().inline(|_| {}).unwrap();
    /// let ticks = bus.publisher::<Tick>("clock.tick").unwrap();
    /// for i in 0..3 {
    ///     assert_eq!(ticks.blocking_publish(Tick(i)).unwrap(), 1);
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`NameError`] for an invalid topic.
    pub fn publisher<E: Event>(&self, topic: impl AsRef<str>) -> Result<Publisher<E>, NameError> {
        Ok(Publisher::new(self.hub.clone(), Topic::new(topic)?))
    }

    /// Starts a push subscription for payload type `P` on `pattern`; the builder chooses
    /// inline, queued or keyed delivery.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let sub = bus.subscribe::<Ping>(">")?.queued(|_| {})?;
    /// assert_eq!(sub.pattern().as_str(), ">");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SubscribeError::InvalidPattern`], or [`SubscribeError::Closed`] after shutdown.
    pub fn subscribe<P: Payload>(
        &self,
        pattern: impl AsRef<str>,
    ) -> Result<SubscribeBuilder<P>, SubscribeError> {
        let pattern = Pattern::new(pattern)?;
        if self.is_closed() {
            return Err(SubscribeError::Closed);
        }
        Ok(SubscribeBuilder::new(self.hub.clone(), pattern))
    }

    /// Starts a tap on `pattern`: a subscription that sees every event on a matching topic
    /// whatever its payload type, typed or bytes, with its full metadata and its payload as
    /// bytes where it encodes (see [`Tapped`](crate::Tapped)). For audit logs, log feeds and
    /// debugging. The builder chooses inline or queued delivery, as
    /// [`subscribe`](Self::subscribe)'s does.
    ///
    /// A tap costs typed dispatch nothing where it does not match: encoding happens only
    /// for events it takes, on its worker. A tap only observes unless made a
    /// [`receiver`](crate::TapBuilder::receiver): it is not counted in a publish's `Ok(n)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use syncbus_core::{Bus, Bytes, Encoded, EncodeError, Envelope, Event, EventType, Metadata, Topic};
    ///
    /// #[derive(Clone, serde::Serialize)]
    /// struct Placed { order: u64 }
    /// impl Event for Placed {
    ///     const TYPE: &'static str = "order.placed";
    ///     const TOPIC: &'static str = "orders.placed";
    ///     fn encode(&self) -> Option<Result<Encoded, EncodeError>> { Some(Encoded::json(self)) }
    /// }
    ///
    /// let bus = Bus::new();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let s = seen.clone();
    /// let _audit = bus.tap("orders.>")?.name("audit").inline(move |t| {
    ///     let payload = t.payload().bytes().map(|b| b.to_vec());
    ///     s.lock().unwrap().push((t.meta().event_type().to_string(), payload));
    /// })?;
    /// bus.blocking_publish(Placed { order: 7 })?; // typed
    /// let meta = Metadata::new(EventType::new("order.paid")?).with_topic(Topic::new("orders.paid")?);
    /// bus.blocking_publish_envelope(Envelope::new(meta, Bytes::from_static(b"{}")))?; // bytes
    /// assert_eq!(*seen.lock().unwrap(), [
    ///     ("order.placed".to_owned(), Some(br#"{"order":7}"#.to_vec())),
    ///     ("order.paid".to_owned(), Some(b"{}".to_vec())),
    /// ]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SubscribeError::InvalidPattern`], or [`SubscribeError::Closed`] after shutdown.
    pub fn tap(&self, pattern: impl AsRef<str>) -> Result<TapBuilder, SubscribeError> {
        let pattern = Pattern::new(pattern)?;
        if self.is_closed() {
            return Err(SubscribeError::Closed);
        }
        Ok(TapBuilder::new(self.hub.clone(), pattern))
    }

    /// Creates a pull consumer for payload type `P` on `pattern`: events are retained for it
    /// until fetched and acked. See [`Consumer`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, ConsumerConfig, Event};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let consumer = bus.consumer::<Ping>("ping", ConsumerConfig::default())?;
    /// bus.blocking_publish(Ping)?;
    /// let batch = consumer.try_fetch(10);
    /// assert_eq!(batch.len(), 1);
    /// for d in batch { d.ack()?; }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe), plus [`SubscribeError::InvalidConfig`].
    pub fn consumer<P: Payload>(
        &self,
        pattern: impl AsRef<str>,
        config: ConsumerConfig<P>,
    ) -> Result<Consumer<P>, SubscribeError> {
        let pattern = Pattern::new(pattern)?;
        Consumer::create(self.hub.clone(), pattern, config)
    }

    /// The bus counters now: published and unrouted, plus the sums over subscriptions
    /// (including ones removed since).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::Bus;
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// bus.try_publish(Ping)?; // nobody listens
    /// let m = bus.metrics();
    /// assert_eq!((m.published, m.unrouted, m.subscriptions), (1, 1, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(&self) -> BusMetrics {
        self.hub.metrics()
    }

    /// Waits until the bus is settled: no push subscription has an event queued or a handler
    /// running (workflow subscriptions included, with their in-process retries). For tests
    /// and demos, instead of sleeping until a counter moves. Inline handlers ran during
    /// their publish; pull consumers are settled by whoever fetches from them, so neither is
    /// waited for, nor are events a resequencer holds. While publishers keep publishing it
    /// resolves at the first moment all is idle. It looks every millisecond, on tokio's
    /// clock. [`settled_within`](Self::settled_within) gives up after a time and says who
    /// was still busy.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    /// use std::sync::Arc;
    /// use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let seen = Arc::new(AtomicU32::new(0));
    /// let s = seen.clone();
    /// let _sub = bus.subscribe::<Ping>("ping")?.workers(2).queued(move |_| {
    ///     std::thread::sleep(std::time::Duration::from_millis(5));
    ///     s.fetch_add(1, SeqCst);
    /// })?;
    /// for _ in 0..10 {
    ///     bus.publish(Ping).await?;
    /// }
    /// bus.settled().await;
    /// assert_eq!(seen.load(SeqCst), 10);
    /// # Ok(()) }
    /// ```
    pub async fn settled(&self) {
        // Without a timeout it only ends settled.
        let _ = wait_settled(None, || self.check_settled()).await;
    }

    /// [`settled`](Self::settled), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`Unsettled`] when `timeout` passed first: which subscriptions still had events
    /// queued or handlers running, by name.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let _sub = bus.subscribe::<Ping>("ping")?.queued_async(|_| async {})?;
    /// bus.publish(Ping).await?;
    /// bus.settled_within(Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn settled_within(&self, timeout: Duration) -> Result<(), Unsettled> {
        wait_settled(Some(timeout), || self.check_settled()).await
    }

    fn check_settled(&self) -> Result<(), Vec<Busy>> {
        let busy = self.hub.busy();
        if busy.is_empty() {
            Ok(())
        } else {
            Err(busy)
        }
    }

    /// Blocking form of [`shutdown`](Self::shutdown), for threads outside an async runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Ping>("ping").unwrap().queued(|_| {}).unwrap();
    /// for _ in 0..100 { bus.blocking_publish(Ping).unwrap(); }
    /// let report = bus.blocking_shutdown(Duration::from_secs(5));
    /// assert!(report.is_clean());
    /// assert!(bus.blocking_publish(Ping).is_err());
    /// ```
    pub fn blocking_shutdown(&self, timeout: Duration) -> ShutdownReport {
        shutdown::blocking_shutdown(&self.hub, timeout)
    }

    /// Stops intake and drains: publishing fails with [`PublishError::Closed`], queued events
    /// are handled until `timeout`, and the report says what was left undelivered.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Ping>("ping")?.queued_async(|_| async {})?;
    /// for _ in 0..100 { bus.publish(Ping).await?; }
    /// let report = bus.shutdown(Duration::from_secs(5)).await;
    /// assert!(report.is_clean());
    /// assert!(bus.publish(Ping).await.is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the bus closed and its workers draining.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        shutdown::shutdown(&self.hub, timeout).await
    }
}
