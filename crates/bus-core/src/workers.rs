//! Counting running workers, bus-wide or per subscription, so shutdown and
//! `unsubscribe_and_wait` can wait for them to finish.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::wait::Signal;

/// Counts running workers, bus-wide or per subscription, and wakes whoever waits for zero.
#[derive(Debug, Default)]
pub(crate) struct Workers {
    running: AtomicUsize,
    signal: Signal,
}

impl Workers {
    pub(crate) fn start(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn finish(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.signal.notify();
    }

    /// Workers running now.
    pub(crate) fn live(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.running.load(Ordering::SeqCst) == 0
    }

    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        self.signal
            .wait_until(deadline, || {
                (self.running.load(Ordering::SeqCst) == 0).then_some(())
            })
            .is_some()
    }

    pub(crate) async fn wait_async(&self) {
        self.signal
            .wait_async(|| (self.running.load(Ordering::SeqCst) == 0).then_some(()))
            .await
    }
}
