//! The router: a read-mostly snapshot of subscriptions, swapped atomically.
//!
//! Publishers never take a lock. They read the current [`Snapshot`] (this thread's copy while
//! the router's generation says it is current, else an `arc-swap` load that becomes the
//! thread's copy) and find the route for their topic:
//!
//! - a topic that some subscription names literally has its route precomputed in the
//!   snapshot (literal subscribers plus every wildcard pattern that matches): one hash lookup;
//! - any other topic is matched against the wildcard trie once, and the result is kept in the
//!   snapshot's route cache: write-once slots, probed a few from the topic's hash, so reading
//!   a cached route is plain loads. A snapshot starts with an empty cache (its routes may
//!   differ from the last one's); when every probed slot is taken by other topics, the route
//!   is computed for that publish alone.
//!
//! A publish hashes its topic once: the hash picks the shard (middle bits), the bucket in the
//! shard's table and the cache slot (low bits). The shard must not come from the top bits,
//! which the table keeps as its per-bucket tags: a shard whose entries all share them
//! compares keys on almost every probe. A route holds the group of its first payload type
//! in its own allocation (an unsized last field, see [`RouteOf`]) and a group its only sink
//! inline, so the common route (one type, one subscription) goes from the bucket to the route
//! to the sink: no box of the group, no slice to chase.
//!
//! Subscribe and unsubscribe take a writer lock (writers only), build the next snapshot and
//! swap it in. A publish that raced with the swap used the old routes; every publish that
//! starts after `subscribe` or `unsubscribe` returns sees the new ones.

use std::any::{Any, TypeId};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use hashbrown::HashTable;
use parking_lot::Mutex;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use smol_str::SmolStr;

use crate::metrics::SubStats;
use crate::sink::{Deliver, Observe, Sink};
use crate::trie::PatternTrie;
use crate::workers::Workers;
use syncbus_envelope::{NameError, Pattern, Topic};

pub(crate) struct SubEntry {
    pub(crate) id: u64,
    pub(crate) name: SmolStr,
    pub(crate) pattern: Pattern,
    pub(crate) stats: Arc<SubStats>,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) workers: Option<Arc<Workers>>,
    target: Target,
}

type GroupFn = fn(&[Arc<SubEntry>], &Taps) -> Box<dyn Any + Send + Sync>;

/// Builds a route whose first group is the [`Group`] of the entries' payload type, held in
/// the route's own allocation.
type RouteFn = fn(RouteOf<()>, &[Arc<SubEntry>]) -> Arc<Route>;

/// What an entry receives: one payload type, or every type (a tap).
enum Target {
    Typed {
        type_id: TypeId,
        /// An `Arc<dyn Deliver<P>>` for the entry's `P`.
        typed: Box<dyn Any + Send + Sync>,
        /// Builds the [`Group`] of entries of the same `P`.
        group: GroupFn,
        /// Builds a route with that group first.
        route: RouteFn,
    },
    Tap(TapSink),
}

impl SubEntry {
    pub(crate) fn new<P: 'static, S: Sink + Deliver<P>>(
        id: u64,
        name: SmolStr,
        pattern: Pattern,
        stats: Arc<SubStats>,
        sink: Arc<S>,
        workers: Option<Arc<Workers>>,
    ) -> SubEntry {
        let typed: Arc<dyn Deliver<P>> = sink.clone();
        SubEntry::routed(id, name, pattern, stats, sink, typed, workers)
    }

    /// An entry whose lifecycle is `sink` and whose events go to `typed`: a member of a
    /// ring several subscriptions share ([`fanout`](crate::fanout)) has its own lifecycle
    /// and the shared ring's delivery, so the routes, which keep one sink per delivery,
    /// push each event once for them all.
    pub(crate) fn routed<P: 'static>(
        id: u64,
        name: SmolStr,
        pattern: Pattern,
        stats: Arc<SubStats>,
        sink: Arc<dyn Sink>,
        typed: Arc<dyn Deliver<P>>,
        workers: Option<Arc<Workers>>,
    ) -> SubEntry {
        SubEntry {
            id,
            name,
            pattern,
            stats,
            sink,
            workers,
            target: Target::Typed {
                type_id: TypeId::of::<P>(),
                typed: Box::new(typed),
                group: Group::<P>::build,
                route: Group::<P>::route,
            },
        }
    }

    /// A tap: it receives every payload type on its pattern. A `receiver` tap counts in a
    /// publish's `Ok(n)` like a subscription; any other only observes.
    pub(crate) fn tap<S: Sink + Observe>(
        id: u64,
        name: SmolStr,
        pattern: Pattern,
        stats: Arc<SubStats>,
        sink: Arc<S>,
        workers: Option<Arc<Workers>>,
        receiver: bool,
    ) -> SubEntry {
        let tap = TapSink {
            sink: sink.clone(),
            stats: stats.clone(),
            id,
            receiver,
        };
        SubEntry {
            id,
            name,
            pattern,
            stats,
            sink,
            workers,
            target: Target::Tap(tap),
        }
    }
}

impl std::fmt::Debug for SubEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubEntry")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("pattern", &self.pattern)
            .field("tap", &matches!(self.target, Target::Tap(_)))
            .finish_non_exhaustive()
    }
}

/// Who receives a publish of one payload type on one route: the taps (every type), then the
/// sinks of that type, each in subscription order, ready to call without a type check per
/// sink. Dispatch holds it by reference, so a route without taps costs one length check.
///
/// In this order: a route's first group starts on the route's first cache line, so the flag
/// and the only sink with its counters are read from that line (see [`RouteOf`]).
#[repr(C)]
pub(crate) struct Group<P> {
    /// No taps, and every sink runs inline: a publish hands them a borrowed envelope.
    inline: bool,
    /// The only sink, when there is one (the common case): held inline, so reaching it
    /// costs no load beyond the group's own line.
    one: Option<TypedSink<P>>,
    /// Every sink, when there are several (empty otherwise).
    many: Box<[TypedSink<P>]>,
    pub(crate) taps: Taps,
}

/// A sink of payload type `P`, the counters of its subscription, and its id. In this order:
/// a route's first sink and its counters share the route's first cache line.
#[repr(C)]
pub(crate) struct TypedSink<P> {
    pub(crate) sink: Arc<dyn Deliver<P>>,
    pub(crate) stats: Arc<SubStats>,
    pub(crate) id: u64,
}

impl<P> Group<P> {
    /// The sinks, in subscription order.
    #[inline]
    pub(crate) fn sinks(&self) -> &[TypedSink<P>] {
        match &self.one {
            Some(one) => std::slice::from_ref(one),
            None => &self.many,
        }
    }

    /// Whether every sink runs inline and no tap looks on; see [`Deliver::is_inline`].
    #[inline]
    pub(crate) fn is_inline(&self) -> bool {
        self.inline
    }
}

impl<P: 'static> Group<P> {
    fn new(mut sinks: Vec<TypedSink<P>>, taps: Taps) -> Group<P> {
        let inline =
            !sinks.is_empty() && taps.is_empty() && sinks.iter().all(|s| s.sink.is_inline());
        if sinks.len() == 1 {
            Group {
                one: sinks.pop(),
                many: Box::default(),
                taps,
                inline,
            }
        } else {
            Group {
                one: None,
                many: sinks.into_boxed_slice(),
                taps,
                inline,
            }
        }
    }

    /// The group of the entries of type `P`. Entries that share one delivery (members of
    /// a shared ring) count once, where the first of them stands.
    fn of(entries: &[Arc<SubEntry>], taps: &Taps) -> Group<P> {
        let mut sinks: Vec<TypedSink<P>> = Vec::new();
        // By address: one set per route build, so a topic with many subscriptions stays
        // linear to build (and a route of one entry allocates none).
        let mut seen: FxHashSet<*const ()> = FxHashSet::default();
        let shared = entries.len() > 1;
        for e in entries {
            let Target::Typed { typed, .. } = &e.target else {
                continue;
            };
            let Some(d) = typed.downcast_ref::<Arc<dyn Deliver<P>>>() else {
                continue;
            };
            if !shared || seen.insert(Arc::as_ptr(d).cast::<()>()) {
                sinks.push(TypedSink {
                    sink: d.clone(),
                    stats: e.stats.clone(),
                    id: e.id,
                });
            }
        }
        Group::<P>::new(sinks, taps.clone())
    }

    fn build(entries: &[Arc<SubEntry>], taps: &Taps) -> Box<dyn Any + Send + Sync> {
        Box::new(Group::<P>::of(entries, taps))
    }

    fn route(head: RouteOf<()>, entries: &[Arc<SubEntry>]) -> Arc<Route> {
        let first = Group::<P>::of(entries, head.taps());
        Arc::new(RouteOf {
            topic: head.topic,
            rest: head.rest,
            first,
        })
    }
}

/// A tap on a route: its sink, its counters, its id, and whether it counts as a receiver.
#[derive(Clone)]
pub(crate) struct TapSink {
    pub(crate) sink: Arc<dyn Observe>,
    pub(crate) stats: Arc<SubStats>,
    pub(crate) id: u64,
    pub(crate) receiver: bool,
}

/// The taps of a route, shared by its groups. Most routes have none, and then nothing is
/// allocated for them.
#[derive(Clone, Default)]
pub(crate) struct Taps(Option<Arc<Vec<TapSink>>>);

impl Taps {
    fn new(taps: Vec<TapSink>) -> Taps {
        Taps((!taps.is_empty()).then(|| Arc::new(taps)))
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl std::ops::Deref for Taps {
    type Target = [TapSink];

    #[inline]
    fn deref(&self) -> &[TapSink] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
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

/// The subscriptions that receive one topic, grouped by payload type, and the taps that
/// receive it whatever its type.
pub(crate) type Route = RouteOf<dyn Any + Send + Sync>;

/// A [`Route`] before its first group is erased: `G` is the [`Group`] of the first payload
/// type (`()` for a route of taps only). The group is the last field, so an
/// `Arc<RouteOf<Group<P>>>` coerces to an `Arc<Route>` and the group stays in the route's
/// own allocation: most routes carry one type, and then finding its group and its only sink
/// costs no load beyond the route's lines, no pointer to chase.
///
/// Laid out so that a publish to a route of one inline sink reads one cache line of it: the
/// topic (the envelope's), the first group's flag, its only sink and that sink's counters
/// (checked by `route_hot_fields_share_a_line`). Among many topics every line of a route is
/// a likely cache miss, so a publish should touch one. Further types and the taps sit behind
/// a pointer that most routes leave empty.
#[repr(C, align(64))]
pub(crate) struct RouteOf<G: ?Sized> {
    pub(crate) topic: Topic,
    rest: Option<Box<RouteRest>>,
    first: G,
}

/// What few routes have: groups of further payload types, and taps.
struct RouteRest {
    /// The groups of any further payload types.
    more: Box<[TypedGroup]>,
    taps: Taps,
}

/// The taps of a route that has none.
static NO_TAPS: Taps = Taps(None);

impl<G: ?Sized> RouteOf<G> {
    /// The groups of payload types after the first.
    fn more(&self) -> &[TypedGroup] {
        self.rest.as_ref().map_or(&[], |r| &r.more)
    }

    /// The taps on this route, whatever the payload type.
    fn taps(&self) -> &Taps {
        self.rest.as_ref().map_or(&NO_TAPS, |r| &r.taps)
    }
}

/// A [`Group`] of one payload type, erased, with that type's id.
type TypedGroup = (TypeId, Box<dyn Any + Send + Sync>);

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("topic", &self.topic)
            .field(
                "types",
                &(usize::from(!self.first.is::<()>()) + self.more().len()),
            )
            .field("taps", &self.taps().len())
            .finish()
    }
}

impl Route {
    /// Who receives a publish of `P` here, if any subscription of `P` does.
    #[inline]
    pub(crate) fn group<P: 'static>(&self) -> Option<&Group<P>> {
        match self.first.downcast_ref::<Group<P>>() {
            Some(group) => Some(group),
            None if self.more().is_empty() => None,
            None => self.group_among_more(TypeId::of::<P>()),
        }
    }

    #[inline(never)]
    fn group_among_more<P: 'static>(&self, type_id: TypeId) -> Option<&Group<P>> {
        self.more()
            .iter()
            .find(|(t, _)| *t == type_id)
            .and_then(|(_, g)| g.downcast_ref::<Group<P>>())
    }

    /// For a `P` no subscription here takes: the taps alone, if any (a group with no sinks,
    /// made per publish: it shares the taps, no copy of them).
    #[cold]
    pub(crate) fn taps_only<P: 'static>(&self) -> Option<Group<P>> {
        let taps = self.taps();
        (!taps.is_empty()).then(|| Group::new(Vec::new(), taps.clone()))
    }

    fn build(topic: Topic, mut subs: Vec<Arc<SubEntry>>) -> Arc<Route> {
        subs.sort_by_key(|s| s.id);
        subs.dedup_by_key(|s| s.id);
        let mut by_type: Vec<(TypeId, GroupFn, RouteFn, Vec<Arc<SubEntry>>)> = Vec::new();
        let mut taps = Vec::new();
        for s in subs {
            match &s.target {
                Target::Tap(tap) => taps.push(tap.clone()),
                Target::Typed {
                    type_id,
                    group,
                    route,
                    ..
                } => match by_type.iter_mut().find(|(t, _, _, _)| t == type_id) {
                    Some((_, _, _, v)) => v.push(s),
                    None => by_type.push((*type_id, *group, *route, vec![s])),
                },
            }
        }
        let taps = Taps::new(taps);
        let mut types = by_type.into_iter();
        let first = types.next();
        let more: Box<[TypedGroup]> = types
            .map(|(t, group, _, v)| (t, group(&v, &taps)))
            .collect();
        let rest =
            (!more.is_empty() || !taps.is_empty()).then(|| Box::new(RouteRest { more, taps }));
        let head = RouteOf {
            topic,
            rest,
            first: (),
        };
        match first {
            Some((_, _, route, v)) => route(head, &v),
            None => Arc::new(head),
        }
    }
}

/// What publishers read: precomputed routes, sharded so a subscribe copies one shard, not
/// every route; and the wildcard trie for topics no literal subscription names.
#[derive(Debug)]
struct Snapshot {
    generation: u64,
    shards: Box<[Arc<RouteMap>]>,
    trie: Arc<PatternTrie<SubRef>>,
    /// Routes of topics only wildcards match, found by publishes: made on the first such
    /// publish, so a snapshot nobody publishes a wildcard-only topic through costs nothing.
    wild: OnceLock<Box<[WildSlot]>>,
}

/// A cached wildcard-only route and its topic's hash, written once.
type WildSlot = OnceLock<(u64, Arc<Route>)>;

/// Wildcard-only routes a snapshot keeps, and how many slots a topic may probe.
const WILD_SLOTS: usize = 4096;
const WILD_PROBES: usize = 4;

/// One shard of literal routes, found by the topic's hash, which the publish computes once
/// for the shard, the bucket and the wildcard route cache alike. A bucket is the route's
/// pointer alone (16 bytes, four to a line): the topic a hit is checked against is on the
/// route's first line, which the publish reads next anyway.
type RouteMap = HashTable<Arc<Route>>;

/// Routes of literal topics are spread over this many maps.
const SHARDS: usize = 64;

impl Snapshot {
    fn empty(generation: u64) -> Self {
        Snapshot {
            generation,
            shards: (0..SHARDS).map(|_| Arc::new(RouteMap::default())).collect(),
            trie: Arc::new(PatternTrie::new()),
            wild: OnceLock::new(),
        }
    }

    /// The next generation's starting point: the same routes (shared, copied where they
    /// change), an empty wildcard route cache.
    fn successor(&self) -> Self {
        Snapshot {
            generation: self.generation + 1,
            shards: self.shards.clone(),
            trie: self.trie.clone(),
            wild: OnceLock::new(),
        }
    }

    /// The probe sequence of a topic hash in the wildcard route cache.
    #[inline]
    fn wild_slots(&self, hash: u64) -> impl Iterator<Item = &WildSlot> {
        let slots = self
            .wild
            .get_or_init(|| (0..WILD_SLOTS).map(|_| OnceLock::new()).collect());
        let start = hash as usize;
        (0..WILD_PROBES).map(move |i| &slots[start.wrapping_add(i) & (WILD_SLOTS - 1)])
    }

    #[inline]
    fn exact(&self, topic: &str, hash: u64) -> Option<&Arc<Route>> {
        self.shards[shard_of(hash)].find(hash, |route| route.topic == topic)
    }
}

/// The hash of a topic: one per publish.
#[inline]
fn hash_of(topic: &str) -> u64 {
    FxBuildHasher.hash_one(topic)
}

/// The shard of a topic hash: middle bits, since a shard's table uses the low bits for the
/// bucket and the top 7 for its tags.
#[inline]
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

/// What writers keep: every subscription, literal ones by topic, and the master trie.
/// Publishers never see it.
#[derive(Debug, Default)]
struct Registry {
    subs: BTreeMap<u64, Arc<SubEntry>>,
    literal: FxHashMap<Topic, Vec<Arc<SubEntry>>>,
    trie: PatternTrie<SubRef>,
}

impl Registry {
    fn route(&self, topic: &Topic) -> Arc<Route> {
        let literal = self.literal.get(topic).map_or(&[][..], Vec::as_slice);
        route_for(topic, literal, &self.trie)
    }
}

/// The route of `topic`: its literal subscriptions plus every wildcard that matches.
fn route_for(topic: &Topic, literal: &[Arc<SubEntry>], trie: &PatternTrie<SubRef>) -> Arc<Route> {
    let mut subs = literal.to_vec();
    trie.for_each_match(topic.as_str(), |s: &SubRef| subs.push(s.0.clone()));
    Route::build(topic.clone(), subs)
}

thread_local! {
    /// The snapshot a thread published through last, with its router's id: a publish on
    /// that router whose generation is still current reads it here, with no atomic
    /// read-modify-write. A publish takes it out while it routes and puts it back after, so
    /// a publish nested in an inline handler finds it empty and loads the shared one. It
    /// outlives a router until the thread publishes on another one or exits; it is stale by
    /// then and never read.
    static SNAPSHOT: Cell<Option<(u64, Arc<Snapshot>)>> = const { Cell::new(None) };
}

/// Router ids, unique in the process (an address could be reused by a later router).
static NEXT_ROUTER: AtomicU64 = AtomicU64::new(0);

pub(crate) struct Router {
    /// Names the router in the per-thread snapshot cache.
    id: u64,
    snapshot: ArcSwap<Snapshot>,
    generation: AtomicU64,
    registry: Mutex<Registry>,
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
            id: NEXT_ROUTER.fetch_add(1, Ordering::Relaxed),
            snapshot: ArcSwap::from_pointee(Snapshot::empty(0)),
            generation: AtomicU64::new(0),
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every live subscription, in subscription order.
    pub(crate) fn entries(&self) -> Vec<Arc<SubEntry>> {
        self.registry.lock().subs.values().cloned().collect()
    }

    pub(crate) fn add(&self, entry: Arc<SubEntry>) {
        let mut reg = self.registry.lock();
        reg.subs.insert(entry.id, entry.clone());
        let pattern = entry.pattern.clone();
        match Topic::of_literal(&pattern) {
            Some(topic) => reg.literal.entry(topic).or_default().push(entry),
            None => reg.trie.insert(&pattern, SubRef(entry)),
        }
        self.publish_change(&reg, &pattern);
    }

    pub(crate) fn remove(&self, id: u64) -> Option<Arc<SubEntry>> {
        let mut reg = self.registry.lock();
        let entry = reg.subs.remove(&id)?;
        let pattern = entry.pattern.clone();
        if pattern.is_literal() {
            if let Some(v) = reg.literal.get_mut(pattern.as_str()) {
                v.retain(|s| s.id != id);
                if v.is_empty() {
                    reg.literal.remove(pattern.as_str());
                }
            }
        } else {
            reg.trie.remove(&pattern, &SubRef(entry.clone()));
        }
        self.publish_change(&reg, &pattern);
        Some(entry)
    }

    /// Removes every subscription (shutdown) and returns them.
    pub(crate) fn clear(&self) -> Vec<Arc<SubEntry>> {
        let mut reg = self.registry.lock();
        let entries = std::mem::take(&mut *reg).subs.into_values().collect();
        let generation = self.snapshot.load().generation + 1;
        self.install(Snapshot::empty(generation));
        entries
    }

    /// Builds and installs the next snapshot after `pattern`'s subscriptions changed: only
    /// the routes it matches are recomputed, only their shards copied.
    fn publish_change(&self, reg: &Registry, pattern: &Pattern) {
        let current = self.snapshot.load_full();
        let mut next = current.successor();
        let topics: Vec<Topic> = match Topic::of_literal(pattern) {
            Some(topic) => vec![topic],
            None => {
                next.trie = Arc::new(reg.trie.clone());
                reg.literal
                    .keys()
                    .filter(|t| pattern.matches(t))
                    .cloned()
                    .collect()
            }
        };
        let mut copied: FxHashMap<usize, RouteMap> = FxHashMap::default();
        for topic in topics {
            let hash = hash_of(topic.as_str());
            let shard = shard_of(hash);
            let map = copied
                .entry(shard)
                .or_insert_with(|| RouteMap::clone(&next.shards[shard]));
            let found = map.find_entry(hash, |route| route.topic == topic);
            if reg.literal.contains_key(topic.as_str()) {
                let route = reg.route(&topic);
                match found {
                    Ok(mut entry) => *entry.get_mut() = route,
                    Err(_) => {
                        map.insert_unique(hash, route, |r| hash_of(r.topic.as_str()));
                    }
                }
            } else if let Ok(entry) = found {
                entry.remove();
            }
        }
        for (shard, map) in copied {
            next.shards[shard] = Arc::new(map);
        }
        self.install(next);
    }

    fn install(&self, next: Snapshot) {
        let generation = next.generation;
        self.snapshot.store(Arc::new(next));
        self.generation.store(generation, Ordering::Release);
    }

    /// Finds the route for the topic string `topic` and hands it to `f`. A topic nobody
    /// listens to gets `None`. A topic that no literal subscription names is validated
    /// first, so a bad name is still an error.
    #[inline]
    pub(crate) fn with_route<R>(
        &self,
        topic: &str,
        f: impl FnOnce(Option<&Arc<Route>>) -> R,
    ) -> Result<R, NameError> {
        self.with_snapshot(|snap| {
            let hash = hash_of(topic);
            if let Some(route) = snap.exact(topic, hash) {
                return Ok(f(Some(route)));
            }
            self.with_route_slow(snap, topic, hash, f)
        })
    }

    /// Runs `f` on the current snapshot: this thread's copy when it is current, else the
    /// shared one, which then becomes this thread's copy.
    #[inline]
    fn with_snapshot<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        let generation = self.generation();
        let snap = match SNAPSHOT.try_with(Cell::take) {
            Ok(Some((id, snap))) if id == self.id && snap.generation == generation => snap,
            Ok(_) => self.snapshot.load_full(),
            // The thread is exiting: its cache is gone.
            Err(_) => return f(&self.snapshot.load()),
        };
        let result = f(&snap);
        // What a nested publish left there is dropped here, outside the thread-local.
        let _replaced = SNAPSHOT.try_with(|c| c.replace(Some((self.id, snap))));
        result
    }

    /// [`with_route`](Self::with_route) for a topic validated when it was made (an
    /// envelope's): it is never parsed again.
    #[inline]
    pub(crate) fn with_topic_route<R>(
        &self,
        topic: &Topic,
        f: impl FnOnce(Option<&Arc<Route>>) -> R,
    ) -> R {
        self.with_snapshot(|snap| {
            let hash = hash_of(topic.as_str());
            if let Some(route) = snap.exact(topic.as_str(), hash) {
                return f(Some(route));
            }
            match self.with_route_slow(snap, topic, hash, f) {
                Ok(r) => r,
                Err(never) => match never {},
            }
        })
    }

    #[inline(never)]
    fn with_route_slow<T: TopicRef, R>(
        &self,
        snap: &Snapshot,
        topic: T,
        hash: u64,
        f: impl FnOnce(Option<&Arc<Route>>) -> R,
    ) -> Result<R, T::Error> {
        if snap.trie.is_empty() {
            topic.validate()?;
            return Ok(f(None));
        }
        let mut free = None;
        for slot in snap.wild_slots(hash) {
            match slot.get() {
                Some((h, route)) if *h == hash && route.topic == topic.as_str() => {
                    return Ok(f(Some(route)));
                }
                Some(_) => {}
                None => {
                    free = Some(slot);
                    break;
                }
            }
        }
        let topic = topic.validate()?;
        let route = wildcard_route(snap, &topic);
        if let Some(slot) = free {
            // Another publish may have filled the slot meanwhile: this one still has its
            // route, and the topic is cached next time it finds a free slot.
            let _ = slot.set((hash, route.clone()));
        }
        Ok(f(Some(&route)))
    }

    /// The route of a validated topic, for handles that cache it.
    pub(crate) fn route_of(&self, topic: &Topic) -> (u64, Arc<Route>) {
        let snap = self.snapshot.load();
        if let Some(route) = snap.exact(topic.as_str(), hash_of(topic.as_str())) {
            return (snap.generation, route.clone());
        }
        (snap.generation, wildcard_route(&snap, topic))
    }
}

/// A topic the slow path still has to validate (a string), or one validated already (a
/// [`Topic`], which then cannot fail).
trait TopicRef: Copy {
    type Error;
    fn as_str(&self) -> &str;
    fn validate(self) -> Result<Topic, Self::Error>;
}

impl TopicRef for &str {
    type Error = NameError;

    fn as_str(&self) -> &str {
        self
    }

    fn validate(self) -> Result<Topic, NameError> {
        Topic::new(self)
    }
}

impl TopicRef for &Topic {
    type Error = std::convert::Infallible;

    fn as_str(&self) -> &str {
        Topic::as_str(self)
    }

    fn validate(self) -> Result<Topic, Self::Error> {
        Ok(self.clone())
    }
}

/// The route of a topic no literal subscription names: wildcard matches only.
fn wildcard_route(snap: &Snapshot, topic: &Topic) -> Arc<Route> {
    route_for(topic, &[], &snap.trie)
}

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    /// What a publish to a one-sink inline route reads of it lies on the route's first line.
    #[test]
    fn route_hot_fields_share_a_line() {
        type R = RouteOf<Group<u64>>;
        assert_eq!(align_of::<R>(), 64, "a route starts a cache line");
        assert!(offset_of!(R, topic) + size_of::<Topic>() <= 64);
        let group = offset_of!(R, first);
        assert!(group + offset_of!(Group<u64>, inline) < 64);
        // The only sink is held as `Some(sink)`, which a non-null `Arc` lays out as the sink.
        assert_eq!(
            size_of::<Option<TypedSink<u64>>>(),
            size_of::<TypedSink<u64>>()
        );
        let one = group + offset_of!(Group<u64>, one);
        let stats_end = one + offset_of!(TypedSink<u64>, stats) + size_of::<Arc<SubStats>>();
        assert!(
            stats_end <= 64,
            "the first sink and its counters end at byte {stats_end} of the route"
        );
    }
}
