//! The router: a read-mostly snapshot of subscriptions, swapped atomically.
//!
//! Publishers never take a lock. They load the current [`Snapshot`] (an `arc-swap` load, no
//! lock, no reference count traffic) and find the route for their topic:
//!
//! - a topic that some subscription names literally has its route precomputed in the
//!   snapshot (literal subscribers plus every wildcard pattern that matches): one hash lookup;
//! - any other topic is matched against the wildcard trie once, and the result is kept in a
//!   small direct-mapped cache of lock-free slots, tagged with the snapshot generation.
//!
//! Subscribe and unsubscribe take a writer lock (writers only), build the next snapshot and
//! swap it in. A publish that raced with the swap used the old routes; every publish that
//! starts after `subscribe` or `unsubscribe` returns sees the new ones.

use std::any::{Any, TypeId};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use rustc_hash::{FxBuildHasher, FxHashMap};
use smol_str::SmolStr;

use syncbus_envelope::Envelope;

use crate::metrics::SubStats;
use crate::topic::{Pattern, Topic, TopicError};
use crate::trie::PatternTrie;

/// What a sink did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Accepted (queued, or handled inline).
    Ok,
    /// Accepted; an older event was dropped to make room.
    Displaced,
    /// Refused by the `Reject` policy.
    Full,
    /// The subscription is gone.
    Closed,
}

/// A subscription's lifecycle, type-erased.
pub(crate) trait Sink: Send + Sync + 'static {
    /// Stops intake; queued events stay to be drained.
    fn close(&self);
    /// Events waiting in the sink.
    fn pending(&self) -> usize;
    /// Tells workers to stop after the event in hand (a shutdown deadline passed).
    fn abort(&self) {}
    /// Drops what is still queued or abandoned by stopped workers, and says how many.
    fn discard(&self) -> usize;
}

/// A subscription's receiving end for payload type `P`.
pub(crate) trait Deliver<P>: Send + Sync + 'static {
    /// Takes the envelope out of `slot` only when `last` is true; otherwise clones it.
    /// A sink that refuses it puts it back. `pristine`: the metadata is what
    /// `Envelope::from_event` made, apart from the topic (queues may then pack it small).
    fn deliver(&self, slot: &mut Option<Envelope<P>>, last: bool, pristine: bool) -> Delivered;
}

pub(crate) struct SubEntry {
    pub(crate) id: u64,
    pub(crate) name: SmolStr,
    pub(crate) pattern: Pattern,
    pub(crate) type_id: TypeId,
    pub(crate) stats: Arc<SubStats>,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) workers: Option<Arc<crate::subscription::Workers>>,
    /// An `Arc<dyn Deliver<P>>` for the entry's `P`.
    typed: Box<dyn Any + Send + Sync>,
    /// Builds the [`Group`] of entries of the same `P`.
    group: fn(&[Arc<SubEntry>]) -> Box<dyn Any + Send + Sync>,
}

impl SubEntry {
    pub(crate) fn new<P: 'static, S: Sink + Deliver<P>>(
        id: u64,
        name: SmolStr,
        pattern: Pattern,
        stats: Arc<SubStats>,
        sink: Arc<S>,
        workers: Option<Arc<crate::subscription::Workers>>,
    ) -> SubEntry {
        let typed: Arc<dyn Deliver<P>> = sink.clone();
        SubEntry {
            id,
            name,
            pattern,
            type_id: TypeId::of::<P>(),
            stats,
            sink,
            workers,
            typed: Box::new(typed),
            group: Group::<P>::build,
        }
    }
}

impl std::fmt::Debug for SubEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubEntry")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

/// The sinks of one payload type on one route, in subscription order, ready to call without
/// a type check per sink.
pub(crate) struct Group<P> {
    pub(crate) sinks: Box<[TypedSink<P>]>,
}

/// A sink of payload type `P` and the counters of its subscription.
pub(crate) type TypedSink<P> = (Arc<dyn Deliver<P>>, Arc<SubStats>);

impl<P: 'static> Group<P> {
    fn build(entries: &[Arc<SubEntry>]) -> Box<dyn Any + Send + Sync> {
        let sinks = entries
            .iter()
            .filter_map(|e| {
                e.typed
                    .downcast_ref::<Arc<dyn Deliver<P>>>()
                    .map(|d| (d.clone(), e.stats.clone()))
            })
            .collect();
        Box::new(Group::<P> { sinks })
    }
}

/// A trie value: a subscription, compared by id.
#[derive(Clone, Debug)]
pub(crate) struct SubRef(pub(crate) Arc<SubEntry>);

impl PartialEq for SubRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

/// The subscriptions that receive one topic, grouped by payload type.
pub(crate) struct Route {
    pub(crate) topic: SmolStr,
    groups: Box<[(TypeId, Box<dyn Any + Send + Sync>)]>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("topic", &self.topic)
            .field("types", &self.groups.len())
            .finish()
    }
}

impl Route {
    #[inline]
    pub(crate) fn group<P: 'static>(&self) -> Option<&Group<P>> {
        let type_id = TypeId::of::<P>();
        self.groups
            .iter()
            .find(|(t, _)| *t == type_id)
            .and_then(|(_, g)| g.downcast_ref::<Group<P>>())
    }

    fn build(topic: SmolStr, mut subs: Vec<Arc<SubEntry>>) -> Route {
        subs.sort_by_key(|s| s.id);
        subs.dedup_by_key(|s| s.id);
        let mut by_type: Vec<(TypeId, Vec<Arc<SubEntry>>)> = Vec::new();
        for s in subs {
            match by_type.iter_mut().find(|(t, _)| *t == s.type_id) {
                Some((_, v)) => v.push(s),
                None => by_type.push((s.type_id, vec![s])),
            }
        }
        Route {
            topic,
            groups: by_type
                .into_iter()
                .map(|(t, v)| (t, (v[0].group)(&v)))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) generation: u64,
    pub(crate) subs: Vec<Arc<SubEntry>>,
    literal: FxHashMap<SmolStr, Vec<Arc<SubEntry>>>,
    trie: PatternTrie<SubRef>,
    exact: FxHashMap<SmolStr, Arc<Route>>,
}

impl Snapshot {
    fn empty() -> Self {
        Snapshot {
            generation: 0,
            subs: Vec::new(),
            literal: FxHashMap::default(),
            trie: PatternTrie::new(),
            exact: FxHashMap::default(),
        }
    }

    fn compute(&self, topic: &str) -> Route {
        let mut subs: Vec<Arc<SubEntry>> = self.literal.get(topic).cloned().unwrap_or_default();
        self.trie
            .for_each_match(topic, |s: &SubRef| subs.push(s.0.clone()));
        Route::build(SmolStr::new(topic), subs)
    }

    /// Recomputes the precomputed routes a change of `pattern` affects.
    fn refresh(&mut self, pattern: &Pattern) {
        if pattern.is_literal() {
            let key = SmolStr::new(pattern.as_str());
            if self.literal.contains_key(pattern.as_str()) {
                let route = Arc::new(self.compute(&key));
                self.exact.insert(key, route);
            } else {
                self.exact.remove(pattern.as_str());
            }
        } else {
            let affected: Vec<SmolStr> = self
                .exact
                .keys()
                .filter(|k| pattern.matches_str(k))
                .cloned()
                .collect();
            for key in affected {
                let route = Arc::new(self.compute(&key));
                self.exact.insert(key, route);
            }
        }
    }
}

struct CachedRoute {
    generation: u64,
    route: Arc<Route>,
}

const CACHE_SLOTS: usize = 1024;

pub(crate) struct Router {
    snapshot: ArcSwap<Snapshot>,
    generation: AtomicU64,
    writer: Mutex<()>,
    cache: Box<[ArcSwapOption<CachedRoute>]>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Router {
    pub(crate) fn new() -> Self {
        Router {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            generation: AtomicU64::new(0),
            writer: Mutex::new(()),
            cache: (0..CACHE_SLOTS).map(|_| ArcSwapOption::empty()).collect(),
            next_id: AtomicU64::new(1),
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn add(&self, entry: Arc<SubEntry>) {
        let _w = self.writer.lock();
        let mut next = Snapshot::clone(&self.snapshot.load());
        next.generation += 1;
        next.subs.push(entry.clone());
        let pattern = entry.pattern.clone();
        if pattern.is_literal() {
            next.literal
                .entry(SmolStr::new(pattern.as_str()))
                .or_default()
                .push(entry);
        } else {
            next.trie.insert(&pattern, SubRef(entry));
        }
        next.refresh(&pattern);
        self.install(next);
    }

    pub(crate) fn remove(&self, id: u64) -> Option<Arc<SubEntry>> {
        let _w = self.writer.lock();
        let current = self.snapshot.load();
        let entry = current.subs.iter().find(|s| s.id == id)?.clone();
        let mut next = Snapshot::clone(&current);
        drop(current);
        next.generation += 1;
        next.subs.retain(|s| s.id != id);
        let pattern = entry.pattern.clone();
        if pattern.is_literal() {
            if let Some(v) = next.literal.get_mut(pattern.as_str()) {
                v.retain(|s| s.id != id);
                if v.is_empty() {
                    next.literal.remove(pattern.as_str());
                }
            }
        } else {
            next.trie.remove(&pattern, &SubRef(entry.clone()));
        }
        next.refresh(&pattern);
        self.install(next);
        Some(entry)
    }

    /// Removes every subscription (shutdown) and returns them.
    pub(crate) fn clear(&self) -> Vec<Arc<SubEntry>> {
        let _w = self.writer.lock();
        let current = self.snapshot.load_full();
        let mut next = Snapshot::empty();
        next.generation = current.generation + 1;
        self.install(next);
        current.subs.clone()
    }

    fn install(&self, next: Snapshot) {
        let generation = next.generation;
        self.snapshot.store(Arc::new(next));
        self.generation.store(generation, Ordering::Release);
    }

    /// Finds the route for `topic` and hands it to `f`. A topic nobody listens to gets
    /// `None` (it is validated first, so a bad name is still an error).
    #[inline]
    pub(crate) fn with_route<R>(
        &self,
        topic: &str,
        f: impl FnOnce(Option<&Route>) -> R,
    ) -> Result<R, TopicError> {
        let snap = self.snapshot.load();
        if let Some(route) = snap.exact.get(topic) {
            return Ok(f(Some(route)));
        }
        self.with_route_slow(&snap, topic, f)
    }

    #[inline(never)]
    fn with_route_slow<R>(
        &self,
        snap: &Snapshot,
        topic: &str,
        f: impl FnOnce(Option<&Route>) -> R,
    ) -> Result<R, TopicError> {
        if snap.trie.is_empty() {
            Topic::new(topic)?;
            return Ok(f(None));
        }
        let slot = &self.cache[slot_of(topic)];
        {
            let cached = slot.load();
            if let Some(c) = cached.as_deref() {
                if c.generation == snap.generation && c.route.topic == topic {
                    return Ok(f(Some(&c.route)));
                }
            }
        }
        Topic::new(topic)?;
        let route = Arc::new(snap.compute(topic));
        slot.store(Some(Arc::new(CachedRoute {
            generation: snap.generation,
            route: route.clone(),
        })));
        Ok(f(Some(&route)))
    }

    /// The route of a validated topic, for handles that cache it.
    pub(crate) fn route_of(&self, topic: &Topic) -> (u64, Arc<Route>) {
        let snap = self.snapshot.load();
        if let Some(route) = snap.exact.get(topic.as_str()) {
            return (snap.generation, route.clone());
        }
        (snap.generation, Arc::new(snap.compute(topic.as_str())))
    }
}

fn slot_of(topic: &str) -> usize {
    (FxBuildHasher.hash_one(topic) as usize) & (CACHE_SLOTS - 1)
}
