//! A lock-free broadcast ring: many publishers, many readers, every reader sees every event
//! (or is told how many it missed), and reads it in place.
//!
//! # Algorithm
//!
//! The ring of the LMAX Disruptor (M. Thompson, D. Farley, M. Barker, P. Gee, A. Stewart,
//! "Disruptor: High performance alternative to bounded queues for exchanging data between
//! concurrent threads", LMAX, 2011), multi-producer and broadcast:
//!
//! - An array of pre-allocated slots, at least as many as the capacity (a slot is found
//!   with a mask when their count is a power of two, else with a division), each on cache
//!   lines of its own, so a publisher and a reader on neighbouring slots never write and
//!   read one line. Each holds a value
//!   (`UnsafeCell<MaybeUninit<T>>`) and the sequence it was last published under (`seq + 1`,
//!   0 for never), so publishers that claimed in one order may publish in another and a
//!   reader still knows, slot by slot, whether the event it wants is there.
//! - A claim cursor: a publisher claims sequence `s` with one compare-and-swap on it and
//!   writes slot `s mod slots`. Before writing it waits for the slot's previous occupant
//!   (`s - slots`) to be published (a publisher between its claim and its publish is a
//!   few instructions away from done), so two publishers never write one slot at once.
//! - Each reader has its own cursor (cache-padded): the next sequence it reads. It reads
//!   slots in place, `&T` handed to a closure, as many as are published in one batch,
//!   moving its cursor past each event as the closure returns from it. Nothing is cloned or
//!   copied per reader.
//! - A claim may run at most the capacity ahead of the slowest reader; the capacity may be
//!   below the slot count, never above it.
//! - A slot may be overwritten only when every reader has passed its occupant: the gating
//!   sequence is the lowest cursor of the live readers. Publishers share a cached copy and
//!   scan the readers only when a claim would pass it. Any value the scan ever found stays
//!   a safe lower bound: cursors only move forward, a leaving reader stops gating, and a
//!   joining reader starts at or past every claim a publisher could have made without
//!   seeing it (see [`Reader::join`]).
//! - The claim cursor's top bit is the closed flag, so a claim and the close are ordered by
//!   the one atomic: every claim that succeeded was accepted before the close, and the
//!   count the close leaves behind is final. A reader whose cursor reached it has read
//!   (or been told it lost) every accepted event, and no push can land after that.
//!
//! # Overflow
//!
//! - [`Overflow::Block`]: a claim that would pass the slowest reader waits for it (with
//!   [`Wait::Block`], through [`Signal`]: spin, yield, park; readers notify as they pass
//!   each event), or is refused with [`Pushed::WouldBlock`] under [`Wait::Never`].
//! - [`Overflow::Reject`]: such a claim is refused with [`Pushed::Full`], the value handed
//!   back.
//! - [`Overflow::DropOldest`]: the publisher claims at once and moves every lagging reader
//!   on, to the oldest event that survives the write. Each reader counts what it skipped
//!   ([`Reader::take_lost`]).
//!
//! A push that moved some reader answers [`Pushed::Displaced`]. Only live readers gate:
//! with none joined, the ring wraps freely and events nobody could read are overwritten
//! (a reader joins at the tail, so it never sees them anyway).
//!
//! # Members of a shared ring
//!
//! A ring several subscriptions share ([`fanout`](crate::fanout)) gives each reader a
//! member flag, one of [`MAX_MEMBERS`] bits of the claim cursor below the closed flag (the
//! sequence takes the 55 bits below them). [`Reader::join_member`] sets its flag with the
//! compare-and-swap that fixes where it starts, and [`Ring::leave_member`] clears it with
//! the one that fixes where it stops (the last to leave sets the closed flag in the same
//! step). So a claim sees exactly the members that will read its event: the push publishes
//! the event with a tag, the members it was meant for that were live at the claim, in the
//! top bits of the slot's published word (the same swap), and answers that tag. A member
//! handles the events whose tag has its flag and passes the others by. Any thread may read
//! a tag ([`Ring::tag_at`]): it is an atomic, never the value. A ring without members
//! publishes every event with the tag [`ALL`].
//!
//! # DropOldest without reading an overwritten slot
//!
//! Under `DropOldest` a publisher changes other readers' cursors, so a reader must not touch
//! a value the publisher is about to replace. The reader's cursor carries a *pin* bit:
//!
//! 1. The reader loads its cursor (a value larger than it left is a move: the difference is
//!    its loss), checks that the slot at its position holds the sequence it wants, and pins
//!    with a compare-and-swap `pos → pos | PIN`.
//! 2. A publisher moves a reader only by a compare-and-swap from an unpinned value, and
//!    overwrites the slot of sequence `s - slots` only after every reader's cursor is
//!    past it. So a successful pin means no move happened since the check, and while the
//!    pin holds no slot at or after the cursor can be overwritten: the reader reads its
//!    batch through `&T`, moving the pinned cursor past each event once it is done with it
//!    (so it holds one slot at a time), then unpins by storing its new position.
//! 3. A publisher that finds a lagging reader pinned waits until its cursor moves (readers
//!    never wait inside a batch, so this is bounded by the read closure), then looks again.
//!
//! A failed pin (a move raced in) only sends the reader back to step 1. No value is ever
//! read through a copy that could be torn, and none is read while written.
//!
//! The price: a `DropOldest` publisher that laps a reader while that reader is inside its
//! read closure waits for the closure to return. A read closure must therefore not push
//! into its own ring under `Block` or `DropOldest` (it could wait on itself).
//!
//! # Waiting
//!
//! Readers wait with [`Signal`] (spin → yield → park). A publisher claims with a `SeqCst`
//! CAS, publishes with a `SeqCst` swap of the slot's sequence, and then notifies, which is
//! one load when nobody sleeps. A reader about to sleep registers, fences, and then counts a
//! *claimed* event at its position as ready, not only a published one, so it never parks
//! on an event a few instructions from published (it spins until the publish instead).
//! Publishers waiting for room pair the same way with the readers' cursor swaps.
//!
//! # Model checking
//!
//! The atomics and cells come from [`sync`]: loom's in a test build with `--cfg loom`
//! (loom is a dev-dependency, so any other build keeps std's, whatever the flags), std's
//! otherwise. The models are in this module's `loom_models`; run them with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p syncbus-core --lib ring --release
//! ```

#![allow(unsafe_code)]

mod sync;

use std::fmt;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::time::Instant;

use crossbeam_utils::CachePadded;

use self::sync::{
    backoff, fence, Arc, AtomicBool, AtomicPtr, AtomicU64, Ordering, Signal, UnsafeCell,
};
use crate::overflow::Overflow;
use crate::queue::Pushed;
use crate::sink::Wait;

/// The claim cursor's closed flag.
const CLOSED: u64 = 1 << 63;
/// Where a shared ring's member flags start in the claim cursor, and in a slot's
/// published word its tag.
const MEMBER_SHIFT: u32 = 55;
/// The claim cursor's member flags: which members of a shared ring are live at a claim.
const MEMBERS: u64 = 0xff << MEMBER_SHIFT;
/// The sequence part of the claim cursor and of a slot's published word.
const SEQ: u64 = (1 << MEMBER_SHIFT) - 1;
/// The members a shared ring can have, one flag each.
pub(crate) const MAX_MEMBERS: u32 = 8;
/// The tag of an event for every reader (what [`Ring::push`] publishes with).
pub(crate) const ALL: u8 = u8::MAX;
/// A reader cursor's pin bit: the reader is reading slots from this position on.
const PIN: u64 = 1 << 63;
/// A reader cursor slot nobody holds.
const FREE: u64 = u64::MAX;
/// Reader cursors per registry chunk.
const CHUNK: usize = if cfg!(all(loom, test)) { 2 } else { 8 };

/// One slot: cache-line aligned, so no two slots share a line. A publisher writes the slot
/// after the one a reader right behind it (an empty ring) or right ahead of it (a full one)
/// reads; sharing their boundary line made every publish take it from the reader's core
/// (`queued_1to1` and `fanout_1to4` ran about 18 % faster aligned, in alternating runs).
#[repr(align(64))]
struct Slot<T> {
    /// `seq + 1` of the event last published here; 0 for never.
    published: AtomicU64,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A block of reader cursors. The registry is a list of these that only grows (until the
/// ring is dropped), so a reader's cursor never moves and publishers walk it without locks.
struct Chunk {
    cursors: [CachePadded<AtomicU64>; CHUNK],
    next: AtomicPtr<Chunk>,
}

impl Chunk {
    fn new() -> Self {
        Self {
            cursors: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(FREE))),
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// This many events were handed to the closure (at least one).
    Got(usize),
    /// Nothing published yet at the reader's position; the ring is open, or closed with
    /// accepted events still being written.
    Empty,
    /// Closed, and the reader has read (or lost) every accepted event.
    Closed,
}

/// What a reader left behind when it left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Left {
    /// Accepted events it had not read (nor lost) when it left.
    pub(crate) unread: u64,
    /// Events it lost to `DropOldest` and had not taken with [`Reader::take_lost`].
    pub(crate) lost: u64,
}

/// The broadcast ring. Publishers call [`Ring::push`] through a shared reference; each
/// reader is a [`Reader`], made by [`Reader::join`].
pub(crate) struct Ring<T> {
    slots: Box<[Slot<T>]>,
    /// The slot count.
    len: u64,
    /// `len - 1` when `len` is a power of two (a slot is then found with a mask), else 0
    /// (with a division).
    mask: u64,
    /// How far the claim may run ahead of the slowest reader: the capacity asked for, at
    /// most the slot count.
    limit: u64,
    overflow: Overflow,
    /// Set after the close, beside the fields that never change: readers look here before
    /// they read the claim's line, which every publish writes. Only a hint: the claim's
    /// [`CLOSED`] bit is what orders the close.
    closed_hint: AtomicBool,
    /// The next sequence to claim, with [`CLOSED`] as its top bit.
    claim: CachePadded<AtomicU64>,
    /// A lower bound of every live reader's position, refreshed when a claim would pass it.
    gate: CachePadded<AtomicU64>,
    readers: Chunk,
    /// Publishers wait here for readers; readers notify after each event they pass.
    not_full: Signal,
    /// Readers wait here for events; publishers notify after each publish.
    not_empty: Signal,
}

// SAFETY: the ring hands `&T` to readers on many threads at once (so `T: Sync`) and moves
// values in from publishers' threads and drops them on others (so `T: Send`). Every access
// to a slot's value is ordered by the slot's `published` sequence and the readers' cursors
// as the module docs describe; the rest of the ring is atomics.
unsafe impl<T: Send + Sync> Sync for Ring<T> {}
// SAFETY: as for `Sync`: the values it owns are `Send`, and the registry chunks it points
// to are owned by it alone.
unsafe impl<T: Send + Sync> Send for Ring<T> {}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let claim = self.claim.load(Ordering::Relaxed);
        f.debug_struct("Ring")
            .field("capacity", &self.slots.len())
            .field("overflow", &self.overflow)
            .field("accepted", &(claim & SEQ))
            .field("closed", &(claim & CLOSED != 0))
            .finish_non_exhaustive()
    }
}

impl<T> Ring<T> {
    /// A ring holding up to `capacity` events (at least 1) ahead of its slowest reader.
    /// It has `capacity` slots rounded up to a power of two when that adds at most an
    /// eighth (a slot is then found with a mask), else exactly `capacity` (found with a
    /// division): a capacity of 1024 + 1 takes 1025 slots, not 2048.
    pub(crate) fn new(capacity: usize, overflow: Overflow) -> Self {
        let limit = capacity.max(1);
        let pow2 = limit.checked_next_power_of_two().unwrap_or(limit);
        let capacity = if pow2 - limit <= limit / 8 {
            pow2
        } else {
            limit
        };
        let slots = (0..capacity)
            .map(|_| Slot {
                published: AtomicU64::new(0),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Self {
            slots,
            len: capacity as u64,
            mask: if capacity.is_power_of_two() {
                capacity as u64 - 1
            } else {
                0
            },
            limit: limit as u64,
            overflow,
            closed_hint: AtomicBool::new(false),
            claim: CachePadded::new(AtomicU64::new(0)),
            gate: CachePadded::new(AtomicU64::new(0)),
            readers: Chunk::new(),
            not_full: Signal::new(),
            not_empty: Signal::new(),
        }
    }

    /// The events it holds ahead of its slowest reader, as asked for.
    // Used by the tests and the loom models.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn capacity(&self) -> usize {
        self.limit as usize
    }

    /// The slots behind it.
    // Used by the tests and the loom models.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Events accepted so far (claimed: published, or being written).
    pub(crate) fn accepted(&self) -> u64 {
        self.claim.load(Ordering::SeqCst) & SEQ
    }

    /// Stops intake: every later push gets its value back as [`Pushed::Closed`]. Returns
    /// the number of events accepted in all, which no push changes after this.
    pub(crate) fn close(&self) -> u64 {
        let end = self.claim.fetch_or(CLOSED, Ordering::SeqCst) & SEQ;
        self.closed_hint.store(true, Ordering::SeqCst);
        self.not_empty.notify();
        self.not_full.notify();
        end
    }

    /// The slot count, as a sequence distance.
    #[inline]
    fn slots_u64(&self) -> u64 {
        self.len
    }

    #[inline]
    fn slot(&self, seq: u64) -> &Slot<T> {
        // A ring of one slot has mask 0 too, and the division gives 0 as well.
        let i = if self.mask != 0 {
            seq & self.mask
        } else {
            seq % self.len
        };
        &self.slots[i as usize]
    }

    /// The event of sequence `seq` is published (and, for a reader whose position is
    /// `seq`, not overwritten: the gate keeps it).
    #[inline]
    fn is_published(&self, seq: u64) -> bool {
        self.tag_if_published(seq).is_some()
    }

    /// The tag of the event of sequence `seq` if it is published (see
    /// [`is_published`](Self::is_published)).
    #[inline]
    fn tag_if_published(&self, seq: u64) -> Option<u8> {
        let word = self.slot(seq).published.load(Ordering::Acquire);
        (word & SEQ == seq + 1).then_some(members_of(word))
    }

    /// The tag of accepted event `seq`, waiting while its publisher writes it; `None` once
    /// its slot holds a later event. Reads only the slot's published word, never the value,
    /// so any thread may ask: [`shared`](crate::fanout) rings count with it what a member
    /// has left unread.
    pub(crate) fn tag_at(&self, seq: u64) -> Option<u8> {
        let mut round = 0;
        loop {
            let word = self.slot(seq).published.load(Ordering::Acquire);
            match (word & SEQ).cmp(&(seq + 1)) {
                std::cmp::Ordering::Equal => return Some(members_of(word)),
                std::cmp::Ordering::Greater => return None,
                // Claimed (`seq` is accepted), so its publisher is between claim and publish.
                std::cmp::Ordering::Less => backoff(&mut round),
            }
        }
    }

    /// Flags member `bit` live in the claim word unless the ring is closed: every claim
    /// from the answered sequence on counts the member, none before it does. `None` when
    /// closed.
    fn flag_member(&self, bit: u32) -> Option<u64> {
        let flag = 1u64 << (MEMBER_SHIFT + bit);
        let mut word = self.claim.load(Ordering::SeqCst);
        loop {
            if word & CLOSED != 0 {
                return None;
            }
            match self
                .claim
                .compare_exchange(word, word | flag, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Some(word & SEQ),
                Err(now) => word = now,
            }
        }
    }

    /// Member `bit` leaves: claims from the answered sequence on no longer count it, so it
    /// reads up to there and no further. The last member to leave closes the ring in the
    /// same step. On a closed ring this answers the final count.
    pub(crate) fn leave_member(&self, bit: u32) -> u64 {
        let flag = 1u64 << (MEMBER_SHIFT + bit);
        let mut word = self.claim.load(Ordering::SeqCst);
        loop {
            if word & CLOSED != 0 {
                return word & SEQ;
            }
            let mut next = word & !flag;
            if next & MEMBERS == 0 {
                next |= CLOSED;
            }
            match self
                .claim
                .compare_exchange(word, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    if next & CLOSED != 0 {
                        self.closed_hint.store(true, Ordering::SeqCst);
                        self.not_full.notify();
                    }
                    // Its reader may sleep: let it look at its end (a fence, then notify).
                    self.nudge();
                    return word & SEQ;
                }
                Err(now) => word = now,
            }
        }
    }

    /// Closed, and `pos` is at the end of what was accepted. Reads the claim only once the
    /// close hint is set: a reader that misses a close this way sees it in its wait.
    #[inline]
    fn ended_at(&self, pos: u64) -> bool {
        if !self.closed_hint.load(Ordering::Acquire) {
            return false;
        }
        let claim = self.claim.load(Ordering::SeqCst);
        claim & CLOSED != 0 && pos >= claim & SEQ
    }

    /// A reader at `pos` need not sleep: the event there is claimed (published, or a few
    /// instructions from it), or the ring is closed.
    #[inline]
    fn wakes(&self, pos: u64) -> bool {
        let claim = self.claim.load(Ordering::SeqCst);
        claim & CLOSED != 0 || claim & SEQ > pos
    }

    /// Events accepted that the slowest live reader has not passed yet (0 with no reader).
    // Used by the tests and the loom models.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn backlog(&self) -> u64 {
        let accepted = self.accepted();
        let mut low = accepted;
        for cursor in self.cursors() {
            let v = cursor.load(Ordering::SeqCst);
            if v != FREE {
                low = low.min(v & !PIN);
            }
        }
        accepted - low
    }

    /// Wakes waiting readers without publishing: something else changed (a shutdown).
    pub(crate) fn nudge(&self) {
        fence(Ordering::SeqCst);
        self.not_empty.notify();
    }

    /// Every reader cursor of the registry, in order.
    fn cursors(&self) -> impl Iterator<Item = &AtomicU64> {
        let mut chunk: Option<&Chunk> = Some(&self.readers);
        std::iter::from_fn(move || {
            let c = chunk?;
            let next = c.next.load(Ordering::Acquire);
            // SAFETY: a chunk linked into the registry is never freed or moved before the
            // ring is dropped, and the link was published with a Release CAS after the
            // chunk was initialised (see `Reader::join`).
            chunk = unsafe { next.as_ref() };
            Some(c.cursors.iter().map(|c| &**c))
        })
        .flatten()
    }

    /// Takes a reader cursor at the current tail, then fences: the start a joining reader
    /// reads from the claim after this is safe (see [`Reader::join`]).
    fn register_at_tail(&self) -> &AtomicU64 {
        let cursor = register(&self.readers, self.claim.load(Ordering::SeqCst) & SEQ);
        fence(Ordering::SeqCst);
        cursor
    }

    /// Scans the readers for the lowest position, bounded by `claim` (a claim value loaded
    /// before the scan: a reader that joins during the scan starts at or after it), and
    /// caches it. Returns the best bound known.
    fn refresh_gate(&self, claim: u64) -> u64 {
        // Pairs with the fence in `Reader::join` (see there).
        fence(Ordering::SeqCst);
        let mut low = claim;
        for cursor in self.cursors() {
            let v = cursor.load(Ordering::SeqCst);
            if v != FREE {
                low = low.min(v & !PIN);
            }
        }
        self.gate.fetch_max(low, Ordering::SeqCst).max(low)
    }

    /// Pushes by the ring's overflow policy. `Block` waits for the slowest reader with
    /// [`Wait::Block`] (the caller decides that blocking this thread is safe) and answers
    /// [`Pushed::WouldBlock`] under [`Wait::Never`].
    #[inline]
    pub(crate) fn push(&self, value: T, wait: Wait) -> Pushed<T> {
        if self.overflow == Overflow::DropOldest {
            return self.push_displacing(value);
        }
        self.push_tagged(value, wait, ALL).0
    }

    /// [`push`](Self::push) for a ring shared by members (not under `DropOldest`): the
    /// event is for the members flagged in `tag` (one bit each) that are live at its claim,
    /// and published with that set as its tag, which a push that went through answers: the
    /// members that read it (see [`Reader::join_member`]). A ring without members keeps
    /// `tag` as given.
    #[inline]
    pub(crate) fn push_tagged(&self, value: T, wait: Wait, tag: u8) -> (Pushed<T>, u8) {
        debug_assert!(self.overflow != Overflow::DropOldest);
        match self.try_claim() {
            Claim::Claimed(word) => {
                let tag = tag_for(word, tag);
                self.write(word & SEQ, value, tag);
                (Pushed::Queued, tag)
            }
            Claim::Closed => (Pushed::Closed(value), 0),
            Claim::Full => match (self.overflow, wait) {
                (Overflow::Block, Wait::Block) => self.push_waiting(value, tag),
                (Overflow::Block, Wait::Never) => (Pushed::WouldBlock(value), 0),
                _ => (Pushed::Full(value), 0),
            },
        }
    }

    /// Claims the next sequence if no reader would be passed; a claim answers the whole
    /// claim word it replaced (its sequence and the members live at it).
    #[inline]
    fn try_claim(&self) -> Claim {
        let cap = self.limit;
        let mut claim = self.claim.load(Ordering::SeqCst);
        loop {
            if claim & CLOSED != 0 {
                return Claim::Closed;
            }
            let seq = claim & SEQ;
            if seq >= self.gate.load(Ordering::SeqCst) + cap && seq >= self.refresh_gate(seq) + cap
            {
                return Claim::Full;
            }
            match self
                .claim
                .compare_exchange(claim, claim + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Claim::Claimed(claim),
                Err(now) => claim = now,
            }
        }
    }

    #[cold]
    fn push_waiting(&self, value: T, tag: u8) -> (Pushed<T>, u8) {
        let claimed = self.not_full.wait_until(None, || match self.try_claim() {
            Claim::Full => None,
            other => Some(other),
        });
        match claimed {
            Some(Claim::Claimed(word)) => {
                let tag = tag_for(word, tag);
                self.write(word & SEQ, value, tag);
                (Pushed::Queued, tag)
            }
            // Without a deadline the wait answers only Claimed or Closed.
            _ => (Pushed::Closed(value), 0),
        }
    }

    /// `DropOldest`: claims at once, then moves every reader that would be passed.
    fn push_displacing(&self, value: T) -> Pushed<T> {
        let mut claim = self.claim.load(Ordering::SeqCst);
        loop {
            if claim & CLOSED != 0 {
                return Pushed::Closed(value);
            }
            match self
                .claim
                .compare_exchange(claim, claim + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => claim = now,
            }
        }
        let claim = claim & SEQ;
        let cap = self.limit;
        let displaced =
            claim >= self.gate.load(Ordering::SeqCst) + cap && self.move_laggards(claim);
        self.write(claim, value, ALL);
        if displaced {
            Pushed::Displaced
        } else {
            Pushed::Queued
        }
    }

    /// Before sequence `claim` overwrites `claim - capacity`: every reader still at or
    /// before that is moved to `claim - capacity + 1`, waiting for pinned ones to unpin.
    /// True if some reader was moved.
    #[cold]
    fn move_laggards(&self, claim: u64) -> bool {
        let target = claim + 1 - self.limit;
        // Pairs with the fence in `Reader::join`.
        fence(Ordering::SeqCst);
        let mut moved = false;
        let mut low = claim;
        for cursor in self.cursors() {
            let mut v = cursor.load(Ordering::SeqCst);
            loop {
                if v == FREE {
                    break;
                }
                if v & !PIN >= target {
                    low = low.min(v & !PIN);
                    break;
                }
                if v & PIN != 0 {
                    // Reading at or before the slot to overwrite: wait for the cursor to
                    // move (readers notify `not_full` as it does), then look again.
                    let seen = v;
                    v = self
                        .not_full
                        .wait_until(None, || {
                            let now = cursor.load(Ordering::SeqCst);
                            (now != seen).then_some(now)
                        })
                        .unwrap_or(seen);
                    continue;
                }
                match cursor.compare_exchange(v, target, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => {
                        moved = true;
                        low = low.min(target);
                        break;
                    }
                    Err(now) => v = now,
                }
            }
        }
        self.gate.fetch_max(low, Ordering::SeqCst);
        moved
    }

    /// Writes the value of claimed sequence `seq` and publishes it with `tag`.
    #[inline]
    fn write(&self, seq: u64, value: T, tag: u8) {
        let slot = self.slot(seq);
        let cap = self.slots_u64();
        let previous = if seq >= cap { seq - cap + 1 } else { 0 };
        // The previous occupant's publisher may still be writing it (it claimed first).
        let mut round = 0;
        while slot.published.load(Ordering::Acquire) & SEQ != previous {
            backoff(&mut round);
        }
        let old = slot.value.with_mut(|p| {
            // SAFETY: this publisher owns the slot now: it claimed `seq` (no one else
            // claims it), the previous occupant is published (the Acquire load above
            // synchronises with its publisher), and every reader's cursor is past that
            // occupant (the gate, or `move_laggards` for DropOldest) and not pinned on it,
            // their reads having happened before their cursor stores (Release/SeqCst),
            // which this thread observed with SeqCst loads. The occupant is initialised
            // exactly when `previous != 0`.
            unsafe {
                if previous != 0 {
                    Some(ptr::replace(p, MaybeUninit::new(value)).assume_init())
                } else {
                    (*p).write(value);
                    None
                }
            }
        });
        // A SeqCst RMW: the notification below needs no fence (see `Waiting` in the module
        // docs). A Release store would do for the sleepers (they count a claimed event as
        // ready), but the models find a reader that then misses a DropOldest move or a
        // joining reader's start, so the publish stays in the SeqCst order.
        slot.published
            .swap((seq + 1) | u64::from(tag) << MEMBER_SHIFT, Ordering::SeqCst);
        self.not_empty.notify();
        // The displaced value is dropped after the publish, so a slow Drop delays no reader.
        drop(old);
    }
}

enum Claim {
    /// The claim word replaced: the sequence claimed, and the members live at it.
    Claimed(u64),
    Full,
    Closed,
}

/// The members flagged in a claim word (or the tag in a slot's published word).
#[inline]
fn members_of(word: u64) -> u8 {
    ((word & MEMBERS) >> MEMBER_SHIFT) as u8
}

/// The tag an event claimed with claim word `word` is published with: the members `tag`
/// names that are live at the claim, on a shared ring; `tag` itself on any other.
#[inline]
fn tag_for(word: u64, tag: u8) -> u8 {
    if word & MEMBERS == 0 {
        tag
    } else {
        tag & members_of(word)
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // No publisher is inside `write` (they hold a reference), and every claim was
        // written: `write` cannot fail between claim and publish.
        for slot in self.slots.iter() {
            if slot.published.load(Ordering::Acquire) != 0 {
                slot.value.with_mut(|p| {
                    // SAFETY: a published slot holds an initialised value that nobody else
                    // can reach now (`&mut self`); each slot is visited once, so each value is
                    // dropped once.
                    unsafe { (*p).assume_init_drop() }
                });
            }
        }
        let mut next = self.readers.next.load(Ordering::Acquire);
        while !next.is_null() {
            // SAFETY: every linked chunk came from `Box::into_raw` in `Reader::join` and is
            // freed only here, once, after which nothing refers to it.
            let chunk = unsafe { Box::from_raw(next) };
            next = chunk.next.load(Ordering::Acquire);
        }
    }
}

#[cfg(not(all(loom, test)))]
impl<T: Send + Sync> crate::sink::Room for Ring<T> {
    fn signal(&self) -> &crate::wait::Signal {
        &self.not_full
    }

    fn has_room(&self) -> bool {
        let claim = self.claim.load(Ordering::SeqCst);
        let seq = claim & SEQ;
        claim & CLOSED != 0
            || self.overflow != Overflow::Block
            || seq < self.refresh_gate(seq) + self.limit
    }
}

/// One reader of a [`Ring`]: its own cursor, read by the publishers. Leaves the ring
/// (its cursor stops gating) when dropped or with [`Reader::leave`].
pub(crate) struct Reader<T> {
    ring: Arc<Ring<T>>,
    /// This reader's cursor in the ring's registry.
    cursor: NonNull<AtomicU64>,
    /// The next sequence to read, as this reader last left its cursor.
    pos: u64,
    /// Events lost to `DropOldest` moves, not yet taken.
    lost: u64,
    /// Still holding the cursor (false once it left: the cursor may belong to another
    /// reader then).
    joined: bool,
}

// SAFETY: the cursor pointer refers into the ring the reader keeps alive through its `Arc`;
// the cursor is an atomic, shared with publishers by design. Handing the reader to another
// thread moves the right to read `&T` there, hence `T: Send + Sync` as for the ring.
unsafe impl<T: Send + Sync> Send for Reader<T> {}
// SAFETY: through `&Reader` only the cursor is loaded and the ring read (`unread`,
// `readable`); reading events takes `&mut self`.
unsafe impl<T: Send + Sync> Sync for Reader<T> {}

impl<T> fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("pos", &self.pos)
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

impl<T> Reader<T> {
    /// Joins `ring` at its current tail: the reader sees every event accepted from now on.
    ///
    /// The reader first takes a free cursor with a `SeqCst` CAS (publishers see it from
    /// then on), then loads the claim cursor again and starts there. A publisher that did
    /// not see the cursor loaded its claim, or scanned, before the registration, so every
    /// slot it may overwrite holds an event older than that second load: the reader never
    /// starts on a slot that can be overwritten under it.
    ///
    /// That is a store-then-load against the publishers' claim-then-scan (Dekker's pattern),
    /// so both sides have a `SeqCst` fence between the two: the accesses are `SeqCst`
    /// already, which is enough in the C++20 model, but the fences make it hold in the
    /// weaker model loom checks (it treats `SeqCst` accesses as `AcqRel`), and the scans
    /// are off the hot path.
    pub(crate) fn join(ring: &Arc<Ring<T>>) -> Reader<T> {
        let cursor = ring.register_at_tail();
        let start = ring.claim.load(Ordering::SeqCst) & SEQ;
        Reader::starting(ring, cursor, start)
    }

    /// Joins `ring` as member `bit` of a shared ring: as [`join`](Self::join), with the
    /// member's flag set in the claim word by the step that fixes where it starts, so the
    /// members a push counts ([`Ring::push_tagged`]) are exactly those that read it.
    /// `None` if the ring is closed.
    pub(crate) fn join_member(ring: &Arc<Ring<T>>, bit: u32) -> Option<Reader<T>> {
        debug_assert!(bit < MAX_MEMBERS && ring.overflow != Overflow::DropOldest);
        let cursor = ring.register_at_tail();
        let Some(start) = ring.flag_member(bit) else {
            cursor.store(FREE, Ordering::SeqCst);
            return None;
        };
        Some(Reader::starting(ring, cursor, start))
    }

    /// The reader of `cursor`, registered before `start` was read from the claim.
    fn starting(ring: &Arc<Ring<T>>, cursor: &AtomicU64, start: u64) -> Reader<T> {
        // A DropOldest publisher may have moved the cursor since the registration: keep
        // the larger of its move and the start (no pin can be set yet: only we pin).
        let was = cursor.fetch_max(start, Ordering::SeqCst);
        Reader {
            ring: Arc::clone(ring),
            cursor: NonNull::from(cursor),
            pos: was.max(start),
            lost: 0,
            joined: true,
        }
    }

    #[inline]
    fn cursor(&self) -> &AtomicU64 {
        // SAFETY: the cursor lives in a registry chunk of `self.ring`, which `self` keeps
        // alive; chunks are never freed or moved before the ring is dropped.
        unsafe { self.cursor.as_ref() }
    }

    /// The ring, the cursor and the position, borrowed apart.
    fn parts(&mut self) -> (&Ring<T>, &AtomicU64, &mut u64) {
        // SAFETY: as in `cursor`.
        let cursor = unsafe { self.cursor.as_ref() };
        (&self.ring, cursor, &mut self.pos)
    }

    /// Takes in a move a `DropOldest` publisher made since this reader last looked.
    #[inline]
    fn catch_up(&mut self) {
        let now = self.cursor().load(Ordering::SeqCst) & !PIN;
        if now > self.pos {
            self.lost += now - self.pos;
            self.pos = now;
        }
    }

    /// Reads up to `max` published events in place, handing each to `f`, without waiting.
    /// Under `DropOldest`, events skipped before this batch are counted for
    /// [`take_lost`](Self::take_lost); none is skipped inside a batch.
    ///
    /// If `f` panics, the event it was given counts as read.
    // Used by the tests and the loom models.
    #[cfg_attr(not(test), allow(dead_code))]
    #[inline]
    pub(crate) fn read_batch(&mut self, max: usize, mut f: impl FnMut(&T)) -> Read {
        self.read_batch_seq(max, |_, v| f(v))
    }

    /// [`read_batch`](Self::read_batch), handing `f` each event's sequence too.
    ///
    /// The cursor passes each event as soon as `f` returns from it, not only at the end of
    /// the batch, so a slow handler holds one slot, not its whole batch, and publishers
    /// waiting for room are woken by each event read.
    #[inline]
    pub(crate) fn read_batch_seq(&mut self, max: usize, mut f: impl FnMut(u64, &T)) -> Read {
        self.read_batch_tagged(max, |seq, _, v| f(seq, v))
    }

    /// [`read_batch_seq`](Self::read_batch_seq), handing `f` each event's tag too (see
    /// [`Ring::push_tagged`]).
    #[inline]
    pub(crate) fn read_batch_tagged(&mut self, max: usize, mut f: impl FnMut(u64, u8, &T)) -> Read {
        if max == 0 {
            return Read::Empty;
        }
        let pins = self.ring.overflow == Overflow::DropOldest;
        loop {
            if pins {
                self.catch_up();
            }
            let pos = self.pos;
            if !self.ring.is_published(pos) {
                // A slot showing a later sequence was overwritten: only after a move,
                // which `catch_up` sees on the next round.
                if pins && self.ring.slot(pos).published.load(Ordering::Acquire) & SEQ > pos + 1 {
                    continue;
                }
                return if self.ring.ended_at(pos) {
                    Read::Closed
                } else {
                    Read::Empty
                };
            }
            if pins
                && self
                    .cursor()
                    .compare_exchange(pos, pos | PIN, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
            {
                // Moved between the check and the pin: look again.
                continue;
            }
            let (ring, cursor, at) = self.parts();
            let mut batch = Batch {
                ring,
                cursor,
                pos: at,
                start: pos,
                read: 0,
            };
            let pin = if pins { PIN } else { 0 };
            while batch.read < max {
                let seq = pos + batch.read as u64;
                let Some(tag) = ring.tag_if_published(seq) else {
                    break;
                };
                if batch.read > 0 {
                    // Done with `seq - 1`: a SeqCst RMW, so the notification needs no fence.
                    // Still pinned under DropOldest, at a later position.
                    batch.cursor.swap(seq | pin, Ordering::SeqCst);
                    ring.not_full.notify();
                }
                batch.read += 1;
                ring.slot(seq).value.with(|p| {
                    // SAFETY: the slot holds the published event `seq` (Acquire load above,
                    // synchronising with its publisher's write). No publisher overwrites it
                    // while this reader's cursor is at or before `seq` (it is at `seq`
                    // now, or at `pos` for the first): the gate keeps it under Block and
                    // Reject, and under DropOldest the cursor is pinned there, so no
                    // publisher can move it past `seq` until this event is done (module
                    // docs). The reference does not outlive this closure.
                    f(seq, tag, unsafe { (*p).assume_init_ref() })
                });
            }
            let read = batch.read;
            drop(batch);
            return Read::Got(read);
        }
    }

    /// Waits until an event is published at this reader's position, the ring is closed
    /// and drained for it, or `deadline` passes, then reads a batch as
    /// [`read_batch`](Self::read_batch).
    // Used by the tests and the loom models.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn read_wait(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
        f: impl FnMut(&T),
    ) -> Read {
        self.wait(deadline);
        self.read_batch(max, f)
    }

    /// The ring it reads.
    pub(crate) fn ring(&self) -> &Ring<T> {
        &self.ring
    }

    /// The next sequence this reader reads (as it last left its cursor).
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// Blocks until [`read_batch`](Self::read_batch) would find an event or the end, or
    /// `deadline` passes.
    pub(crate) fn wait(&self, deadline: Option<Instant>) {
        self.wait_or(deadline, || false)
    }

    /// [`wait`](Self::wait), also ending when `done` says so; whoever makes `done` true
    /// then calls [`Ring::nudge`] (or leaves a member, which does).
    pub(crate) fn wait_or(&self, deadline: Option<Instant>, done: impl Fn() -> bool) {
        let ring = &*self.ring;
        let cursor = self.cursor();
        let pos = self.pos;
        let pins = ring.overflow == Overflow::DropOldest;
        let moved = || pins && cursor.load(Ordering::SeqCst) & !PIN > pos;
        // Spinning, look at the slot and the close hint only: the claim's line is the one
        // every publisher writes, and polling it slows them. Before parking, a claim still
        // being written counts too (module docs).
        let likely = || {
            ring.is_published(pos) || ring.closed_hint.load(Ordering::Acquire) || moved() || done()
        };
        ring.not_empty.wait_until_with(deadline, likely, || {
            // A published event needs no look at the claim's line (the spin's usual way
            // out). A move (DropOldest) puts the reader somewhere else: let the read sort
            // it out.
            (ring.is_published(pos) || moved() || done() || ring.wakes(pos)).then_some(())
        });
        if done() {
            return;
        }
        // Claimed but not yet published: its publisher is between claim and publish.
        let mut round = 0;
        while round < 12 && !ring.is_published(pos) && !ring.ended_at(pos) && ring.wakes(pos) {
            backoff(&mut round);
        }
    }

    /// Waits in a task until [`read_batch`](Self::read_batch) would find an event or the
    /// end. Cancel safe.
    #[cfg(not(all(loom, test)))]
    pub(crate) async fn readable(&self) {
        let ring = &*self.ring;
        let cursor = self.cursor();
        let pos = self.pos;
        ring.not_empty
            .wait_async(|| {
                let at = (cursor.load(Ordering::SeqCst) & !PIN).max(pos);
                (at != pos || ring.wakes(at)).then_some(())
            })
            .await
    }

    /// Events lost to `DropOldest` since the last call.
    // Used by the tests and the loom models.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn take_lost(&mut self) -> u64 {
        if self.ring.overflow == Overflow::DropOldest {
            self.catch_up();
        }
        std::mem::take(&mut self.lost)
    }

    /// Accepted events this reader has neither read nor lost, now. Once the ring is
    /// closed this is exact and only reading lowers it.
    // Used by the tests and the loom models.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn unread(&self) -> u64 {
        let pos = (self.cursor().load(Ordering::SeqCst) & !PIN).max(self.pos);
        self.ring.accepted().saturating_sub(pos)
    }

    /// Leaves the ring: the cursor stops gating publishers. Reports what this reader had
    /// not read and the loss it had not taken.
    pub(crate) fn leave(mut self) -> Left {
        self.release()
    }

    fn release(&mut self) -> Left {
        self.joined = false;
        // A swap, so a move racing the leave is either counted here or not made.
        let last = self.cursor().swap(FREE, Ordering::SeqCst);
        if last != FREE && last & !PIN > self.pos {
            self.lost += (last & !PIN) - self.pos;
            self.pos = last & !PIN;
        }
        // A DropOldest publisher may be waiting for this cursor to change.
        self.ring.not_full.notify();
        let unread = self.ring.accepted().saturating_sub(self.pos);
        Left {
            unread,
            lost: std::mem::take(&mut self.lost),
        }
    }
}

impl<T> Drop for Reader<T> {
    fn drop(&mut self) {
        if self.joined {
            self.release();
        }
    }
}

/// Takes a free cursor in the registry starting at `head`, setting it to `start`, adding a
/// chunk if all are taken.
fn register(head: &Chunk, start: u64) -> &AtomicU64 {
    let mut chunk = head;
    loop {
        for cursor in chunk.cursors.iter() {
            if cursor.load(Ordering::Relaxed) == FREE
                && cursor
                    .compare_exchange(FREE, start, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                return cursor;
            }
        }
        let mut next = chunk.next.load(Ordering::Acquire);
        if next.is_null() {
            let fresh = Chunk::new();
            // Taken before the chunk is linked, so no one else can take it first.
            fresh.cursors[0].store(start, Ordering::Relaxed);
            let fresh = Box::into_raw(Box::new(fresh));
            match chunk.next.compare_exchange(
                ptr::null_mut(),
                fresh,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: `fresh` is linked now, so it lives as long as the ring.
                    return unsafe { &(*fresh).cursors[0] };
                }
                Err(other) => {
                    // SAFETY: `fresh` was never linked, so this thread still owns it alone.
                    drop(unsafe { Box::from_raw(fresh) });
                    next = other;
                }
            }
        }
        // SAFETY: a non-null link points to a chunk that lives as long as the ring.
        chunk = unsafe { &*next };
    }
}

/// A batch in progress: on drop (also when the read closure panics) it moves the cursor
/// and the reader's position past what was read, unpinning the cursor, and wakes
/// publishers waiting for room.
struct Batch<'a, T> {
    ring: &'a Ring<T>,
    cursor: &'a AtomicU64,
    pos: &'a mut u64,
    start: u64,
    read: usize,
}

impl<T> Drop for Batch<'_, T> {
    fn drop(&mut self) {
        // A SeqCst RMW, so the notification needs no fence; a plain store's Release would
        // do for the publishers' reads of the slots.
        let end = self.start + self.read as u64;
        self.cursor.swap(end, Ordering::SeqCst);
        *self.pos = end;
        self.ring.not_full.notify();
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_models;
