//! The sink seam: what every subscription's receiving end implements, and the words a
//! dispatch uses to hand it one event.
//!
//! This is the bottom of the crate: the router stores sinks, dispatch calls them, and push
//! subscriptions, taps and pull consumers implement them, without any of those knowing the
//! others.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use rustc_hash::FxBuildHasher;
use syncbus_envelope::Envelope;

use crate::metrics::{Stripe, SubStats};
use crate::tapped::Tappable;
use crate::wait::Signal;

/// What a sink did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Accepted (queued, or handled inline).
    Ok,
    /// Accepted for this many subscriptions at once: a ring they share
    /// ([`fanout`](crate::fanout)).
    Fanned(usize),
    /// Accepted; an older event was dropped to make room.
    Displaced,
    /// Refused by the `Reject` policy.
    Full,
    /// Full, policy `Block`, and not allowed to wait here.
    WouldBlock,
    /// The subscription is gone.
    Closed,
}

/// Whether a sink may take the envelope out of the dispatch's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Other sinks still need it: clone it.
    Clone,
    /// The last sink: move it out, and put it back if refused.
    Move,
}

impl Take {
    /// The envelope for this sink: a clone, or the one in `slot`; `None` if the slot is
    /// empty (a sink before this one kept it).
    #[inline]
    pub(crate) fn out<P: Clone>(self, slot: &mut Option<Envelope<P>>) -> Option<Envelope<P>> {
        match self {
            Take::Move => slot.take(),
            Take::Clone => slot.clone(),
        }
    }
}

/// How a queue may pack the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pack {
    /// The metadata is what `Envelope::from_event` made, apart from the topic: it may travel
    /// as id, topic and payload, and be rebuilt on the other side.
    Lite,
    /// Anything else (a ready-made envelope): keep it whole.
    Whole,
}

/// What a full `Block` queue does to the one pushing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Block the thread until there is room (or the queue closes), where that is safe.
    Block,
    /// Never wait: answer `WouldBlock` (an async publisher then awaits [`Room`]).
    Never,
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
    /// Events queued and handler runs going on now; both zero when the sink is settled
    /// (inline sinks run during the publish and pull consumers are settled by their
    /// callers, so they are never in flight here).
    fn in_flight(&self) -> InFlight {
        InFlight::default()
    }
}

/// What [`Sink::in_flight`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct InFlight {
    pub(crate) queued: usize,
    pub(crate) running: usize,
}

/// A subscription's receiving end for payload type `P`.
pub(crate) trait Deliver<P>: Send + Sync + 'static {
    /// Hands over the envelope in `slot`: cloned, or moved out with [`Take::Move`]. A sink
    /// that refuses a moved envelope puts it back.
    fn deliver(
        &self,
        slot: &mut Option<Envelope<P>>,
        take: Take,
        pack: Pack,
        wait: Wait,
    ) -> Delivered;

    /// [`deliver`](Self::deliver) for a publish that names its targets (`only`): `None`
    /// when it names none this sink delivers to. A sink of one subscription is named by its
    /// `id`; a sink several share ([`fanout`](crate::fanout)) delivers to those it names.
    fn deliver_only(
        &self,
        slot: &mut Option<Envelope<P>>,
        take: Take,
        pack: Pack,
        wait: Wait,
        id: u64,
        only: &[u64],
    ) -> Option<Delivered> {
        only.contains(&id)
            .then(|| self.deliver(slot, take, pack, wait))
    }

    /// The subscriptions a shared sink delivers to now, with their counters, for the
    /// outcomes of a publish it refused; `None` for a sink of one subscription (the route
    /// holds its id and counters).
    fn members(&self) -> Option<Vec<(u64, Arc<SubStats>)>> {
        None
    }

    /// Where an async publisher waits when `deliver` answered `WouldBlock` for `envelope`.
    fn room(&self, _envelope: &Envelope<P>) -> Option<Arc<dyn Room>> {
        None
    }

    /// Whether this sink runs its handler on the publisher's thread and never keeps the
    /// envelope: then a publish may hand it a borrowed one through [`handle`](Self::handle).
    fn is_inline(&self) -> bool {
        false
    }

    /// Runs the handler on a borrowed envelope, counting in `stats` (the subscription's, as
    /// the route holds them) on `stripe`, the publishing thread's. `false` when the
    /// subscription is gone. Called only where [`is_inline`](Self::is_inline) said so; any
    /// other sink refuses, as a closed one.
    ///
    /// The route passes the counters it holds beside the sink, so loading them does not
    /// wait for the sink's own line: among many topics both are cache misses, and this way
    /// they overlap.
    fn handle(&self, _envelope: &Envelope<P>, _stats: &SubStats, _stripe: Stripe) -> bool {
        false
    }
}

/// A tap's receiving end: it takes events of every payload type, so it gets the envelope
/// behind a type-erased reference and keeps a copy if it takes it (the envelope stays in the
/// dispatch's slot for the typed sinks after it).
pub(crate) trait Observe: Send + Sync + 'static {
    /// Takes (a copy of) `event`, refuses it, or waits by the tap's overflow policy.
    fn observe(&self, event: &dyn Tappable, wait: Wait) -> Delivered;

    /// Where an async publisher waits when `observe` answered `WouldBlock`.
    fn room(&self) -> Option<Arc<dyn Room>> {
        None
    }
}

/// Lets an async publisher wait for room in a queue whose payload type it does not name.
pub(crate) trait Room: Send + Sync {
    /// Signalled when an item leaves (or the queue closes).
    fn signal(&self) -> &Signal;
    /// Room for one more, or closed (a push will not wait).
    fn has_room(&self) -> bool;
}

/// The lane of `env` among `lanes` in a keyed subscription: by entity id, or by event id for
/// events without one.
#[inline]
pub(crate) fn lane_of<P>(env: &Envelope<P>, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    let mut h = FxBuildHasher.build_hasher();
    match env.meta().entity_id() {
        Some(id) => id.as_str().hash(&mut h),
        None => env.id().hash(&mut h),
    }
    (h.finish() % lanes as u64) as usize
}
