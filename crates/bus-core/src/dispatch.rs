//! Dispatch: handing one event to every sink of its route, and turning what the sinks did
//! into the publish result.
//!
//! The envelope travels in a slot: every sink but the last gets a clone, the last one takes
//! it ([`Take::Move`]), and a sink that refuses a moved envelope puts it back, so a refused
//! publish can always hand the event back. Once something refused, the last sink gets a
//! clone too, to keep the original.
//!
//! Taps go first, each keeping a copy (they take every payload type, so they see the
//! envelope through a type-erased reference and never move it out). First, so a tap sees
//! events in publish order even when an inline handler publishes follow-ups from inside
//! the dispatch. A route without taps skips them with one length check: typed dispatch is
//! what it was. A tap that only observes is not counted in `Ok(n)`; one made a receiver is.

use std::sync::Arc;

use syncbus_envelope::{Envelope, Event, NameError, NameKind, NameReason, Payload};

use crate::error::{PartialPublish, PublishError};
use crate::handler::tracing_on;
use crate::hub::Hub;
use crate::metrics::{Stat, Stripe, SubStats};
use crate::router::{Group, Route, TapSink, TypedSink};
use crate::sink::{Deliver, Delivered, Pack, Room, Take, Wait};

/// Hands the envelope in `slot` to every target. On success the slot may be empty (the
/// last sink took it); when refused it still holds the envelope.
#[inline]
pub(crate) fn dispatch<P: Payload>(
    hub: &Hub,
    group: &Group<P>,
    slot: &mut Option<Envelope<P>>,
    pack: Pack,
    wait: Wait,
    only: Option<&[u64]>,
) -> Result<usize, Refused> {
    if tracing_on() {
        let topic = slot.as_ref().and_then(|e| e.meta().topic());
        let topic = topic.map_or("", |t| t.as_str());
        let _span = tracing::trace_span!("publish", topic).entered();
        deliver_all(hub, group, slot, pack, wait, only)
    } else {
        deliver_all(hub, group, slot, pack, wait, only)
    }
}

/// Whether the sink with `id` is a target: all are, unless `only` names some.
#[inline]
fn targeted(only: Option<&[u64]>, id: u64) -> bool {
    only.is_none_or(|ids| ids.contains(&id))
}

/// Hands the envelope to one sink: all of them when `only` is `None`, else the ones it
/// names (`None` back when it names none of this sink's).
#[inline]
fn deliver_one<P: Payload>(
    target: &TypedSink<P>,
    slot: &mut Option<Envelope<P>>,
    take: Take,
    pack: Pack,
    wait: Wait,
    only: Option<&[u64]>,
) -> Option<Delivered> {
    match only {
        None => Some(target.sink.deliver(slot, take, pack, wait)),
        Some(ids) => target
            .sink
            .deliver_only(slot, take, pack, wait, target.id, ids),
    }
}

#[inline]
fn deliver_all<P: Payload>(
    hub: &Hub,
    group: &Group<P>,
    slot: &mut Option<Envelope<P>>,
    pack: Pack,
    wait: Wait,
    only: Option<&[u64]>,
) -> Result<usize, Refused> {
    // One sink, no taps, every target: the common route. It takes the envelope, and a
    // publish it accepts needs no tally; anything else is settled as below.
    if let ([TypedSink { sink, stats, id }], true, None) =
        (group.sinks(), group.taps.is_empty(), only)
    {
        let outcome = sink.deliver(slot, Take::Move, pack, wait);
        match outcome {
            Delivered::Ok => {
                hub.count_published();
                return Ok(1);
            }
            Delivered::Fanned(n) => {
                hub.count_published();
                return Ok(n);
            }
            _ => {}
        }
        let mut tally = Tally::default();
        tally.count_sink(&**sink, *id, stats, outcome, wait);
        return settle(hub, group, only, tally, slot.is_some());
    }
    let mut tally = Tally::default();
    if !group.taps.is_empty() {
        observe_all(&group.taps, slot, wait, only, &mut tally);
    }
    // A targeted publish (a retry) keeps the original throughout: it is rare.
    let n = if only.is_some() {
        usize::MAX
    } else {
        group.sinks().len()
    };
    for (i, target) in group.sinks().iter().enumerate() {
        let outcome = if i + 1 < n {
            deliver_one(target, slot, Take::Clone, pack, wait, only)
        } else if tally.any_refused() {
            // Something refused the event already: keep the original to hand back.
            let mut copy = slot.clone();
            deliver_one(target, &mut copy, Take::Move, pack, wait, only)
        } else {
            deliver_one(target, slot, Take::Move, pack, wait, only)
        };
        if let Some(outcome) = outcome {
            let TypedSink { sink, stats, id } = target;
            tally.count_sink(&**sink, *id, stats, outcome, wait);
        }
    }
    settle(hub, group, only, tally, slot.is_some())
}

/// Hands a copy of the envelope to each tap. Out of line: typed dispatch without taps never
/// comes here.
#[inline(never)]
fn observe_all<P: Payload>(
    taps: &[TapSink],
    slot: &Option<Envelope<P>>,
    wait: Wait,
    only: Option<&[u64]>,
    tally: &mut Tally,
) {
    let Some(env) = slot.as_ref() else {
        return;
    };
    for tap in taps {
        if targeted(only, tap.id) {
            let outcome = tap.sink.observe(env, wait);
            tally.count(tap.id, outcome, &tap.stats, wait, tap.receiver);
        }
    }
}

/// Hands the envelope in `slot` to every target, awaiting room in full `Block` queues
/// (each sink is offered it with [`Wait::Never`] and, when it would block, its room is
/// awaited and the offer made again). The sinks that never fill are offered it without a
/// suspension point: [`deliver_or_pause`] first, [`resume`] only if some queue is full.
pub(crate) async fn deliver_all_async<P: Payload>(
    hub: &Hub,
    group: &Group<P>,
    slot: &mut Option<Envelope<P>>,
    pack: Pack,
) -> Result<usize, Refused> {
    match deliver_or_pause(hub, group, slot, pack, Tally::default(), 0) {
        Ok(result) => result,
        Err(paused) => resume(hub, group, slot, pack, paused).await,
    }
}

/// Where an async publish stopped to await room: what the targets before `next` did, and
/// the room of target `next` (the taps, then the sinks), which was full. Nothing was counted
/// for that target yet, and the envelope is still in the slot.
pub(crate) struct Paused {
    tally: Tally,
    next: usize,
    room: Option<Arc<dyn Room>>,
}

/// Offers the envelope to targets `next..` of `group` without waiting, as
/// [`deliver_all_async`] does; stops at the first that would block and has room to await.
fn deliver_or_pause<P: Payload>(
    hub: &Hub,
    group: &Group<P>,
    slot: &mut Option<Envelope<P>>,
    pack: Pack,
    mut tally: Tally,
    next: usize,
) -> Result<Result<usize, Refused>, Paused> {
    for i in next..group.taps.len() + group.sinks().len() {
        if let Some(room) = offer(group, slot, pack, &mut tally, i) {
            return Err(Paused {
                tally,
                next: i,
                room: Some(room),
            });
        }
    }
    Ok(settle(hub, group, None, tally, slot.is_some()))
}

/// Awaits the room a paused publish stopped at, then offers the envelope to that target and
/// the ones after it, awaiting again wherever a queue is full.
pub(crate) async fn resume<P: Payload>(
    hub: &Hub,
    group: &Group<P>,
    slot: &mut Option<Envelope<P>>,
    pack: Pack,
    paused: Paused,
) -> Result<usize, Refused> {
    let Paused {
        mut tally,
        mut next,
        mut room,
    } = paused;
    loop {
        if let Some(room) = room.take() {
            room.signal()
                .wait_async(|| room.has_room().then_some(()))
                .await;
        }
        match deliver_or_pause(hub, group, slot, pack, tally, next) {
            Ok(result) => return result,
            Err(p) => (tally, next, room) = (p.tally, p.next, p.room),
        }
    }
}

/// Offers the envelope in `slot` to target `i` of `group` (the taps, then the sinks) without
/// waiting and counts what it did, unless it would block and has room to await: then that
/// room, with nothing counted and the envelope still in the slot.
#[inline]
fn offer<P: Payload>(
    group: &Group<P>,
    slot: &mut Option<Envelope<P>>,
    pack: Pack,
    tally: &mut Tally,
    i: usize,
) -> Option<Arc<dyn Room>> {
    let taps = group.taps.len();
    if let Some(tap) = group.taps.get(i) {
        let env = slot.as_ref()?;
        let outcome = tap.sink.observe(env, Wait::Never);
        if outcome == Delivered::WouldBlock {
            if let Some(room) = tap.sink.room() {
                return Some(room);
            }
        }
        tally.count(tap.id, outcome, &tap.stats, Wait::Never, tap.receiver);
        return None;
    }
    let sinks = group.sinks();
    let TypedSink { sink, stats, id } = sinks.get(i - taps)?;
    let outcome = if i - taps + 1 < sinks.len() {
        sink.deliver(slot, Take::Clone, pack, Wait::Never)
    } else if tally.any_refused() {
        let mut copy = slot.clone();
        sink.deliver(&mut copy, Take::Move, pack, Wait::Never)
    } else {
        sink.deliver(slot, Take::Move, pack, Wait::Never)
    };
    if outcome == Delivered::WouldBlock {
        if let Some(room) = slot.as_ref().and_then(|env| sink.room(env)) {
            return Some(room);
        }
    }
    tally.count_sink(&**sink, *id, stats, outcome, Wait::Never);
    None
}

/// A publish that reached no subscription: `Ok(0)`, or `Closed` if the bus closed since it
/// began (shutdown empties the routes).
#[inline]
pub(crate) fn unrouted(hub: &Hub) -> Result<usize, Refused> {
    hub.count_unrouted().ok_or(Refused::Closed)
}

fn settle<P: Payload>(
    hub: &Hub,
    group: &Group<P>,
    only: Option<&[u64]>,
    tally: Tally,
    still_held: bool,
) -> Result<usize, Refused> {
    if still_held {
        // A sink closed by unsubscribe is skipped; one closed by shutdown refuses, unless
        // another sink took the event before it closed: then it is published, to those. A
        // tap that only observes does not make it published.
        if tally.closed && tally.delivered == 0 && hub.is_closed() {
            return Err(Refused::Closed);
        }
        if tally.refused.is_empty() {
            // Only closed (unsubscribed) sinks refused: published to the others.
        } else if tally.delivered > 0 || tally.observed {
            // Some took it: retrying the whole publish would hand it to them twice.
            return Err(Refused::Partial(Box::new(tally.partial(group, only))));
        } else if tally.would_block {
            return Err(Refused::WouldBlock);
        } else if tally.full {
            return Err(Refused::Full);
        }
    }
    if group.sinks().is_empty() && !group.taps.iter().any(|t| t.receiver) {
        // Only taps that observe matched (a typed group has sinks): no subscription
        // receives it.
        hub.count_observed_only();
    } else {
        hub.count_published();
    }
    Ok(tally.delivered)
}

/// What the sinks of one publish did.
#[derive(Debug, Default)]
struct Tally {
    /// Receivers that took it: subscriptions, and taps made receivers.
    delivered: usize,
    /// A tap that only observes took it (a flag: it packs with the others).
    observed: bool,
    full: bool,
    would_block: bool,
    closed: bool,
    /// Ids of the sinks that refused it (full, or would block), and of those found closed:
    /// allocated only then. Who took it is derived from them when a partial publish must say
    /// so, so the common path records nothing per sink.
    refused: Vec<u64>,
    closed_ids: Vec<u64>,
}

impl Tally {
    #[inline]
    fn any_refused(&self) -> bool {
        self.full || self.would_block || self.closed
    }

    /// Counts what a subscription's sink did: a sink several share refuses for each of
    /// them.
    #[inline]
    fn count_sink<P: Payload>(
        &mut self,
        sink: &dyn Deliver<P>,
        id: u64,
        stats: &SubStats,
        outcome: Delivered,
        wait: Wait,
    ) {
        if matches!(outcome, Delivered::Full | Delivered::WouldBlock) {
            if let Some(members) = sink.members() {
                for (id, stats) in members {
                    self.count(id, outcome, &stats, wait, true);
                }
                return;
            }
        }
        self.count(id, outcome, stats, wait, true);
    }

    #[inline]
    fn count(&mut self, id: u64, outcome: Delivered, stats: &SubStats, wait: Wait, receiver: bool) {
        match outcome {
            Delivered::Ok => self.took(receiver),
            Delivered::Fanned(n) => self.delivered += n,
            Delivered::Displaced => {
                self.took(receiver);
                stats.incr(Stat::Dropped);
            }
            Delivered::Full => {
                self.full = true;
                self.refused.push(id);
                stats.incr(Stat::Rejected);
            }
            Delivered::WouldBlock => {
                self.refused.push(id);
                match wait {
                    // A publish that may wait got this only where waiting would stall the
                    // runtime.
                    Wait::Block => self.would_block = true,
                    // A try_publish gets it for any full `Block` queue, and that is plain
                    // `Full`; an async publish only when it has nowhere to await room.
                    Wait::Never => {
                        self.full = true;
                        stats.incr(Stat::Rejected);
                    }
                }
            }
            Delivered::Closed => {
                self.closed = true;
                self.closed_ids.push(id);
            }
        }
    }

    #[inline]
    fn took(&mut self, receiver: bool) {
        if receiver {
            self.delivered += 1;
        } else {
            self.observed = true;
        }
    }

    /// Who took it and who refused, by subscription id, each in subscription order.
    /// Every sink the publish was for (all, or the `only` ones) that neither refused it nor
    /// was closed took it; a shared ring's members are those live now.
    #[cold]
    fn partial<P: Payload>(mut self, group: &Group<P>, only: Option<&[u64]>) -> PartialPublish {
        let gone = |id: &u64| self.refused.contains(id) || self.closed_ids.contains(id);
        let mut took: Vec<u64> = Vec::new();
        let mut observed: Vec<u64> = Vec::new();
        for tap in group.taps.iter() {
            if only.is_none_or(|ids| ids.contains(&tap.id)) && !gone(&tap.id) {
                if tap.receiver {
                    took.push(tap.id);
                } else {
                    observed.push(tap.id);
                }
            }
        }
        for sink in group.sinks() {
            let ids = match sink.sink.members() {
                Some(members) => members.into_iter().map(|(id, _)| id).collect(),
                None => vec![sink.id],
            };
            let named = |id: &u64| only.is_none_or(|ids| ids.contains(id));
            took.extend(ids.into_iter().filter(|id| named(id) && !gone(id)));
        }
        took.sort_unstable();
        self.refused.sort_unstable();
        PartialPublish::new(took, self.refused, observed)
    }
}

/// Why a dispatch handed the event back.
#[derive(Debug)]
pub(crate) enum Refused {
    Full,
    WouldBlock,
    Closed,
    /// Boxed: it is rare, and a small `Result` keeps the common path's moves cheap.
    Partial(Box<PartialPublish>),
}

impl Refused {
    pub(crate) fn error<T>(self, value: T) -> PublishError<T> {
        match self {
            Refused::Full => PublishError::Full(value),
            Refused::WouldBlock => PublishError::WouldBlock(value),
            Refused::Closed => PublishError::Closed(value),
            Refused::Partial(partial) => PublishError::Partial(value, *partial),
        }
    }
}

#[inline]
fn fill<E: Event>(route: &Route, event: E, slot: &mut Option<Envelope<E>>) {
    *slot = Some(Envelope::from_event_on(event, route.topic.clone()));
}

/// A typed event no subscription of its type takes: for the taps on its topic, if any.
#[cold]
fn for_taps<E: Event>(
    route: Option<&Route>,
    event: E,
    slot: &mut Option<Envelope<E>>,
) -> Result<Group<E>, E> {
    match route.and_then(|r| Some((r, r.taps_only::<E>()?))) {
        Some((route, taps)) => {
            fill(route, event, slot);
            Ok(taps)
        }
        None => Err(event),
    }
}

/// A typed event that reached no subscription: `Ok(0)`, or refused with the event back in
/// `slot` if the bus closed meanwhile.
#[cold]
fn unrouted_event<E: Event>(
    hub: &Hub,
    event: E,
    slot: &mut Option<Envelope<E>>,
) -> Result<usize, Refused> {
    let result = unrouted(hub);
    if result.is_err() {
        *slot = Some(Envelope::from_event(event));
    }
    result
}

/// Builds and dispatches `event` on `route`.
#[inline]
pub(crate) fn publish_event<E: Event>(
    hub: &Hub,
    route: Option<&Route>,
    event: E,
    slot: &mut Option<Envelope<E>>,
    wait: Wait,
    only: Option<&[u64]>,
) -> Result<usize, Refused> {
    let Some((route, group)) = route.and_then(|r| Some((r, r.group::<E>()?))) else {
        return publish_for_taps(hub, route, event, slot, wait, only);
    };
    if group.is_inline() && only.is_none() && !tracing_on() {
        return handle_inline(hub, route, group, event, slot);
    }
    fill(route, event, slot);
    dispatch(hub, group, slot, Pack::Lite, wait, only)
}

/// A group of inline sinks only: the envelope is built on the stack and every handler
/// borrows it, with no slot to move it through and no tally. The settling is
/// [`settle`]'s for sinks that only ever take an event or are closed: the event comes back
/// only when the bus closed and none took it.
#[inline]
fn handle_inline<E: Event>(
    hub: &Hub,
    route: &Route,
    group: &Group<E>,
    event: E,
    slot: &mut Option<Envelope<E>>,
) -> Result<usize, Refused> {
    let env = Envelope::from_event_on(event, route.topic.clone());
    let stripe = Stripe::current();
    let sinks = group.sinks();
    let mut handled = 0;
    for TypedSink { sink, stats, .. } in sinks {
        handled += usize::from(sink.handle(&env, stats, stripe));
    }
    if handled == 0 && hub.is_closed() {
        *slot = Some(env);
        return Err(Refused::Closed);
    }
    hub.count_published_on(stripe);
    Ok(handled)
}

#[cold]
#[inline(never)]
fn publish_for_taps<E: Event>(
    hub: &Hub,
    route: Option<&Route>,
    event: E,
    slot: &mut Option<Envelope<E>>,
    wait: Wait,
    only: Option<&[u64]>,
) -> Result<usize, Refused> {
    match for_taps(route, event, slot) {
        Ok(taps) => dispatch(hub, &taps, slot, Pack::Lite, wait, only),
        Err(event) => unrouted_event(hub, event, slot),
    }
}

/// How the synchronous start of an async publish ended.
pub(crate) enum Started {
    Done(Result<usize, Refused>),
    /// At a full queue, to go on with [`finish_publish`].
    Paused(PausedPublish),
}

/// An async publish paused at a full queue: the route it holds (cloned only here), whether
/// its group was the route's taps alone, and where delivery stopped.
pub(crate) struct PausedPublish {
    route: Arc<Route>,
    taps: bool,
    paused: Paused,
}

/// The start of an async publish of `event` on `route`, up to the first full queue (the
/// whole publish when none is full): no suspension point, so the caller lends the route,
/// and only a publish that must wait clones it.
pub(crate) fn start_publish<E: Event>(
    hub: &Hub,
    route: Option<&Arc<Route>>,
    event: E,
    slot: &mut Option<Envelope<E>>,
) -> Started {
    let Some(route) = route else {
        return Started::Done(unrouted_event(hub, event, slot));
    };
    if let Some(group) = route.group::<E>() {
        if group.is_inline() && !tracing_on() {
            return Started::Done(handle_inline(hub, route, group, event, slot));
        }
        fill(route, event, slot);
        return start_on(hub, route, group, slot, false);
    }
    match for_taps(Some(route), event, slot) {
        Ok(taps) => start_on(hub, route, &taps, slot, true),
        Err(event) => Started::Done(unrouted_event(hub, event, slot)),
    }
}

fn start_on<P: Payload>(
    hub: &Hub,
    route: &Arc<Route>,
    group: &Group<P>,
    slot: &mut Option<Envelope<P>>,
    taps: bool,
) -> Started {
    let paused = if tracing_on() {
        // The whole delivery in one span, on the async side.
        Paused {
            tally: Tally::default(),
            next: 0,
            room: None,
        }
    } else {
        match deliver_or_pause(hub, group, slot, Pack::Lite, Tally::default(), 0) {
            Ok(result) => return Started::Done(result),
            Err(paused) => paused,
        }
    };
    Started::Paused(PausedPublish {
        route: Arc::clone(route),
        taps,
        paused,
    })
}

/// The rest of a publish [`start_publish`] paused, on the route it started on (a route
/// never changes, so its group is the one the start used).
pub(crate) async fn finish_publish<E: Event>(
    hub: &Hub,
    slot: &mut Option<Envelope<E>>,
    paused: PausedPublish,
) -> Result<usize, Refused> {
    let PausedPublish {
        route,
        taps,
        paused,
    } = paused;
    let owned;
    let group = if taps {
        owned = route.taps_only::<E>();
        owned.as_ref()
    } else {
        route.group::<E>()
    };
    // Never `None` (see above); the event would go back all the same.
    let Some(group) = group else {
        return Err(Refused::Closed);
    };
    if tracing_on() {
        use tracing::Instrument;
        let span = tracing::trace_span!("publish", topic = route.topic.as_str());
        resume(hub, group, slot, Pack::Lite, paused)
            .instrument(span)
            .await
    } else {
        resume(hub, group, slot, Pack::Lite, paused).await
    }
}

/// The refusal of an envelope without a topic: nowhere to route it.
#[cold]
pub(crate) fn no_topic<P>(envelope: Envelope<P>) -> PublishError<Envelope<P>> {
    let e = NameError::new(NameKind::Topic, NameReason::Empty, "");
    PublishError::InvalidTopic(envelope, e)
}

/// Maps a dispatch result to the public one, handing the event back when refused. The slot
/// is taken by reference so a delivered envelope is dropped where it lies, not moved first.
#[inline]
pub(crate) fn outcome<E>(
    result: Result<usize, Refused>,
    slot: &mut Option<Envelope<E>>,
) -> Result<usize, PublishError<E>> {
    match result {
        Ok(n) => Ok(n),
        Err(refused) => refused_outcome(refused, slot),
    }
}

#[cold]
fn refused_outcome<E>(
    refused: Refused,
    slot: &mut Option<Envelope<E>>,
) -> Result<usize, PublishError<E>> {
    match slot.take() {
        Some(env) => Err(refused.error(env.into_payload())),
        None => Ok(0),
    }
}
