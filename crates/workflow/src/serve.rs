//! Serving a [`Source`]: the workflow stack over any pull-style reader, each delivery settled
//! from its outcome.
//!
//! The settle table is on [`WorkflowServe::handle`], the one place it is kept.
//!
//! Retries go through the source, not a loop in memory: the attempt is the delivery count,
//! so a retry survives a crash and the source's own redelivery (an ack timeout after a
//! crash) counts as an attempt too.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;

use std::time::Duration;

use smol_str::SmolStr;
use syncbus_core::{wait_settled, Busy, Settle, Source, Unsettled};
use syncbus_envelope::{Bytes, DecodeError, Envelope, Payload};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::context::{Context, SubscriptionInfo};
use crate::error::{ErrorKind, HandlerError};
use crate::handler::{handler_fn, Handler};
use crate::layers::{
    record_stored, CircuitBreakerConfig, DedupConfig, RateLimitConfig, ResequenceConfig,
    RetryPolicy,
};
use crate::metrics::{Stat, Stats, WorkflowMetrics};
use crate::pending::{Step, Ticking};
use crate::storable::Storable;
use crate::store::DeadLetterStore;
use crate::store::IntoArc;
use crate::workflow::{redriver, run_in, Settings, Workflow};
use crate::BoxFuture;

/// What the runner does with an event whose type is not the handler's (a log or stream that
/// carries several types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OtherTypes {
    /// Dead-letter it with the reason, then `term` it: nothing leaves the source unhandled
    /// without a record. The default.
    #[default]
    DeadLetter,
    /// `ack` it without a record, counted in [`ServeMetrics::skipped`]: for a source that is
    /// known to carry other types this handler does not care about.
    Skip,
}

/// Why a source could not be served.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServeError {
    /// Not called inside a tokio runtime: the runner is a task.
    NoRuntime,
    /// The workflow has a subscription or a served source of this name already.
    NameTaken(SmolStr),
    /// The source hands out payloads that are neither the handler's type nor bytes to decode.
    PayloadMismatch {
        /// The source's payload type.
        source: &'static str,
        /// The handler's payload type.
        handler: &'static str,
    },
    /// A setting is out of range.
    InvalidConfig(&'static str),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::NoRuntime => f.write_str("serving a source needs a tokio runtime"),
            ServeError::NameTaken(name) => write!(
                f,
                "the workflow has a subscription or served source named {name:?} already"
            ),
            ServeError::PayloadMismatch { source, handler } => write!(
                f,
                "the source hands out {source} payloads, the handler takes {handler} (a source of Bytes is decoded)"
            ),
            ServeError::InvalidConfig(what) => write!(f, "invalid serve setting: {what}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// What a [`Served`] source's runner has settled so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeMetrics {
    /// Deliveries fetched from the source.
    pub fetched: u64,
    /// Acked: handled, duplicates, or skipped.
    pub acked: u64,
    /// Nak'd for a retry (a retryable failure with attempts left, or a dead-letter store
    /// that failed).
    pub nakd: u64,
    /// Termed after their dead letter was written.
    pub termed: u64,
    /// Events of another type than the handler's: acked without a record with
    /// [`OtherTypes::Skip`], dead-lettered (and counted in `termed` too) by default.
    pub skipped: u64,
    /// Payloads that did not decode into the handler's type (dead-lettered).
    pub undecodable: u64,
    /// Deliveries handed back (nak'd at once, unhandled) because the runner stopped.
    pub handed_back: u64,
    /// Fetches that failed (each is logged and retried after a pause).
    pub fetch_errors: u64,
    /// Settles that failed (logged; the delivery comes back when its lease runs out).
    pub settle_errors: u64,
}

impl fmt::Display for ServeMetrics {
    /// One line: `fetched 4: acked 3, nak'd 0, termed 1, handed back 0; ...`.
    ///
    /// ```
    /// let m = syncbus_workflow::ServeMetrics::default();
    /// assert!(m.to_string().starts_with("fetched 0: acked 0"));
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fetched {}: acked {}, nak'd {}, termed {}, handed back {}; skipped {}, undecodable {}, fetch errors {}, settle errors {}",
            self.fetched,
            self.acked,
            self.nakd,
            self.termed,
            self.handed_back,
            self.skipped,
            self.undecodable,
            self.fetch_errors,
            self.settle_errors
        )
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// The last fetch found nothing (for `Served::settled`).
    idle: AtomicBool,
    fetched: AtomicU64,
    acked: AtomicU64,
    nakd: AtomicU64,
    termed: AtomicU64,
    skipped: AtomicU64,
    undecodable: AtomicU64,
    handed_back: AtomicU64,
    fetch_errors: AtomicU64,
    settle_errors: AtomicU64,
}

impl Counts {
    fn snapshot(&self) -> ServeMetrics {
        ServeMetrics {
            fetched: self.fetched.load(Relaxed),
            acked: self.acked.load(Relaxed),
            nakd: self.nakd.load(Relaxed),
            termed: self.termed.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            undecodable: self.undecodable.load(Relaxed),
            handed_back: self.handed_back.load(Relaxed),
            fetch_errors: self.fetch_errors.load(Relaxed),
            settle_errors: self.settle_errors.load(Relaxed),
        }
    }
}

/// Settings for serving a source; made by [`Workflow::serve`], finished by
/// [`handle`](Self::handle).
///
/// Defaults: named after the source, retries per [`RetryPolicy::default`], one lane (events
/// handled one at a time, in fetch order), batches of 32, fetches that wait up to 1 s, and an
/// `in_progress` every 10 s while a handler runs.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use serde::{Deserialize, Serialize};
/// use syncbus_core::{Bus, ConsumerConfig, Envelope, Event};
/// use syncbus_workflow::{handler_fn, HandlerError, RetryPolicy, Workflow};
///
/// #[derive(Clone, Debug, Serialize, Deserialize)]
/// struct Mail { to: u64 }
/// impl Event for Mail { const TYPE: &'static str = "mail.send"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::new();
/// let wf = Workflow::new(&bus);
/// let outbox = bus.consumer::<Mail>("mail.>", ConsumerConfig::default())?;
/// let served = wf
///     .serve(outbox)
///     .name("mailer")
///     .retry(RetryPolicy::default().max_attempts(5))
///     .keyed(4) // four at a time; one entity's events stay in order
///     .handle(|env: Envelope<Mail>, _ctx| async move {
///         println!("mail to {}", env.payload().to);
///         Ok::<(), HandlerError>(())
///     })?;
/// bus.publish(Mail { to: 1 }).await?;
/// served.settled().await; // fetched, handled, acked, and nothing more to fetch
/// let settled = served.stop().await;
/// assert_eq!(settled.acked, 1);
/// # Ok(()) }
/// ```
pub struct WorkflowServe<S> {
    wf: Workflow,
    source: S,
    settings: Settings,
    retry: RetryPolicy,
    other_types: OtherTypes,
    lanes: usize,
    batch: usize,
    fetch_wait: Duration,
    in_progress: Option<Duration>,
}

impl<S> fmt::Debug for WorkflowServe<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowServe")
            .field("name", &self.settings.name)
            .field("retry", &self.retry)
            .field("lanes", &self.lanes)
            .field("batch", &self.batch)
            .field("fetch_wait", &self.fetch_wait)
            .field("in_progress", &self.in_progress)
            .finish_non_exhaustive()
    }
}

impl Workflow {
    /// Serves `source` (the bus's pull consumer, a durable consumer, a JetStream, poll or
    /// CDC reader): a task fetches from it and runs each delivery through the workflow stack
    /// (dedup, resequencing, circuit breaker, rate limit, timeout, follow-up events, metrics,
    /// chains), then settles it from the outcome; see [`WorkflowServe`] for the settings and
    /// [`WorkflowServe::handle`] for the settles.
    ///
    /// # Examples
    ///
    /// See [`WorkflowServe`].
    pub fn serve<S: Source + 'static>(&self, source: S) -> WorkflowServe<S> {
        WorkflowServe {
            wf: self.clone(),
            source,
            settings: Settings::default(),
            retry: RetryPolicy::default(),
            other_types: OtherTypes::default(),
            lanes: 1,
            batch: 32,
            fetch_wait: Duration::from_secs(1),
            in_progress: Some(Duration::from_secs(10)),
        }
    }
}

impl<S: Source + 'static> WorkflowServe<S> {
    /// The name in metrics, logs, dead letters and redrive (unique in the workflow).
    /// Defaults to the source's name.
    ///
    /// # Examples
    ///
    /// See [`WorkflowServe`].
    pub fn name(mut self, name: impl Into<SmolStr>) -> Self {
        self.settings.name = Some(name.into());
        self
    }

    /// The handler's name in dead letters; defaults to the name.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, ConsumerConfig};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// let wf = syncbus_workflow::Workflow::new(&bus);
    /// let serve = wf.serve(bus.consumer::<Ping>("ping", ConsumerConfig::default())?).handler_name("ping-v2");
    /// # let _ = serve;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handler_name(mut self, name: impl Into<SmolStr>) -> Self {
        self.settings.handler_name = Some(name.into());
        self
    }

    /// Idempotent consumer: a key handled before is acked without running the handler.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, ConsumerConfig};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// use syncbus_workflow::{DedupConfig, Workflow};
    /// let serve = Workflow::new(&bus)
    ///     .serve(bus.consumer::<Ping>("ping", ConsumerConfig::default())?)
    ///     .dedup(DedupConfig::memory(100_000));
    /// # let _ = serve;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dedup(mut self, dedup: DedupConfig) -> Self {
        self.settings.dedup = Some(dedup);
        self
    }

    /// Applies each entity's events in version order (the resequencer). Give it
    /// [`keyed`](Self::keyed) so one entity's events meet it one at a time.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, ConsumerConfig};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// use syncbus_workflow::{ResequenceConfig, Workflow};
    /// let serve = Workflow::new(&bus)
    ///     .serve(bus.consumer::<Ping>("ping", ConsumerConfig::default())?)
    ///     .resequence(ResequenceConfig::new());
    /// # let _ = serve;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resequence(mut self, cfg: ResequenceConfig) -> Self {
        self.settings.resequence = Some(cfg);
        self
    }

    /// How many attempts a delivery gets and how long a nak delays the next one. The attempt
    /// is the source's delivery count.
    ///
    /// # Examples
    ///
    /// See [`WorkflowServe`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Each attempt gets at most `d`; a timeout is a retryable failure.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, ConsumerConfig};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// let serve = syncbus_workflow::Workflow::new(&bus)
    ///     .serve(bus.consumer::<Ping>("ping", ConsumerConfig::default())?)
    ///     .timeout(Duration::from_secs(5));
    /// # let _ = serve;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timeout(mut self, d: Duration) -> Self {
        self.settings.timeout = Some(d);
        self
    }

    /// At most this rate of handler calls.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, ConsumerConfig};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// use syncbus_workflow::{RateLimitConfig, Workflow};
    /// let serve = Workflow::new(&bus)
    ///     .serve(bus.consumer::<Ping>("ping", ConsumerConfig::default())?)
    ///     .rate_limit(RateLimitConfig::per_second(100));
    /// # let _ = serve;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rate_limit(mut self, rate: RateLimitConfig) -> Self {
        self.settings.rate = Some(rate);
        self
    }

    /// Stops calling a failing downstream for a while.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, ConsumerConfig};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// use syncbus_workflow::{CircuitBreakerConfig, Workflow};
    /// let serve = Workflow::new(&bus)
    ///     .serve(bus.consumer::<Ping>("ping", ConsumerConfig::default())?)
    ///     .circuit_breaker(CircuitBreakerConfig::new());
    /// # let _ = serve;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn circuit_breaker(mut self, breaker: CircuitBreakerConfig) -> Self {
        self.settings.breaker = Some(breaker);
        self
    }

    /// Where failures go; defaults to the workflow's dead-letter store.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use syncbus_core::{Bus, ConsumerConfig};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// let serve = syncbus_workflow::Workflow::new(&bus)
    ///     .serve(bus.consumer::<Ping>("ping", ConsumerConfig::default())?)
    ///     .dead_letters(syncbus_storage::MemoryDeadLetterStore::new(1_000));
    /// # let _ = serve;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dead_letters(mut self, store: impl IntoArc<dyn DeadLetterStore>) -> Self {
        let store = store.into_arc();
        self.settings.dead_letters = Some(store);
        self
    }

    /// What happens to an event of another type than the handler's: dead-lettered with the
    /// reason (the default) or acked unhandled ([`OtherTypes::Skip`], an explicit opt-in).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Bytes, ConsumerConfig};
    /// # let bus = Bus::new();
    /// use syncbus_workflow::{OtherTypes, Workflow};
    /// // A consumer of every topic that only cares about one type.
    /// let serve = Workflow::new(&bus)
    ///     .serve(bus.consumer::<Bytes>(">", ConsumerConfig::default())?)
    ///     .other_types(OtherTypes::Skip);
    /// # let _ = serve;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn other_types(mut self, policy: OtherTypes) -> Self {
        self.other_types = policy;
        self
    }

    /// Handles deliveries in `lanes` keyed lanes (at least 1; default 1): events of one
    /// entity always go to the same lane, so they are handled one at a time and in fetch
    /// order, while entities run in parallel. Events without an entity id are spread over
    /// the lanes. The same setting, and name, as a bus or workflow subscription's `keyed`.
    ///
    /// # Examples
    ///
    /// See [`WorkflowServe`].
    pub fn keyed(mut self, n: usize) -> Self {
        self.lanes = n;
        self
    }

    /// Deliveries taken per fetch (at least 1). The runner holds about two batches at most
    /// (one being handed to the lanes, one waiting in them), and only the deliveries being
    /// handled get `in_progress` ticks: choose a batch the lanes get through well within the
    /// source's lease (a JetStream consumer's ack wait), or waiting deliveries come back as
    /// redeliveries (duplicates, dropped by the dedup layer, but wasted work).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, ConsumerConfig};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// let serve = syncbus_workflow::Workflow::new(&bus)
    ///     .serve(bus.consumer::<Ping>("ping", ConsumerConfig::default())?)
    ///     .batch(100);
    /// # let _ = serve;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// How long one fetch waits for deliveries before it asks again (the stop signal is
    /// seen at once either way).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, ConsumerConfig};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// let serve = syncbus_workflow::Workflow::new(&bus)
    ///     .serve(bus.consumer::<Ping>("ping", ConsumerConfig::default())?)
    ///     .fetch_wait(Duration::from_millis(200));
    /// # let _ = serve;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fetch_wait(mut self, d: Duration) -> Self {
        self.fetch_wait = d;
        self
    }

    /// While a handler runs, tell the source every `every` that it is still in progress, so
    /// its lease is extended instead of running out (`None`: never). Keep it below the
    /// source's ack timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, ConsumerConfig};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// # let bus = Bus::new();
    /// let serve = syncbus_workflow::Workflow::new(&bus)
    ///     .serve(bus.consumer::<Ping>("ping", ConsumerConfig::default())?)
    ///     .in_progress_every(Some(Duration::from_secs(5)));
    /// # let _ = serve;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_progress_every(mut self, every: Option<Duration>) -> Self {
        self.in_progress = every;
        self
    }

    /// Starts serving with the async closure `f`: a tokio task fetches, handles and settles
    /// until [`Served::stop`]. The closure gets the envelope and the delivery's [`Context`];
    /// name the event type on the envelope (`|env: Envelope<Mail>, ctx|`), since a source
    /// of bytes does not say which type to decode. For a handler that is not a closure, use
    /// [`handle_with`](Self::handle_with).
    ///
    /// The stack, outermost first: dedup → resequencing → circuit breaker → rate limit →
    /// timeout → follow-up events → handler; retries and dead letters are the runner's, as
    /// settles:
    ///
    /// | outcome | settle |
    /// | --- | --- |
    /// | success, or a duplicate | `ack` |
    /// | retryable, attempts left | `nak` with the error's `retry_after`, else the policy's delay |
    /// | permanent, or attempts exhausted | a dead letter, then `term` |
    /// | delivered more often than attempts allowed (a crash loop) | a dead letter, then `term` |
    /// | the payload does not decode | a dead letter, then `term` |
    /// | an event of another type | a dead letter with the reason, then `term`; `ack`, counted as skipped, with [`OtherTypes::Skip`] |
    /// | the dead-letter store failed | `nak`: it comes back, nothing is termed unrecorded |
    ///
    /// The attempt is the source's delivery count, so a retry survives a crash.
    ///
    /// # Errors
    ///
    /// [`ServeError::NoRuntime`] outside a tokio runtime (never a panic),
    /// [`ServeError::NameTaken`], [`ServeError::PayloadMismatch`] when the source's payloads
    /// are neither `P` nor `Bytes`, [`ServeError::InvalidConfig`] for zero lanes or batch.
    ///
    /// # Examples
    ///
    /// See [`WorkflowServe`].
    pub fn handle<P, F, Fut>(self, f: F) -> Result<Served, ServeError>
    where
        P: Payload + Storable,
        F: Fn(Envelope<P>, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send,
    {
        self.handle_with(handler_fn(f))
    }

    /// Starts serving with `handler`: any [`Handler`] (a `sync_handler_fn`, a type of your
    /// own, layers of your own around one); settles as [`handle`](Self::handle) says.
    ///
    /// # Errors
    ///
    /// As [`handle`](Self::handle).
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use syncbus_core::{Bus, ConsumerConfig, Envelope, Event};
    /// use syncbus_workflow::{sync_handler_fn, Workflow};
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Mail { to: u64 }
    /// # impl Event for Mail { const TYPE: &'static str = "mail.send"; }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let wf = Workflow::new(&bus);
    /// let outbox = bus.consumer::<Mail>("mail.>", ConsumerConfig::default())?;
    /// let served = wf.serve(outbox).handle_with(sync_handler_fn(|env: Envelope<Mail>, _ctx| {
    ///     println!("mail to {}", env.payload().to);
    ///     Ok(())
    /// }))?;
    /// served.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn handle_with<P, H>(self, handler: H) -> Result<Served, ServeError>
    where
        P: Payload + Storable,
        H: Handler<P>,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ServeError::NoRuntime)?;
        if self.lanes == 0 {
            return Err(ServeError::InvalidConfig("keyed lanes must be at least 1"));
        }
        if self.batch == 0 {
            return Err(ServeError::InvalidConfig("batch must be at least 1"));
        }
        if !same::<S::Payload, P>() && !same::<S::Payload, Bytes>() {
            return Err(ServeError::PayloadMismatch {
                source: std::any::type_name::<S::Payload>(),
                handler: std::any::type_name::<P>(),
            });
        }
        let wf = self.wf.clone();
        let (name, info) = self.settings.info(&wf, self.source.name());
        let dead_letters = self.settings.dead_letters(&wf);
        let stack = Arc::new(
            self.settings
                .stack(handler, &dead_letters, None, None, None),
        );
        if !wf.claim_name(&name, redriver(stack.clone(), info.clone())) {
            return Err(ServeError::NameTaken(name));
        }

        let counts = Arc::new(Counts::default());
        let stats = info.stats.clone();
        let (stop, stopped) = watch::channel(false);
        let run = Run {
            source: self.source,
            handle: Arc::new(Handle {
                stack,
                info,
                dead_letters,
                retry: self.retry,
                other_types: self.other_types,
                in_progress: self.in_progress,
                counts: counts.clone(),
            }),
            lanes: self.lanes,
            batch: self.batch,
            fetch_wait: self.fetch_wait,
        };
        let task = runtime.spawn({
            let wf = wf.clone();
            let name = name.clone();
            async move {
                run.run(stopped).await;
                wf.release_name(&name);
            }
        });
        Ok(Served {
            name,
            stop,
            task: Some(task),
            counts,
            stats,
        })
    }
}

fn same<A: 'static, B: 'static>() -> bool {
    std::any::TypeId::of::<A>() == std::any::TypeId::of::<B>()
}

/// A source being served; see [`Workflow::serve`]. Dropping it stops the runner the way
/// [`stop`](Self::stop) does, in the background: every fetched delivery is still settled or
/// handed back.
#[must_use = "dropping a Served stops serving at once"]
pub struct Served {
    name: SmolStr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    counts: Arc<Counts>,
    stats: Arc<Stats>,
}

impl fmt::Debug for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Served")
            .field("name", &self.name)
            .field("settles", &self.counts.snapshot())
            .finish_non_exhaustive()
    }
}

impl Served {
    /// The name it runs under.
    ///
    /// # Examples
    ///
    /// See [`WorkflowServe`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The workflow counters: succeeded, failed, attempts, retries, dead letters, duplicates…
    ///
    /// # Examples
    ///
    /// See [`WorkflowServe`].
    pub fn metrics(&self) -> WorkflowMetrics {
        self.stats.snapshot()
    }

    /// What was settled so far, and how.
    ///
    /// # Examples
    ///
    /// See [`WorkflowServe`].
    pub fn settles(&self) -> ServeMetrics {
        self.counts.snapshot()
    }

    /// Waits until the runner is settled: every delivery it fetched is settled and its last
    /// fetch found nothing (which takes up to the fetch wait, 1 s by default), and returns
    /// the settles so far. For tests and demos, instead of sleeping until a counter moves. A
    /// delivery nak'd for a retry is the source's until it comes back, so this may resolve
    /// between two attempts; wait for the outcome itself when retries matter. It looks
    /// every millisecond, on tokio's clock; [`settled_within`](Self::settled_within) gives
    /// up after a time.
    ///
    /// # Examples
    ///
    /// See [`WorkflowServe`].
    pub async fn settled(&self) -> ServeMetrics {
        // Without a timeout it only ends settled.
        match wait_settled(None, || self.check_settled()).await {
            Ok(m) => m,
            Err(_) => self.counts.snapshot(),
        }
    }

    /// [`settled`](Self::settled), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`Unsettled`](syncbus_core::Unsettled) when `timeout` passed first, naming the
    /// runner with the deliveries it still had in hand.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use serde::{Deserialize, Serialize};
    /// use syncbus_core::{Bus, ConsumerConfig, Envelope, Event};
    /// use syncbus_workflow::Workflow;
    /// # #[derive(Clone, Debug, Serialize, Deserialize)] struct Mail { to: u64 }
    /// # impl Event for Mail { const TYPE: &'static str = "mail.send"; }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let wf = Workflow::new(&bus);
    /// let outbox = bus.consumer::<Mail>("mail.>", ConsumerConfig::default())?;
    /// let served = wf
    ///     .serve(outbox)
    ///     .name("mailer")
    ///     .fetch_wait(Duration::from_millis(20))
    ///     .handle(|_env: Envelope<Mail>, _ctx| async {
    ///         tokio::time::sleep(Duration::from_secs(60)).await;
    ///         Ok(())
    ///     })?;
    /// bus.publish(Mail { to: 1 }).await?;
    /// let e = served.settled_within(Duration::from_millis(200)).await.unwrap_err();
    /// assert!(e.to_string().contains("mailer: 0 queued, 1 running"), "{e}");
    /// # Ok(()) }
    /// ```
    pub async fn settled_within(&self, timeout: Duration) -> Result<ServeMetrics, Unsettled> {
        wait_settled(Some(timeout), || self.check_settled()).await
    }

    /// The settles, if every fetched delivery is settled and the last fetch found nothing;
    /// else this runner as busy, with the deliveries it has in hand.
    fn check_settled(&self) -> Result<ServeMetrics, Vec<Busy>> {
        // The idle mark first: a batch fetched after it was read counts in `fetched` below,
        // or arrived after the moment this answers for.
        let idle = self.counts.idle.load(SeqCst);
        let m = self.counts.snapshot();
        let in_hand = m
            .fetched
            .saturating_sub(m.acked + m.nakd + m.termed + m.handed_back);
        if idle && in_hand == 0 {
            Ok(m)
        } else {
            Err(vec![Busy::new(self.name.as_str(), 0, in_hand as usize)])
        }
    }

    /// Stops fetching, lets the handlers running now finish and settle, hands back (nak at
    /// once) every fetched delivery that had not started, and returns what was settled in
    /// all. Nothing fetched is left unsettled when it returns.
    ///
    /// # Cancel safety
    ///
    /// If this future is dropped the runner still stops and settles in the background.
    ///
    /// # Examples
    ///
    /// See [`WorkflowServe`].
    pub async fn stop(mut self) -> ServeMetrics {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!(served = %self.name, error = %e, "the serving task failed");
            }
        }
        self.counts.snapshot()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// What every lane shares.
struct Handle<H> {
    stack: Arc<H>,
    info: Arc<SubscriptionInfo>,
    dead_letters: Arc<dyn DeadLetterStore>,
    retry: RetryPolicy,
    other_types: OtherTypes,
    in_progress: Option<Duration>,
    counts: Arc<Counts>,
}

struct Run<S, H> {
    source: S,
    handle: Arc<Handle<H>>,
    lanes: usize,
    batch: usize,
    fetch_wait: Duration,
}

impl<S: Source + 'static, H: 'static> Run<S, H> {
    async fn run<P>(self, mut stopped: watch::Receiver<bool>)
    where
        P: Payload + Storable,
        H: Handler<P>,
    {
        let Run {
            source,
            handle,
            lanes,
            batch,
            fetch_wait,
        } = self;
        let mut senders = Vec::with_capacity(lanes);
        let mut workers = Vec::with_capacity(lanes);
        // One lane runs on this task: no hand-off to another.
        let inline = lanes == 1;
        for _ in 0..if inline { 0 } else { lanes } {
            // One batch of room across the lanes: a slow lane holds the fetch loop back
            // (backpressure), and what waits in hand stays about two batches however many
            // lanes there are. Deliveries that wait are not in progress: a source whose lease
            // (a JetStream ack wait) ran out while they waited would hand them out again.
            let (tx, rx) = mpsc::channel::<S::Delivery>(batch.div_ceil(lanes));
            senders.push(tx);
            let lane = lane::<S::Delivery, P, H>(rx, handle.clone(), stopped.clone());
            workers.push(tokio::spawn(lane));
        }
        let hasher = foldhash::fast::FixedState::default();
        let mut spread = 0usize;
        let mut pause = Duration::from_millis(50);
        'fetching: loop {
            if *stopped.borrow() {
                break;
            }
            let fetched = tokio::select! {
                biased;
                _ = stopped.changed() => break,
                r = source.fetch(batch, fetch_wait) => r,
            };
            let batch_in = match fetched {
                Ok(b) => {
                    pause = Duration::from_millis(50);
                    b
                }
                Err(e) => {
                    handle.counts.fetch_errors.fetch_add(1, Relaxed);
                    tracing::warn!(served = %handle.info.subscription, error = %e, "fetch failed; trying again");
                    tokio::select! {
                        _ = stopped.changed() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if batch_in.is_empty() {
                handle.counts.idle.store(true, SeqCst);
                if source.is_closed() {
                    break;
                }
                continue;
            }
            // Not idle before the batch is counted: `Served::settled` reads them the other
            // way round.
            handle.counts.idle.store(false, SeqCst);
            handle
                .counts
                .fetched
                .fetch_add(batch_in.len() as u64, SeqCst);
            if inline {
                for d in batch_in {
                    if *stopped.borrow() {
                        hand_back(d, &handle).await;
                    } else {
                        process::<S::Delivery, P, H>(d, &handle).await;
                    }
                }
                continue;
            }
            for d in batch_in {
                let lane = match d.envelope().meta().entity_id() {
                    Some(id) => (hasher.hash_one(id) as usize) % lanes,
                    None => {
                        spread = spread.wrapping_add(1);
                        spread % lanes
                    }
                };
                if let Err(mpsc::error::SendError(d)) = senders[lane].send(d).await {
                    // A lane ended (its task panicked): never drop what was fetched.
                    hand_back(d, &handle).await;
                    break 'fetching;
                }
            }
        }
        // Stopping: lanes hand back what they have not started and finish what runs.
        drop(senders);
        for w in workers {
            if let Err(e) = w.await {
                tracing::error!(served = %handle.info.subscription, error = %e, "a lane failed");
            }
        }
    }
}

async fn lane<D, P, H>(
    mut rx: mpsc::Receiver<D>,
    handle: Arc<Handle<H>>,
    stopped: watch::Receiver<bool>,
) where
    D: Settle,
    P: Payload + Storable,
    H: Handler<P>,
{
    while let Some(d) = rx.recv().await {
        // Seen as soon as `stop` is called, so what waits in a lane is handed back at once.
        if *stopped.borrow() {
            hand_back(d, &handle).await;
        } else {
            process::<D, P, H>(d, &handle).await;
        }
    }
}

async fn hand_back<D: Settle, H>(d: D, handle: &Handle<H>) {
    handle.counts.handed_back.fetch_add(1, Relaxed);
    settled(d.nak(Duration::ZERO).await, handle, "nak");
}

fn settled<E: fmt::Display, H>(r: Result<(), E>, handle: &Handle<H>, how: &str) {
    if let Err(e) = r {
        handle.counts.settle_errors.fetch_add(1, Relaxed);
        tracing::warn!(
            served = %handle.info.subscription,
            settle = how,
            error = %e,
            "settle failed; the delivery comes back when its lease runs out"
        );
    }
}

enum Decoded<P> {
    Event(Envelope<P>),
    OtherType,
    Undecodable(DecodeError),
}

fn decode<Q: Payload, P: Payload + Storable>(env: &Envelope<Q>) -> Decoded<P> {
    let any: &dyn Any = env;
    if let Some(typed) = any.downcast_ref::<Envelope<P>>() {
        return Decoded::Event(typed.clone());
    }
    match any.downcast_ref::<Envelope<Bytes>>() {
        Some(raw) => match P::from_stored(raw) {
            Ok(typed) => Decoded::Event(typed),
            Err(DecodeError::WrongType { .. }) => Decoded::OtherType,
            Err(e) => Decoded::Undecodable(e),
        },
        // `handle` refused any other pairing before the runner started.
        None => Decoded::OtherType,
    }
}

/// The event as bytes, for a dead letter: a stored envelope as it is, a typed one encoded.
fn stored<Q: Payload, P: Payload + Storable>(env: &Envelope<Q>) -> Result<Envelope<Bytes>, String> {
    let any: &dyn Any = env;
    if let Some(raw) = any.downcast_ref::<Envelope<Bytes>>() {
        return Ok(raw.clone());
    }
    match any.downcast_ref::<Envelope<P>>() {
        Some(typed) => P::to_stored(typed).map_err(|e| e.to_string()),
        None => Err(format!("a {} payload", std::any::type_name::<Q>())),
    }
}

async fn process<D, P, H>(mut d: D, handle: &Handle<H>)
where
    D: Settle,
    P: Payload + Storable,
    H: Handler<P>,
{
    let attempt = d.deliveries().max(1);
    let limit = handle.retry.attempt_limit().max(1);
    let env = match decode::<D::Payload, P>(d.envelope()) {
        Decoded::Event(env) => env,
        Decoded::OtherType => {
            handle.counts.skipped.fetch_add(1, Relaxed);
            if handle.other_types == OtherTypes::Skip {
                return ack(d, handle).await;
            }
            let ctx = Context::for_delivery(&handle.info, d.envelope().meta());
            ctx.set_attempt(attempt);
            let chain = vec![format!(
                "an event of type {}, not the handler's: it was not handled",
                d.envelope().meta().event_type()
            )];
            return Box::pin(bury::<D, P, H>(d, handle, &ctx, ErrorKind::Decode, chain)).await;
        }
        Decoded::Undecodable(e) => {
            handle.counts.undecodable.fetch_add(1, Relaxed);
            let ctx = Context::for_delivery(&handle.info, d.envelope().meta());
            ctx.set_attempt(attempt);
            let chain = vec![format!("the payload does not decode: {e}")];
            return Box::pin(bury::<D, P, H>(d, handle, &ctx, ErrorKind::Decode, chain)).await;
        }
    };
    let ctx = Context::for_delivery(&handle.info, env.meta());
    ctx.set_attempt(attempt);
    if attempt > limit {
        // Handed out more often than it was ever failed: the process died or the lease ran
        // out each time (a poison message). Do not run it again.
        let chain = vec![format!(
            "delivered {attempt} times, more than the {limit} attempts allowed, without a settle"
        )];
        return Box::pin(bury::<D, P, H>(
            d,
            handle,
            &ctx,
            ErrorKind::Permanent,
            chain,
        ))
        .await;
    }
    handle.info.stats.incr(Stat::Attempts);
    // Boxed once per delivery, as a push subscription does: the stack's future is large, and
    // moving it through this function's states would copy it at every step.
    let mut run: BoxFuture<'_, Result<(), HandlerError>> =
        Box::pin(run_in(&*handle.stack, &handle.info, env, ctx.clone()));
    let outcome = match handle.in_progress {
        None => run.await,
        Some(every) => {
            let mut run = Ticking::new(run.as_mut(), every);
            loop {
                match run.next().await {
                    Step::Done(out) => break out,
                    Step::Tick => settled(d.in_progress().await, handle, "in_progress"),
                }
            }
        }
    };
    match outcome {
        Ok(()) => ack(d, handle).await,
        Err(e) if e.is_retryable() && attempt < limit => {
            ctx.note_failure();
            handle.info.stats.incr(Stat::Retries);
            let delay = e
                .retry_after_hint()
                .unwrap_or_else(|| handle.retry.delay(attempt, Duration::ZERO));
            tracing::debug!(served = %handle.info.subscription, attempt, ?delay, error = %e, "failed; nak for a retry");
            handle.counts.nakd.fetch_add(1, Relaxed);
            settled(d.nak(delay).await, handle, "nak");
        }
        Err(e) => {
            ctx.note_failure();
            Box::pin(bury::<D, P, H>(d, handle, &ctx, e.kind(), e.chain())).await;
        }
    }
}

async fn ack<D: Settle, H>(d: D, handle: &Handle<H>) {
    handle.counts.acked.fetch_add(1, Relaxed);
    settled(d.ack().await, handle, "ack");
}

/// Dead-letters, then terms; if the dead letter could not be written, hands the delivery
/// back instead, so nothing is termed without a record. The delivery still holds the event,
/// so no copy was kept for a failure that rarely comes. Off the hot path: callers box it.
async fn bury<D, P, H>(
    d: D,
    handle: &Handle<H>,
    ctx: &Context,
    kind: ErrorKind,
    mut chain: Vec<String>,
) where
    D: Settle,
    P: Payload + Storable,
{
    let envelope = stored::<D::Payload, P>(d.envelope()).unwrap_or_else(|why| {
        chain.push(format!("the payload could not be stored: {why}"));
        Envelope::new(d.envelope().meta().clone(), Bytes::new())
    });
    if record_stored(&*handle.dead_letters, envelope, ctx, kind, chain).await {
        handle.counts.termed.fetch_add(1, Relaxed);
        settled(d.term().await, handle, "term");
    } else {
        handle.counts.nakd.fetch_add(1, Relaxed);
        let pause = handle.retry.delay(d.deliveries().max(1), Duration::ZERO);
        settled(d.nak(pause).await, handle, "nak");
    }
}
