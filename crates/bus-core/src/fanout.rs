//! Shared fan-out rings: the queued subscriptions of one pattern and payload type that
//! each run one worker thread under `Block`, with one capacity, read one [`Ring`], so a
//! publish writes each event once for all of them, and each worker reads it in place.
//!
//! # Who shares
//!
//! Sharing must not change what any subscription sees, so only subscriptions that would
//! see the same events the same way share a ring:
//!
//! - the same pattern and payload type: every route that holds one holds all of them, so
//!   the routes keep one sink for them (the first one's place, [`SubEntry::routed`]);
//! - one worker thread, no lanes: a thread reads in place (a task would clone anyway);
//! - `Block` and one capacity: a `Block` publish waits for the slowest reader, so a ring
//!   shared under `Block` takes exactly the events that separate rings of that capacity
//!   would. A `Reject` subscription keeps its own ring (one full subscription must not
//!   refuse the event to the others) and a `DropOldest` one its queue.
//!
//! A ring has [`MAX_MEMBERS`] member flags and never hands one out twice, so its ninth
//! subscription starts a ring of its own.
//!
//! # Exact to the subscription
//!
//! A member's flag lives in the ring's claim word: joining sets it by the step that fixes
//! where the member starts, leaving clears it by the step that fixes where it stops, and
//! a push publishes each event tagged with the members live at its claim
//! ([`Ring::push_tagged`]). A worker handles the events tagged with its flag, so a publish
//! counts in `Ok(n)` exactly the subscriptions whose handlers get the event, and one that
//! raced an unsubscribe counts the member only if it reads the event. A publish that names
//! its targets ([`Bus::try_publish_to_only`](crate::Bus::try_publish_to_only)) tags only
//! the members it names; the others pass the event by.
//!
//! # Shutdown
//!
//! A member counts what it leaves like a lane of its own ([`lanes`](crate::lanes)), from
//! the tags: the events tagged for it that it had not taken.

use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use smol_str::SmolStr;
use syncbus_envelope::{Envelope, Pattern, Payload};

use crate::lanes::{Lane, LaneWorker};
use crate::metrics::SubStats;
use crate::overflow::Overflow;
use crate::queue::{BlockOn, Drainer, Pushed};
use crate::ring::{Reader, Ring, ALL, MAX_MEMBERS};
use crate::sink::{Deliver, Delivered, InFlight, Pack, Room, Sink, Take, Wait};
use crate::worker::Stop;
use crate::workers::Workers;

/// Which subscriptions may share a ring: pattern, payload type, capacity.
type Key = (SmolStr, TypeId, usize);

/// The shared rings of one bus, by what their members have in common; a ring whose
/// members are all gone drops out.
#[derive(Default)]
pub(crate) struct FanRings {
    rings: Mutex<FxHashMap<Key, Weak<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for FanRings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanRings")
            .field("rings", &self.rings.lock().len())
            .finish()
    }
}

impl FanRings {
    /// Joins subscription `id` (with counters `stats`) to the ring of `pattern`, `P` and
    /// `capacity`, starting one if there is none with a flag left. The member's sink, and
    /// what its worker starts with; `None` only if a fresh ring took no member (never, as
    /// nobody else holds it: the caller then gives the subscription a ring of its own).
    pub(crate) fn join<P: Payload>(
        &self,
        pattern: &Pattern,
        capacity: usize,
        member: (u64, Arc<SubStats>),
        crew: (Arc<Stop>, Arc<Workers>),
    ) -> Option<(FanMember<P>, LaneWorker<P>)> {
        let key: Key = (SmolStr::new(pattern.as_str()), TypeId::of::<P>(), capacity);
        let mut rings = self.rings.lock();
        rings.retain(|_, ring| ring.strong_count() > 0);
        let found = rings
            .get(&key)
            .and_then(Weak::upgrade)
            .and_then(|ring| ring.downcast::<FanRing<P>>().ok());
        let joined = found.and_then(|fan| fan.join(member.clone()).map(|j| (fan, j)));
        let (fan, (bit, reader)) = match joined {
            Some(joined) => joined,
            None => {
                let fan = Arc::new(FanRing::new(capacity));
                let any: Arc<dyn Any + Send + Sync> = fan.clone();
                rings.insert(key, Arc::downgrade(&any));
                let joined = fan.join(member)?;
                (fan, joined)
            }
        };
        let lane = Arc::new(Lane::new(reader.position(), 1 << bit));
        let (stop, workers) = crew;
        let sink = FanMember {
            fan,
            bit,
            lane: lane.clone(),
            stop,
            workers,
            left: AtomicBool::new(false),
        };
        Some((sink, (lane, reader)))
    }
}

/// Who holds each member flag of a ring.
#[derive(Default)]
struct Members {
    /// The next flag to hand out. Flags are never handed out twice, so an event tagged
    /// for a member that left is never taken by a later one.
    next: u32,
    /// By flag: the subscription's id and counters, while it is a member.
    live: [Option<(u64, Arc<SubStats>)>; MAX_MEMBERS as usize],
}

/// A ring several subscriptions read: what the routes deliver to for all of them.
pub(crate) struct FanRing<P> {
    ring: Arc<Ring<Envelope<P>>>,
    members: Mutex<Members>,
}

impl<P: Payload> FanRing<P> {
    fn new(capacity: usize) -> Self {
        // A thread reads in place, so the event in hand still holds its slot.
        let ring = Ring::new(capacity.saturating_add(1), Overflow::Block);
        FanRing {
            ring: Arc::new(ring),
            members: Mutex::new(Members::default()),
        }
    }

    /// A new member's flag and reader: `None` when no flag is left or the ring closed.
    fn join(&self, member: (u64, Arc<SubStats>)) -> Option<(u32, Reader<Envelope<P>>)> {
        let mut members = self.members.lock();
        let bit = members.next;
        if bit >= MAX_MEMBERS {
            return None;
        }
        let reader = Reader::join_member(&self.ring, bit)?;
        members.next += 1;
        members.live[bit as usize] = Some(member);
        Some((bit, reader))
    }

    /// The flags of the live members among `ids`.
    fn mask_of(&self, ids: &[u64]) -> u8 {
        let members = self.members.lock();
        let mut mask = 0u8;
        for (bit, member) in members.live.iter().enumerate() {
            if member.as_ref().is_some_and(|(id, _)| ids.contains(id)) {
                mask |= 1 << bit;
            }
        }
        mask
    }

    /// Pushes the envelope for the members flagged in `tag` that are live.
    #[inline]
    fn push(&self, slot: &mut Option<Envelope<P>>, take: Take, wait: Wait, tag: u8) -> Delivered {
        let Some(env) = take.out(slot) else {
            return Delivered::Closed;
        };
        let (pushed, took) = match self.ring.push_tagged(env, Wait::Never, tag) {
            (Pushed::WouldBlock(env), _) if wait == Wait::Block => self.push_blocking(env, tag),
            pushed => pushed,
        };
        match (pushed, took.count_ones()) {
            // Every member named left since the route was read: it is in the ring for
            // nobody, and the dispatch kept the original (a targeted publish clones).
            (Pushed::Queued, 0) => Delivered::Closed,
            (Pushed::Queued, n) => Delivered::Fanned(n as usize),
            (pushed, _) => pushed.delivered(slot, take, |env| env),
        }
    }

    /// Waits for room where this thread may ([`BlockOn`]).
    #[cold]
    fn push_blocking(&self, env: Envelope<P>, tag: u8) -> (Pushed<Envelope<P>>, u8) {
        let push = |env| self.ring.push_tagged(env, Wait::Block, tag);
        BlockOn::push(Drainer::Threads, env, push, |env| {
            (Pushed::WouldBlock(env), 0)
        })
    }
}

impl<P: Payload> Deliver<P> for FanRing<P> {
    #[inline]
    fn deliver(
        &self,
        slot: &mut Option<Envelope<P>>,
        take: Take,
        _pack: Pack,
        wait: Wait,
    ) -> Delivered {
        self.push(slot, take, wait, ALL)
    }

    fn deliver_only(
        &self,
        slot: &mut Option<Envelope<P>>,
        take: Take,
        _pack: Pack,
        wait: Wait,
        _id: u64,
        only: &[u64],
    ) -> Option<Delivered> {
        match self.mask_of(only) {
            0 => None,
            mask => Some(self.push(slot, take, wait, mask)),
        }
    }

    fn members(&self) -> Option<Vec<(u64, Arc<SubStats>)>> {
        let members = self.members.lock();
        Some(members.live.iter().flatten().cloned().collect())
    }

    fn room(&self, _envelope: &Envelope<P>) -> Option<Arc<dyn Room>> {
        Some(self.ring.clone())
    }
}

/// One subscription's part of a shared ring: its flag, its lane, its workers. Its
/// lifecycle is its own; its deliveries are the ring's.
pub(crate) struct FanMember<P> {
    fan: Arc<FanRing<P>>,
    bit: u32,
    lane: Arc<Lane>,
    stop: Arc<Stop>,
    workers: Arc<Workers>,
    /// Left the ring already (a closed subscription may be closed again by a shutdown).
    left: AtomicBool,
}

impl<P: Payload> FanMember<P> {
    /// What the routes deliver to for this member: the ring it shares.
    pub(crate) fn delivery(&self) -> Arc<dyn Deliver<P>> {
        self.fan.clone()
    }
}

impl<P> Drop for FanMember<P> {
    /// A member dropped unclosed (a subscription that never registered) leaves the ring,
    /// so no publish counts a reader that is gone.
    fn drop(&mut self) {
        self.leave();
    }
}

impl<P> FanMember<P> {
    /// Leaves the ring once: its flag is cleared, and its worker reads up to there.
    fn leave(&self) {
        if self.left.swap(true, Ordering::SeqCst) {
            return;
        }
        self.fan.members.lock().live[self.bit as usize] = None;
        let end = self.fan.ring.leave_member(self.bit);
        self.lane.stop_at(end);
        // The worker may sleep: let it see its end.
        self.fan.ring.nudge();
    }
}

impl<P: Payload> Sink for FanMember<P> {
    fn close(&self) {
        self.leave();
    }

    fn pending(&self) -> usize {
        usize::try_from(self.lane.queued(&self.fan.ring)).unwrap_or(usize::MAX)
    }

    fn in_flight(&self) -> InFlight {
        InFlight {
            queued: self.pending(),
            running: self.workers.live().saturating_sub(self.lane.idle()),
        }
    }

    fn abort(&self) {
        self.stop.abort();
        self.fan.ring.nudge();
    }

    fn discard(&self) -> usize {
        let left = self.lane.discard(&self.fan.ring);
        usize::try_from(left).unwrap_or(usize::MAX) + self.stop.take_abandoned()
    }
}

#[cfg(test)]
mod tests {
    use syncbus_envelope::{Bytes, EventType, Metadata, Topic};

    use super::*;
    use crate::router::{Router, SubEntry};

    fn member(rings: &FanRings, pattern: &str, capacity: usize, id: u64) -> FanMember<Bytes> {
        let pattern = Pattern::new(pattern).unwrap();
        let member = (id, Arc::default());
        let crew = (Arc::default(), Arc::default());
        rings.join(&pattern, capacity, member, crew).unwrap().0
    }

    #[derive(Clone, Debug)]
    struct Tick;
    impl syncbus_envelope::Event for Tick {
        const TYPE: &'static str = "clock.tick";
    }

    fn bytes(b: &'static [u8]) -> Option<Envelope<Bytes>> {
        let meta = Metadata::new(EventType::new("clock.tick").unwrap());
        Some(Envelope::new(meta, Bytes::from_static(b)))
    }

    fn same(a: &FanMember<Bytes>, b: &FanMember<Bytes>) -> bool {
        Arc::ptr_eq(&a.fan, &b.fan)
    }

    #[test]
    fn one_pattern_type_and_capacity_share_a_ring_and_the_route_holds_it_once() {
        let rings = FanRings::default();
        let a = member(&rings, "clock.>", 8, 1);
        let b = member(&rings, "clock.>", 8, 2);
        assert!(same(&a, &b));
        assert!(
            !same(&a, &member(&rings, "clock.>", 16, 3)),
            "another capacity"
        );
        assert!(
            !same(&a, &member(&rings, "clock.*", 8, 4)),
            "another pattern"
        );
        let other_type = rings
            .join::<Tick>(
                &Pattern::new("clock.>").unwrap(),
                8,
                (5, Arc::default()),
                (Arc::default(), Arc::default()),
            )
            .unwrap()
            .0;
        let any: Arc<dyn Any + Send + Sync> = other_type.fan.clone();
        assert!(any.downcast::<FanRing<Bytes>>().is_err(), "another type");

        let router = Router::new();
        for (id, m) in [(1, a), (2, b)] {
            let delivery = m.delivery();
            let pattern = Pattern::new("clock.>").unwrap();
            let stats = Arc::default();
            let entry =
                SubEntry::routed(id, "m".into(), pattern, stats, Arc::new(m), delivery, None);
            router.add(Arc::new(entry));
        }
        let (_, route) = router.route_of(&Topic::new("clock.tick").unwrap());
        let group = route.group::<Bytes>().expect("a group of Bytes");
        assert_eq!(group.sinks().len(), 1, "one push for both");
        assert_eq!(group.sinks()[0].id, 1, "where the first stands");
    }

    #[test]
    fn flags_are_never_handed_out_twice_so_a_ninth_member_starts_a_ring() {
        let rings = FanRings::default();
        let first = member(&rings, "clock.tick", 4, 0);
        let mut members = vec![];
        for id in 1..MAX_MEMBERS as u64 {
            members.push(member(&rings, "clock.tick", 4, id));
        }
        assert!(members.iter().all(|m| same(m, &first)));
        // A member that leaves frees no flag.
        members.pop().unwrap().close();
        let ninth = member(&rings, "clock.tick", 4, 9);
        assert!(!same(&ninth, &first));
        assert!(same(&member(&rings, "clock.tick", 4, 10), &ninth));
    }

    #[test]
    fn a_member_dropped_unclosed_leaves_so_no_publish_counts_it() {
        let rings = FanRings::default();
        let stays = member(&rings, "clock.tick", 4, 1);
        drop(member(&rings, "clock.tick", 4, 2));
        assert_eq!(stays.fan.members().unwrap().len(), 1);
        let mut slot = bytes(b"x");
        let took = stays
            .fan
            .deliver(&mut slot, Take::Move, Pack::Whole, Wait::Never);
        assert_eq!(took, Delivered::Fanned(1));
    }

    #[test]
    fn the_last_member_to_leave_closes_the_ring_and_a_newcomer_gets_a_fresh_one() {
        let rings = FanRings::default();
        let a = member(&rings, "clock.tick", 4, 1);
        let b = member(&rings, "clock.tick", 4, 2);
        a.close();
        a.close(); // twice (unsubscribe, then shutdown): still one leave
        assert_eq!(a.fan.members().unwrap().len(), 1);
        let mut slot = bytes(b"x");
        let took = a
            .fan
            .deliver(&mut slot, Take::Move, Pack::Whole, Wait::Never);
        assert_eq!(took, Delivered::Fanned(1), "b only");
        b.close();
        let mut slot = bytes(b"y");
        let took = b
            .fan
            .deliver(&mut slot, Take::Move, Pack::Whole, Wait::Never);
        assert_eq!(took, Delivered::Closed);
        assert!(slot.is_some(), "handed back");
        assert!(!same(&member(&rings, "clock.tick", 4, 3), &b));
    }
}
