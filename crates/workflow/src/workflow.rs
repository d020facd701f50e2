//! Workflow subscriptions: a bus subscription running a handler inside the default stack of
//! reliability layers, plus dead-letter redrive and chain queries.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use smol_str::SmolStr;
use syncbus_core::{
    Bus, Overflow, SubscribeBuilder, SubscribeError, Subscription, SubscriptionMetrics,
};
use syncbus_envelope::{Bytes, Envelope, EventId, Payload};

use crate::chain::{ChainNode, Chains};
use crate::context::{Context, SubscriptionInfo};
use crate::error::{ErrorKind, HandlerError};
use crate::handler::{catch_panic, handler_fn, Handler};
use crate::layer::Stack;
use crate::layers::{
    Bucket, CircuitBreakerConfig, ConcurrencyLimitLayer, DeadLettersLayer, DedupConfig, EmitLayer,
    RateLimitConfig, ResequenceConfig, RetryLayer, RetryPolicy, TimeoutLayer, REDRIVE_HEADER,
};
use crate::metrics::{Stat, Stats, WorkflowMetrics};
use crate::storable::Storable;
use crate::store::IntoArc;
use crate::store::{
    DeadLetterFilter, DeadLetterId, DeadLetterStore, MemoryDeadLetterStore, StoreError,
    StoreErrorKind,
};
use crate::BoxFuture;

type Runner<P> = Arc<dyn Fn(Envelope<P>) -> BoxFuture<'static, ()> + Send + Sync>;

pub(crate) type Redriver =
    Arc<dyn Fn(Envelope<Bytes>) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

/// The workflow runtime of one bus: makes workflow subscriptions, keeps the dead-letter
/// store they share and the chains of events they handled, and redrives dead letters.
///
/// Cloning is cheap and shares everything.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use syncbus_core::{Bus, Envelope, Event};
/// use syncbus_workflow::{handler_fn, HandlerError, RetryPolicy, Workflow};
///
/// #[derive(Clone, Debug, Serialize, Deserialize)]
/// struct OrderPlaced { order: u64 }
/// impl Event for OrderPlaced { const TYPE: &'static str = "shop.order.placed"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::new();
/// let wf = Workflow::new(&bus);
/// let sub = wf
///     .subscribe::<OrderPlaced>("shop.order.placed")?
///     .name("reserve-stock")
///     .retry(RetryPolicy::default().max_attempts(3))
///     .dedup(syncbus_workflow::DedupConfig::memory(100_000))
///     .handle(|env, _ctx| async move {
///         println!("reserving stock for order {}", env.payload().order);
///         Ok::<(), HandlerError>(())
///     })?;
/// bus.publish(OrderPlaced { order: 1 }).await?;
/// bus.shutdown(std::time::Duration::from_secs(1)).await;
/// assert_eq!(sub.metrics().succeeded, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Workflow {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Bus,
    chains: Option<Chains>,
    dead_letters: Arc<dyn DeadLetterStore>,
    redrivers: Mutex<HashMap<SmolStr, Redriver>>,
}

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("subscriptions", &self.inner.redrivers.lock().len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Workflow`] with a chosen dead-letter store and chain retention.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use syncbus_storage::MemoryDeadLetterStore;
/// use syncbus_workflow::Workflow;
/// let bus = syncbus_core::Bus::new();
/// let wf = Workflow::builder(&bus)
///     .dead_letters(MemoryDeadLetterStore::new(50_000))
///     .chains(0) // do not retain chains
///     .build();
/// assert!(wf.chains().is_none());
/// ```
#[derive(Clone)]
pub struct WorkflowBuilder {
    bus: Bus,
    dead_letters: Option<Arc<dyn DeadLetterStore>>,
    chains: usize,
}

impl fmt::Debug for WorkflowBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowBuilder")
            .field("chains", &self.chains)
            .finish_non_exhaustive()
    }
}

impl WorkflowBuilder {
    /// The store dead letters go to (default: in memory, 10,000 records).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use syncbus_workflow::Workflow;
    /// use syncbus_storage::MemoryDeadLetterStore;
    /// let bus = syncbus_core::Bus::new();
    /// let store = Arc::new(MemoryDeadLetterStore::new(1_000));
    /// let wf = Workflow::builder(&bus).dead_letters(store.clone()).build();
    /// # let _ = wf;
    /// ```
    pub fn dead_letters(mut self, store: impl IntoArc<dyn DeadLetterStore>) -> Self {
        let store = store.into_arc();
        self.dead_letters = Some(store);
        self
    }

    /// How many events the chain view retains (default 10,000; 0 turns it off).
    ///
    /// # Examples
    ///
    /// ```
    /// let bus = syncbus_core::Bus::new();
    /// let wf = syncbus_workflow::Workflow::builder(&bus).chains(100_000).build();
    /// assert!(wf.chains().is_some_and(|c| c.is_empty()));
    /// ```
    pub fn chains(mut self, capacity: usize) -> Self {
        self.chains = capacity;
        self
    }

    /// The workflow.
    ///
    /// # Examples
    ///
    /// ```
    /// let bus = syncbus_core::Bus::new();
    /// let wf = syncbus_workflow::Workflow::builder(&bus).build(); // the same as Workflow::new
    /// assert!(wf.chains().is_some());
    /// ```
    pub fn build(self) -> Workflow {
        Workflow {
            inner: Arc::new(Inner {
                bus: self.bus,
                chains: (self.chains > 0).then(|| Chains::new(self.chains)),
                dead_letters: self
                    .dead_letters
                    .unwrap_or_else(|| Arc::new(MemoryDeadLetterStore::new(10_000))),
                redrivers: Mutex::default(),
            }),
        }
    }
}

impl Workflow {
    /// A workflow on `bus` with an in-memory dead-letter store and chain retention.
    ///
    /// # Examples
    ///
    /// ```
    /// let bus = syncbus_core::Bus::new();
    /// let wf = syncbus_workflow::Workflow::new(&bus);
    /// assert!(wf.chains().is_some()); // chains retained by default
    /// ```
    pub fn new(bus: &Bus) -> Workflow {
        Workflow::builder(bus).build()
    }

    /// A builder; see [`WorkflowBuilder`].
    ///
    /// # Examples
    ///
    /// ```
    /// let bus = syncbus_core::Bus::new();
    /// let wf = syncbus_workflow::Workflow::builder(&bus).chains(0).build();
    /// assert!(wf.chains().is_none());
    /// ```
    pub fn builder(bus: &Bus) -> WorkflowBuilder {
        WorkflowBuilder {
            bus: bus.clone(),
            dead_letters: None,
            chains: 10_000,
        }
    }

    /// The bus.
    ///
    /// # Examples
    ///
    /// ```
    /// let bus = syncbus_core::Bus::new();
    /// let wf = syncbus_workflow::Workflow::new(&bus);
    /// assert!(!wf.bus().is_closed());
    /// ```
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// The dead-letter store subscriptions use unless told otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// # let bus = syncbus_core::Bus::new();
    /// let wf = syncbus_workflow::Workflow::new(&bus);
    /// let _store = wf.dead_letters();
    /// ```
    pub fn dead_letters(&self) -> &Arc<dyn DeadLetterStore> {
        &self.inner.dead_letters
    }

    /// The chain view, unless turned off.
    ///
    /// # Examples
    ///
    /// ```
    /// let bus = syncbus_core::Bus::new();
    /// let wf = syncbus_workflow::Workflow::new(&bus);
    /// assert_eq!(wf.chains().map(|c| c.len()), Some(0)); // nothing handled yet
    /// ```
    pub fn chains(&self) -> Option<&Chains> {
        self.inner.chains.as_ref()
    }

    /// The tree of events `id` caused, while they are retained.
    ///
    /// # Examples
    ///
    /// ```
    /// # let bus = syncbus_core::Bus::new();
    /// let wf = syncbus_workflow::Workflow::new(&bus);
    /// assert!(wf.chain(&syncbus_core::EventId::new()).is_none());
    /// ```
    pub fn chain(&self, id: &EventId) -> Option<ChainNode> {
        self.inner.chains.as_ref()?.tree(id)
    }

    /// Starts a workflow subscription to `pattern`; see [`WorkflowSubscribe`].
    ///
    /// The event type must be [`Storable`]: an `Event` that is also `Serialize` and
    /// `DeserializeOwned`, because a dead letter keeps the event as JSON and a redrive
    /// decodes it back.
    ///
    /// # Errors
    ///
    /// [`SubscribeError`] for an invalid pattern or a closed bus.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = syncbus_core::Bus::new();
    /// let wf = syncbus_workflow::Workflow::new(&bus);
    /// assert!(wf.subscribe::<Ping>("pings.*").is_ok());
    /// assert!(wf.subscribe::<Ping>("pings..eu").is_err()); // not a pattern
    /// ```
    pub fn subscribe<P: Payload + Storable>(
        &self,
        pattern: &str,
    ) -> Result<WorkflowSubscribe<P>, SubscribeError> {
        let bus = self.inner.bus.subscribe::<P>(pattern)?;
        Ok(WorkflowSubscribe {
            wf: self.clone(),
            bus,
            pattern: SmolStr::new(pattern),
            settings: Settings::default(),
            retry: Some(RetryPolicy::default()),
            concurrency: None,
        })
    }

    /// Takes `name` for a subscription or a served source, with the redriver that replays
    /// its dead letters; `false` if the name is taken.
    pub(crate) fn claim_name(&self, name: &SmolStr, redriver: Redriver) -> bool {
        match self.inner.redrivers.lock().entry(name.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(redriver);
                true
            }
        }
    }

    /// Frees a name taken by [`claim_name`](Self::claim_name).
    pub(crate) fn release_name(&self, name: &str) {
        self.inner.redrivers.lock().remove(name);
    }

    /// Redrives the dead letters `redrive` selects into the subscriptions they failed in.
    ///
    /// Each record's event is replayed with a fresh event id (so dedup by id does not take
    /// it for a duplicate) and the header [`REDRIVE_HEADER`] naming the original id. It runs
    /// through the subscription's whole stack, awaited one by one at the given rate; the
    /// record is deleted once replayed (if it fails again, the stack records a new one).
    /// Records of a subscription that is not running, or whose payload does not decode as
    /// the subscription's event type, are skipped and kept, each with its
    /// [`SkipReason`] in [`RedriveReport::skipped`].
    ///
    /// # Errors
    ///
    /// [`RedriveError::UnknownSubscription`] if the filter names a subscription that is
    /// neither running nor has a dead letter the filter selects (a typo matches nothing
    /// quietly otherwise); [`RedriveError::Store`] if listing or deleting records fails;
    /// records replayed before it stay replayed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::{Redrive, RedriveError, Workflow};
    /// use syncbus_storage::DeadLetterFilter;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let bus = syncbus_core::Bus::new();
    /// let wf = Workflow::new(&bus);
    /// let report = wf.redrive(Redrive::new(DeadLetterFilter::new()).dry_run()).await?;
    /// assert_eq!(report.matched, 0);
    /// // No subscription "billing" runs, and none left dead letters: a typed error.
    /// let typo = wf.redrive(Redrive::new(DeadLetterFilter::new().subscription("billing"))).await;
    /// assert!(matches!(typo, Err(RedriveError::UnknownSubscription(name)) if name == "billing"));
    /// # Ok(()) }
    /// ```
    pub async fn redrive(&self, redrive: Redrive) -> Result<RedriveReport, RedriveError> {
        let mut records = self.inner.dead_letters.list(&redrive.filter).await?;
        if let Some(only) = &redrive.only {
            records.retain(|r| &r.id == only);
        }
        if let Some(name) = &redrive.filter.subscription {
            if records.is_empty() && !self.inner.redrivers.lock().contains_key(name.as_str()) {
                return Err(RedriveError::UnknownSubscription(name.clone()));
            }
        }
        let mut report = RedriveReport {
            matched: records.len(),
            ..RedriveReport::default()
        };
        let bucket = redrive.rate.map(Bucket::new);
        for record in records {
            let redriver = self
                .inner
                .redrivers
                .lock()
                .get(record.subscription.as_str())
                .cloned();
            let Some(redriver) = redriver else {
                report.skipped.push(Skipped {
                    id: record.id,
                    reason: SkipReason::NotRunning(record.subscription),
                });
                continue;
            };
            if redrive.dry_run {
                report.redriven.push(record.id);
                continue;
            }
            if let Some(b) = &bucket {
                b.take(None).await;
            }
            let mut env = record.envelope.clone();
            let original = env.meta().id().to_string();
            let meta = env.meta_mut();
            meta.set_id(EventId::new());
            if let Err(e) = meta.headers_mut().insert(REDRIVE_HEADER, original.as_str()) {
                tracing::error!(dead_letter = %record.id, error = %e, "cannot mark the redriven event");
                report.skipped.push(Skipped {
                    id: record.id,
                    reason: SkipReason::Unmarkable(e.to_string()),
                });
                continue;
            }
            match redriver(env).await {
                Ok(()) => report.succeeded += 1,
                Err(e) if e.kind() == ErrorKind::Decode => {
                    // It never reached the handler, so no new record stands for it: keep this one.
                    tracing::error!(dead_letter = %record.id, error = %e, "dead letter not redriven");
                    report.skipped.push(Skipped {
                        id: record.id,
                        reason: SkipReason::Undecodable(e.to_string()),
                    });
                    continue;
                }
                // Failed again: the stack recorded a new dead letter for it.
                Err(_) => report.failed += 1,
            }
            match self.inner.dead_letters.delete(&record.id).await {
                // Deleted by someone else meanwhile: replayed all the same.
                Ok(()) => {}
                Err(e) if e.kind() == StoreErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            report.redriven.push(record.id);
        }
        Ok(report)
    }

    /// Redrives one dead letter by id; see [`redrive`](Self::redrive).
    ///
    /// # Errors
    ///
    /// [`RedriveError::UnknownDeadLetter`] if no dead letter has this id; otherwise as
    /// [`redrive`](Self::redrive).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_workflow::RedriveError;
    /// # let bus = syncbus_core::Bus::new();
    /// let wf = syncbus_workflow::Workflow::new(&bus);
    /// let unknown = wf.redrive_one(&syncbus_storage::DeadLetterId::new()).await;
    /// assert!(matches!(unknown, Err(RedriveError::UnknownDeadLetter(_))));
    /// # Ok(()) }
    /// ```
    pub async fn redrive_one(&self, id: &DeadLetterId) -> Result<RedriveReport, RedriveError> {
        let record = match self.inner.dead_letters.get(id).await {
            Ok(r) => r,
            Err(e) if e.kind() == StoreErrorKind::NotFound => {
                return Err(RedriveError::UnknownDeadLetter(id.clone()))
            }
            Err(e) => return Err(e.into()),
        };
        let filter = DeadLetterFilter::new()
            .subscription(record.subscription.clone())
            .between(
                record.last_failure,
                syncbus_envelope::Timestamp::from_unix_nanos(
                    record.last_failure.as_unix_nanos().saturating_add(1),
                ),
            );
        let mut redrive = Redrive::new(filter);
        redrive.only = Some(record.id);
        self.redrive(redrive).await
    }
}

/// Why [`Workflow::redrive`] or [`Workflow::redrive_one`] failed as a whole.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::RedriveError;
/// let e = RedriveError::UnknownSubscription("billing".into());
/// assert_eq!(e.to_string(), "no subscription \"billing\" is running or has dead letters");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum RedriveError {
    /// No dead letter has this id.
    UnknownDeadLetter(DeadLetterId),
    /// The filter names a subscription that is not running and has no dead letter the
    /// filter selects.
    UnknownSubscription(String),
    /// The dead-letter store failed.
    Store(StoreError),
}

impl fmt::Display for RedriveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedriveError::UnknownDeadLetter(id) => write!(f, "no dead letter has the id {id}"),
            RedriveError::UnknownSubscription(name) => {
                write!(f, "no subscription {name:?} is running or has dead letters")
            }
            RedriveError::Store(e) => write!(f, "dead-letter store: {e}"),
        }
    }
}

impl std::error::Error for RedriveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RedriveError::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StoreError> for RedriveError {
    fn from(e: StoreError) -> Self {
        RedriveError::Store(e)
    }
}

/// A dead letter a redrive kept, and why.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{SkipReason, Skipped};
/// # fn show(s: &Skipped) {
/// if let SkipReason::NotRunning(name) = &s.reason {
///     println!("start {name} again to redrive {}", s.id);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Skipped {
    /// The record kept.
    pub id: DeadLetterId,
    /// Why it was not replayed.
    pub reason: SkipReason,
}

/// Why a redrive kept a dead letter.
///
/// # Examples
///
/// ```
/// let r = syncbus_workflow::SkipReason::NotRunning("billing".into());
/// assert_eq!(r.to_string(), "subscription \"billing\" is not running");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Its subscription is not running in this workflow (dropped, or not started yet).
    NotRunning(String),
    /// Its payload does not decode as the subscription's event type.
    Undecodable(String),
    /// The redrive header could not be set on the event.
    Unmarkable(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotRunning(name) => write!(f, "subscription {name:?} is not running"),
            SkipReason::Undecodable(e) => write!(f, "payload does not decode: {e}"),
            SkipReason::Unmarkable(e) => write!(f, "cannot mark the redriven event: {e}"),
        }
    }
}

/// Which dead letters to redrive, how fast, and whether for real.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{RateLimitConfig, Redrive};
/// use syncbus_storage::DeadLetterFilter;
/// let r = Redrive::new(DeadLetterFilter::new().error_contains("503"))
///     .rate_limit(RateLimitConfig::per_second(20))
///     .dry_run();
/// # let _ = r;
/// ```
#[derive(Debug, Clone)]
pub struct Redrive {
    filter: DeadLetterFilter,
    rate: Option<RateLimitConfig>,
    dry_run: bool,
    only: Option<DeadLetterId>,
}

impl Redrive {
    /// Redrive what `filter` selects.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::Redrive;
    /// use syncbus_storage::DeadLetterFilter;
    /// let everything_for_billing = Redrive::new(DeadLetterFilter::new().subscription("billing"));
    /// # let _ = everything_for_billing;
    /// ```
    pub fn new(filter: DeadLetterFilter) -> Self {
        Redrive {
            filter,
            rate: None,
            dry_run: false,
            only: None,
        }
    }

    /// At most this rate.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::{RateLimitConfig, Redrive};
    /// use syncbus_storage::DeadLetterFilter;
    /// // Replay gently: the downstream has only just come back.
    /// let r = Redrive::new(DeadLetterFilter::new()).rate_limit(RateLimitConfig::per_second(5));
    /// # let _ = r;
    /// ```
    pub fn rate_limit(mut self, rate: RateLimitConfig) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Only report what would be redriven.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_workflow::{Redrive, Workflow};
    /// use syncbus_storage::DeadLetterFilter;
    /// let bus = syncbus_core::Bus::new();
    /// let wf = Workflow::new(&bus);
    /// let report = wf.redrive(Redrive::new(DeadLetterFilter::new()).dry_run()).await?;
    /// assert!(report.redriven.is_empty()); // nothing failed, nothing to replay
    /// # Ok(()) }
    /// ```
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }
}

/// What a redrive did.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use serde::{Deserialize, Serialize};
/// use syncbus_core::{Bus, Envelope, Event};
/// use syncbus_workflow::{handler_fn, HandlerError, Redrive, Workflow};
/// use syncbus_storage::DeadLetterFilter;
/// #[derive(Clone, Debug, Serialize, Deserialize)] struct Job(u32);
/// impl Event for Job { const TYPE: &'static str = "job"; }
///
/// let bus = Bus::new();
/// let wf = Workflow::new(&bus);
/// let fixed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
/// let f = fixed.clone();
/// let jobs = wf.subscribe::<Job>("job")?.name("jobs").no_retry().handle(
///     move |_e: Envelope<Job>, _c| {
///         let ok = f.load(std::sync::atomic::Ordering::SeqCst);
///         async move { if ok { Ok(()) } else { Err(HandlerError::permanent("bug")) } }
///     },
/// )?;
/// bus.publish(Job(1)).await?;
/// bus.settled().await; // it failed and was dead-lettered
/// assert_eq!(jobs.metrics().dead_lettered, 1);
/// fixed.store(true, std::sync::atomic::Ordering::SeqCst); // the bug is fixed: replay
/// let report = wf.redrive(Redrive::new(DeadLetterFilter::new().subscription("jobs"))).await?;
/// assert_eq!((report.matched, report.succeeded, report.failed), (1, 1, 0));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedriveReport {
    /// Records the filter selected.
    pub matched: usize,
    /// Records replayed (or, in a dry run, that would be), now deleted.
    pub redriven: Vec<DeadLetterId>,
    /// Replays that succeeded.
    pub succeeded: usize,
    /// Replays that failed again (and were dead-lettered anew).
    pub failed: usize,
    /// Records kept, each with the reason: their subscription is not running, or their
    /// payload does not decode as its event type (logged).
    pub skipped: Vec<Skipped>,
}

/// A workflow subscription being set up: the bus subscription's settings plus the layers.
///
/// The stack, outermost first: **dead letters → dedup → resequence → retry → circuit breaker
/// → rate limit → per-attempt timeout → concurrency limit → emit → handler**. Retry is on by
/// default ([`RetryPolicy::default`]), dead letters always (the workflow's store unless
/// [`dead_letters`](Self::dead_letters) says otherwise); the rest are off until set.
///
/// Handlers run on tokio tasks ([`workers`](Self::workers) of them, default 1, or one per
/// lane with [`keyed`](Self::keyed)). A delivery waiting for a retry holds its worker:
/// give a subscription whose handler may back off for long more workers, or keyed lanes.
///
/// # Examples
///
/// ```
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
/// let bus = syncbus_core::Bus::new();
/// let wf = syncbus_workflow::Workflow::new(&bus);
/// let setup = wf.subscribe::<Ping>("ping")?.name("pinger").workers(2).no_retry();
/// # let _ = setup;
/// # Ok::<(), syncbus_core::SubscribeError>(())
/// ```
pub struct WorkflowSubscribe<P> {
    wf: Workflow,
    bus: SubscribeBuilder<P>,
    pattern: SmolStr,
    settings: Settings,
    retry: Option<RetryPolicy>,
    concurrency: Option<usize>,
}

impl<P> fmt::Debug for WorkflowSubscribe<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowSubscribe")
            .field("pattern", &self.pattern)
            .field("name", &self.settings.name)
            .finish_non_exhaustive()
    }
}

impl<P: Payload + Storable> WorkflowSubscribe<P> {
    /// The subscription's name: in metrics, logs, dead letters and redrive (default: the
    /// pattern). Names are unique within a workflow.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = syncbus_core::Bus::new();
    /// let region = "eu";
    /// let s = syncbus_workflow::Workflow::new(&bus)
    ///     .subscribe::<Ping>("ping")?
    ///     .name(format!("pinger-{region}")); // a `&str`, a `String` or a `SmolStr`
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn name(mut self, name: impl Into<SmolStr>) -> Self {
        self.settings.name = Some(name.into());
        self
    }

    /// The handler's name in dead letters (default: the subscription's).
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?.handler_name("pinger-v2");
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn handler_name(mut self, name: impl Into<SmolStr>) -> Self {
        self.settings.handler_name = Some(name.into());
        self
    }

    /// The queue's capacity (see `SubscribeBuilder::capacity`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?.capacity(4096).workers(8);
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn capacity(mut self, n: usize) -> Self {
        self.bus = self.bus.capacity(n);
        self
    }

    /// How many tasks handle events (default 1); see [`capacity`](Self::capacity).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?.workers(4);
    /// # let _ = s;
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.bus = self.bus.workers(n);
        self
    }

    /// Keyed lanes: events of one entity one at a time, in order, `lanes` entities at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?.keyed(16);
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn keyed(mut self, lanes: usize) -> Self {
        self.bus = self.bus.keyed(lanes);
        self
    }

    /// The queue's overflow policy (see `Overflow`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?.overflow(syncbus_core::Overflow::Reject);
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.bus = self.bus.overflow(overflow);
        self
    }

    /// Runs each key once; see [`DedupConfig`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus)
    ///     .subscribe::<Ping>("ping")?
    ///     .dedup(syncbus_workflow::DedupConfig::memory(10_000));
    /// # let _ = s;
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn dedup(mut self, dedup: DedupConfig) -> Self {
        self.settings.dedup = Some(dedup);
        self
    }

    /// Applies each entity's versions in order; see [`ResequenceConfig`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?.resequence(syncbus_workflow::ResequenceConfig::new());
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn resequence(mut self, cfg: ResequenceConfig) -> Self {
        self.settings.resequence = Some(cfg);
        self
    }

    /// The retry policy (default [`RetryPolicy::default`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus)
    ///     .subscribe::<Ping>("ping")?
    ///     .retry(syncbus_workflow::RetryPolicy::new().max_attempts(3));
    /// # let _ = s;
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// No retries: one attempt, then dead letters.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?.no_retry();
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn no_retry(mut self) -> Self {
        self.retry = None;
        self
    }

    /// Each attempt may take at most `d`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?.timeout(std::time::Duration::from_secs(3));
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn timeout(mut self, d: Duration) -> Self {
        self.settings.timeout = Some(d);
        self
    }

    /// At most `n` attempts run at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?.workers(16).concurrency(4);
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// At most this rate of attempts.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?.rate_limit(syncbus_workflow::RateLimitConfig::per_second(10));
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn rate_limit(mut self, rate: RateLimitConfig) -> Self {
        self.settings.rate = Some(rate);
        self
    }

    /// A circuit breaker in front of the handler.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = syncbus_core::Bus::new();
    /// let s = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?.circuit_breaker(syncbus_workflow::CircuitBreakerConfig::new());
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn circuit_breaker(mut self, breaker: CircuitBreakerConfig) -> Self {
        self.settings.breaker = Some(breaker);
        self
    }

    /// Dead letters of this subscription go to `store` instead of the workflow's.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = syncbus_core::Bus::new();
    /// let store = std::sync::Arc::new(syncbus_storage::MemoryDeadLetterStore::new(100));
    /// let s = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?.dead_letters(store);
    /// # Ok::<(), syncbus_core::SubscribeError>(())
    /// ```
    pub fn dead_letters(mut self, store: impl IntoArc<dyn DeadLetterStore>) -> Self {
        let store = store.into_arc();
        self.settings.dead_letters = Some(store);
        self
    }

    /// Starts the subscription with the async closure `f` inside the stack: it gets the
    /// envelope (its type is the subscription's, so it need not be spelled) and the
    /// delivery's [`Context`], and returns `Ok(())` or a [`HandlerError`]. For a handler
    /// that is not a closure (a [`Handler`] of your own, a `sync_handler_fn`, a stack of
    /// layers), use [`handle_with`](Self::handle_with).
    ///
    /// # Errors
    ///
    /// [`SubscribeError`] as the bus gives it (no tokio runtime, a bad capacity, a closed
    /// bus), or `InvalidConfig` if the workflow has a subscription of this name already.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping { n: u64 }
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// use syncbus_core::SubscribeError;
    /// use syncbus_workflow::Workflow;
    /// let bus = syncbus_core::Bus::new();
    /// let wf = Workflow::new(&bus);
    /// let _sub = wf.subscribe::<Ping>("ping")?.name("pinger").handle(|env, _ctx| async move {
    ///     println!("ping {}", env.payload().n);
    ///     Ok(())
    /// })?;
    /// // A second subscription of the same name is refused.
    /// let again = wf.subscribe::<Ping>("ping")?.name("pinger").handle(|_env, _ctx| async { Ok(()) });
    /// assert!(matches!(again, Err(SubscribeError::InvalidConfig(_))));
    /// # Ok(()) }
    /// ```
    pub fn handle<F, Fut>(self, f: F) -> Result<WorkflowSubscription, SubscribeError>
    where
        F: Fn(Envelope<P>, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send,
    {
        self.handle_with(handler_fn(f))
    }

    /// Starts the subscription with `handler` inside the stack: any [`Handler`], such as a
    /// [`sync_handler_fn`](crate::sync_handler_fn), a type of your own or layers of your own
    /// around one. [`handle`](Self::handle) takes a closure.
    ///
    /// # Errors
    ///
    /// As [`handle`](Self::handle).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// use syncbus_workflow::{sync_handler_fn, Workflow};
    /// let bus = syncbus_core::Bus::new();
    /// let wf = Workflow::new(&bus);
    /// let _sub = wf
    ///     .subscribe::<Ping>("ping")?
    ///     .handle_with(sync_handler_fn(|_env, _ctx| Ok(())))?;
    /// # Ok(()) }
    /// ```
    pub fn handle_with<H: Handler<P>>(
        self,
        handler: H,
    ) -> Result<WorkflowSubscription, SubscribeError> {
        let wf = self.wf.clone();
        let (name, info) = self.settings.info(&wf, &self.pattern);
        let dl = self.settings.dead_letters(&wf);
        let stack = Arc::new(self.settings.stack(
            handler,
            &dl,
            Some(DeadLettersLayer::new(dl.clone())),
            self.retry,
            self.concurrency,
        ));
        let stats = info.stats.clone();
        let redriver = redriver(stack.clone(), info.clone());
        // The name is taken before the bus subscription starts, so a duplicate never
        // receives an event.
        if !wf.claim_name(&name, redriver) {
            return Err(SubscribeError::InvalidConfig(
                "the workflow has a subscription of this name already",
            ));
        }

        // One boxed future per delivery erases the stack's type: nine layers of nested
        // futures would otherwise be part of every type the bus's worker is built from.
        // The stack settles every outcome itself (a failure is dead-lettered, counted and
        // logged once by its layer), so the bus's worker is handed no error to log again.
        let runner: Runner<P> = Arc::new(move |env: Envelope<P>| {
            let (s, i) = (stack.clone(), info.clone());
            Box::pin(async move {
                let _ = run_one(&*s, &i, env).await;
            })
        });
        let run = move |env: Envelope<P>| runner(env);
        let bus_sub = self.bus.name(name.clone());
        let sub = match bus_sub.queued_async(run) {
            Ok(sub) => sub,
            Err(e) => {
                wf.inner.redrivers.lock().remove(&name);
                return Err(e);
            }
        };
        Ok(WorkflowSubscription {
            sub: Some(sub),
            name,
            stats,
            wf: Arc::downgrade(&wf.inner),
        })
    }
}

/// Runs one delivery through the stack: makes its context, records the outcome.
async fn run_one<P: Payload, H: Handler<P>>(
    stack: &H,
    info: &Arc<SubscriptionInfo>,
    env: Envelope<P>,
) -> Result<(), HandlerError> {
    let ctx = Context::for_delivery(info, env.meta());
    run_in(stack, info, env, ctx).await
}

/// Runs one delivery through the stack in the context given, records the outcome.
pub(crate) async fn run_in<P: Payload, H: Handler<P>>(
    stack: &H,
    info: &Arc<SubscriptionInfo>,
    env: Envelope<P>,
    ctx: Context,
) -> Result<(), HandlerError> {
    let meta = info.chains.is_some().then(|| env.meta().clone());
    let probe = ctx.clone();
    let r = catch_panic(stack.call(env, ctx)).await;
    match &r {
        // A duplicate, a stale or a held version: a layer counted its outcome.
        Ok(()) if probe.is_outcome_counted() => {}
        Ok(()) => info.stats.incr(Stat::Succeeded),
        Err(_) => info.stats.incr(Stat::Failed),
    }
    if let (Some(chains), Some(meta)) = (&info.chains, meta) {
        chains.handled(
            &meta,
            &info.subscription,
            r.as_ref().map_err(|e| e.to_string()).copied(),
        );
    }
    r
}

/// The settings a push subscription and a served source share, and the one place the
/// stack is built from them.
#[derive(Default)]
pub(crate) struct Settings {
    pub(crate) name: Option<SmolStr>,
    pub(crate) handler_name: Option<SmolStr>,
    pub(crate) dedup: Option<DedupConfig>,
    pub(crate) resequence: Option<ResequenceConfig>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) rate: Option<RateLimitConfig>,
    pub(crate) breaker: Option<CircuitBreakerConfig>,
    pub(crate) dead_letters: Option<Arc<dyn DeadLetterStore>>,
}

impl Settings {
    /// The store failures go to: the one set, else the workflow's.
    pub(crate) fn dead_letters(&self, wf: &Workflow) -> Arc<dyn DeadLetterStore> {
        self.dead_letters
            .clone()
            .unwrap_or_else(|| wf.inner.dead_letters.clone())
    }

    /// The name (the one set, else `default`) and what every delivery's context shares.
    pub(crate) fn info(&self, wf: &Workflow, default: &str) -> (SmolStr, Arc<SubscriptionInfo>) {
        let name = self.name.clone().unwrap_or_else(|| SmolStr::new(default));
        let handler_name = self.handler_name.clone().unwrap_or_else(|| name.clone());
        let info = SubscriptionInfo::new(
            Some(wf.inner.bus.clone()),
            name.clone(),
            handler_name,
            wf.inner.chains.clone(),
        );
        (name, info)
    }

    /// The stack, outermost first: dead letters → dedup → resequence → retry → circuit
    /// breaker → rate limit → timeout → concurrency limit → emit → handler. A served source
    /// leaves out the dead-letter, retry and concurrency layers: its runner settles, retries
    /// through the source and runs lanes instead.
    pub(crate) fn stack<P: Storable, H: Handler<P>>(
        self,
        handler: H,
        dl: &Arc<dyn DeadLetterStore>,
        dead_letters: Option<DeadLettersLayer>,
        retry: Option<RetryPolicy>,
        concurrency: Option<usize>,
    ) -> impl Handler<P> {
        Stack::new()
            .layer(dead_letters)
            .layer(self.dedup.map(DedupConfig::layer))
            .layer(self.resequence.map(|o| o.dead_letters(dl.clone()).layer()))
            .layer(retry.map(RetryLayer::new))
            .layer(self.breaker.map(CircuitBreakerConfig::layer))
            .layer(self.rate.map(RateLimitConfig::layer))
            .layer(self.timeout.map(TimeoutLayer::new))
            .layer(concurrency.map(ConcurrencyLimitLayer::new))
            .layer(EmitLayer)
            .handler(handler)
    }
}

/// Replays a dead letter through `stack`, decoded for its handler.
pub(crate) fn redriver<P: Payload + Storable, H: Handler<P>>(
    stack: Arc<H>,
    info: Arc<SubscriptionInfo>,
) -> Redriver {
    Arc::new(move |env: Envelope<Bytes>| {
        let (s, i) = (stack.clone(), info.clone());
        Box::pin(async move {
            let env = P::from_stored(&env).map_err(|e| {
                HandlerError::new(ErrorKind::Decode, format!("redriven event: {e}"))
            })?;
            run_one(&*s, &i, env).await
        })
    })
}

/// A running workflow subscription. Dropping it unsubscribes (as a bus `Subscription`
/// does) and stops redrives into it.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
/// use syncbus_workflow::{handler_fn, Workflow};
/// let bus = syncbus_core::Bus::new();
/// let wf = Workflow::new(&bus);
/// let ok = |_e: syncbus_core::Envelope<Ping>, _c| async { Ok(()) };
/// let sub = wf.subscribe::<Ping>("ping")?.name("pinger").handle(ok)?;
/// drop(sub); // unsubscribed: the name is free again
/// let _again = wf.subscribe::<Ping>("ping")?.name("pinger").handle(ok)?;
/// # Ok(()) }
/// ```
///
/// A subscription made as a statement would never run, so it is `#[must_use]`:
///
/// ```compile_fail
/// # #![deny(unused_must_use)]
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let bus = syncbus_core::Bus::new();
/// # let wf = syncbus_workflow::Workflow::new(&bus);
/// # let ok = |_e: syncbus_core::Envelope<Ping>, _c| async { Ok(()) };
/// wf.subscribe::<Ping>("ping")?.handle(ok)?; // error: unused
/// # Ok(()) }
/// ```
#[must_use = "dropping a WorkflowSubscription unsubscribes it at once"]
pub struct WorkflowSubscription {
    sub: Option<Subscription>,
    name: SmolStr,
    stats: Arc<Stats>,
    wf: Weak<Inner>,
}

impl fmt::Debug for WorkflowSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowSubscription")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl WorkflowSubscription {
    /// The name.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = syncbus_core::Bus::new();
    /// let sub = syncbus_workflow::Workflow::new(&bus)
    ///     .subscribe::<Ping>("ping")?
    ///     .handle(|_e, _c| async { Ok(()) })?;
    /// assert_eq!(sub.name(), "ping"); // no name given: the pattern
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The layers' counters.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let bus = syncbus_core::Bus::new();
    /// let sub = syncbus_workflow::Workflow::new(&bus)
    ///     .subscribe::<Ping>("ping")?
    ///     .handle(|_e, _c| async { Ok(()) })?;
    /// bus.publish(Ping).await?;
    /// bus.shutdown(std::time::Duration::from_secs(1)).await;
    /// assert_eq!((sub.metrics().succeeded, sub.metrics().attempts), (1, 1));
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self) -> WorkflowMetrics {
        self.stats.snapshot()
    }

    /// The bus subscription's counters (queue, deliveries).
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let bus = syncbus_core::Bus::new();
    /// let sub = syncbus_workflow::Workflow::new(&bus).subscribe::<Ping>("ping")?
    ///     .handle(|_e, _c| async { Ok(()) })?;
    /// assert_eq!(sub.bus_metrics().pending, 0);
    /// # Ok(()) }
    /// ```
    pub fn bus_metrics(&self) -> SubscriptionMetrics {
        self.sub
            .as_ref()
            .map(Subscription::metrics)
            .unwrap_or_default()
    }
}

impl Drop for WorkflowSubscription {
    fn drop(&mut self) {
        if let Some(wf) = self.wf.upgrade() {
            wf.redrivers.lock().remove(&self.name);
        }
    }
}
