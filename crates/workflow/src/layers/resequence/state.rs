//! Per-entity positions and held events.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use syncbus_envelope::{EntityId, Envelope, Metadata};
use tokio::time::Instant;

use super::config::{ResequenceConfig, StartAt};
use crate::context::Context;

/// The header a redriven event carries: the id of the dead letter's event it replays.
///
/// # Examples
///
/// ```
/// use syncbus_core::Envelope;
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
/// // A handler can tell a redriven event from a first delivery.
/// fn is_redriven(env: &Envelope<Ping>) -> bool {
///     env.meta().headers().get(syncbus_workflow::REDRIVE_HEADER).is_some()
/// }
/// assert!(!is_redriven(&Envelope::from_event(Ping)));
/// ```
pub const REDRIVE_HEADER: &str = "syncbusredriveof";

pub(super) struct State {
    pub(super) cfg: ResequenceConfig,
    pub(super) entities: Mutex<HashMap<EntityId, Entity, foldhash::quality::RandomState>>,
}

pub(super) struct Entity {
    /// The next version to apply.
    pub(super) next: u64,
    /// A delivery is applying versions of this entity now.
    pub(super) busy: bool,
    pub(super) held: BTreeMap<u64, Held>,
    /// An expiry task is watching `held`.
    pub(super) timer: bool,
    touched: Instant,
}

impl Entity {
    /// Skips the gap below `lowest`; the version to apply next if this caller is now the
    /// one applying (the entity was idle), `None` if another delivery is at it.
    pub(super) fn skip_to(&mut self, lowest: u64) -> Option<u64> {
        self.next = self.next.max(lowest);
        if self.busy {
            None
        } else {
            self.busy = true;
            Some(self.next)
        }
    }
}

pub(super) struct Held {
    /// The `(Envelope<P>, Context)` waiting, typed by the handler that put it there.
    pub(super) item: Box<dyn Any + Send>,
    pub(super) since: Instant,
}

pub(super) enum Admit {
    Run,
    Stale,
    Held { arm: bool },
    Overflow,
}

pub(super) fn is_redrive(meta: &Metadata) -> bool {
    meta.headers().get(REDRIVE_HEADER).is_some()
}

impl State {
    pub(super) fn new(cfg: ResequenceConfig) -> State {
        State {
            cfg,
            entities: Mutex::new(HashMap::default()),
        }
    }

    pub(super) fn admit<P: Send + 'static>(
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
        ctx.holding(true);
        let arm = !e.timer;
        e.timer = true;
        (Admit::Held { arm }, None)
    }
}

impl State {
    /// Moves the entity's position past a redriven version `v`: versions below it are
    /// given up (they were dead-lettered or will be stale), and a late copy of `v` is stale.
    /// `true` if the caller is now the one applying (it must apply `v`, then drain from
    /// `v + 1`); `false` if another delivery is applying, or `v` is behind the position
    /// already (the caller just runs it).
    pub(super) fn redriven(&self, entity: &EntityId, v: u64) -> bool {
        let now = Instant::now();
        let mut map = self.entities.lock();
        let e = map.entry(entity.clone()).or_insert_with(|| Entity {
            next: match self.cfg.start {
                StartAt::FirstSeen => v,
                StartAt::Version(s) => s.min(v),
            },
            busy: false,
            held: BTreeMap::new(),
            timer: false,
            touched: now,
        });
        e.touched = now;
        if v < e.next {
            return false;
        }
        if e.busy {
            // The applying delivery picks the new position up (`apply_held` keeps the max).
            e.next = v.saturating_add(1);
            return false;
        }
        e.busy = true;
        e.next = v;
        true
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
