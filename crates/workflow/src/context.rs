//! What a handler knows about its delivery, and how it emits follow-up events.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use smol_str::SmolStr;
use syncbus_core::{Bus, NameError, PublishError, Topic};
use syncbus_envelope::{Envelope, Event, EventId, Metadata, Timestamp};

use crate::chain::Chains;
use crate::error::{ErrorKind, HandlerError};
use crate::metrics::{Stat, Stats};
use crate::store::InboxEntry;
use crate::BoxFuture;

/// The context of one delivery: which event and attempt this is, and a way to emit
/// follow-up events.
///
/// Cloning is cheap (one reference count); the layers and the handler share one context per
/// delivery.
///
/// # Follow-up events
///
/// [`emit`](Self::emit) queues an event that inherits the correlation id (or, at the root of
/// a chain, takes the handled event's id as correlation id) and gets the handled event's id
/// as causation id. Queued events are published when the attempt succeeds (by
/// [`EmitLayer`](crate::EmitLayer), innermost in every workflow subscription: add it to a
/// stack of your own) and discarded when it fails, so a retried handler does not publish
/// them twice. If a publish fails part way,
/// the attempt fails (retryably when the bus was only full) and the retry emits again, so
/// follow-ups are at-least-once like everything else.
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bus, Envelope, Event};
/// use syncbus_workflow::{handler_fn, Context, Handler};
/// # #[derive(Clone, Debug)] struct OrderPlaced { order: u64 }
/// # impl Event for OrderPlaced { const TYPE: &'static str = "shop.order.placed"; }
/// # #[derive(Clone, Debug)] struct StockReserved { order: u64 }
/// # impl Event for StockReserved { const TYPE: &'static str = "shop.stock.reserved"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bus = Bus::new();
/// let env = Envelope::from_event(OrderPlaced { order: 7 });
/// let ctx = Context::new(&bus, env.meta());
/// let h = handler_fn(|env: Envelope<OrderPlaced>, ctx: Context| async move {
///     ctx.emit(StockReserved { order: env.payload().order });
///     Ok(())
/// });
/// h.call(env, ctx.clone()).await.unwrap();
/// assert_eq!(ctx.pending_emits(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Arc<Delivery>,
}

struct Delivery {
    sub: Arc<SubscriptionInfo>,
    meta: Metadata,
    correlation: EventId,
    attempt: AtomicU32,
    /// A layer counted this delivery's outcome itself (a duplicate, a stale or held version),
    /// so the runner does not count it as succeeded too.
    counted: AtomicBool,
    failures: Mutex<Option<(Timestamp, Timestamp)>>,
    pending: Mutex<Vec<Box<dyn PendingEmit>>>,
    /// The dedup key the dedup layer claimed for this delivery.
    inbox: OnceLock<InboxEntry>,
}

/// What every delivery of one subscription shares.
pub(crate) struct SubscriptionInfo {
    pub(crate) bus: Option<Bus>,
    pub(crate) subscription: SmolStr,
    pub(crate) handler: SmolStr,
    pub(crate) chains: Option<Chains>,
    pub(crate) stats: Arc<Stats>,
}

impl SubscriptionInfo {
    pub(crate) fn new(
        bus: Option<Bus>,
        subscription: SmolStr,
        handler: SmolStr,
        chains: Option<Chains>,
    ) -> Arc<SubscriptionInfo> {
        Arc::new(SubscriptionInfo {
            bus,
            subscription,
            handler,
            chains,
            stats: Arc::default(),
        })
    }
}

impl Context {
    /// A context for handling the event described by `meta` outside a workflow
    /// subscription (tests, custom runners); follow-ups go to `bus`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Envelope};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = Bus::new();
    /// let env = Envelope::from_event(Ping);
    /// let ctx = syncbus_workflow::Context::new(&bus, env.meta());
    /// assert_eq!(ctx.event_id(), env.meta().id());
    /// assert_eq!(ctx.attempt(), 0);
    /// ```
    pub fn new(bus: &Bus, meta: &Metadata) -> Context {
        let info = SubscriptionInfo::new(
            Some(bus.clone()),
            SmolStr::default(),
            SmolStr::default(),
            None,
        );
        Context::for_delivery(&info, meta)
    }

    pub(crate) fn for_delivery(sub: &Arc<SubscriptionInfo>, meta: &Metadata) -> Context {
        let correlation = meta.correlation_id().unwrap_or(meta.id()).clone();
        Context {
            inner: Arc::new(Delivery {
                sub: sub.clone(),
                meta: meta.clone(),
                correlation,
                attempt: AtomicU32::new(0),
                counted: AtomicBool::new(false),
                failures: Mutex::new(None),
                pending: Mutex::new(Vec::new()),
                inbox: OnceLock::new(),
            }),
        }
    }

    /// The id of the event being handled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Envelope};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let env = Envelope::from_event(Ping);
    /// let ctx = syncbus_workflow::Context::new(&Bus::new(), env.meta());
    /// assert_eq!(ctx.event_id(), env.meta().id());
    /// ```
    pub fn event_id(&self) -> &EventId {
        self.inner.meta.id()
    }

    /// The metadata of the event being handled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Envelope};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// let env = Envelope::from_event(Ping);
    /// let ctx = syncbus_workflow::Context::new(&bus, env.meta());
    /// assert_eq!(ctx.meta().event_type().as_str(), "ping");
    /// ```
    pub fn meta(&self) -> &Metadata {
        &self.inner.meta
    }

    /// The correlation id follow-ups inherit: the event's own, or its id at a chain's root.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Envelope};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// let env = Envelope::from_event(Ping);
    /// let ctx = syncbus_workflow::Context::new(&bus, env.meta());
    /// assert_eq!(ctx.correlation_id(), env.meta().id()); // a root event
    /// ```
    pub fn correlation_id(&self) -> &EventId {
        &self.inner.correlation
    }

    /// The attempt running: 1 for the first, 2 for the first retry; 0 outside the retry
    /// layer's control (no attempt counted yet).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Envelope};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let env = Envelope::from_event(Ping);
    /// let ctx = syncbus_workflow::Context::new(&Bus::new(), env.meta());
    /// assert_eq!(ctx.attempt(), 0); // no retry layer has started an attempt
    /// ```
    pub fn attempt(&self) -> u32 {
        self.inner.attempt.load(Relaxed)
    }

    /// The subscription's name (empty outside a workflow subscription).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Envelope};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// # let env = Envelope::from_event(Ping);
    /// let ctx = syncbus_workflow::Context::new(&bus, env.meta());
    /// assert_eq!(ctx.subscription(), "");
    /// ```
    pub fn subscription(&self) -> &str {
        &self.inner.sub.subscription
    }

    /// The handler's name (the subscription's unless set apart).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Envelope};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// # let env = Envelope::from_event(Ping);
    /// let ctx = syncbus_workflow::Context::new(&bus, env.meta());
    /// assert_eq!(ctx.handler_name(), "");
    /// ```
    pub fn handler_name(&self) -> &str {
        &self.inner.sub.handler
    }

    /// Queues a follow-up event on its default topic, published when the attempt succeeds.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Envelope};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # #[derive(Clone, Debug)] struct Pong;
    /// # impl syncbus_core::Event for Pong { const TYPE: &'static str = "pong"; }
    /// let env = Envelope::from_event(Ping);
    /// let ctx = syncbus_workflow::Context::new(&Bus::new(), env.meta());
    /// ctx.emit(Pong); // queued; published by the emit layer when the attempt succeeds
    /// assert_eq!(ctx.pending_emits(), 1);
    /// ```
    pub fn emit<E: Event>(&self, event: E) {
        let env = self.child(Envelope::from_event(event));
        self.inner.pending.lock().push(Box::new(Typed(env)));
    }

    /// Queues a follow-up event on `topic`.
    ///
    /// # Errors
    ///
    /// [`NameError`] for an invalid topic; nothing is queued.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Envelope};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// # let env = Envelope::from_event(Ping);
    /// let ctx = syncbus_workflow::Context::new(&bus, env.meta());
    /// ctx.emit_to("pings.eu", Ping)?;
    /// assert!(ctx.emit_to("pings..eu", Ping).is_err());
    /// assert_eq!(ctx.pending_emits(), 1);
    /// # Ok::<(), syncbus_core::NameError>(())
    /// ```
    pub fn emit_to<E: Event>(&self, topic: &str, event: E) -> Result<(), NameError> {
        let topic = Topic::new(topic)?;
        let mut env = self.child(Envelope::from_event(event));
        env.meta_mut().set_topic(topic);
        self.inner.pending.lock().push(Box::new(Typed(env)));
        Ok(())
    }

    /// How many follow-ups the current attempt has queued.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Envelope};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let env = Envelope::from_event(Ping);
    /// let ctx = syncbus_workflow::Context::new(&Bus::new(), env.meta());
    /// assert_eq!(ctx.pending_emits(), 0);
    /// ```
    pub fn pending_emits(&self) -> usize {
        self.inner.pending.lock().len()
    }

    fn child<E>(&self, mut env: Envelope<E>) -> Envelope<E> {
        let meta = env.meta_mut();
        meta.set_correlation_id(Some(self.inner.correlation.clone()));
        meta.set_causation_id(Some(self.inner.meta.id().clone()));
        env
    }

    /// The dedup key claimed for this delivery, when a dedup layer runs the handler: record
    /// it done inside the handler's own database transaction (`SqliteStore::record_done`,
    /// `PgStore::record_done`) and the effect and the key commit together, so the effect
    /// happens once even if the process dies right after the commit (the transactional
    /// inbox). If the key turns out to be done already, recording fails with
    /// `StoreErrorKind::Duplicate`: let the transaction roll back and return any error; the
    /// dedup layer acknowledges the delivery as a duplicate without retrying it. `None`
    /// without a dedup layer, or for an event the dedup key function gave no key.
    ///
    /// Follow-ups queued with [`emit`](Self::emit) are published after the handler returns,
    /// so a crash between the commit and the publish loses them: put follow-ups that must
    /// not be lost in the outbox, in the same transaction (`SqliteStore::enqueue`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    /// use std::sync::Arc;
    /// use syncbus_core::{Bus, Envelope};
    /// use std::time::Duration;
    /// use syncbus_workflow::{handler_fn, Context, DedupConfig, Handler, Layer, ResultExt, RetryPolicy};
    /// # #[derive(Clone, Debug)] struct Paid;
    /// # impl syncbus_core::Event for Paid { const TYPE: &'static str = "shop.paid"; }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let runs = Arc::new(AtomicU32::new(0));
    /// let r = runs.clone();
    /// let handler = handler_fn(move |_e: Envelope<Paid>, ctx: Context| {
    ///     r.fetch_add(1, SeqCst);
    ///     async move {
    ///         let inbox = ctx.inbox().expect("the dedup layer claimed a key");
    ///         // A real handler records `inbox` in its transaction; this one says what
    ///         // `record_done` says when another delivery committed the key first.
    ///         Err(inbox.duplicate_error()).retryable()
    ///     }
    /// });
    /// let retry = RetryPolicy::new().max_attempts(5).initial(Duration::ZERO).layer();
    /// let h = DedupConfig::memory(100).layer().layer(retry.layer(handler));
    /// let bus = Bus::new();
    /// let env = Envelope::from_event(Paid);
    /// let ctx = Context::new(&bus, env.meta());
    /// h.call(env.clone(), ctx.clone()).await?; // acknowledged as a duplicate
    /// assert_eq!(runs.load(SeqCst), 1, "not retried");
    /// assert_eq!(ctx.inbox().unwrap().key().to_string(), env.meta().id().to_string());
    /// # Ok(()) }
    /// ```
    pub fn inbox(&self) -> Option<&InboxEntry> {
        self.inner.inbox.get()
    }

    pub(crate) fn set_inbox(&self, entry: InboxEntry) {
        let _ = self.inner.inbox.set(entry);
    }

    /// Whether the handler found its inbox key done already: the delivery is a duplicate.
    pub(crate) fn is_duplicate(&self) -> bool {
        self.inbox().is_some_and(InboxEntry::is_duplicate)
    }

    /// Starts the next attempt: counts it and forgets the follow-ups of the last one.
    pub(crate) fn begin_attempt(&self) -> u32 {
        self.inner.pending.lock().clear();
        self.inner.attempt.fetch_add(1, Relaxed) + 1
    }

    /// Sets the attempt number: a source runner counts deliveries, not in-process retries.
    /// Marks the outcome as counted by a layer (duplicate, stale, held): the runner counts
    /// no success for it.
    pub(crate) fn outcome_counted(&self) {
        self.inner.counted.store(true, Relaxed);
    }

    pub(crate) fn is_outcome_counted(&self) -> bool {
        self.inner.counted.load(Relaxed)
    }

    pub(crate) fn set_attempt(&self, n: u32) {
        self.inner.attempt.store(n, Relaxed);
    }

    /// Notes a failed attempt's time.
    pub(crate) fn note_failure(&self) {
        let now = Timestamp::now();
        let mut f = self.inner.failures.lock();
        *f = Some(match *f {
            Some((first, _)) => (first, now),
            None => (now, now),
        });
    }

    /// First and last failure times, if any attempt failed.
    pub(crate) fn failures(&self) -> Option<(Timestamp, Timestamp)> {
        *self.inner.failures.lock()
    }

    pub(crate) fn bump(&self, stat: Stat) {
        self.inner.sub.stats.incr(stat);
    }

    /// The held-now gauge: `true` when an event starts being held, `false` when it leaves.
    pub(crate) fn holding(&self, start: bool) {
        self.inner.sub.stats.holding(start);
    }

    /// The dedup-waiting-now gauge: `true` when a delivery starts waiting for a key another
    /// run holds, `false` when it stops.
    pub(crate) fn waiting(&self, start: bool) {
        self.inner.sub.stats.waiting(start);
    }

    pub(crate) fn chains(&self) -> Option<&Chains> {
        self.inner.sub.chains.as_ref()
    }

    /// Publishes the follow-ups the attempt queued, in order. Called when it succeeded.
    pub(crate) async fn flush(&self) -> Result<(), HandlerError> {
        let pending = std::mem::take(&mut *self.inner.pending.lock());
        if pending.is_empty() {
            return Ok(());
        }
        let Some(bus) = self.inner.sub.bus.as_ref() else {
            return Err(HandlerError::permanent(
                "the handler emitted follow-up events but its context has no bus",
            ));
        };
        for emit in pending {
            let meta = emit.meta().clone();
            emit.publish(bus).await?;
            self.bump(Stat::Emitted);
            if let Some(chains) = self.chains() {
                chains.record(&meta);
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("event_id", self.event_id())
            .field("subscription", &self.subscription())
            .field("attempt", &self.attempt())
            .finish_non_exhaustive()
    }
}

/// A follow-up waiting for its attempt to succeed.
trait PendingEmit: Send {
    fn meta(&self) -> &Metadata;
    fn publish<'a>(self: Box<Self>, bus: &'a Bus) -> BoxFuture<'a, Result<usize, HandlerError>>;
}

struct Typed<E>(Envelope<E>);

impl<E: Event> PendingEmit for Typed<E> {
    fn meta(&self) -> &Metadata {
        self.0.meta()
    }

    fn publish<'a>(self: Box<Self>, bus: &'a Bus) -> BoxFuture<'a, Result<usize, HandlerError>> {
        Box::pin(async move { bus.publish_envelope(self.0).await.map_err(emit_error) })
    }
}

fn emit_error<T>(e: PublishError<T>) -> HandlerError {
    match e {
        PublishError::Full(_) | PublishError::WouldBlock(_) => HandlerError::new(
            ErrorKind::Emit,
            format!("follow-up event not published: {e}"),
        ),
        _ => HandlerError::permanent(format!("follow-up event not published: {e}")),
    }
}
