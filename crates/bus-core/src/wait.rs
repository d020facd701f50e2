//! Waiting without burning a core: spin, then yield, then park.
//!
//! A `Signal` is an event count in the style of Dekker: the waker makes its state change with
//! a `SeqCst` read-modify-write (the queue's CAS on its tail or head, a `swap`, a `fetch_sub`)
//! and then loads the sleeper count with `SeqCst`; a sleeper increments the count, issues a
//! `SeqCst` fence and re-checks the condition before it parks. By the fence rule of the C++
//! memory model one side always sees the other, so no wake-up is lost, and the hot path of
//! the waker is one plain load when nobody sleeps. A waker whose state change is not such an
//! RMW calls [`Signal::notify_fenced`].

use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;

/// Spin rounds before yielding, each twice as long as the one before (1 to 64 pauses). Few
/// checks on purpose: every check reads the lines the other side is writing, and polling them
/// hard slows that side down more than it speeds this one up.
const SPINS: u32 = 7;
/// `yield_now` calls before parking.
const YIELDS: u32 = 16;

#[derive(Debug, Default)]
pub(crate) struct Signal {
    sleepers: AtomicUsize,
    /// A wake-up is on its way to the current sleepers: later notifications skip the lock
    /// until a sleeper re-registers (which clears it). Without it every state change while a
    /// sleeper is still waking (tens of microseconds) would take the lock again.
    notified: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
    notify: Notify,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Wakes every waiter. Call after the state change the waiters look for, made with a
    /// `SeqCst` read-modify-write.
    #[inline]
    pub(crate) fn notify(&self) {
        if self.sleepers.load(Ordering::SeqCst) != 0
            && !self.notified.load(Ordering::SeqCst)
            && !self.notified.swap(true, Ordering::SeqCst)
        {
            self.notify_slow();
        }
    }

    /// Wakes every waiter after a state change made some other way (plain stores, a mutex).
    pub(crate) fn notify_fenced(&self) {
        fence(Ordering::SeqCst);
        self.notify();
    }

    #[cold]
    fn notify_slow(&self) {
        drop(self.lock.lock());
        self.cv.notify_all();
        self.notify.notify_waiters();
    }

    /// Blocks the thread until `ready` returns `Some`, or `deadline` passes (then `ready` is
    /// asked one last time).
    pub(crate) fn wait_until<R>(
        &self,
        deadline: Option<Instant>,
        ready: impl FnMut() -> Option<R>,
    ) -> Option<R> {
        self.wait_until_with(deadline, || true, ready)
    }

    /// [`wait_until`](Self::wait_until), asking `ready` while spinning and yielding only when
    /// the cheaper `likely` says so (it may read lines nobody else writes often, where `ready`
    /// reads one the waker writes on every change). Before parking `ready` decides alone.
    pub(crate) fn wait_until_with<R>(
        &self,
        deadline: Option<Instant>,
        mut likely: impl FnMut() -> bool,
        mut ready: impl FnMut() -> Option<R>,
    ) -> Option<R> {
        let mut check = || if likely() { ready() } else { None };
        for i in 0..SPINS {
            if let Some(r) = check() {
                return Some(r);
            }
            for _ in 0..(1u32 << i) {
                std::hint::spin_loop();
            }
        }
        for _ in 0..YIELDS {
            if let Some(r) = check() {
                return Some(r);
            }
            std::thread::yield_now();
        }
        loop {
            let mut guard = self.lock.lock();
            self.notified.store(false, Ordering::SeqCst);
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if let Some(r) = ready() {
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return Some(r);
            }
            let timed_out = match deadline {
                Some(d) => self.cv.wait_until(&mut guard, d).timed_out(),
                None => {
                    self.cv.wait(&mut guard);
                    false
                }
            };
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
            if timed_out {
                return ready();
            }
        }
    }

    /// Waits in a task until `ready` returns `Some`. Cancel safe: dropping the future only
    /// stops waiting.
    pub(crate) async fn wait_async<R>(&self, mut ready: impl FnMut() -> Option<R>) -> R {
        loop {
            if let Some(r) = ready() {
                return r;
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.notified.store(false, Ordering::SeqCst);
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if let Some(r) = ready() {
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return r;
            }
            let _guard = SleeperGuard(&self.sleepers);
            notified.await;
        }
    }
}

struct SleeperGuard<'a>(&'a AtomicUsize);

impl Drop for SleeperGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
