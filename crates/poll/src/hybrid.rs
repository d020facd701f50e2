//! [`Hybrid`]: one upstream by webhook, by poll and by reconciliation, handled once per
//! entity version.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use syncbus_core::Source;
use syncbus_envelope::{Bytes, Envelope, Payload};
use syncbus_storage::{EventLog, IntoArc, StoreError};
use syncbus_workflow::{
    Handler, ServeError, ServeMetrics, Served, Storable, Workflow, WorkflowServe,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::poller::Poller;
use crate::source::PollSource;
use crate::versions::{GateMetrics, VersionGate};

/// Why one reconciliation run failed (the next run is on schedule).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// Appending a repair to the log failed.
    #[error("appending a repair: {0}")]
    Store(#[from] StoreError),
    /// Reading either side failed.
    #[error("{0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ReconcileError {
    /// Wraps a reader's error.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = syncbus_poll::ReconcileError::read(std::io::Error::other("snapshot unavailable"));
    /// assert_eq!(e.to_string(), "snapshot unavailable");
    /// ```
    pub fn read(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ReconcileError {
        ReconcileError::Read(e.into())
    }
}

#[derive(Debug, Default)]
struct Counts {
    runs: AtomicU64,
    failures: AtomicU64,
    repairs: AtomicU64,
}

/// What a [`Hybrid`] has done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HybridMetrics {
    /// The gate: applied, stale (the same change by another transport, or older), unversioned.
    pub gate: GateMetrics,
    /// Reconciliation runs finished.
    pub reconcile_runs: u64,
    /// Reconciliation runs failed.
    pub reconcile_failures: u64,
    /// Repair events appended to the log.
    pub repairs: u64,
}

/// One upstream, declared once: its webhook ingress (the durable log the ingress appends
/// to, as a `Source`), a fallback [`Poller`], and a scheduled reconciliation whose repair
/// events are appended to that same log. Every path runs the one handler behind one
/// [`VersionGate`]: a change is handled once per entity version, by entity id and version,
/// not by transport id, however many transports bring it and in whatever order; only a
/// newer version than the one applied passes.
///
/// Each source is served by `Workflow::serve` (so retries, dead letters and metrics are the
/// runner's); `configure` gets the serve builder to set them.
///
/// # Examples
///
/// `tests/hybrid.rs` runs the whole: 1,000 changes by webhook and by poll in random order
/// and overlap, each version handled once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use syncbus_core::{Bus, Envelope};
/// use syncbus_poll::{AppliedVersions, Hybrid, RawEvent};
/// use syncbus_storage::{DurableConfig, DurableConsumer};
/// use syncbus_workflow::{handler_fn, Context, Workflow};
///
/// let dir = tempfile::tempdir()?;
/// let store = syncbus_store::SqliteStore::open(dir.path().join("h.db")).await?;
/// let versions = AppliedVersions::open(store.clone(), "shop").await?;
/// let bus = Bus::new();
/// let wf = Workflow::new(&bus);
/// let handler = handler_fn(|env: Envelope<RawEvent>, _ctx: Context| async move { Ok(()) });
/// let mut shop = Hybrid::new(&wf, versions.gate(handler));
/// let log = DurableConsumer::open(store.clone(), "shop-webhooks", DurableConfig::new()).await?;
/// shop.webhook::<RawEvent, _>(log, |s| s)?;
/// // shop.poller::<RawEvent, _>(poller, |s| s)?; shop.reconcile(every, store.clone(), repairs);
/// shop.stop().await;
/// # Ok(()) }
/// ```
pub struct Hybrid<H> {
    wf: Workflow,
    gate: VersionGate<H>,
    served: Vec<Served>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    counts: Arc<Counts>,
}

impl<H> fmt::Debug for Hybrid<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hybrid")
            .field("gate", &self.gate)
            .field("served", &self.served.len())
            .field("reconcile", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl<H: Send + Sync + 'static> Hybrid<H> {
    /// An upstream handled by `gate` (its [`AppliedVersions`](crate::AppliedVersions) name the upstream).
    ///
    /// # Examples
    ///
    /// See [`Hybrid`].
    pub fn new(wf: &Workflow, gate: VersionGate<H>) -> Hybrid<H> {
        Hybrid {
            wf: wf.clone(),
            gate,
            served: Vec::new(),
            tasks: Vec::new(),
            stop: watch::channel(false).0,
            counts: Arc::new(Counts::default()),
        }
    }

    fn serve<P, S>(
        &mut self,
        source: S,
        suffix: &str,
        configure: impl FnOnce(WorkflowServe<S>) -> WorkflowServe<S>,
    ) -> Result<&mut Self, ServeError>
    where
        P: Payload + Storable,
        H: Handler<P>,
        S: Source + 'static,
    {
        let name = format!("{}-{suffix}", self.gate.versions().scope());
        let serve = configure(self.wf.serve(source).name(name));
        self.served.push(serve.handle_with(self.gate.clone())?);
        Ok(self)
    }

    /// Serves the upstream's webhook log (the `DurableConsumer` over the log its
    /// `Ingress` appends to, or any source of its events) through the gate.
    ///
    /// # Errors
    ///
    /// What `WorkflowServe::handle_with` refuses ([`ServeError`]).
    ///
    /// # Examples
    ///
    /// See [`Hybrid`].
    pub fn webhook<P, S>(
        &mut self,
        source: S,
        configure: impl FnOnce(WorkflowServe<S>) -> WorkflowServe<S>,
    ) -> Result<&mut Self, ServeError>
    where
        P: Payload + Storable,
        H: Handler<P>,
        S: Source + 'static,
    {
        self.serve::<P, S>(source, "webhook", configure)
    }

    /// Serves the fallback poller through the gate.
    ///
    /// # Errors
    ///
    /// What `WorkflowServe::handle_with` refuses ([`ServeError`]).
    ///
    /// # Examples
    ///
    /// See [`Hybrid`].
    pub fn poller<P, S>(
        &mut self,
        poller: Poller<S>,
        configure: impl FnOnce(WorkflowServe<Poller<S>>) -> WorkflowServe<Poller<S>>,
    ) -> Result<&mut Self, ServeError>
    where
        P: Payload + Storable,
        H: Handler<P>,
        S: PollSource,
    {
        self.serve::<P, Poller<S>>(poller, "poll", configure)
    }

    /// Every `every` (the first run one period after this call), calls `repairs` for a
    /// stream of repair events (the output of a reconciliation: missing, divergent and
    /// extra entities, each with the version it repairs to) and appends them to `log` (the
    /// webhook log, which [`webhook`](Self::webhook) serves), in batches of 256: repairs are
    /// durable before they are handled, and pass the same gate (a repair at or below the
    /// applied version is dropped). A failed run is counted and logged; the next runs on
    /// schedule. Runs never overlap.
    ///
    /// # Examples
    ///
    /// See `tests/hybrid.rs` (`reconciliation_repairs_through_the_gate`).
    pub fn reconcile<F, Fut, St>(
        &mut self,
        every: Duration,
        log: impl IntoArc<dyn EventLog>,
        repairs: F,
    ) -> &mut Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<St, ReconcileError>> + Send,
        St: Stream<Item = Envelope<Bytes>> + Send,
    {
        let log = log.into_arc();
        let counts = self.counts.clone();
        let mut stop = self.stop.subscribe();
        let scope = self.gate.versions().scope().to_owned();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tick.tick() => {}
                }
                match run_once(&*log, &repairs, &counts).await {
                    Ok(n) => {
                        counts.runs.fetch_add(1, Relaxed);
                        tracing::info!(upstream = %scope, repairs = n, "reconciliation finished");
                    }
                    Err(e) => {
                        counts.failures.fetch_add(1, Relaxed);
                        tracing::warn!(upstream = %scope, error = %e, "reconciliation failed");
                    }
                }
            }
        });
        self.tasks.push(task);
        self
    }

    /// The gate's and the reconciliation's figures.
    ///
    /// # Examples
    ///
    /// See [`Hybrid`].
    pub fn metrics(&self) -> HybridMetrics {
        HybridMetrics {
            gate: self.gate.metrics(),
            reconcile_runs: self.counts.runs.load(Relaxed),
            reconcile_failures: self.counts.failures.load(Relaxed),
            repairs: self.counts.repairs.load(Relaxed),
        }
    }

    /// The runners, for their metrics and `settled`.
    ///
    /// # Examples
    ///
    /// See [`Hybrid`].
    pub fn served(&self) -> &[Served] {
        &self.served
    }

    /// Stops the reconciliation and every runner (each settles what it fetched) and returns
    /// their settles.
    ///
    /// # Examples
    ///
    /// See [`Hybrid`].
    pub async fn stop(self) -> Vec<ServeMetrics> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let mut out = Vec::new();
        for s in self.served {
            out.push(s.stop().await);
        }
        out
    }
}

async fn run_once<F, Fut, St>(
    log: &dyn EventLog,
    repairs: &F,
    counts: &Counts,
) -> Result<u64, ReconcileError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<St, ReconcileError>>,
    St: Stream<Item = Envelope<Bytes>>,
{
    let stream = repairs().await?;
    let mut stream = std::pin::pin!(stream.chunks(256));
    let mut n = 0;
    while let Some(batch) = stream.next().await {
        let len = batch.len() as u64;
        log.append_batch(batch).await?;
        counts.repairs.fetch_add(len, Relaxed);
        n += len;
    }
    Ok(n)
}
