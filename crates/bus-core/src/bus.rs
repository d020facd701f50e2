//! The bus handle: publish, subscribe, consume, shut down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use syncbus_envelope::{Envelope, Event, NameKind, NameReason, Payload};

use crate::error::{PublishError, SubscribeError};
use crate::metrics::{BusMetrics, Counter, Stat, SubStats};
use crate::pull::{Consumer, ConsumerConfig};
use crate::router::{Delivered, Group, Route, Router, SubEntry};
use crate::subscription::{SubscribeBuilder, Workers};
use syncbus_envelope::{NameError, Pattern, Topic};

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
    pub(crate) inner: Arc<Inner>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) router: Router,
    closed: AtomicBool,
    lifecycle: Mutex<Retired>,
    published: Counter,
    unrouted: Counter,
    pub(crate) completion: Arc<Workers>,
}

/// Subscriptions removed while their workers may still drain, and the totals of those done.
#[derive(Debug, Default)]
struct Retired {
    draining: Vec<Arc<SubEntry>>,
    totals: BusMetrics,
}

impl Retired {
    fn compact(&mut self) {
        let totals = &mut self.totals;
        self.draining.retain(|e| {
            let done = e.workers.as_ref().is_none_or(|w| w.is_idle());
            if done {
                let mut m = e.stats.snapshot(0);
                m.pending = 0;
                totals.add_sub(&m);
            }
            !done
        });
    }
}

impl Inner {
    pub(crate) fn add_subscription(&self, entry: Arc<SubEntry>) -> bool {
        let _life = self.lifecycle.lock();
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        self.router.add(entry);
        true
    }

    pub(crate) fn remove_subscription(&self, id: u64) {
        let mut life = self.lifecycle.lock();
        if let Some(entry) = self.router.remove(id) {
            entry.sink.close();
            life.draining.push(entry);
            life.compact();
        }
    }

    /// Counts a publish nobody receives.
    #[inline]
    fn unrouted(&self) -> usize {
        self.published.incr();
        self.unrouted.incr();
        0
    }

    /// Hands the envelope in `slot` to every sink of `group`. On success the slot may be
    /// empty (the last sink took it); when refused it still holds the envelope.
    #[inline]
    fn dispatch<P: Payload>(
        &self,
        group: &Group<P>,
        slot: &mut Option<Envelope<P>>,
        pristine: bool,
        wait: bool,
    ) -> Result<usize, Refused> {
        if crate::handler::tracing_on() {
            let topic = slot.as_ref().and_then(|e| e.meta().topic());
            let topic = topic.map_or("", Topic::as_str);
            let _span = tracing::trace_span!("publish", topic).entered();
            self.deliver_all(group, slot, pristine, wait)
        } else {
            self.deliver_all(group, slot, pristine, wait)
        }
    }

    #[inline]
    fn deliver_all<P: Payload>(
        &self,
        group: &Group<P>,
        slot: &mut Option<Envelope<P>>,
        pristine: bool,
        wait: bool,
    ) -> Result<usize, Refused> {
        let mut tally = Tally::default();
        let n = group.sinks.len();
        for (i, (sink, stats)) in group.sinks.iter().enumerate() {
            let last = i + 1 == n;
            let outcome = if last && tally.refused() {
                // Something refused the event already: keep the original to hand back.
                let mut copy = slot.clone();
                sink.deliver(&mut copy, true, pristine, wait)
            } else {
                sink.deliver(slot, last, pristine, wait)
            };
            tally.count(outcome, stats, wait);
        }
        self.settle(tally, slot.is_some())
    }

    /// The async form of [`deliver_all`](Self::deliver_all): a full `Block` queue is waited
    /// for without blocking the thread.
    async fn deliver_all_async<P: Payload>(
        &self,
        group: &Group<P>,
        slot: &mut Option<Envelope<P>>,
        pristine: bool,
    ) -> Result<usize, Refused> {
        let mut tally = Tally::default();
        let n = group.sinks.len();
        for (i, (sink, stats)) in group.sinks.iter().enumerate() {
            let last = i + 1 == n;
            loop {
                let outcome = if last && tally.refused() {
                    let mut copy = slot.clone();
                    sink.deliver(&mut copy, true, pristine, false)
                } else {
                    sink.deliver(slot, last, pristine, false)
                };
                if outcome == Delivered::WouldBlock {
                    if let Some(room) = slot.as_ref().and_then(|env| sink.room(env)) {
                        room.signal()
                            .wait_async(|| room.has_room().then_some(()))
                            .await;
                        continue;
                    }
                }
                tally.count(outcome, stats, false);
                break;
            }
        }
        self.settle(tally, slot.is_some())
    }

    fn settle(&self, tally: Tally, still_held: bool) -> Result<usize, Refused> {
        if still_held {
            // A sink closed by unsubscribe is skipped; one closed by shutdown refuses.
            if tally.closed && self.closed.load(Ordering::Acquire) {
                return Err(Refused::Closed);
            }
            if tally.would_block {
                return Err(Refused::WouldBlock);
            }
            if tally.full {
                return Err(Refused::Full);
            }
        }
        self.published.incr();
        Ok(tally.delivered)
    }
}

/// What the sinks of one publish did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    delivered: usize,
    full: bool,
    would_block: bool,
    closed: bool,
}

impl Tally {
    #[inline]
    fn refused(&self) -> bool {
        self.full || self.would_block || self.closed
    }

    #[inline]
    fn count(&mut self, outcome: Delivered, stats: &SubStats, wait: bool) {
        match outcome {
            Delivered::Ok => self.delivered += 1,
            Delivered::Displaced => {
                self.delivered += 1;
                stats.incr(Stat::Dropped);
            }
            Delivered::Full => {
                self.full = true;
                stats.incr(Stat::Rejected);
            }
            // A publish that may wait got this only where waiting would stall the runtime;
            // a try_publish gets it for any full `Block` queue, and that is plain `Full`.
            Delivered::WouldBlock if wait => self.would_block = true,
            Delivered::WouldBlock => {
                self.full = true;
                stats.incr(Stat::Rejected);
            }
            Delivered::Closed => self.closed = true,
        }
    }
}

/// Why a dispatch handed the event back.
#[derive(Debug, Clone, Copy)]
enum Refused {
    Full,
    WouldBlock,
    Closed,
}

impl Refused {
    fn error<T>(self, value: T) -> PublishError<T> {
        match self {
            Refused::Full => PublishError::Full(value),
            Refused::WouldBlock => PublishError::WouldBlock(value),
            Refused::Closed => PublishError::Closed(value),
        }
    }
}

/// Builds the envelope for `event` in `slot`, on `route`'s topic. `None` when nobody
/// subscribed to the type on that topic (then nothing is built).
#[inline]
fn build<'r, E: Event>(
    route: Option<&'r Route>,
    event: E,
    slot: &mut Option<Envelope<E>>,
) -> Option<&'r Group<E>> {
    let route = route?;
    let group = route.group::<E>()?;
    let env = slot.insert(Envelope::from_event(event));
    env.meta_mut().set_topic(route.topic.clone());
    Some(group)
}

/// Builds and dispatches `event` on `route`.
#[inline]
fn publish_event<E: Event>(
    inner: &Inner,
    route: Option<&Route>,
    event: E,
    slot: &mut Option<Envelope<E>>,
    wait: bool,
) -> Result<usize, Refused> {
    match build(route, event, slot) {
        Some(group) => inner.dispatch(group, slot, true, wait),
        None => Ok(inner.unrouted()),
    }
}

/// The refusal of an envelope without a topic: nowhere to route it.
#[cold]
fn no_topic<P>(envelope: Envelope<P>) -> PublishError<Envelope<P>> {
    let e = NameError::new(NameKind::Topic, NameReason::Empty, "");
    PublishError::InvalidTopic(envelope, e)
}

/// Maps a dispatch result to the public one, handing the event back when refused.
fn outcome<E>(
    result: Result<usize, Refused>,
    slot: Option<Envelope<E>>,
) -> Result<usize, PublishError<E>> {
    match (result, slot) {
        (Ok(n), _) => Ok(n),
        (Err(refused), Some(env)) => Err(refused.error(env.into_payload())),
        (Err(_), None) => Ok(0),
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
            inner: Arc::new(Inner {
                router: Router::new(),
                closed: AtomicBool::new(false),
                lifecycle: Mutex::new(Retired::default()),
                published: Counter::default(),
                unrouted: Counter::default(),
                completion: Arc::new(Workers::default()),
            }),
        }
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
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
    /// subscription is full, [`PublishError::InvalidTopic`] if `E::TOPIC` is not a valid
    /// topic. The event is handed back in each case.
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
        let route = match self.inner.router.with_route(topic, |r| r.cloned()) {
            Ok(route) => route,
            Err(e) => return Err(PublishError::InvalidTopic(event, e)),
        };
        publish_event_async(&self.inner, route.as_deref(), event).await
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
        self.publish_with(E::TOPIC, event, false)
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
        self.publish_with(topic, event, false)
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
        self.publish_with(topic, event, true)
    }

    fn publish_with<E: Event>(
        &self,
        topic: &str,
        event: E,
        wait: bool,
    ) -> Result<usize, PublishError<E>> {
        if self.is_closed() {
            return Err(PublishError::Closed(event));
        }
        let mut event = Some(event);
        let mut slot = None;
        let routed = self
            .inner
            .router
            .with_route(topic, |route| match event.take() {
                Some(event) => {
                    publish_event(&self.inner, route.map(|r| &**r), event, &mut slot, wait)
                }
                None => Ok(0),
            });
        match routed {
            Ok(result) => outcome(result, slot),
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
            Some(topic) => self.inner.router.with_topic_route(topic, |r| r.cloned()),
        };
        let Some(group) = route.as_deref().and_then(|r| r.group::<P>()) else {
            return Ok(self.inner.unrouted());
        };
        let mut slot = Some(envelope);
        match (
            self.inner.deliver_all_async(group, &mut slot, false).await,
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
        self.publish_envelope_with(envelope, false)
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
        self.publish_envelope_with(envelope, true)
    }

    fn publish_envelope_with<P: Payload>(
        &self,
        envelope: Envelope<P>,
        wait: bool,
    ) -> Result<usize, PublishError<Envelope<P>>> {
        if self.is_closed() {
            return Err(PublishError::Closed(envelope));
        }
        // The topic was validated when it was made: route it without parsing it again.
        let Some(topic) = envelope.meta().topic().cloned() else {
            return Err(no_topic(envelope));
        };
        let mut slot = Some(envelope);
        let routed = self.inner.router.with_topic_route(&topic, |route| {
            match route.and_then(|r| r.group::<P>()) {
                Some(group) => self.inner.dispatch(group, &mut slot, false, wait),
                None => Ok(self.inner.unrouted()),
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
        let topic = Topic::new(topic)?;
        let (generation, route) = self.inner.router.route_of(&topic);
        Ok(Publisher {
            bus: self.clone(),
            topic,
            cache: ArcSwap::from_pointee((generation, route)),
            _event: std::marker::PhantomData,
        })
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
        Ok(SubscribeBuilder::new(self.clone(), pattern))
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
        Consumer::create(self.clone(), pattern, config)
    }

    /// The bus counters now: published and unrouted, plus the sums over subscriptions
    /// (including ones removed since).
    pub fn metrics(&self) -> BusMetrics {
        let mut m = {
            let mut life = self.inner.lifecycle.lock();
            life.compact();
            let mut m = life.totals;
            for e in &life.draining {
                m.add_sub(&e.stats.snapshot(e.sink.pending()));
            }
            m
        };
        m.published = self.inner.published.get();
        m.unrouted = self.inner.unrouted.get();
        let live = self.inner.router.entries();
        m.subscriptions = live.len() as u64;
        for e in &live {
            m.add_sub(&e.stats.snapshot(e.sink.pending()));
        }
        m
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
        let deadline = Instant::now() + timeout;
        let entries = self.begin_shutdown();
        let drained = self.inner.completion.wait(Some(deadline));
        if !drained {
            for e in &entries {
                e.sink.abort();
            }
            self.inner
                .completion
                .wait(Some(Instant::now() + ABORT_GRACE));
        }
        self.finish_shutdown(drained, entries)
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
        let entries = self.begin_shutdown();
        let drained = tokio::time::timeout(timeout, self.inner.completion.wait_async())
            .await
            .is_ok();
        if !drained {
            for e in &entries {
                e.sink.abort();
            }
            let _ = tokio::time::timeout(ABORT_GRACE, self.inner.completion.wait_async()).await;
        }
        self.finish_shutdown(drained, entries)
    }

    fn begin_shutdown(&self) -> Vec<Arc<SubEntry>> {
        let mut life = self.inner.lifecycle.lock();
        self.inner.closed.store(true, Ordering::Release);
        let mut entries = self.inner.router.clear();
        entries.append(&mut life.draining);
        for e in &entries {
            e.sink.close();
        }
        entries
    }

    fn finish_shutdown(&self, drained: bool, entries: Vec<Arc<SubEntry>>) -> ShutdownReport {
        let mut undelivered = Vec::new();
        for e in &entries {
            let count = e.sink.discard();
            if count > 0 {
                tracing::warn!(subscription = %e.name, count, "undelivered at shutdown");
                undelivered.push(Undelivered {
                    subscription: e.name.to_string(),
                    pattern: e.pattern.clone(),
                    count,
                });
            }
        }
        // Keep their counters in the bus totals.
        let mut life = self.inner.lifecycle.lock();
        life.draining.extend(entries);
        life.compact();
        ShutdownReport {
            drained,
            undelivered,
        }
    }
}

/// After the deadline, how long workers get to put down what they hold and report it.
/// A handler still running after that finishes on its own; its leftovers are logged.
const ABORT_GRACE: Duration = Duration::from_millis(200);

/// What [`Bus::shutdown`] left behind.
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// let report = syncbus_core::Bus::new().blocking_shutdown(Duration::from_millis(10));
/// assert!(report.drained && report.undelivered.is_empty() && report.is_clean());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Every worker finished before the deadline.
    pub drained: bool,
    /// Subscriptions that still held events at the deadline (they were dropped), and
    /// pull consumers' events that were never acked.
    pub undelivered: Vec<Undelivered>,
}

impl ShutdownReport {
    /// Drained in time and nothing left behind.
    pub fn is_clean(&self) -> bool {
        self.drained && self.undelivered.is_empty()
    }

    /// Events left behind, over all subscriptions.
    pub fn total_undelivered(&self) -> usize {
        self.undelivered.iter().map(|u| u.count).sum()
    }
}

/// Events one subscription did not deliver before shutdown.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Undelivered {
    /// The subscription's name.
    pub subscription: String,
    /// Its pattern.
    pub pattern: Pattern,
    /// How many events it did not deliver.
    pub count: usize,
}

/// A publisher bound to one topic and one event type; see [`Bus::publisher`].
///
/// Clone it per thread or share it: it is `Send + Sync`.
pub struct Publisher<E> {
    bus: Bus,
    topic: Topic,
    cache: ArcSwap<(u64, Arc<Route>)>,
    _event: std::marker::PhantomData<fn(E)>,
}

impl<E> Clone for Publisher<E> {
    fn clone(&self) -> Self {
        Publisher {
            bus: self.bus.clone(),
            topic: self.topic.clone(),
            cache: ArcSwap::new(self.cache.load_full()),
            _event: std::marker::PhantomData,
        }
    }
}

impl<E> std::fmt::Debug for Publisher<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<E: Event> Publisher<E> {
    /// The topic this publisher sends to.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// Publishes `event`, awaiting room in full `Block` queues; see [`Bus::publish`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Tick(u64);
    /// # impl Event for Tick { const TYPE: &'static str = "clock.tick"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Tick>("clock.>")?.queued_async(|_| async {})?;
    /// let ticks = bus.publisher::<Tick>("clock.tick")?;
    /// assert_eq!(ticks.publish(Tick(1)).await?, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Bus::publish`], with the event handed back.
    ///
    /// # Cancel safety
    ///
    /// As [`Bus::publish`].
    pub async fn publish(&self, event: E) -> Result<usize, PublishError<E>> {
        if self.bus.is_closed() {
            return Err(PublishError::Closed(event));
        }
        let route = self.route();
        publish_event_async(&self.bus.inner, Some(&route), event).await
    }

    /// Publishes `event` without waiting; see [`Bus::try_publish`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Tick(u64);
    /// # impl Event for Tick { const TYPE: &'static str = "clock.tick"; }
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Tick>("clock.>")?.inline(|_| {})?;
    /// let ticks = bus.publisher::<Tick>("clock.tick")?;
    /// assert_eq!(ticks.try_publish(Tick(1))?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Bus::try_publish`], with the event handed back.
    #[inline]
    pub fn try_publish(&self, event: E) -> Result<usize, PublishError<E>> {
        self.publish_with(event, false)
    }

    /// Publishes `event`, blocking the thread while a full `Block` queue has no room; see
    /// [`Bus::blocking_publish`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Tick(u64);
    /// # impl Event for Tick { const TYPE: &'static str = "clock.tick"; }
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Tick>("clock.>")?.queued(|_| {})?;
    /// let ticks = bus.publisher::<Tick>("clock.tick")?;
    /// assert_eq!(ticks.blocking_publish(Tick(1))?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Bus::blocking_publish`], with the event handed back.
    #[inline]
    pub fn blocking_publish(&self, event: E) -> Result<usize, PublishError<E>> {
        self.publish_with(event, true)
    }

    /// The cached route, refreshed if subscriptions changed since.
    fn route(&self) -> Arc<Route> {
        let generation = self.bus.inner.router.generation();
        let cached = self.cache.load();
        if cached.0 == generation {
            return cached.1.clone();
        }
        drop(cached);
        let (generation, route) = self.bus.inner.router.route_of(&self.topic);
        self.cache.store(Arc::new((generation, route.clone())));
        route
    }

    #[inline]
    fn publish_with(&self, event: E, wait: bool) -> Result<usize, PublishError<E>> {
        let inner = &self.bus.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(PublishError::Closed(event));
        }
        let generation = inner.router.generation();
        let cached = self.cache.load();
        let mut slot = None;
        let result = if cached.0 == generation {
            publish_event(inner, Some(&cached.1), event, &mut slot, wait)
        } else {
            drop(cached);
            let route = self.route();
            publish_event(inner, Some(&route), event, &mut slot, wait)
        };
        outcome(result, slot)
    }
}

/// Builds and dispatches `event` on `route`, awaiting room in full `Block` queues.
async fn publish_event_async<E: Event>(
    inner: &Inner,
    route: Option<&Route>,
    event: E,
) -> Result<usize, PublishError<E>> {
    let mut slot = None;
    let result = match build(route, event, &mut slot) {
        Some(group) => {
            if crate::handler::tracing_on() {
                use tracing::Instrument;
                let topic = route.map_or("", |r| r.topic.as_str());
                let span = tracing::trace_span!("publish", topic);
                inner
                    .deliver_all_async(group, &mut slot, true)
                    .instrument(span)
                    .await
            } else {
                inner.deliver_all_async(group, &mut slot, true).await
            }
        }
        None => Ok(inner.unrouted()),
    };
    outcome(result, slot)
}
