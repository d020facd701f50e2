//! Queued subscriptions on broadcast rings: each lane is a [`Ring`] of envelopes with one
//! reader, the lane's worker.
//!
//! A worker thread reads its envelopes in place: the sync handler borrows the envelope in
//! its slot, so between the publish and the handler nothing is packed, copied or moved, and
//! the publisher's atomics are the ring's claim and the slot's publish (the queue took
//! three). A worker task owns what its
//! async handler gets, so it clones each envelope out of its slot.
//!
//! # The same capacity as a queue
//!
//! A queue holds `capacity` events besides the one its worker has in hand. A thread lane's
//! ring holds `capacity + 1`, the one in hand included (its reader moves the cursor past
//! each event as soon as the handler returns), and a task lane's ring `capacity`, the one in
//! hand being a clone: so `Block` and `Reject` take exactly as many events as before. A
//! `DropOldest` subscription stays on the queue: a ring's publisher that laps its reader waits
//! for the event in hand before moving the reader on, and a `DropOldest` publish must never
//! wait for a handler.
//!
//! A subscription that shares its ring with others of its pattern, type and capacity
//! ([`fanout`](crate::fanout)) has a lane like these, with its member flag as the lane's
//! mask and the sequence it left at as its end: the same worker loop reads it.
//!
//! # Exact counts at shutdown
//!
//! Each lane records how far its worker has taken events (`taken`, stored before each
//! handler runs). When a shutdown's deadline passes, the worker stops before the next event
//! and, leaving the ring, counts what it had not taken; if it is still inside a handler when
//! the report is made, the report counts `accepted - taken` for it instead (on a shared
//! ring, the events from `taken` on whose tag has its flag). A swap of `counted` decides
//! which of the two counts, so every event is handled or reported once.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use syncbus_envelope::{Envelope, Payload};

use crate::handler::HandlerResult;
use crate::overflow::Overflow;
use crate::queue::{BlockOn, Drainer, Idle, Pushed};
use crate::ring::{Read, Reader, Ring, ALL};
use crate::sink::{lane_of, Deliver, Delivered, InFlight, Pack, Room, Sink, Take, Wait};
use crate::worker::{Hook, Stop, WorkerCtx};
use crate::workers::Workers;

/// Events a worker thread reads in one batch before it looks at the ring again.
const BATCH: usize = 64;

/// What a lane's worker has done, shared by the worker and the sink (its ring is the
/// sink's, apart, since the worker writes these lines and a publish reads the ring).
pub(crate) struct Lane {
    /// The sequence after the last event the worker took (handled, or in hand) or passed
    /// (on a shared ring, an event for other members).
    taken: CachePadded<AtomicU64>,
    /// What the worker left unhandled was counted, by the worker or by a shutdown report.
    counted: AtomicBool,
    /// 1 while the worker waits for an event (counted by the queue's [`Idle`]).
    idle: AtomicUsize,
    /// Where the worker stops: `u64::MAX` until a member of a shared ring leaves it
    /// ([`fanout`](crate::fanout)); a lane of its own stops at the ring's close.
    end: AtomicU64,
    /// The events that are this lane's: those whose tag has this bit (every event, on a
    /// ring of its own: [`ALL`]).
    mask: u8,
}

impl Lane {
    /// A lane whose worker starts at `start`, taking the events tagged with `mask`.
    pub(crate) fn new(start: u64, mask: u8) -> Self {
        Lane {
            taken: CachePadded::new(AtomicU64::new(start)),
            counted: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
            end: AtomicU64::new(u64::MAX),
            mask,
        }
    }

    /// The sequence the worker stops before.
    #[inline]
    fn end(&self) -> u64 {
        self.end.load(Ordering::SeqCst)
    }

    /// A member left its shared ring at `end`: its worker reads up to there.
    pub(crate) fn stop_at(&self, end: u64) {
        self.end.store(end, Ordering::SeqCst);
    }

    /// Accepted events of `ring` the worker has not taken or passed yet (on a shared ring,
    /// events for other members too, until the worker passes them).
    pub(crate) fn queued<T>(&self, ring: &Ring<T>) -> u64 {
        ring.accepted()
            .min(self.end())
            .saturating_sub(self.taken.load(Ordering::SeqCst))
    }

    /// Accepted events of `ring` from `from` on that are this lane's: exact once the ring
    /// is closed (no slot is overwritten then) or while the worker holds `from`'s slot.
    fn left_from<T>(&self, ring: &Ring<T>, from: u64) -> u64 {
        let to = ring.accepted().min(self.end());
        if self.mask == ALL {
            return to.saturating_sub(from);
        }
        (from..to)
            .filter(|&seq| ring.tag_at(seq).is_some_and(|tag| tag & self.mask != 0))
            .count() as u64
    }

    /// What a shutdown report counts for this lane if its worker has not (see the module
    /// docs): what it had not taken.
    pub(crate) fn discard<T>(&self, ring: &Ring<T>) -> u64 {
        if self.counted.swap(true, Ordering::SeqCst) {
            return 0;
        }
        self.left_from(ring, self.taken.load(Ordering::SeqCst))
    }

    /// Whether the worker runs a handler now (it is not waiting for an event).
    pub(crate) fn idle(&self) -> usize {
        self.idle.load(Ordering::SeqCst)
    }

    #[inline]
    fn take(&self, seq: u64) {
        self.taken.store(seq + 1, Ordering::Relaxed);
    }

    /// The worker is done: it leaves the ring, and counts what it left unhandled unless a
    /// shutdown report did.
    fn finish<T>(&self, ctx: &WorkerCtx, reader: Reader<T>, skipped: u64) {
        // Counted while the reader still holds its slots.
        let unread = if self.mask == ALL {
            None
        } else {
            Some(self.left_from(reader.ring(), reader.position()))
        };
        let left = reader.leave();
        if !self.counted.swap(true, Ordering::SeqCst) {
            let n = skipped + unread.unwrap_or(left.unread);
            ctx.stop.abandon(usize::try_from(n).unwrap_or(usize::MAX));
        }
    }
}

/// What one worker of a [`RingSink`] is started with: its lane and its ring's reader.
pub(crate) type LaneWorker<P> = (Arc<Lane>, Reader<Envelope<P>>);

/// The sink of a queued subscription on rings: one lane, or one per key.
pub(crate) struct RingSink<P> {
    rings: Box<[Arc<Ring<Envelope<P>>>]>,
    lanes: Box<[Arc<Lane>]>,
    drainer: Drainer,
    stop: Arc<Stop>,
    workers: Arc<Workers>,
}

impl<P: Payload> RingSink<P> {
    /// `count` lanes of `capacity` for workers of this kind, and what each worker starts
    /// with (its reader is joined before anything is published, so it sees every event).
    pub(crate) fn new(
        count: usize,
        capacity: usize,
        overflow: Overflow,
        drainer: Drainer,
        stop: Arc<Stop>,
        workers: Arc<Workers>,
    ) -> (Self, Vec<LaneWorker<P>>) {
        // A thread reads in place, so the event in hand still holds its slot.
        let in_hand = usize::from(drainer == Drainer::Threads);
        let rings: Box<[_]> = (0..count)
            .map(|_| Arc::new(Ring::new(capacity.saturating_add(in_hand), overflow)))
            .collect();
        let started: Vec<LaneWorker<P>> = rings
            .iter()
            .map(|ring| {
                let reader = Reader::join(ring);
                (Arc::new(Lane::new(reader.position(), ALL)), reader)
            })
            .collect();
        let sink = Self {
            rings,
            lanes: started.iter().map(|(lane, _)| lane.clone()).collect(),
            drainer,
            stop,
            workers,
        };
        (sink, started)
    }

    #[inline]
    fn ring(&self, env: &Envelope<P>) -> &Arc<Ring<Envelope<P>>> {
        match &*self.rings {
            [one] => one,
            rings => &rings[lane_of(env, rings.len())],
        }
    }

    /// Each lane with its ring.
    fn lanes(&self) -> impl Iterator<Item = (&Ring<Envelope<P>>, &Lane)> {
        self.rings
            .iter()
            .map(|r| &**r)
            .zip(self.lanes.iter().map(|l| &**l))
    }

    /// Waits for room in `ring` where this thread may ([`BlockOn`]).
    #[cold]
    fn push_blocking(&self, ring: &Ring<Envelope<P>>, env: Envelope<P>) -> Pushed<Envelope<P>> {
        let push = |env| ring.push(env, Wait::Block);
        BlockOn::push(self.drainer, env, push, Pushed::WouldBlock)
    }
}

impl<P: Payload> Deliver<P> for RingSink<P> {
    #[inline]
    fn deliver(
        &self,
        slot: &mut Option<Envelope<P>>,
        take: Take,
        _pack: Pack,
        wait: Wait,
    ) -> Delivered {
        let Some(env) = take.out(slot) else {
            return Delivered::Closed;
        };
        let ring = &**self.ring(&env);
        let pushed = match ring.push(env, Wait::Never) {
            Pushed::WouldBlock(env) if wait == Wait::Block => self.push_blocking(ring, env),
            pushed => pushed,
        };
        pushed.delivered(slot, take, |env| env)
    }

    fn room(&self, envelope: &Envelope<P>) -> Option<Arc<dyn Room>> {
        Some(self.ring(envelope).clone())
    }
}

impl<P: Payload> Sink for RingSink<P> {
    fn close(&self) {
        for ring in self.rings.iter() {
            ring.close();
        }
    }

    fn pending(&self) -> usize {
        let queued: u64 = self.lanes().map(|(ring, lane)| lane.queued(ring)).sum();
        usize::try_from(queued).unwrap_or(usize::MAX)
    }

    fn in_flight(&self) -> InFlight {
        // A worker is running a handler unless it waits for an event (or has exited).
        let idle: usize = self.lanes.iter().map(|l| l.idle()).sum();
        InFlight {
            queued: self.pending(),
            running: self.workers.live().saturating_sub(idle),
        }
    }

    fn abort(&self) {
        self.stop.abort();
        for ring in self.rings.iter() {
            ring.nudge();
        }
    }

    fn discard(&self) -> usize {
        // A worker still inside a handler: nothing after the event in hand will be handled.
        let left: u64 = self.lanes().map(|(ring, lane)| lane.discard(ring)).sum();
        usize::try_from(left).unwrap_or(usize::MAX) + self.stop.take_abandoned()
    }
}

/// A worker thread: reads its lane in place and runs `handler` on each envelope, until the
/// ring is closed and read or a shutdown aborts.
pub(crate) fn run_thread<P: Payload, F, R>(
    ctx: WorkerCtx,
    lane: &Lane,
    mut reader: Reader<Envelope<P>>,
    handler: &F,
    on_failure: Option<&Hook<Envelope<P>>>,
) where
    F: Fn(&Envelope<P>) -> R,
    R: HandlerResult,
{
    let _done = ctx.done();
    let mut skipped = 0u64;
    let mask = lane.mask;
    loop {
        // A member of a shared ring stops where it left; a lane of its own, at the close.
        let room = lane.end().saturating_sub(reader.position());
        if room == 0 {
            break;
        }
        let max = usize::try_from(room).map_or(BATCH, |room| room.min(BATCH));
        let read = reader.read_batch_tagged(max, |seq, tag, env| {
            if tag & mask == 0 {
                // For other members of a shared ring (never on a ring of its own).
                lane.take(seq);
                return;
            }
            if ctx.stop.aborted() {
                skipped += 1;
                return;
            }
            lane.take(seq);
            ctx.handle(env, handler, on_failure);
        });
        match read {
            Read::Got(_) if !ctx.stop.aborted() => {}
            Read::Empty if !ctx.stop.aborted() => {
                let _idle = Idle::enter(&lane.idle);
                reader.wait_or(None, || lane.end() <= reader.position());
            }
            Read::Got(_) | Read::Empty | Read::Closed => break,
        }
    }
    lane.finish(&ctx, reader, skipped);
}

/// A worker task: takes its lane's envelopes one at a time (a clone each, which the async
/// handler owns) until the ring is closed and read or a shutdown aborts.
pub(crate) async fn run_task<P: Payload, F, Fut, R>(
    ctx: WorkerCtx,
    lane: &Lane,
    mut reader: Reader<Envelope<P>>,
    handler: &F,
    on_failure: Option<&Hook<Envelope<P>>>,
) where
    F: Fn(Envelope<P>) -> Fut,
    Fut: Future<Output = R>,
    R: HandlerResult,
{
    let _done = ctx.done();
    let mut skipped = 0u64;
    let mut woken = false;
    loop {
        let mut next = None;
        let read = reader.read_batch_seq(1, |seq, env| next = Some((seq, env.clone())));
        match (read, next) {
            (Read::Got(_), Some((seq, env))) => {
                woken = false;
                if ctx.stop.aborted() {
                    skipped += 1;
                    break;
                }
                lane.take(seq);
                ctx.handle_async(env, handler, on_failure).await;
            }
            (Read::Closed, _) => break,
            _ if ctx.stop.aborted() => break,
            _ => {
                if woken {
                    // Woken by a claim whose publisher has not published yet: let it run.
                    tokio::task::yield_now().await;
                }
                let _idle = Idle::enter(&lane.idle);
                reader.readable().await;
                woken = true;
            }
        }
    }
    lane.finish(&ctx, reader, skipped);
}
