//! The bounded queue behind queued subscriptions, keyed lanes and pull consumers.
//!
//! A fixed array of slots (crossbeam's `ArrayQueue`, Vyukov's bounded MPMC algorithm): a push
//! moves the event into a pre-allocated slot, so the steady state allocates nothing. Waiting
//! on either side goes through [`Signal`]: spin, yield, then park.
//!
//! # Closing without losing a push
//!
//! A push that checked `closed` just before [`Queue::close`] may land its item after a
//! consumer saw the queue closed and empty and left: the item would be accepted and never
//! handled nor reported. So every push holds a gate (a count of pushes in progress) from
//! its check of `closed` until its item is in, and a consumer leaves only when the queue is
//! closed, no push is in progress, and a last pop finds nothing (Dekker again: the pusher
//! increments, then reads `closed`; the consumer reads `closed`, then the count, all
//! `SeqCst`, so a pusher either sees the close and refuses, or the consumer sees it and
//! waits for its item). [`Queue::discard`] waits at the gate the same way.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use syncbus_envelope::Envelope;

use crate::overflow::Overflow;
use crate::sink::{Delivered, Room, Take, Wait};
use crate::wait::Signal;

/// What a push did.
#[derive(Debug)]
pub(crate) enum Pushed<T> {
    /// The value is in the queue.
    Queued,
    /// The value is in the queue; the oldest one was dropped to make room (`DropOldest`).
    Displaced,
    /// The queue is full and the policy is `Reject`: the value comes back.
    Full(T),
    /// The queue is full, its policy is `Block`, and waiting is not allowed here (a
    /// non-blocking publish, or a thread that must not block): the value comes back.
    WouldBlock(T),
    /// The queue is closed: the value comes back.
    Closed(T),
}

impl<T> Pushed<T> {
    /// What the push means to the dispatch: a refused value is turned back into the
    /// envelope with `back` and returned to `slot` if the sink had moved it out.
    #[inline]
    pub(crate) fn delivered<P>(
        self,
        slot: &mut Option<Envelope<P>>,
        take: Take,
        back: impl FnOnce(T) -> Envelope<P>,
    ) -> Delivered {
        let (delivered, value) = match self {
            Pushed::Queued => return Delivered::Ok,
            Pushed::Displaced => return Delivered::Displaced,
            Pushed::Full(v) => (Delivered::Full, v),
            Pushed::WouldBlock(v) => (Delivered::WouldBlock, v),
            Pushed::Closed(v) => (Delivered::Closed, v),
        };
        if take == Take::Move {
            *slot = Some(back(value));
        }
        delivered
    }
}

/// Who drains a queue, which decides whether a publisher may block on it inside a
/// current-thread tokio runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drainer {
    /// Worker threads: they make room whatever the publisher's thread does.
    Threads,
    /// Tokio tasks, or callers we do not know (pull consumers).
    Tasks,
}

/// How a `Block` push waits for room on the thread it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockOn {
    /// Block the thread: it is no tokio worker.
    Thread,
    /// A multi-thread runtime's worker: move the wait off it with `block_in_place`.
    OffWorker,
    /// A current-thread runtime whose tasks drain the queue: waiting would stop the thread
    /// that has to make room, so the push answers `WouldBlock`.
    Refused,
}

impl BlockOn {
    /// Inside a tokio runtime a plain wait could park the very worker that has to run the
    /// consumer (a task woken from this thread sits in its LIFO slot, which no other worker
    /// steals), hence the two runtime cases.
    pub(crate) fn here(drainer: Drainer) -> BlockOn {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => BlockOn::OffWorker,
            Ok(RuntimeFlavor::CurrentThread) if drainer == Drainer::Tasks => BlockOn::Refused,
            _ => BlockOn::Thread,
        }
    }

    /// Runs `push`, which waits for room, on `value` where this thread may wait (off a
    /// multi-thread runtime's worker with `block_in_place`); where it may not, answers
    /// `refused(value)` instead.
    pub(crate) fn push<T, R>(
        drainer: Drainer,
        value: T,
        push: impl FnOnce(T) -> R,
        refused: impl FnOnce(T) -> R,
    ) -> R {
        match BlockOn::here(drainer) {
            BlockOn::OffWorker => tokio::task::block_in_place(|| push(value)),
            BlockOn::Refused => refused(value),
            BlockOn::Thread => push(value),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Queue<T> {
    items: ArrayQueue<T>,
    overflow: Overflow,
    drainer: Drainer,
    closed: AtomicBool,
    /// Pushes between their check of `closed` and their item landing (see the module docs).
    pushers: CachePadded<AtomicUsize>,
    /// Events dropped by `DropOldest` since the consumer last asked.
    lost: CachePadded<AtomicU64>,
    /// Consumers waiting for an item right now (idle): what `Bus::settled` looks at.
    idle: CachePadded<AtomicUsize>,
    not_empty: Signal,
    not_full: Signal,
}

impl<T> Queue<T> {
    pub(crate) fn new(capacity: usize, overflow: Overflow, drainer: Drainer) -> Self {
        Self {
            items: ArrayQueue::new(capacity.max(1)),
            overflow,
            drainer,
            closed: AtomicBool::new(false),
            pushers: CachePadded::new(AtomicUsize::new(0)),
            lost: CachePadded::new(AtomicU64::new(0)),
            idle: CachePadded::new(AtomicUsize::new(0)),
            not_empty: Signal::new(),
            not_full: Signal::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Consumers waiting in [`pop_wait`](Self::pop_wait) or
    /// [`pop_wait_async`](Self::pop_wait_async) for an item right now.
    pub(crate) fn idle(&self) -> usize {
        self.idle.load(Ordering::SeqCst)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops intake and wakes everyone; what is queued stays for the consumers to drain.
    pub(crate) fn close(&self) {
        // A SeqCst RMW, so the notifications below need no fence (see `wait`).
        self.closed.swap(true, Ordering::SeqCst);
        self.not_empty.notify();
        self.not_full.notify();
    }

    /// Pushes by the queue's overflow policy. `Block` waits for room (or for the close) with
    /// [`Wait::Block`] when waiting is safe on this thread.
    #[inline]
    pub(crate) fn push(&self, value: T, wait: Wait) -> Pushed<T> {
        self.pushers.fetch_add(1, Ordering::SeqCst);
        let pushed = if self.closed.load(Ordering::SeqCst) {
            Pushed::Closed(value)
        } else {
            match self.items.push(value) {
                Ok(()) => Pushed::Queued,
                Err(value) => self.push_full(value, wait),
            }
        };
        // Leaving the gate is the SeqCst RMW the notification below pairs with: a consumer
        // waiting for the gate to empty after a close is woken by it too.
        self.pushers.fetch_sub(1, Ordering::SeqCst);
        self.not_empty.notify();
        pushed
    }

    /// Closed, and no push is between its check and its landing: whatever was accepted is
    /// in the queue now.
    #[inline]
    fn closed_and_quiet(&self) -> bool {
        self.closed.load(Ordering::SeqCst) && self.pushers.load(Ordering::SeqCst) == 0
    }

    #[cold]
    fn push_full(&self, value: T, wait: Wait) -> Pushed<T> {
        match self.overflow {
            Overflow::Reject => Pushed::Full(value),
            Overflow::DropOldest => {
                let displaced = self.items.force_push(value);
                match displaced {
                    Some(old) => {
                        drop(old);
                        self.lost.fetch_add(1, Ordering::Relaxed);
                        Pushed::Displaced
                    }
                    None => Pushed::Queued,
                }
            }
            Overflow::Block => match wait {
                Wait::Never => Pushed::WouldBlock(value),
                Wait::Block => self.push_blocking(value),
            },
        }
    }

    /// Waits for room where this thread may ([`BlockOn`]).
    fn push_blocking(&self, value: T) -> Pushed<T> {
        BlockOn::push(
            self.drainer,
            value,
            |v| self.wait_push(v),
            Pushed::WouldBlock,
        )
    }

    fn wait_push(&self, value: T) -> Pushed<T> {
        let mut slot = Some(value);
        let done = self.not_full.wait_until(None, || {
            if self.is_closed() {
                return Some(false);
            }
            let v = slot.take()?;
            match self.items.push(v) {
                Ok(()) => Some(true),
                Err(v) => {
                    slot = Some(v);
                    None
                }
            }
        });
        match (done, slot) {
            (Some(true), _) => Pushed::Queued,
            (_, Some(v)) => Pushed::Closed(v),
            // wait_until without a deadline only returns Some, and a `false` answer always
            // leaves the value in the slot.
            (_, None) => Pushed::Queued,
        }
    }

    /// Takes up to `max` items without waiting, handing each to `f` in order; returns how
    /// many it took.
    #[inline]
    pub(crate) fn pop_each(&self, max: usize, mut f: impl FnMut(T)) -> usize {
        let mut n = 0;
        while n < max {
            match self.items.pop() {
                Some(v) => {
                    f(v);
                    n += 1;
                }
                None => break,
            }
        }
        if n > 0 {
            self.not_full.notify();
        }
        n
    }

    /// Takes one item without waiting.
    #[inline]
    pub(crate) fn try_pop(&self) -> Option<T> {
        let v = self.items.pop()?;
        self.not_full.notify();
        Some(v)
    }

    /// Waits for an item and takes it; `None` once the queue is closed, no push is in
    /// progress, and it is empty.
    #[inline]
    pub(crate) fn pop_wait(&self) -> Option<T> {
        if let Some(v) = self.try_pop() {
            return Some(v);
        }
        let _idle = Idle::enter(&self.idle);
        self.not_empty
            .wait_until(None, || self.pop_or_end())
            .flatten()
    }

    /// An item, the end (`Some(None)`), or nothing yet (`None`).
    #[inline]
    fn pop_or_end(&self) -> Option<Option<T>> {
        match self.try_pop() {
            Some(v) => Some(Some(v)),
            // A push that left the gate before we looked is in the queue: pop once more.
            None if self.closed_and_quiet() => Some(self.try_pop()),
            None => None,
        }
    }

    /// Async form of [`Queue::pop_wait`]. Cancel safe.
    pub(crate) async fn pop_wait_async(&self) -> Option<T> {
        if let Some(v) = self.try_pop() {
            return Some(v);
        }
        // Left when the wait ends or the future is dropped.
        let _idle = Idle::enter(&self.idle);
        self.not_empty.wait_async(|| self.pop_or_end()).await
    }

    /// Blocks until the queue has an item, is closed, or `deadline` passes.
    pub(crate) fn wait_readable(&self, deadline: Instant) {
        self.not_empty.wait_until(Some(deadline), || {
            (!self.items.is_empty() || self.is_closed()).then_some(())
        });
    }

    /// Waits until the queue has an item or is closed, without taking anything.
    pub(crate) async fn readable_async(&self) {
        self.not_empty
            .wait_async(|| (!self.items.is_empty() || self.is_closed()).then_some(()))
            .await
    }

    /// Wakes waiting consumers without pushing: something else became ready.
    pub(crate) fn nudge(&self) {
        self.not_empty.notify_fenced();
    }

    /// Events lost to `DropOldest` since the last call.
    #[inline]
    pub(crate) fn take_lost(&self) -> u64 {
        if self.lost.load(Ordering::Relaxed) == 0 {
            0
        } else {
            self.lost.swap(0, Ordering::Relaxed)
        }
    }

    /// Drains what is left (after a deadline passed), returning the count. On a closed
    /// queue it first waits for pushes in progress, so nothing lands after it counted.
    pub(crate) fn discard(&self) -> usize {
        if self.is_closed() {
            // Each of them sees the close and refuses, or lands at once; a `Block` pusher
            // waiting for room was woken by the close.
            while !self.closed_and_quiet() {
                std::thread::yield_now();
            }
        }
        let mut n = 0;
        while self.items.pop().is_some() {
            n += 1;
        }
        n
    }
}

/// Counts a consumer as idle while it waits for an item (only on the slow path: a consumer
/// that finds an item at once never touches the counter).
pub(crate) struct Idle<'a>(&'a AtomicUsize);

impl<'a> Idle<'a> {
    pub(crate) fn enter(count: &'a AtomicUsize) -> Idle<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Idle(count)
    }
}

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<T: Send> Room for Queue<T> {
    fn signal(&self) -> &Signal {
        &self.not_full
    }

    fn has_room(&self) -> bool {
        !self.items.is_full() || self.is_closed()
    }
}
