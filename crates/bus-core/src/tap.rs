//! Taps: subscriptions that see every event on a pattern, whatever its payload type. The
//! rules (what a tap sees, its cost, ordering, overflow, receivers) are in the crate docs,
//! section "Taps", where users read them.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use smol_str::SmolStr;
use syncbus_envelope::Pattern;

use crate::error::SubscribeError;
use crate::handler::{run_hook, run_sync, tracing_on, HandlerFailure, HandlerResult};
use crate::hub::Hub;
use crate::metrics::SubStats;
use crate::overflow::Overflow;
use crate::queue::{Drainer, Pushed, Queue};
use crate::router::SubEntry;
use crate::sink::{Delivered, InFlight, Observe, Room, Sink, Wait};
use crate::subscription::Subscription;
use crate::tapped::{TapItem, Tappable, Tapped};
use crate::worker::{Hook, LagFn, Stop, WorkerCtx};
use crate::workers::Workers;

/// Configures a tap; see [`Bus::tap`](crate::Bus::tap). Finish with
/// [`inline`](Self::inline), [`queued`](Self::queued) or [`queued_async`](Self::queued_async).
///
/// Defaults: capacity 1024, one worker, [`Overflow::Block`], observer (not a
/// [`receiver`](Self::receiver)). The [crate docs](crate#taps) hold the rules: what a tap
/// sees, what it costs, ordering, overflow, receivers.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{Bus, Event, Overflow};
/// # #[derive(Clone)] struct Ping;
/// # impl Event for Ping { const TYPE: &'static str = "ping"; }
///
/// let bus = Bus::new();
/// let tap = bus
///     .tap(">")?
///     .name("debug")
///     .capacity(4096)
///     .overflow(Overflow::DropOldest)
///     .on_lag(|lost| eprintln!("debug tap lost {lost} events"))
///     .queued(|t| println!("{} on {:?}", t.meta().event_type(), t.meta().topic()))?;
/// assert_eq!(bus.blocking_publish(Ping)?, 0); // a tap only observes: 0 receivers
/// assert!(bus.blocking_shutdown(Duration::from_secs(5)).is_clean());
/// assert_eq!(tap.metrics().delivered, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until a handler is given"]
pub struct TapBuilder {
    hub: Arc<Hub>,
    pattern: Pattern,
    name: Option<SmolStr>,
    capacity: usize,
    overflow: Overflow,
    receiver: bool,
    on_lag: Option<LagFn>,
    on_failure: Option<Arc<Hook<Tapped>>>,
}

impl std::fmt::Debug for TapBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapBuilder")
            .field("pattern", &self.pattern)
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("receiver", &self.receiver)
            .finish_non_exhaustive()
    }
}

impl TapBuilder {
    pub(crate) fn new(hub: Arc<Hub>, pattern: Pattern) -> Self {
        TapBuilder {
            hub,
            pattern,
            name: None,
            capacity: 1024,
            overflow: Overflow::Block,
            receiver: false,
            on_lag: None,
            on_failure: None,
        }
    }

    /// Names the tap in metrics, logs and shutdown reports. Defaults to `tap <pattern>`.
    ///
    /// # Examples
    ///
    /// ```
    /// let bus = syncbus_core::Bus::new();
    /// assert_eq!(bus.tap(">")?.inline(|_| {})?.name(), "tap >");
    /// assert_eq!(bus.tap(">")?.name("audit").inline(|_| {})?.name(), "audit");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(mut self, name: impl Into<SmolStr>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Queue capacity. Ignored by inline taps.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bus, SubscribeError};
    /// let bus = Bus::new();
    /// let _tap = bus.tap(">")?.capacity(16).queued(|_| {})?;
    /// let zero = bus.tap(">")?.capacity(0).queued(|_| {});
    /// assert!(matches!(zero, Err(SubscribeError::InvalidConfig(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// What to do when the queue is full; see [`Overflow`]. Ignored by inline taps.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bus, Overflow};
    /// let bus = Bus::new();
    /// let _tap = bus.tap("orders.>")?.overflow(Overflow::Reject).queued(|_| {})?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Makes the tap a receiver: an event it takes counts in the publish's `Ok(n)` (and in
    /// [`PartialPublish::took`](crate::PartialPublish::took)) as if a subscription had
    /// taken it. Then "somebody received it" holds when only this tap did: the outbox relay,
    /// for one, marks such an event sent. Use it for a tap whose taking an event is as good
    /// as handling it (a feed into an event log); leave a debugging or monitoring tap an
    /// observer.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bus, Event};
    /// # #[derive(Clone)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let observer = bus.tap(">")?.inline(|_| {})?;
    /// assert_eq!(bus.blocking_publish(Ping)?, 0);
    /// let receiver = bus.tap(">")?.receiver().inline(|_| {})?;
    /// assert_eq!(bus.blocking_publish(Ping)?, 1);
    /// assert_eq!((observer.metrics().delivered, receiver.metrics().delivered), (2, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn receiver(mut self) -> Self {
        self.receiver = true;
        self
    }

    /// Called on the worker with the number of events lost to [`Overflow::DropOldest`],
    /// before the next event is handled. A hook that panics is logged at ERROR, and the
    /// worker goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bus, Overflow};
    /// let bus = Bus::new();
    /// let _tap = bus
    ///     .tap(">")?
    ///     .overflow(Overflow::DropOldest)
    ///     .on_lag(|lost| eprintln!("tap lost {lost} events"))
    ///     .queued(|_| {})?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_lag(mut self, f: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.on_lag = Some(Arc::new(f));
        self
    }

    /// Called with the tapped event and the failure each time the handler returns an error
    /// or panics (after the failure was counted and logged at WARN with the event id). As
    /// for a subscription, the failure is final: nothing retries it. A hook that panics is
    /// logged at ERROR, and the worker goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use syncbus_core::{Bus, Event};
    /// # #[derive(Clone)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let failed = Arc::new(Mutex::new(Vec::new()));
    /// let f = failed.clone();
    /// let _tap = bus
    ///     .tap(">")?
    ///     .on_failure(move |t, failure| f.lock().unwrap().push((t.id().clone(), failure.to_string())))
    ///     .inline(|_| -> Result<(), String> { Err("audit store is down".into()) })?;
    /// bus.blocking_publish(Ping)?;
    /// assert_eq!(failed.lock().unwrap()[0].1, "handler failed: audit store is down");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_failure(
        mut self,
        f: impl Fn(&Tapped, &HandlerFailure) + Send + Sync + 'static,
    ) -> Self {
        self.on_failure = Some(Arc::new(f));
        self
    }

    /// Runs `handler` on the publisher's thread, during `publish`, encoding each event there.
    /// Keep it short. Queue settings (capacity, overflow) do not apply.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_core::{Bus, Event};
    /// # #[derive(Clone)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let tap = bus.tap(">")?.inline(|t| println!("saw {}", t.id()))?;
    /// bus.blocking_publish(Ping)?; // printed before this returns
    /// assert_eq!(tap.metrics().delivered, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Closed`] if the bus is shut down.
    pub fn inline<F, R>(self, handler: F) -> Result<Subscription, SubscribeError>
    where
        F: Fn(&Tapped) -> R + Send + Sync + 'static,
        R: HandlerResult,
    {
        let name = self.display_name();
        let stats = Arc::new(SubStats::default());
        let sink = InlineTap {
            handler,
            stats: stats.clone(),
            name: name.clone(),
            closed: AtomicBool::new(false),
            on_failure: self.on_failure.clone(),
        };
        self.register(name, stats, Arc::new(sink), None)
    }

    /// Queues events for one worker thread running `handler`, which encodes each event
    /// before handing it over.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_core::{Bus, Event};
    /// # #[derive(Clone)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let tap = bus.tap(">")?.queued(|t| println!("saw {}", t.id()))?;
    /// bus.blocking_publish(Ping)?;
    /// assert!(bus.blocking_shutdown(Duration::from_secs(5)).is_clean());
    /// assert_eq!(tap.metrics().delivered, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Closed`], [`SubscribeError::InvalidConfig`] for a zero capacity,
    /// [`SubscribeError::Spawn`] if the thread cannot start.
    pub fn queued<F, R>(self, handler: F) -> Result<Subscription, SubscribeError>
    where
        F: Fn(&Tapped) -> R + Send + Sync + 'static,
        R: HandlerResult,
    {
        let on_failure = self.on_failure.clone();
        self.start(Drainer::Threads, move |ctx, queue| {
            std::thread::Builder::new()
                .name(format!("syncbus-{}", ctx.name))
                .spawn(move || {
                    ctx.run_thread(
                        &queue,
                        TapItem::into_tapped,
                        &handler,
                        on_failure.as_deref(),
                    )
                })
                .map(drop)
        })
    }

    /// Queues events for one tokio task running the async `handler`, which encodes each
    /// event before handing it over.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_core::{Bus, Event};
    /// # #[derive(Clone)] struct Ping;
    /// # impl Event for Ping { const TYPE: &'static str = "ping"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let tap = bus.tap(">")?.queued_async(|t| async move { println!("saw {}", t.id()) })?;
    /// bus.publish(Ping).await?;
    /// assert!(bus.shutdown(Duration::from_secs(5)).await.is_clean());
    /// assert_eq!(tap.metrics().delivered, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`queued`](Self::queued), plus [`SubscribeError::NoRuntime`] outside a runtime.
    pub fn queued_async<F, Fut, R>(self, handler: F) -> Result<Subscription, SubscribeError>
    where
        F: Fn(Tapped) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| SubscribeError::NoRuntime)?;
        let on_failure = self.on_failure.clone();
        self.start(Drainer::Tasks, move |ctx, queue| {
            runtime.spawn(async move {
                ctx.run_task(
                    &queue,
                    TapItem::into_tapped,
                    &handler,
                    on_failure.as_deref(),
                )
                .await
            });
            Ok(())
        })
    }

    fn display_name(&self) -> SmolStr {
        self.name
            .clone()
            .unwrap_or_else(|| smol_str::format_smolstr!("tap {}", self.pattern.as_str()))
    }

    /// Makes the queue and starts its one worker with `spawn`.
    fn start(
        self,
        drainer: Drainer,
        spawn: impl FnOnce(WorkerCtx, Arc<Queue<TapItem>>) -> std::io::Result<()>,
    ) -> Result<Subscription, SubscribeError> {
        if self.capacity == 0 {
            return Err(SubscribeError::InvalidConfig("capacity must be at least 1"));
        }
        if self.hub.is_closed() {
            return Err(SubscribeError::Closed);
        }
        let name = self.display_name();
        let stats = Arc::new(SubStats::default());
        let queue = Arc::new(Queue::new(self.capacity, self.overflow, drainer));
        let workers = Arc::new(Workers::default());
        let stop = Arc::new(Stop::default());
        let completion = self.hub.completion.clone();
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
        if let Err(e) = spawn(ctx, queue.clone()) {
            // The worker never ran, so its `Done` guard never will.
            workers.finish();
            completion.finish();
            queue.close();
            return Err(SubscribeError::Spawn(e));
        }
        let sink = QueueTap {
            queue,
            stop,
            workers: workers.clone(),
        };
        self.register(name, stats, Arc::new(sink), Some(workers))
    }

    fn register<S: Sink + Observe>(
        self,
        name: SmolStr,
        stats: Arc<SubStats>,
        sink: Arc<S>,
        workers: Option<Arc<Workers>>,
    ) -> Result<Subscription, SubscribeError> {
        let entry = Arc::new(SubEntry::tap(
            self.hub.router.next_id(),
            name,
            self.pattern,
            stats,
            sink,
            workers,
            self.receiver,
        ));
        if !self.hub.add_subscription(entry.clone()) {
            entry.sink.close();
            return Err(SubscribeError::Closed);
        }
        Ok(Subscription::new(self.hub, entry))
    }
}

struct InlineTap<F> {
    handler: F,
    stats: Arc<SubStats>,
    name: SmolStr,
    closed: AtomicBool,
    on_failure: Option<Arc<Hook<Tapped>>>,
}

impl<F, R> Observe for InlineTap<F>
where
    F: Fn(&Tapped) -> R + Send + Sync + 'static,
    R: HandlerResult,
{
    fn observe(&self, event: &dyn Tappable, _wait: Wait) -> Delivered {
        if self.closed.load(Ordering::Relaxed) {
            return Delivered::Closed;
        }
        let tapped = event.tapped();
        let id = tapped.id();
        let outcome = if tracing_on() {
            let _span = tracing::trace_span!("handle", subscription = %self.name).entered();
            run_sync(&self.stats, &self.name, id, || (self.handler)(&tapped))
        } else {
            run_sync(&self.stats, &self.name, id, || (self.handler)(&tapped))
        };
        if let (Err(failure), Some(hook)) = (outcome, &self.on_failure) {
            run_hook(&self.name, "on_failure", || hook(&tapped, &failure));
        }
        Delivered::Ok
    }
}

impl<F: Send + Sync + 'static> Sink for InlineTap<F> {
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

struct QueueTap {
    queue: Arc<Queue<TapItem>>,
    stop: Arc<Stop>,
    workers: Arc<Workers>,
}

impl Observe for QueueTap {
    #[inline]
    fn observe(&self, event: &dyn Tappable, wait: Wait) -> Delivered {
        match self.queue.push(event.boxed(), wait) {
            Pushed::Queued => Delivered::Ok,
            Pushed::Displaced => Delivered::Displaced,
            Pushed::Full(_) => Delivered::Full,
            Pushed::WouldBlock(_) => Delivered::WouldBlock,
            Pushed::Closed(_) => Delivered::Closed,
        }
    }

    fn room(&self) -> Option<Arc<dyn Room>> {
        Some(self.queue.clone())
    }
}

impl Sink for QueueTap {
    fn close(&self) {
        self.queue.close();
    }

    fn pending(&self) -> usize {
        self.queue.len()
    }

    fn abort(&self) {
        self.stop.abort();
        self.queue.nudge();
    }

    fn discard(&self) -> usize {
        self.queue.discard() + self.stop.take_abandoned()
    }

    fn in_flight(&self) -> InFlight {
        // The worker is running the handler unless it waits for an item (or has exited).
        InFlight {
            queued: self.queue.len(),
            running: self.workers.live().saturating_sub(self.queue.idle()),
        }
    }
}
