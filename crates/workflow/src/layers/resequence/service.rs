//! The resequencer's handler and its expiry task.

use std::fmt;
use std::sync::Arc;

use syncbus_envelope::{EntityId, Envelope};
use tokio::time::Instant;

use crate::context::Context;
use crate::error::HandlerError;
use crate::handler::Handler;
use crate::layers::record;
use crate::metrics::Stat;
use crate::storable::Storable;

use super::config::OnExpiry;
use super::state::{is_redrive, Admit, Held, State};

/// A handler that sees each entity's versions in order; see
/// [`ResequenceConfig`](super::ResequenceConfig).
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
/// use std::sync::Arc;
/// use syncbus_core::{Bus, EntityId, Envelope, Event};
/// use syncbus_workflow::{handler_fn, Context, Handler, Layer, Resequence, ResequenceConfig};
/// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
/// struct Moved { version: u64 }
/// impl Event for Moved {
///     const TYPE: &'static str = "moved";
///     fn entity_id(&self) -> Option<EntityId> { Some(EntityId::from(1u64)) }
///     fn version(&self) -> Option<u64> { Some(self.version) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runs = Arc::new(AtomicU32::new(0));
/// let r = runs.clone();
/// let h: Resequence<_> = ResequenceConfig::new().layer().layer(handler_fn(move |_e: Envelope<Moved>, _c| {
///     r.fetch_add(1, SeqCst);
///     async { Ok(()) }
/// }));
/// let bus = Bus::new();
/// for version in [2, 1] {
///     let env = Envelope::from_event(Moved { version });
///     h.call(env.clone(), Context::new(&bus, env.meta())).await?;
/// }
/// assert_eq!(runs.load(SeqCst), 1); // version 1 came after 2: stale, dropped
/// # Ok(()) }
/// ```
pub struct Resequence<H> {
    pub(super) inner: Arc<H>,
    pub(super) state: Arc<State>,
}

impl<H> fmt::Debug for Resequence<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resequence")
            .field("cfg", &self.state.cfg)
            .finish_non_exhaustive()
    }
}

impl<H> Resequence<H> {
    /// How many events are held now, over all entities.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::{handler_fn, Layer, ResequenceConfig};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let h = ResequenceConfig::new().layer().layer(handler_fn(|_e: syncbus_core::Envelope<Ping>, _c| async { Ok(()) }));
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

impl<P: Storable, H: Handler<P>> Handler<P> for Resequence<H> {
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        let meta = env.meta();
        let (Some(entity), Some(v)) = (meta.entity_id().cloned(), meta.version()) else {
            return self.inner.call(env, ctx).await;
        };
        if is_redrive(meta) {
            // An operator replays a dead-lettered version: the entity moves past it, so later
            // versions flow and a late copy of it is stale.
            if !self.state.redriven(&entity, v) {
                return self.inner.call(env, ctx).await;
            }
            let guard = Busy {
                state: &self.state,
                entity: &entity,
            };
            let r = self.inner.call(env, ctx).await;
            std::mem::forget(guard);
            drain(&self.inner, &self.state, &entity, v.saturating_add(1)).await;
            return r;
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
                ctx.outcome_counted();
                tracing::debug!(subscription = ctx.subscription(), %entity, version = v, "stale version dropped");
                Ok(())
            }
            (Admit::Held { arm }, _) => {
                ctx.bump(Stat::Held);
                // Counted when it is released (succeeded or failed), stale or expired.
                ctx.outcome_counted();
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
                                "resequence layer outside a tokio runtime: held events have no expiry"
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
                            ctx.holding(true);
                            // Counted when it is released or found stale.
                            ctx.outcome_counted();
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
                boxed.1.holding(false);
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
        ctx.holding(false);
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
        Some(store) => {
            record(&**store, env, ctx, err).await;
        }
        None => {
            ctx.bump(Stat::DeadLetterLost);
            tracing::error!(
                subscription = ctx.subscription(),
                event = %env.meta().id(),
                error = %err,
                "a held event failed and the resequence layer has no dead-letter store"
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
                        ctx.holding(false);
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
fn deadline(now: Instant, d: std::time::Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 24 * 3600))
}
