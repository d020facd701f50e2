//! The idempotent consumer: run each key's handler once.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use syncbus_envelope::{Envelope, Metadata};

use crate::context::Context;
use crate::error::HandlerError;
use crate::handler::Handler;
use crate::layer::Layer;
use crate::metrics::Stat;
use crate::pending::{Step, Ticking};
use crate::store::IntoArc;
use crate::store::{Claim, DedupKey, DedupStore, InboxEntry, MemoryDedupStore, Outcome};

type KeyFn = Arc<dyn Fn(&Metadata) -> Option<DedupKey> + Send + Sync>;

/// Dedup settings: where keys live, how a key is derived, how long they are remembered.
///
/// The key is the event id by default; [`key`](Self::key) derives another from the
/// metadata (a webhook id header, `entity@version`); an event without a key passes through.
/// A key is claimed before the handler runs. If another delivery holds it, this one waits
/// for its outcome: done → acknowledged as a duplicate without running; failed → claimed and
/// run. So of concurrent deliveries of one key, one runs the handler. A done key is
/// remembered for `ttl` (default 24 h). A claim carries a `lease` (default 30 s), which the
/// layer renews every third of it while the handler runs: a slow handler keeps its key, and
/// a claim whose holder died lapses within one lease. A delivery that finds its key held
/// waits, counted in `dedup_waits` and the `dedup_waiting_now` gauge, with a WARN once the
/// wait outlasts a renewal period.
///
/// # Exactly-once effects (the transactional inbox)
///
/// Marking the key done after the handler leaves a window: a crash after the handler's
/// effect committed and before the key was marked runs the handler again once the claim
/// lapses. A handler whose effect is a transaction in the database that holds the dedup
/// store closes it: it records its key, [`Context::inbox`], inside that transaction
/// (`SqliteStore::record_done`, `PgStore::record_done`), so the effect and the key commit
/// together. If another delivery committed the key first, recording fails and the delivery
/// is acknowledged as a duplicate, not retried.
///
/// # Scope
///
/// A key belongs to its subscription: the layer stores it as `<subscription>:<key>`, an
/// inbox per consumer (as MassTransit and NServiceBus keep one). So two subscriptions
/// sharing one store each handle every event; outside a workflow subscription (an empty
/// name) the key is stored as it is. [`shared_keys`](Self::shared_keys) opts into one key
/// space for every subscription of the store: of all of them, one runs each key. A scoped
/// key that is not a valid [`DedupKey`] (longer than 256 bytes with its prefix, or a name
/// with whitespace) fails the delivery permanently with the reason, never running it
/// undeduplicated.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_workflow::DedupConfig;
/// use syncbus_storage::DedupKey;
/// let dedup = DedupConfig::memory(100_000)
///     .ttl(Duration::from_secs(3600))
///     .key(|meta| {
///         let v = meta.version()?;
///         DedupKey::new(&format!("{}@{v}", meta.entity_id()?)).ok()
///     });
/// # let _ = dedup;
/// ```
#[derive(Clone)]
pub struct DedupConfig {
    store: Arc<dyn DedupStore>,
    key: Option<KeyFn>,
    ttl: Duration,
    lease: Duration,
    shared: bool,
}

impl fmt::Debug for DedupConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupConfig")
            .field("ttl", &self.ttl)
            .field("lease", &self.lease)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl DedupConfig {
    /// Dedup settings backed by `store`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use syncbus_workflow::DedupConfig;
    /// use syncbus_storage::MemoryDedupStore;
    /// let d = DedupConfig::new(MemoryDedupStore::new(10_000));
    /// # let _ = d;
    /// ```
    pub fn new(store: impl IntoArc<dyn DedupStore>) -> DedupConfig {
        DedupConfig {
            store: store.into_arc(),
            key: None,
            ttl: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(30),
            shared: false,
        }
    }

    /// Dedup settings with a memory store remembering about `capacity` keys.
    ///
    /// # Examples
    ///
    /// ```
    /// let dedup = syncbus_workflow::DedupConfig::memory(100_000);
    /// # let _ = dedup;
    /// ```
    pub fn memory(capacity: usize) -> DedupConfig {
        DedupConfig::new(MemoryDedupStore::new(capacity))
    }

    /// Derives the key from the metadata; `None` lets the event through without dedup.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::DedupConfig;
    /// use syncbus_storage::DedupKey;
    /// // One run per webhook delivery id, whatever event id the event was given.
    /// let dedup = DedupConfig::memory(10_000).key(|meta| {
    ///     DedupKey::new(meta.headers().get("webhookid")?).ok()
    /// });
    /// # let _ = dedup;
    /// ```
    pub fn key(
        mut self,
        f: impl Fn(&Metadata) -> Option<DedupKey> + Send + Sync + 'static,
    ) -> Self {
        self.key = Some(Arc::new(f));
        self
    }

    /// How long a done key is remembered.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let dedup = syncbus_workflow::DedupConfig::memory(10_000).ttl(Duration::from_secs(7 * 24 * 3600));
    /// # let _ = dedup;
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a claim holds without being renewed before another delivery may take over
    /// (default 30 s). The layer renews it every third of the lease while the handler runs,
    /// so this bounds how long a key stays stuck after its holder died, not how long a
    /// handler may take.
    ///
    /// # Examples
    ///
    /// ```
    /// let d = syncbus_workflow::DedupConfig::memory(100).lease(std::time::Duration::from_secs(900));
    /// # let _ = d;
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// One key space for every subscription using the store, instead of one per
    /// subscription: a key done by any of them is a duplicate for all. For competing
    /// consumers of one logical queue under different names; see [Scope](Self#scope).
    ///
    /// # Examples
    ///
    /// ```
    /// // Both regions' subscriptions share the keys: each webhook is handled once in all.
    /// let d = syncbus_workflow::DedupConfig::memory(10_000).shared_keys();
    /// assert!(d.is_shared());
    /// assert!(!syncbus_workflow::DedupConfig::memory(10).is_shared()); // scoped by default
    /// ```
    pub fn shared_keys(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Whether keys are shared across subscriptions ([`shared_keys`](Self::shared_keys)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!syncbus_workflow::DedupConfig::memory(10).is_shared());
    /// ```
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The store.
    ///
    /// # Examples
    ///
    /// ```
    /// let d = syncbus_workflow::DedupConfig::memory(100);
    /// let _store = d.store();
    /// ```
    pub fn store(&self) -> &Arc<dyn DedupStore> {
        &self.store
    }

    /// This as a layer.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = syncbus_workflow::DedupConfig::memory(100).layer();
    /// # let _ = layer;
    /// ```
    pub fn layer(self) -> DedupLayer {
        DedupLayer::new(self)
    }
}

/// Releases a claimed key if the handling future is dropped part way (a shutdown deadline),
/// so a redelivery need not wait for the lease to end. Best effort: it needs a runtime to
/// run the store's `finish` on.
struct Release<'a> {
    store: &'a Arc<dyn DedupStore>,
    key: &'a DedupKey,
    ttl: Duration,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (store, key, ttl) = (self.store.clone(), self.key.clone(), self.ttl);
            rt.spawn(async move {
                if let Err(e) = store.finish(&key, Outcome::Failed, ttl).await {
                    tracing::warn!(%key, error = %e, "could not release a cancelled claim");
                }
            });
        }
    }
}

/// Makes [`Dedup`] handlers.
///
/// # Examples
///
/// ```
/// use syncbus_core::Envelope;
/// use syncbus_workflow::{handler_fn, Context, DedupConfig, DedupLayer, Handler, Layer};
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
/// let r = runs.clone();
/// let h = DedupLayer::new(DedupConfig::memory(1_000)).layer(handler_fn(move |_e: Envelope<Ping>, _c| {
///     r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
///     async { Ok(()) }
/// }));
/// let bus = syncbus_core::Bus::new();
/// let env = Envelope::from_event(Ping);
/// h.call(env.clone(), Context::new(&bus, env.meta())).await?;
/// h.call(env.clone(), Context::new(&bus, env.meta())).await?; // the same event id again
/// assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DedupLayer {
    cfg: DedupConfig,
}

impl DedupLayer {
    /// A layer deduplicating by `cfg`; the same as [`DedupConfig::layer`].
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::{DedupConfig, DedupLayer};
    /// let layer = DedupLayer::new(DedupConfig::memory(100));
    /// # let _ = layer;
    /// ```
    pub fn new(cfg: DedupConfig) -> DedupLayer {
        DedupLayer { cfg }
    }
}

impl<H> Layer<H> for DedupLayer {
    type Handler = Dedup<H>;
    fn layer(&self, inner: H) -> Dedup<H> {
        Dedup {
            inner,
            cfg: self.cfg.clone(),
        }
    }
}

/// A handler run at most once per key; see [`DedupConfig`].
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
/// use std::sync::Arc;
/// use syncbus_core::{Bus, Envelope};
/// use syncbus_workflow::{handler_fn, Context, Dedup, DedupConfig, Handler, Layer};
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runs = Arc::new(AtomicU32::new(0));
/// let r = runs.clone();
/// // A key function that finds no key lets the event through: no dedup for it.
/// let h: Dedup<_> = DedupConfig::memory(100).key(|_meta| None).layer().layer(handler_fn(
///     move |_e: Envelope<Ping>, _c| {
///         r.fetch_add(1, SeqCst);
///         async { Ok(()) }
///     },
/// ));
/// let bus = Bus::new();
/// let env = Envelope::from_event(Ping);
/// h.call(env.clone(), Context::new(&bus, env.meta())).await?;
/// h.call(env.clone(), Context::new(&bus, env.meta())).await?;
/// assert_eq!(runs.load(SeqCst), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Dedup<H> {
    inner: H,
    cfg: DedupConfig,
}

impl<P: Send + 'static, H: Handler<P>> Handler<P> for Dedup<H> {
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        let key = match &self.cfg.key {
            None => Some(DedupKey::from(env.meta().id())),
            Some(f) => f(env.meta()),
        };
        let Some(key) = key else {
            return self.inner.call(env, ctx).await;
        };
        let key = if self.cfg.shared || ctx.subscription().is_empty() {
            key
        } else {
            match DedupKey::new(&format!("{}:{key}", ctx.subscription())) {
                Ok(k) => k,
                Err(e) => {
                    return Err(HandlerError::permanent(format!(
                        "dedup key {key} scoped to subscription {:?} is not a valid key: {e}",
                        ctx.subscription()
                    )))
                }
            }
        };
        let store = &self.cfg.store;
        match claim(store, &key, self.cfg.lease, &ctx).await {
            Ok(true) => {}
            Ok(false) => {
                ctx.bump(Stat::Duplicates);
                ctx.outcome_counted();
                tracing::debug!(subscription = ctx.subscription(), %key, "duplicate acknowledged");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let entry = InboxEntry::new(key.clone(), self.cfg.ttl);
        ctx.set_inbox(entry.clone());
        let guard = Release {
            store,
            key: &key,
            ttl: self.cfg.ttl,
        };
        let run = self.inner.call(env, ctx.clone());
        let result = renewing(store, &key, self.cfg.lease, &ctx, run).await;
        std::mem::forget(guard);
        if result.is_err() && entry.is_duplicate() {
            // The handler found its key done in its own transaction: another delivery
            // committed the effect first, and this one rolled back. The key is done.
            ctx.bump(Stat::Duplicates);
            ctx.outcome_counted();
            tracing::debug!(
                subscription = ctx.subscription(),
                %key,
                "duplicate acknowledged: the key was done when the handler recorded it"
            );
            return Ok(());
        }
        let outcome = if result.is_ok() {
            Outcome::Done
        } else {
            Outcome::Failed
        };
        if let Err(e) = store.finish(&key, outcome, self.cfg.ttl).await {
            // The handler's outcome stands; the key stays in flight until its lease ends,
            // after which a redelivery may run again (at-least-once).
            tracing::error!(
                subscription = ctx.subscription(),
                %key,
                error = %e,
                "dedup store could not record the outcome"
            );
        }
        result
    }
}

/// Claims `key`: `true` to run the handler, `false` for a duplicate. While another run holds
/// the key this waits for its outcome, at most until its lease lapses (the holder renews it
/// while it runs, so a holder that died stalls the key for at most one lease), counting the
/// wait and logging a WARN once it lasts longer than a renewal period.
async fn claim(
    store: &Arc<dyn DedupStore>,
    key: &DedupKey,
    lease: Duration,
    ctx: &Context,
) -> Result<bool, HandlerError> {
    let mut waiting: Option<(Instant, bool)> = None;
    let result = loop {
        match store.claim(key, lease).await {
            Ok(Claim::Acquired) => break Ok(true),
            Ok(Claim::Duplicate) => break Ok(false),
            Ok(Claim::InFlight) => {
                let (since, warned) = waiting.get_or_insert_with(|| {
                    ctx.bump(Stat::DedupWaits);
                    ctx.waiting(true);
                    (Instant::now(), false)
                });
                if !*warned && since.elapsed() >= renew_every(lease) {
                    *warned = true;
                    tracing::warn!(
                        subscription = ctx.subscription(),
                        %key,
                        ?lease,
                        "dedup key held by another run (a slow concurrent delivery, or a consumer that died holding it): waiting for its outcome, or for its lease to lapse"
                    );
                }
                store.wait(key, lease).await;
            }
            Err(e) => {
                // Without knowing whether the key was handled, running could duplicate:
                // fail retryably and let the store come back.
                break Err(HandlerError::retryable(format!("dedup store: {e}")).with_source(e));
            }
        }
    };
    if let Some((since, _)) = waiting {
        ctx.waiting(false);
        tracing::debug!(subscription = ctx.subscription(), %key, waited = ?since.elapsed(), "dedup key free again");
    }
    result
}

/// How often a held claim is renewed: three times per lease, so one late renewal does not
/// lose it.
fn renew_every(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(1))
}

/// Runs `run` while renewing the claim on `key` every third of its lease, so a handler
/// slower than the lease keeps it and a holder that died loses it within one lease.
async fn renewing<F: Future>(
    store: &Arc<dyn DedupStore>,
    key: &DedupKey,
    lease: Duration,
    ctx: &Context,
    run: F,
) -> F::Output {
    let run = std::pin::pin!(run);
    let mut run = Ticking::new(run, renew_every(lease));
    loop {
        match run.next().await {
            Step::Done(out) => return out,
            Step::Tick => match store.renew(key, lease).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    subscription = ctx.subscription(),
                    %key,
                    "dedup claim lapsed before it was renewed: another delivery of the key may run"
                ),
                Err(e) => tracing::warn!(
                    subscription = ctx.subscription(),
                    %key,
                    error = %e,
                    "dedup claim not renewed"
                ),
            },
        }
    }
}
