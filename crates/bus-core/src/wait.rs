//! Waiting without burning a core: spin, then yield, then park.
//!
//! A `Signal` is an event count in the style of Dekker: the waker publishes its state change,
//! issues a `SeqCst` fence and only then looks for sleepers; a sleeper registers itself, fences,
//! and re-checks the condition before it parks. One side always sees the other, so no wake-up
//! is lost, and the hot path of the waker is a fence and a load when nobody sleeps.

use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;

/// Spin iterations before yielding. Short: on two cores a long spin steals the producer's time.
const SPINS: u32 = 64;
/// `yield_now` calls before parking.
const YIELDS: u32 = 16;

#[derive(Debug, Default)]
pub(crate) struct Signal {
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    notify: Notify,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Wakes every waiter. Call after the state change the waiters look for.
    #[inline]
    pub(crate) fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.notify_slow();
        }
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
        mut ready: impl FnMut() -> Option<R>,
    ) -> Option<R> {
        for i in 0..SPINS {
            if let Some(r) = ready() {
                return Some(r);
            }
            for _ in 0..(1u32 << (i / 8).min(5)) {
                std::hint::spin_loop();
            }
        }
        for _ in 0..YIELDS {
            if let Some(r) = ready() {
                return Some(r);
            }
            std::thread::yield_now();
        }
        loop {
            let mut guard = self.lock.lock();
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
