//! The ring's synchronisation primitives: loom's model-checked types under `cfg(loom)`,
//! std's otherwise, with one API for both (the `with` / `with_mut` style of loom's
//! `UnsafeCell`).
//!
//! Waiting goes through [`Signal`]: under std it is the crate's spin → yield → park event
//! count; loom does not see parking_lot or tokio, so under `cfg(loom)` it is a loop that
//! yields to loom's scheduler until the condition holds, and notifying is a no-op.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(not(loom))]
pub(crate) use crate::wait::Signal;

/// An `UnsafeCell` whose accesses go through closures, so loom can track them.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(loom::cell::UnsafeCell<T>);

#[cfg(loom)]
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
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
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
    #[cfg(loom)]
    {
        let _ = round;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
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
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct Signal;

#[cfg(loom)]
impl Signal {
    pub(crate) fn new() -> Self {
        Signal
    }

    pub(crate) fn notify(&self) {}

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
