//! Push subscriptions: inline, queued (threads or tasks) and keyed lanes.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use smol_str::SmolStr;
use syncbus_envelope::{Envelope, Payload};

use crate::error::SubscribeError;
use crate::handler::{run_hook, run_sync_on, tracing_on, HandlerFailure, HandlerResult};
use crate::hub::Hub;
#[cfg(not(all(loom, test)))]
use crate::lanes::{self, LaneWorker, RingSink};
use crate::metrics::{Stripe, SubStats, SubscriptionMetrics};
use crate::overflow::Overflow;
use crate::queue::{Drainer, Queue};
use crate::router::SubEntry;
use crate::sink::{lane_of, Deliver, Delivered, InFlight, Pack, Room, Sink, Take, Wait};
use crate::worker::{Hook, LagFn, Stop, WorkerCtx};
use crate::workers::Workers;
use syncbus_envelope::Pattern;

type FailFn<P> = Arc<Hook<Envelope<P>>>;

/// Configures a push subscription; finish with [`inline`](Self::inline),
/// [`queued`](Self::queued) or [`queued_async`](Self::queued_async).
///
/// A subscription receives events whose topic matches its pattern **and** whose payload type
/// is `P`. Defaults: capacity 1024, one worker, not keyed, [`Overflow::Block`].
///
/// A queued subscription made [`keyed`](Self::keyed) has lanes: the entity id picks the
/// lane, and each lane has its own queue and one worker, so events of one entity are handled
/// one at a time and in publish order while entities run in parallel.
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bus, Event, EntityId, Overflow};
///
/// #[derive(Clone, Debug)]
/// struct StockChanged { sku: u64, qty: i64 }
/// impl Event for StockChanged {
///     const TYPE: &'static str = "stock.changed";
///     fn entity_id(&self) -> Option<EntityId> { Some(self.sku.into()) }
/// }
///
/// let bus = Bus::new();
/// let sub = bus
///     .subscribe::<StockChanged>("stock.*")?
///     .name("warehouse")
///     .capacity(4096)
///     .keyed(8)
///     .overflow(Overflow::Block)
///     .queued(|env| println!("{} -> {}", env.payload().sku, env.payload().qty))?;
/// bus.blocking_publish(StockChanged { sku: 7, qty: 3 })?;
/// # drop(sub);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Handlers and follow-ups
///
/// Sync handlers ([`inline`](Self::inline), [`queued`](Self::queued)) borrow the envelope:
/// one envelope reaches every inline handler of a publish without a copy. Async handlers
/// ([`queued_async`](Self::queued_async)) own it, since their future outlives the call. A
/// handler that publishes a follow-up makes it with [`Envelope::follow_up`], which sets the
/// correlation and causation ids as a workflow handler's `Context::emit` does:
///
/// ```
/// use syncbus_core::{Bus, Event};
/// # #[derive(Clone, Debug)] struct Placed;
/// # impl Event for Placed { const TYPE: &'static str = "shop.order.placed"; }
/// # #[derive(Clone, Debug)] struct Reserved;
/// # impl Event for Reserved { const TYPE: &'static str = "shop.stock.reserved"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::new();
/// let b = bus.clone();
/// let _stock = bus.subscribe::<Placed>("shop.order.placed")?.queued_async(move |env| {
///     let bus = b.clone();
///     async move { bus.publish_envelope(env.follow_up(Reserved)).await.map(drop) }
/// })?;
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let _seen = bus.subscribe::<Reserved>("shop.stock.reserved")?.inline(move |env| {
///     let _ = tx.send(env.meta().causation_id().cloned());
/// })?;
/// let placed = syncbus_core::Envelope::from_event(Placed);
/// let id = placed.meta().id().clone();
/// bus.publish_envelope(placed).await?;
/// assert_eq!(rx.recv().await.unwrap(), Some(id));
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until a handler is given"]
pub struct SubscribeBuilder<P> {
    hub: Arc<Hub>,
    pattern: Pattern,
    name: Option<SmolStr>,
    capacity: usize,
    workers: usize,
    /// `Some(lanes)` for a keyed subscription.
    lanes: Option<usize>,
    overflow: Overflow,
    on_lag: Option<LagFn>,
    on_failure: Option<FailFn<P>>,
    _payload: PhantomData<fn(P)>,
}

impl<P> std::fmt::Debug for SubscribeBuilder<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscribeBuilder")
            .field("pattern", &self.pattern)
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("workers", &self.workers)
            .field("lanes", &self.lanes)
            .field("overflow", &self.overflow)
            .finish_non_exhaustive()
    }
}

impl<P: Payload> SubscribeBuilder<P> {
    pub(crate) fn new(hub: Arc<Hub>, pattern: Pattern) -> Self {
        SubscribeBuilder {
            hub,
            pattern,
            name: None,
            capacity: 1024,
            workers: 1,
            lanes: None,
            overflow: Overflow::Block,
            on_lag: None,
            on_failure: None,
            _payload: PhantomData,
        }
    }

    /// Names the subscription in metrics, logs and shutdown reports. Defaults to the pattern.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::Bus;
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let sub = bus.subscribe::<Ping>("ping")?.name("audit").inline(|_| {})?;
    /// assert_eq!(sub.name(), "audit");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(mut self, name: impl Into<SmolStr>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Queue capacity (per lane for keyed subscriptions). Ignored by inline subscriptions.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, SubscribeError};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let _sub = bus.subscribe::<Ping>("ping")?.capacity(16).queued(|_| {})?;
    /// let zero = bus.subscribe::<Ping>("ping")?.capacity(0).queued(|_| {});
    /// assert!(matches!(zero, Err(SubscribeError::InvalidConfig(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Workers draining a queued subscription in parallel (order is then not kept). A keyed
    /// subscription has one worker per lane instead: do not set both.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, SubscribeError};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let _sub = bus.subscribe::<Ping>("ping")?.workers(4).queued(|_| {})?;
    /// let both = bus.subscribe::<Ping>("ping")?.workers(4).keyed(8).queued(|_| {});
    /// assert!(matches!(both, Err(SubscribeError::InvalidConfig(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Makes a queued subscription keyed, with `lanes` lanes: events of one entity always go
    /// to the same lane and are handled one at a time, in publish order; different entities
    /// run in parallel across lanes. Events without an entity id are spread by event id.
    /// Each lane has its own queue of [`capacity`](Self::capacity) and one worker.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bus, EntityId, Event};
    ///
    /// #[derive(Clone, Debug)]
    /// struct Moved { item: u64 }
    /// impl Event for Moved {
    ///     const TYPE: &'static str = "stock.moved";
    ///     fn entity_id(&self) -> Option<EntityId> { Some(self.item.into()) }
    /// }
    ///
    /// let bus = Bus::new();
    /// let sub = bus.subscribe::<Moved>("stock.moved")?.keyed(4).queued(|_| {})?;
    /// bus.blocking_publish(Moved { item: 1 })?;
    /// assert!(sub.unsubscribe_and_wait(std::time::Duration::from_secs(5)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keyed(mut self, lanes: usize) -> Self {
        self.lanes = Some(lanes);
        self
    }

    /// What to do when the queue is full.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Overflow};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let _sub = bus.subscribe::<Ping>("ping")?.overflow(Overflow::Reject).queued(|_| {})?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Called on the worker with the number of events lost to [`Overflow::DropOldest`],
    /// before the next event is handled. A hook that panics is logged at ERROR, and the
    /// worker goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Overflow};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let _sub = bus
    ///     .subscribe::<Ping>("ping")?
    ///     .overflow(Overflow::DropOldest)
    ///     .on_lag(|lost| eprintln!("lost {lost} pings"))
    ///     .queued(|_| {})?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_lag(mut self, f: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.on_lag = Some(Arc::new(f));
        self
    }

    /// Called with the envelope and the failure each time the handler returns an error or
    /// panics (on the thread or task that ran it, after the failure was counted and logged
    /// at WARN with the event id). A hook that panics is logged at ERROR, and the worker
    /// (or the publish, for an inline subscription) goes on.
    ///
    /// A plain subscription's failure is final: nothing retries it. Use this hook to record
    /// the event somewhere you will look (a table, an outbox, a metric with a label), or use
    /// a workflow subscription (`syncbus-workflow`), which retries with backoff, writes dead
    /// letters and redrives them.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use syncbus_core::{Bus, Event, EventId};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    ///
    /// let bus = Bus::new();
    /// let failed: Arc<Mutex<Vec<(EventId, String)>>> = Arc::default();
    /// let record = failed.clone();
    /// let _sub = bus
    ///     .subscribe::<Ping>("ping")?
    ///     .on_failure(move |env, failure| {
    ///         record.lock().unwrap().push((env.id().clone(), failure.message().to_owned()));
    ///     })
    ///     .inline(|_| -> Result<(), String> { Err("downstream is down".into()) })?;
    /// bus.blocking_publish(Ping)?;
    /// assert_eq!(failed.lock().unwrap()[0].1, "downstream is down");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_failure(
        mut self,
        f: impl Fn(&Envelope<P>, &HandlerFailure) + Send + Sync + 'static,
    ) -> Self {
        self.on_failure = Some(Arc::new(f));
        self
    }

    /// Runs `handler` on the publisher's thread, during `publish`: the fastest path, and
    /// backpressure by construction. Keep the handler short. Queue settings (capacity,
    /// workers, lanes, overflow) do not apply.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::Bus;
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let _sub = bus.subscribe::<Ping>("ping")?.inline(|_| println!("ping"))?;
    /// assert_eq!(bus.blocking_publish(Ping)?, 1); // printed before this returns
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Closed`] if the bus is shut down.
    pub fn inline<F, R>(self, handler: F) -> Result<Subscription, SubscribeError>
    where
        F: Fn(&Envelope<P>) -> R + Send + Sync + 'static,
        R: HandlerResult,
    {
        let name = self.display_name();
        let stats = Arc::new(SubStats::default());
        let sink = InlineSink {
            handler,
            stats: stats.clone(),
            name: name.clone(),
            closed: AtomicBool::new(false),
            on_failure: self.on_failure.clone(),
        };
        let sink = Arc::new(sink);
        let id = self.hub.router.next_id();
        self.register(id, name, stats, sink.clone(), sink, None)
    }

    /// Queues events for worker threads running `handler`: `workers` threads on one queue,
    /// or one thread per lane when [`keyed`](Self::keyed).
    ///
    /// Subscriptions with one worker under [`Overflow::Block`] (the default) on the same
    /// pattern, payload type and capacity read one shared ring: a publish writes the event
    /// once for all of them and each worker reads it in place. Each still gets every event,
    /// in order, and counts in the publish's `Ok(n)`; as with a ring each, a full `Block`
    /// publish waits for the slowest.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::Bus;
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let _sub = bus.subscribe::<Ping>("ping")?.queued(|_| println!("ping"))?;
    /// let _audit = bus.subscribe::<Ping>("ping")?.queued(|_| println!("audit"))?;
    /// assert_eq!(bus.blocking_publish(Ping)?, 2); // one ring, two handlers
    /// assert!(bus.blocking_shutdown(Duration::from_secs(5)).is_clean());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Closed`], [`SubscribeError::InvalidConfig`] for a zero capacity,
    /// worker or lane count (or workers set on a keyed subscription),
    /// [`SubscribeError::Spawn`] if a thread cannot start.
    pub fn queued<F, R>(self, handler: F) -> Result<Subscription, SubscribeError>
    where
        F: Fn(&Envelope<P>) -> R + Send + Sync + 'static,
        R: HandlerResult,
    {
        let shape = self.shape()?;
        self.spawn_threads(shape, handler)
    }

    /// Queues events for tokio tasks running the async `handler`: `workers` tasks on one
    /// queue, or one task per lane when [`keyed`](Self::keyed).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::Bus;
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let _sub = bus.subscribe::<Ping>("ping")?.queued_async(|_| async {})?;
    /// bus.publish(Ping).await?;
    /// assert!(bus.shutdown(Duration::from_secs(5)).await.is_clean());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`queued`](Self::queued), plus [`SubscribeError::NoRuntime`] outside a runtime.
    pub fn queued_async<F, Fut, R>(self, handler: F) -> Result<Subscription, SubscribeError>
    where
        F: Fn(Envelope<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        let shape = self.shape()?;
        self.spawn_tasks(shape, handler)
    }

    fn display_name(&self) -> SmolStr {
        self.name
            .clone()
            .unwrap_or_else(|| SmolStr::new(self.pattern.as_str()))
    }

    /// Checks the queue settings: how many workers, and whether each has a lane of its own.
    fn shape(&self) -> Result<Shape, SubscribeError> {
        if self.capacity == 0 {
            return Err(SubscribeError::InvalidConfig("capacity must be at least 1"));
        }
        if self.workers == 0 {
            return Err(SubscribeError::InvalidConfig("workers must be at least 1"));
        }
        match self.lanes {
            None => Ok(Shape {
                keyed: false,
                workers: self.workers,
            }),
            Some(0) => Err(SubscribeError::InvalidConfig("lanes must be at least 1")),
            Some(_) if self.workers != 1 => Err(SubscribeError::InvalidConfig(
                "a keyed subscription runs one worker per lane: set keyed(lanes) or workers(n), not both",
            )),
            Some(lanes) => Ok(Shape {
                keyed: true,
                workers: lanes,
            }),
        }
    }

    /// Builds the queues (one, or one per lane) and their sink, and each worker's queue.
    fn queues(
        &self,
        shape: Shape,
        drainer: Drainer,
        crew: &Crew,
    ) -> Built<QueueSink<P>, Arc<Queue<P::Packed>>> {
        let count = if shape.keyed { shape.workers } else { 1 };
        let queues: Box<[_]> = (0..count)
            .map(|_| Arc::new(Queue::new(self.capacity, self.overflow, drainer)))
            .collect();
        let each = (0..shape.workers)
            .map(|i| queues[if shape.keyed { i } else { 0 }].clone())
            .collect();
        let sink = QueueSink {
            queues,
            keyed: shape.keyed,
            stop: crew.stop.clone(),
            workers: crew.workers.clone(),
        };
        (sink, each)
    }

    /// Builds the rings (one, or one per lane) and their sink ([`lanes`](crate::lanes)), and
    /// each worker's lane and reader.
    #[cfg(not(all(loom, test)))]
    fn lanes(
        &self,
        shape: Shape,
        drainer: Drainer,
        crew: &Crew,
    ) -> Built<RingSink<P>, LaneWorker<P>> {
        let (stop, workers) = (crew.stop.clone(), crew.workers.clone());
        RingSink::new(
            shape.workers,
            self.capacity,
            self.overflow,
            drainer,
            stop,
            workers,
        )
    }

    fn spawn_threads<F, R>(self, shape: Shape, handler: F) -> Result<Subscription, SubscribeError>
    where
        F: Fn(&Envelope<P>) -> R + Send + Sync + 'static,
        R: HandlerResult,
    {
        let handler = Arc::new(handler);
        let on_failure = self.on_failure.clone();
        let thread = |i: usize, ctx: &WorkerCtx| {
            std::thread::Builder::new().name(format!("syncbus-{}-{i}", ctx.name))
        };
        let crew = Crew::new(&self.hub);
        // Loom builds model the ring with loom's atomics, which a subscription cannot run on.
        #[cfg(not(all(loom, test)))]
        {
            let on_lane = |i: usize, ctx: WorkerCtx, (lane, reader): LaneWorker<P>| {
                let handler = handler.clone();
                let on_failure = on_failure.clone();
                thread(i, &ctx)
                    .spawn(move || {
                        lanes::run_thread(ctx, &lane, reader, &*handler, on_failure.as_deref())
                    })
                    .map(drop)
            };
            if self.shares(shape) {
                if let Some((member, worker)) = self.hub.fan_rings.join(
                    &self.pattern,
                    self.capacity,
                    (crew.id, crew.stats.clone()),
                    (crew.stop.clone(), crew.workers.clone()),
                ) {
                    let delivery = member.delivery();
                    return self.start(crew, (member, vec![worker]), |_| delivery, on_lane);
                }
            }
            if self.on_rings(shape) {
                let built = self.lanes(shape, Drainer::Threads, &crew);
                return self.start(crew, built, routed_self, on_lane);
            }
        }
        let built = self.queues(shape, Drainer::Threads, &crew);
        self.start(crew, built, routed_self, |i, ctx, queue| {
            let handler = handler.clone();
            let on_failure = on_failure.clone();
            thread(i, &ctx)
                .spawn(move || ctx.run_thread(&queue, P::unpack, &*handler, on_failure.as_deref()))
                .map(drop)
        })
    }

    fn spawn_tasks<F, Fut, R>(
        self,
        shape: Shape,
        handler: F,
    ) -> Result<Subscription, SubscribeError>
    where
        F: Fn(Envelope<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| SubscribeError::NoRuntime)?;
        let handler = Arc::new(handler);
        let on_failure = self.on_failure.clone();
        let crew = Crew::new(&self.hub);
        #[cfg(not(all(loom, test)))]
        if self.on_rings(shape) {
            let built = self.lanes(shape, Drainer::Tasks, &crew);
            return self.start(crew, built, routed_self, |_, ctx, (lane, reader)| {
                let handler = handler.clone();
                let on_failure = on_failure.clone();
                runtime.spawn(async move {
                    lanes::run_task(ctx, &lane, reader, &*handler, on_failure.as_deref()).await
                });
                Ok(())
            });
        }
        let built = self.queues(shape, Drainer::Tasks, &crew);
        self.start(crew, built, routed_self, |_, ctx, queue| {
            let handler = handler.clone();
            let on_failure = on_failure.clone();
            runtime.spawn(async move {
                ctx.run_task(&queue, P::unpack, &*handler, on_failure.as_deref())
                    .await
            });
            Ok(())
        })
    }

    /// Whether the subscription's queues are rings ([`lanes`](crate::lanes)): one worker on
    /// each (one lane, or keyed), and any policy but `DropOldest`.
    #[cfg(not(all(loom, test)))]
    fn on_rings(&self, shape: Shape) -> bool {
        self.overflow != Overflow::DropOldest && (shape.keyed || shape.workers == 1)
    }

    /// Whether the subscription reads a ring it shares with others of its pattern, type
    /// and capacity ([`fanout`](crate::fanout)): one worker thread, no lanes, `Block`.
    #[cfg(not(all(loom, test)))]
    fn shares(&self, shape: Shape) -> bool {
        self.overflow == Overflow::Block && !shape.keyed && shape.workers == 1
    }

    /// Starts a worker on each of `each` (what it drains) with `spawn` and registers the
    /// sink, with `routed` saying what the routes deliver to for it; if a worker cannot
    /// start, the sink closes and those started drain and stop.
    fn start<S: Sink, W>(
        self,
        crew: Crew,
        (sink, each): Built<S, W>,
        routed: impl FnOnce(&Arc<S>) -> Arc<dyn Deliver<P>>,
        mut spawn: impl FnMut(usize, WorkerCtx, W) -> std::io::Result<()>,
    ) -> Result<Subscription, SubscribeError> {
        if self.hub.is_closed() {
            sink.close();
            return Err(SubscribeError::Closed);
        }
        let name = self.display_name();
        let Crew {
            stop,
            workers,
            id,
            stats,
        } = crew;
        let completion = &self.hub.completion;
        for (i, drained) in each.into_iter().enumerate() {
            let ctx = WorkerCtx {
                stats: stats.clone(),
                stop: stop.clone(),
                name: name.clone(),
                on_lag: self.on_lag.clone(),
                workers: workers.clone(),
                completion: completion.clone(),
            };
            workers.start();
            completion.start();
            if let Err(e) = spawn(i, ctx, drained) {
                // The worker never ran, so its `Done` guard never will.
                workers.finish();
                completion.finish();
                sink.close();
                return Err(SubscribeError::Spawn(e));
            }
        }
        let sink = Arc::new(sink);
        let typed = routed(&sink);
        self.register(id, name, stats, sink, typed, Some(workers))
    }

    fn register<S: Sink>(
        self,
        id: u64,
        name: SmolStr,
        stats: Arc<SubStats>,
        sink: Arc<S>,
        typed: Arc<dyn Deliver<P>>,
        workers: Option<Arc<Workers>>,
    ) -> Result<Subscription, SubscribeError> {
        let entry = Arc::new(SubEntry::routed(
            id,
            name,
            self.pattern,
            stats,
            sink,
            typed,
            workers,
        ));
        if !self.hub.add_subscription(entry.clone()) {
            entry.sink.close();
            return Err(SubscribeError::Closed);
        }
        Ok(Subscription::new(self.hub, entry))
    }
}

/// What a queued subscription's workers share: the stop flag a shutdown sets, and their
/// count; and the subscription's id and counters.
struct Crew {
    stop: Arc<Stop>,
    workers: Arc<Workers>,
    id: u64,
    stats: Arc<SubStats>,
}

impl Crew {
    fn new(hub: &Hub) -> Crew {
        Crew {
            stop: Arc::default(),
            workers: Arc::default(),
            id: hub.router.next_id(),
            stats: Arc::default(),
        }
    }
}

/// What the routes deliver to for a sink of one subscription: the sink itself.
fn routed_self<P: Payload, S: Deliver<P>>(sink: &Arc<S>) -> Arc<dyn Deliver<P>> {
    sink.clone()
}

/// A queued subscription's sink, and what each of its workers drains.
type Built<S, W> = (S, Vec<W>);

/// How a queued subscription's workers are laid out.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// One lane (queue) per worker, picked by entity id; otherwise one shared queue.
    keyed: bool,
    workers: usize,
}

/// A live push subscription. Dropping it unsubscribes; [`detach`](Self::detach) keeps it
/// running until the bus shuts down.
///
/// After unsubscribing, publishes that start later do not reach it; events already queued
/// are still handled by its workers, which then stop.
///
/// # Examples
///
/// ```
/// use syncbus_core::Bus;
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// let bus = Bus::new();
/// let sub = bus.subscribe::<Ping>("ping").unwrap().inline(|_| {}).unwrap();
/// assert_eq!(bus.blocking_publish(Ping).unwrap(), 1);
/// sub.unsubscribe();
/// assert_eq!(bus.blocking_publish(Ping).unwrap(), 0);
/// ```
#[must_use = "dropping a Subscription unsubscribes it; call .detach() to keep it"]
pub struct Subscription {
    hub: Arc<Hub>,
    entry: Arc<SubEntry>,
    detached: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.entry.id)
            .field("name", &self.entry.name)
            .field("pattern", &self.entry.pattern)
            .finish()
    }
}

impl Subscription {
    pub(crate) fn new(hub: Arc<Hub>, entry: Arc<SubEntry>) -> Subscription {
        Subscription {
            hub,
            entry,
            detached: false,
        }
    }

    /// The subscription's id, unique within its bus.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::Bus;
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let a = bus.subscribe::<Ping>("ping")?.inline(|_| {})?;
    /// let b = bus.subscribe::<Ping>("ping")?.inline(|_| {})?;
    /// assert_ne!(a.id(), b.id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(&self) -> u64 {
        self.entry.id
    }

    /// The subscription's name (the pattern unless named).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::Bus;
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let sub = bus.subscribe::<Ping>("ping")?.inline(|_| {})?;
    /// assert_eq!(sub.name(), "ping");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// The pattern it listens on.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::Bus;
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let sub = bus.subscribe::<Ping>("pings.>")?.inline(|_| {})?;
    /// assert!(sub.pattern().matches_str("pings.eu"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pattern(&self) -> &Pattern {
        &self.entry.pattern
    }

    /// Its counters now.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::Bus;
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let sub = bus.subscribe::<Ping>("ping")?.inline(|_| {})?;
    /// bus.try_publish(Ping)?;
    /// assert_eq!(sub.metrics().delivered, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(&self) -> SubscriptionMetrics {
        self.entry.stats.snapshot(self.entry.sink.pending())
    }

    /// Stops new deliveries. Queued events are still handled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::Bus;
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let sub = bus.subscribe::<Ping>("ping")?.queued(|_| {})?;
    /// sub.unsubscribe();
    /// assert_eq!(bus.try_publish(Ping)?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unsubscribe(mut self) {
        self.remove();
    }

    /// Stops new deliveries and waits up to `timeout` for the workers to finish what is
    /// queued. Returns `true` if they finished.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::Bus;
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let sub = bus.subscribe::<Ping>("ping")?.queued(|_| {})?;
    /// for _ in 0..10 { bus.blocking_publish(Ping)?; }
    /// assert!(sub.unsubscribe_and_wait(std::time::Duration::from_secs(5)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unsubscribe_and_wait(mut self, timeout: std::time::Duration) -> bool {
        self.remove();
        match &self.entry.workers {
            Some(w) => w.wait(Some(Instant::now() + timeout)),
            None => true,
        }
    }

    /// Keeps the subscription running after this handle is dropped, until the bus shuts down.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::Bus;
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// bus.subscribe::<Ping>("ping")?.inline(|_| {})?.detach();
    /// assert_eq!(bus.try_publish(Ping)?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn detach(mut self) {
        self.detached = true;
    }

    fn remove(&mut self) {
        self.detached = true;
        self.hub.remove_subscription(self.entry.id);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.detached {
            self.remove();
        }
    }
}

struct InlineSink<P, F> {
    handler: F,
    stats: Arc<SubStats>,
    name: SmolStr,
    closed: AtomicBool,
    on_failure: Option<FailFn<P>>,
}

impl<P, F, R> Deliver<P> for InlineSink<P, F>
where
    P: 'static,
    F: Fn(&Envelope<P>) -> R + Send + Sync + 'static,
    R: HandlerResult,
{
    #[inline]
    fn deliver(
        &self,
        slot: &mut Option<Envelope<P>>,
        _take: Take,
        _pack: Pack,
        _wait: Wait,
    ) -> Delivered {
        let Some(env) = slot.as_ref() else {
            return Delivered::Closed;
        };
        let handled = if tracing_on() {
            let _span = tracing::trace_span!("handle", subscription = %self.name).entered();
            self.handle(env, &self.stats, Stripe::current())
        } else {
            self.handle(env, &self.stats, Stripe::current())
        };
        if handled {
            Delivered::Ok
        } else {
            Delivered::Closed
        }
    }

    fn is_inline(&self) -> bool {
        true
    }

    #[inline]
    fn handle(&self, env: &Envelope<P>, stats: &SubStats, stripe: Stripe) -> bool {
        debug_assert!(
            std::ptr::eq(stats, &*self.stats),
            "a route passed another subscription's counters"
        );
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        let outcome = run_sync_on(stats, Some(stripe), &self.name, env.id(), || {
            (self.handler)(env)
        });
        if let (Err(failure), Some(hook)) = (outcome, &self.on_failure) {
            run_hook(&self.name, "on_failure", || hook(env, &failure));
        }
        true
    }
}

impl<P, F> Sink for InlineSink<P, F>
where
    P: 'static,
    F: Send + Sync + 'static,
{
    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    fn pending(&self) -> usize {
        0
    }

    fn discard(&self) -> usize {
        0
    }
}

struct QueueSink<P: Payload> {
    queues: Box<[Arc<Queue<P::Packed>>]>,
    keyed: bool,
    stop: Arc<Stop>,
    workers: Arc<Workers>,
}

impl<P: Payload> QueueSink<P> {
    #[inline]
    fn lane(&self, env: &Envelope<P>) -> usize {
        if self.keyed {
            lane_of(env, self.queues.len())
        } else {
            0
        }
    }
}

impl<P: Payload> Deliver<P> for QueueSink<P> {
    #[inline]
    fn deliver(
        &self,
        slot: &mut Option<Envelope<P>>,
        take: Take,
        pack: Pack,
        wait: Wait,
    ) -> Delivered {
        let Some(env) = take.out(slot) else {
            return Delivered::Closed;
        };
        let queue = &self.queues[self.lane(&env)];
        queue
            .push(P::pack(env, pack == Pack::Lite), wait)
            .delivered(slot, take, P::unpack)
    }

    fn room(&self, envelope: &Envelope<P>) -> Option<Arc<dyn Room>> {
        Some(self.queues[self.lane(envelope)].clone())
    }
}

impl<P: Payload> Sink for QueueSink<P> {
    fn close(&self) {
        for q in self.queues.iter() {
            q.close();
        }
    }

    fn in_flight(&self) -> InFlight {
        // A worker is running a handler unless it waits for an item (or has exited).
        let idle: usize = self.queues.iter().map(|q| q.idle()).sum();
        InFlight {
            queued: self.pending(),
            running: self.workers.live().saturating_sub(idle),
        }
    }

    fn pending(&self) -> usize {
        self.queues.iter().map(|q| q.len()).sum()
    }

    fn abort(&self) {
        self.stop.abort();
        for q in self.queues.iter() {
            q.nudge();
        }
    }

    fn discard(&self) -> usize {
        let queued: usize = self.queues.iter().map(|q| q.discard()).sum();
        queued + self.stop.take_abandoned()
    }
}
