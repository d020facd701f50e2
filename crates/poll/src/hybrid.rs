//! [`Hybrid`]: one upstream by webhook, by poll and by reconciliation, handled once per
//! entity version.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use syncbus_core::Source;
use syncbus_envelope::{Bytes, Envelope, Payload};
use syncbus_storage::{EventLog, IntoArc};
use syncbus_stream::{Compare, Drift, ReconcileReport, Repairs, SnapshotReader};
use syncbus_workflow::{
    Handler, ServeError, ServeMetrics, Served, Storable, Workflow, WorkflowServe,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::poller::Poller;
use crate::source::PollSource;
use crate::versions::{GateMetrics, VersionGate};

#[derive(Debug, Default)]
struct Counts {
    runs: AtomicU64,
    failures: AtomicU64,
    repairs: AtomicU64,
    last: Mutex<Option<ReconcileReport>>,
}

/// What a [`Hybrid`] has done.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The report of the last reconciliation run that finished.
    pub last_reconcile: Option<ReconcileReport>,
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

    /// Every `every` (the first run one period after this call), runs a reconciliation:
    /// `runs` makes a fresh `syncbus_stream::Reconcile` of the upstream's keyed snapshot
    /// against the local one, as [`Repairs`] (each drift, missing, divergent or extra, as
    /// the repair event to apply, with the entity id and the version it repairs to), and
    /// each repair is appended to `log` (the webhook log, which [`webhook`](Self::webhook)
    /// serves), in batches of 256. So repairs are durable before they are handled and pass
    /// the same gate: a repair at or below the version applied meanwhile is dropped.
    /// Memory stays bounded (one page per side, one batch). A failed run is counted and
    /// logged, and the next one runs on schedule; runs never overlap.
    ///
    /// # Examples
    ///
    /// `tests/hybrid.rs` (`reconciliation_repairs_exactly_the_drift_through_the_gate`).
    pub fn reconcile<F, A, B, C, G>(
        &mut self,
        every: Duration,
        log: impl IntoArc<dyn EventLog>,
        runs: F,
    ) -> &mut Self
    where
        F: Fn() -> Repairs<A, B, C, G> + Send + Sync + 'static,
        A: SnapshotReader + 'static,
        B: SnapshotReader<Key = A::Key> + 'static,
        C: Compare<A::Value, B::Value> + 'static,
        G: FnMut(Drift<A::Key, A::Value, B::Value>) -> Envelope<Bytes> + Send + 'static,
        Repairs<A, B, C, G>: Send,
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
                let mut repairs = runs();
                match run_once(&*log, &mut repairs, &counts).await {
                    Ok(n) => {
                        counts.runs.fetch_add(1, Relaxed);
                        *counts.last.lock() = Some(*repairs.report());
                        tracing::info!(upstream = %scope, repairs = n, report = ?repairs.report(), "reconciliation finished");
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
            last_reconcile: *self.counts.last.lock(),
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

/// One run: every repair appended, in batches; the number appended.
async fn run_once<A, B, C, G>(
    log: &dyn EventLog,
    repairs: &mut Repairs<A, B, C, G>,
    counts: &Counts,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>>
where
    A: SnapshotReader,
    B: SnapshotReader<Key = A::Key>,
    C: Compare<A::Value, B::Value>,
    G: FnMut(Drift<A::Key, A::Value, B::Value>) -> Envelope<Bytes>,
{
    let mut n = 0;
    let mut batch = Vec::with_capacity(256);
    loop {
        let next = repairs.next().await?;
        let end = next.is_none();
        batch.extend(next);
        if batch.len() == 256 || (end && !batch.is_empty()) {
            let len = batch.len() as u64;
            log.append_batch(std::mem::take(&mut batch)).await?;
            counts.repairs.fetch_add(len, Relaxed);
            n += len;
        }
        if end {
            return Ok(n);
        }
    }
}
