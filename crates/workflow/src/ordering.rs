//! Ordering by version: per entity, versions reach the handler in order.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use syncbus_envelope::{EntityId, Envelope, Metadata};
use tokio::time::Instant;

use crate::context::Context;
use crate::dead_letter::{record, Storable};
use crate::error::HandlerError;
use crate::handler::Handler;
use crate::layer::Layer;
use crate::metrics::Stat;
use crate::store::DeadLetterStore;

/// The header a redriven event carries: the id of the dead letter's event it replays.
pub const REDRIVE_HEADER: &str = "syncbusredriveof";

/// What happens when a held event's gap does not fill in time (or too many are held).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnExpiry {
    /// Skip the gap: apply the held events from the lowest version on, in order (the
    /// default). The missing versions, if they come later, are stale and dropped.
    Release,
    /// Keep the order strict: the expired held events go to dead letters; the entity still
    /// waits for the missing version.
    DeadLetter,
}

/// Where an entity's versions start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartAt {
    /// The first version seen for an entity is the start, whatever it is (the default).
    FirstSeen,
    /// Versions start at this one: an entity's first event may be held until it arrives.
    Version(u64),
}

/// Ordering settings.
///
/// Only events with both an entity id and a version are ordered; others pass through, and
/// so does a redriven event (an operator asked for it). Per entity: a version below the next
/// expected one, or one already held, is stale: dropped and counted. A version above it is
/// held (counted), at most `max_held` per entity and for at most `hold_for`; when the gap
/// fills, held versions are applied in order, by the delivery that filled it. When a hold
/// expires or an entity holds too many, [`OnExpiry`] decides. A held event is acknowledged
/// to its delivery at once (so a keyed lane is not blocked behind its own gap): it lives in
/// memory until applied. A released event that fails goes to the dead-letter store given
/// here (the workflow builder passes its own).
///
/// State is kept for at most `max_entities` entities; past that, idle entities are forgotten
/// oldest first, and a forgotten entity starts again as in [`StartAt`].
///
/// Defaults: hold 30 s, 1,000 held per entity, [`OnExpiry::Release`], [`StartAt::FirstSeen`],
/// 100,000 entities.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_workflow::{OnExpiry, Ordering, StartAt};
/// let ordering = Ordering::new()
///     .hold_for(Duration::from_secs(5))
///     .max_held(100)
///     .on_expiry(OnExpiry::DeadLetter)
///     .start_at(StartAt::Version(1));
/// # let _ = ordering;
/// ```
#[derive(Clone)]
pub struct Ordering {
    hold_for: Duration,
    max_held: usize,
    on_expiry: OnExpiry,
    start: StartAt,
    max_entities: usize,
    dead_letters: Option<Arc<dyn DeadLetterStore>>,
}

impl fmt::Debug for Ordering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ordering")
            .field("hold_for", &self.hold_for)
            .field("max_held", &self.max_held)
            .field("on_expiry", &self.on_expiry)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

impl Default for Ordering {
    fn default() -> Self {
        Ordering {
            hold_for: Duration::from_secs(30),
            max_held: 1000,
            on_expiry: OnExpiry::Release,
            start: StartAt::FirstSeen,
            max_entities: 100_000,
            dead_letters: None,
        }
    }
}

impl Ordering {
    /// The defaults (see the type's docs).
    ///
    /// # Examples
    ///
    /// See [`Ordering`].
    pub fn new() -> Self {
        Self::default()
    }

    /// How long an event may wait for its gap.
    ///
    /// # Examples
    ///
    /// See [`Ordering`].
    pub fn hold_for(mut self, d: Duration) -> Self {
        self.hold_for = d;
        self
    }

    /// How many events one entity may hold (at least 1).
    ///
    /// # Examples
    ///
    /// See [`Ordering`].
    pub fn max_held(mut self, n: usize) -> Self {
        self.max_held = n.max(1);
        self
    }

    /// What an expired hold does.
    ///
    /// # Examples
    ///
    /// See [`Ordering`].
    pub fn on_expiry(mut self, p: OnExpiry) -> Self {
        self.on_expiry = p;
        self
    }

    /// Where versions start.
    ///
    /// # Examples
    ///
    /// See [`Ordering`].
    pub fn start_at(mut self, s: StartAt) -> Self {
        self.start = s;
        self
    }

    /// How many entities' positions are kept (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let o = syncbus_workflow::Ordering::new().max_entities(1_000_000);
    /// # let _ = o;
    /// ```
    pub fn max_entities(mut self, n: usize) -> Self {
        self.max_entities = n.max(1);
        self
    }

    /// Where released events that fail, and expired ones under [`OnExpiry::DeadLetter`], go.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// let o = syncbus_workflow::Ordering::new()
    ///     .dead_letters(Arc::new(syncbus_storage::MemoryDeadLetterStore::new(1000)));
    /// # let _ = o;
    /// ```
    pub fn dead_letters(mut self, store: Arc<dyn DeadLetterStore>) -> Self {
        self.dead_letters = Some(store);
        self
    }

    /// This as a layer.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = syncbus_workflow::Ordering::new().layer();
    /// # let _ = layer;
    /// ```
    pub fn layer(self) -> OrderingLayer {
        OrderingLayer { cfg: self }
    }
}

/// Makes [`Ordered`] handlers.
#[derive(Debug, Clone)]
pub struct OrderingLayer {
    cfg: Ordering,
}

impl<H> Layer<H> for OrderingLayer {
    type Handler = Ordered<H>;
    fn layer(&self, inner: H) -> Ordered<H> {
        Ordered {
            inner: Arc::new(inner),
            state: Arc::new(State {
                cfg: self.cfg.clone(),
                entities: Mutex::new(HashMap::default()),
            }),
        }
    }
}

/// A handler that sees each entity's versions in order; see [`Ordering`].
pub struct Ordered<H> {
    inner: Arc<H>,
    state: Arc<State>,
}

impl<H> fmt::Debug for Ordered<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ordered")
            .field("cfg", &self.state.cfg)
            .finish_non_exhaustive()
    }
}

impl<H> Ordered<H> {
    /// How many events are held now, over all entities.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::{handler_fn, Layer, Ordering};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let h = Ordering::new().layer().layer(handler_fn(|_e: syncbus_core::Envelope<Ping>, _c| async { Ok(()) }));
    /// assert_eq!(h.held(), 0);
    /// ```
    pub fn held(&self) -> usize {
        self.state
            .entities
            .lock()
            .values()
            .map(|e| e.held.len())
            .sum()
    }
}

struct State {
    cfg: Ordering,
    entities: Mutex<HashMap<EntityId, Entity, foldhash::quality::RandomState>>,
}

struct Entity {
    /// The next version to apply.
    next: u64,
    /// A delivery is applying versions of this entity now.
    busy: bool,
    held: BTreeMap<u64, Held>,
    /// An expiry task is watching `held`.
    timer: bool,
    touched: Instant,
}

impl Entity {
    /// Skips the gap below `lowest`; the version to apply next if this caller is now the
    /// one applying (the entity was idle), `None` if another delivery is at it.
    fn skip_to(&mut self, lowest: u64) -> Option<u64> {
        self.next = self.next.max(lowest);
        if self.busy {
            None
        } else {
            self.busy = true;
            Some(self.next)
        }
    }
}

struct Held {
    /// The `(Envelope<P>, Context)` waiting, typed by the handler that put it there.
    item: Box<dyn Any + Send>,
    since: Instant,
}

enum Admit {
    Run,
    Stale,
    Held { arm: bool },
    Overflow,
}

fn is_redrive(meta: &Metadata) -> bool {
    meta.headers().get(REDRIVE_HEADER).is_some()
}

impl State {
    fn admit<P: Send + 'static>(
        &self,
        entity: &EntityId,
        v: u64,
        env: Envelope<P>,
        ctx: &Context,
    ) -> (Admit, Option<Envelope<P>>) {
        let now = Instant::now();
        let mut guard = self.entities.lock();
        let map = &mut *guard;
        if !map.contains_key(entity) {
            if map.len() >= self.cfg.max_entities {
                forget_idle(map, self.cfg.max_entities);
            }
            let next = match self.cfg.start {
                StartAt::FirstSeen => v,
                StartAt::Version(s) => s,
            };
            map.insert(
                entity.clone(),
                Entity {
                    next,
                    busy: false,
                    held: BTreeMap::new(),
                    timer: false,
                    touched: now,
                },
            );
        }
        let Some(e) = map.get_mut(entity) else {
            return (Admit::Stale, Some(env));
        };
        e.touched = now;
        if v < e.next || (v == e.next && e.busy) || e.held.contains_key(&v) {
            return (Admit::Stale, Some(env));
        }
        if v == e.next {
            e.busy = true;
            return (Admit::Run, Some(env));
        }
        if e.held.len() >= self.cfg.max_held {
            return (Admit::Overflow, Some(env));
        }
        e.held.insert(
            v,
            Held {
                item: Box::new((env, ctx.clone())),
                since: now,
            },
        );
        let arm = !e.timer;
        e.timer = true;
        (Admit::Held { arm }, None)
    }
}

/// Forgets the idle entities touched longest ago, an eighth of the limit at a time.
#[cold]
fn forget_idle(map: &mut HashMap<EntityId, Entity, foldhash::quality::RandomState>, limit: usize) {
    let mut idle: Vec<(Instant, EntityId)> = map
        .iter()
        .filter(|(_, e)| !e.busy && e.held.is_empty())
        .map(|(k, e)| (e.touched, k.clone()))
        .collect();
    let n = (limit / 8).max(1).min(idle.len());
    if n == 0 {
        return;
    }
    idle.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
    for (_, k) in &idle[..n] {
        map.remove(k);
    }
}

impl<P: Storable, H: Handler<P>> Handler<P> for Ordered<H> {
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        let meta = env.meta();
        let (Some(entity), Some(v)) = (meta.entity_id().cloned(), meta.version()) else {
            return self.inner.call(env, ctx).await;
        };
        if is_redrive(meta) {
            return self.inner.call(env, ctx).await;
        }
        match self.state.admit(&entity, v, env, &ctx) {
            (Admit::Run, Some(env)) => {
                let guard = Busy {
                    state: &self.state,
                    entity: &entity,
                };
                let r = self.inner.call(env, ctx).await;
                std::mem::forget(guard); // `drain` holds the flag from here
                drain(&self.inner, &self.state, &entity, v + 1).await;
                r
            }
            (Admit::Stale, _) => {
                ctx.bump(Stat::Stale);
                tracing::debug!(subscription = ctx.subscription(), %entity, version = v, "stale version dropped");
                Ok(())
            }
            (Admit::Held { arm }, _) => {
                ctx.bump(Stat::Held);
                if arm {
                    match tokio::runtime::Handle::try_current() {
                        Ok(rt) => {
                            rt.spawn(watch::<P, H>(
                                self.inner.clone(),
                                self.state.clone(),
                                entity,
                            ));
                        }
                        Err(_) => {
                            // No runtime to run the expiry timer on: held events wait for
                            // their gap only. Said loudly, once per hold.
                            if let Some(e) = self.state.entities.lock().get_mut(&entity) {
                                e.timer = false;
                            }
                            tracing::error!(
                                %entity,
                                "ordering layer outside a tokio runtime: held events have no expiry"
                            );
                        }
                    }
                }
                Ok(())
            }
            (Admit::Overflow, Some(env)) => {
                let held = self.state.cfg.max_held;
                match self.state.cfg.on_expiry {
                    OnExpiry::DeadLetter => Err(HandlerError::permanent(format!(
                        "entity {entity} already holds {held} events waiting for a missing version; version {v} was not applied"
                    ))),
                    OnExpiry::Release => {
                        // Too much is waiting: skip the gap now, as an expired hold would.
                        let start = {
                            let mut map = self.state.entities.lock();
                            let Some(e) = map.get_mut(&entity) else {
                                return Err(HandlerError::retryable("entity state was forgotten"));
                            };
                            e.held.insert(v, Held { item: Box::new((env, ctx.clone())), since: Instant::now() });
                            let lowest = e.held.keys().next().copied().unwrap_or(v);
                            ctx.bump(Stat::Expired);
                            e.skip_to(lowest)
                        };
                        if let Some(next) = start {
                            drain(&self.inner, &self.state, &entity, next).await;
                        }
                        Ok(())
                    }
                }
            }
            (_, None) => Ok(()),
        }
    }
}

/// Clears an entity's `busy` flag if the future applying its versions is dropped part way
/// (a shutdown deadline), so the entity is not stuck; forgotten once `drain` returns, which
/// clears it itself.
struct Busy<'a> {
    state: &'a State,
    entity: &'a EntityId,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.state.entities.lock().get_mut(self.entity) {
            e.busy = false;
        }
    }
}

/// Applies held versions from `next` on while they are there, then marks the entity idle.
/// The caller holds the entity's `busy` flag.
async fn drain<P: Storable, H: Handler<P>>(inner: &H, state: &State, entity: &EntityId, next: u64) {
    let guard = Busy { state, entity };
    apply_held(inner, state, entity, next).await;
    // `apply_held` cleared the flag itself; clearing it again here could clear another
    // delivery's.
    std::mem::forget(guard);
}

async fn apply_held<P: Storable, H: Handler<P>>(
    inner: &H,
    state: &State,
    entity: &EntityId,
    mut next: u64,
) {
    loop {
        let (item, stale) = {
            let mut map = state.entities.lock();
            let Some(e) = map.get_mut(entity) else {
                return;
            };
            e.next = e.next.max(next);
            // Versions below `next` that were held are stale now (a gap was skipped).
            let mut stale = Vec::new();
            while let Some(entry) = e.held.first_entry() {
                if *entry.key() >= e.next {
                    break;
                }
                stale.push(entry.remove());
            }
            match e.held.remove(&e.next) {
                Some(h) => {
                    next = e.next + 1;
                    (Some(h), stale)
                }
                None => {
                    e.busy = false;
                    (None, stale)
                }
            }
        };
        for h in stale {
            if let Ok(boxed) = h.item.downcast::<(Envelope<P>, Context)>() {
                boxed.1.bump(Stat::Stale);
            }
        }
        let Some(h) = item else {
            return;
        };
        let Ok(boxed) = h.item.downcast::<(Envelope<P>, Context)>() else {
            continue;
        };
        let (env, ctx) = *boxed;
        ctx.bump(Stat::Released);
        apply_released(inner, state, env, ctx).await;
    }
}

/// Runs a released event; its delivery was acknowledged long ago, so a failure is recorded
/// here rather than returned.
async fn apply_released<P: Storable, H: Handler<P>>(
    inner: &H,
    state: &State,
    env: Envelope<P>,
    ctx: Context,
) {
    let keep = env.clone();
    match inner.call(env, ctx.clone()).await {
        Ok(()) => {
            ctx.bump(Stat::Succeeded);
            if let Some(chains) = ctx.chains() {
                chains.handled(keep.meta(), ctx.subscription(), Ok(()));
            }
        }
        Err(err) => {
            ctx.bump(Stat::Failed);
            if let Some(chains) = ctx.chains() {
                chains.handled(keep.meta(), ctx.subscription(), Err(err.to_string()));
            }
            dead_letter(state, &keep, &ctx, &err).await;
        }
    }
}

async fn dead_letter<P: Storable>(
    state: &State,
    env: &Envelope<P>,
    ctx: &Context,
    err: &HandlerError,
) {
    match &state.cfg.dead_letters {
        Some(store) => record(&**store, env, ctx, err).await,
        None => {
            ctx.bump(Stat::DeadLetterLost);
            tracing::error!(
                subscription = ctx.subscription(),
                event = %env.meta().id(),
                error = %err,
                "a held event failed and the ordering layer has no dead-letter store"
            );
        }
    }
}

/// Watches an entity's held events and applies the expiry policy when their hold ends.
async fn watch<P: Storable, H: Handler<P>>(inner: Arc<H>, state: Arc<State>, entity: EntityId) {
    let hold = state.cfg.hold_for;
    loop {
        let earliest = {
            let mut map = state.entities.lock();
            let Some(e) = map.get_mut(&entity) else {
                return;
            };
            match e.held.values().map(|h| h.since).min() {
                Some(t) => t,
                None => {
                    e.timer = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(deadline(earliest, hold)).await;
        let now = Instant::now();
        match state.cfg.on_expiry {
            OnExpiry::Release => {
                let start = {
                    let mut map = state.entities.lock();
                    let Some(e) = map.get_mut(&entity) else {
                        return;
                    };
                    let expired: Vec<u64> = e
                        .held
                        .iter()
                        .filter(|(_, h)| deadline(h.since, hold) <= now)
                        .map(|(v, _)| *v)
                        .collect();
                    let Some(&lowest) = expired.first() else {
                        continue;
                    };
                    for v in &expired {
                        if let Some(h) = e.held.get(v) {
                            if let Some((_, ctx)) = h.item.downcast_ref::<(Envelope<P>, Context)>()
                            {
                                ctx.bump(Stat::Expired);
                            }
                        }
                    }
                    e.skip_to(lowest)
                };
                if let Some(next) = start {
                    drain(&*inner, &state, &entity, next).await;
                }
            }
            OnExpiry::DeadLetter => {
                let expired: Vec<Held> = {
                    let mut map = state.entities.lock();
                    let Some(e) = map.get_mut(&entity) else {
                        return;
                    };
                    let keys: Vec<u64> = e
                        .held
                        .iter()
                        .filter(|(_, h)| deadline(h.since, hold) <= now)
                        .map(|(v, _)| *v)
                        .collect();
                    keys.iter().filter_map(|k| e.held.remove(k)).collect()
                };
                for h in expired {
                    if let Ok(boxed) = h.item.downcast::<(Envelope<P>, Context)>() {
                        let (env, ctx) = *boxed;
                        ctx.bump(Stat::Expired);
                        ctx.bump(Stat::Failed);
                        let err = HandlerError::permanent(format!(
                            "version {} of entity {entity} waited {hold:?} for a missing earlier version",
                            env.meta().version().unwrap_or(0)
                        ));
                        dead_letter(&state, &env, &ctx, &err).await;
                    }
                }
            }
        }
    }
}

/// `now + d`, saturating at a hundred years instead of overflowing the clock.
fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
