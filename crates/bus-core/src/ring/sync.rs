//! The ring's synchronisation primitives: loom's model-checked types in a test build under
//! `cfg(loom)` (loom is a dev-dependency), std's otherwise, with one API for both (the
//! `with` / `with_mut` style of loom's `UnsafeCell`).
//!
//! Waiting goes through [`Signal`]: under std it is the crate's spin → yield → park event
//! count; loom does not see parking_lot or tokio, so under `cfg(loom)` it is a loop that
//! yields to loom's scheduler until the condition holds, and notifying is a no-op.

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, Ordering};
#[cfg(all(loom, test))]
pub(crate) use loom::sync::Arc;

#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, Ordering};
#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::Arc;

#[cfg(not(all(loom, test)))]
pub(crate) use crate::wait::Signal;

#[cfg(all(loom, test))]
std::thread_local! {
    /// Whether [`AtomicU64::load`] runs as a read-modify-write (see there).
    static LOADS_AS_RMW: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes every [`AtomicU64::load`] on this thread (loom runs a model's threads on the
/// thread that called it) a `fetch_add(0)` until the guard drops.
#[cfg(all(loom, test))]
pub(crate) fn loads_as_rmw() -> impl Drop {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            LOADS_AS_RMW.with(|f| f.set(false));
        }
    }
    LOADS_AS_RMW.with(|f| f.set(true));
    Reset
}

/// Loom's `AtomicU64`, with a second way to load.
///
/// Loom's partial-order reduction remembers only the last access to each atomic, so a
/// load followed by a CAS in one thread hides an earlier load by another from it, and
/// interleavings go unexplored (loom issues 166 and 392). The models therefore run twice:
/// once with plain loads (loom explores stale reads), once with every load made a
/// `fetch_add(0)`, which loom counts as a write, so every interleaving of dependent
/// accesses is explored (an RMW reads the latest value, so that run sees no stale reads).
#[cfg(all(loom, test))]
#[derive(Debug)]
pub(crate) struct AtomicU64(loom::sync::atomic::AtomicU64);

#[cfg(all(loom, test))]
impl AtomicU64 {
    pub(crate) fn new(v: u64) -> Self {
        Self(loom::sync::atomic::AtomicU64::new(v))
    }

    pub(crate) fn load(&self, order: Ordering) -> u64 {
        if LOADS_AS_RMW.with(|f| f.get()) {
            self.0.fetch_add(0, order)
        } else {
            self.0.load(order)
        }
    }

    pub(crate) fn store(&self, v: u64, order: Ordering) {
        self.0.store(v, order)
    }

    pub(crate) fn swap(&self, v: u64, order: Ordering) -> u64 {
        self.0.swap(v, order)
    }

    pub(crate) fn fetch_or(&self, v: u64, order: Ordering) -> u64 {
        self.0.fetch_or(v, order)
    }

    pub(crate) fn fetch_max(&self, v: u64, order: Ordering) -> u64 {
        self.0.fetch_max(v, order)
    }

    pub(crate) fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        self.0.compare_exchange(current, new, success, failure)
    }
}

/// An `UnsafeCell` whose accesses go through closures, so loom can track them.
#[cfg(all(loom, test))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(loom::cell::UnsafeCell<T>);

#[cfg(all(loom, test))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(loom::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared pointer to the contents.
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        self.0.with(f)
    }

    /// Runs `f` with a unique pointer to the contents.
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        self.0.with_mut(f)
    }
}

/// An `UnsafeCell` whose accesses go through closures, so loom can track them.
#[cfg(not(all(loom, test)))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(all(loom, test)))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a unique pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// One round of a short busy wait (another thread is between two steps of its own).
#[inline]
pub(crate) fn backoff(round: &mut u32) {
    #[cfg(all(loom, test))]
    {
        let _ = round;
        loom::thread::yield_now();
    }
    #[cfg(not(all(loom, test)))]
    {
        if *round < 6 {
            for _ in 0..(1u32 << *round) {
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
        *round = round.saturating_add(1);
    }
}

/// The waiting strategy under loom: yield to the model's scheduler until ready.
#[cfg(all(loom, test))]
#[derive(Debug, Default)]
pub(crate) struct Signal;

#[cfg(all(loom, test))]
impl Signal {
    pub(crate) fn new() -> Self {
        Signal
    }

    pub(crate) fn notify(&self) {}

    pub(crate) fn wait_until_with<R>(
        &self,
        deadline: Option<std::time::Instant>,
        _likely: impl FnMut() -> bool,
        ready: impl FnMut() -> Option<R>,
    ) -> Option<R> {
        self.wait_until(deadline, ready)
    }

    pub(crate) fn wait_until<R>(
        &self,
        deadline: Option<std::time::Instant>,
        mut ready: impl FnMut() -> Option<R>,
    ) -> Option<R> {
        // Loom has no clock: a deadline is one last look, as after a timeout.
        if deadline.is_some() {
            return ready();
        }
        loop {
            if let Some(r) = ready() {
                return Some(r);
            }
            loom::thread::yield_now();
        }
    }
}
