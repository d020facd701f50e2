//! Counters of one workflow subscription.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What the layers count.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stat {
    Succeeded,
    Failed,
    Attempts,
    Retries,
    DeadLettered,
    DeadLetterLost,
    Duplicates,
    Stale,
    Held,
    Released,
    Expired,
    Timeouts,
    CircuitRejected,
    RateLimited,
    Panicked,
    Emitted,
}

const N: usize = Stat::Emitted as usize + 1;

#[derive(Debug, Default)]
pub(crate) struct Stats([AtomicU64; N]);

impl Stats {
    #[inline]
    pub(crate) fn incr(&self, s: Stat) {
        self.0[s as usize].fetch_add(1, Relaxed);
    }

    fn get(&self, s: Stat) -> u64 {
        self.0[s as usize].load(Relaxed)
    }

    pub(crate) fn snapshot(&self) -> WorkflowMetrics {
        WorkflowMetrics {
            succeeded: self.get(Stat::Succeeded),
            failed: self.get(Stat::Failed),
            attempts: self.get(Stat::Attempts),
            retries: self.get(Stat::Retries),
            dead_lettered: self.get(Stat::DeadLettered),
            dead_letter_lost: self.get(Stat::DeadLetterLost),
            duplicates: self.get(Stat::Duplicates),
            stale: self.get(Stat::Stale),
            held: self.get(Stat::Held),
            released: self.get(Stat::Released),
            expired: self.get(Stat::Expired),
            timeouts: self.get(Stat::Timeouts),
            circuit_rejected: self.get(Stat::CircuitRejected),
            rate_limited: self.get(Stat::RateLimited),
            panicked: self.get(Stat::Panicked),
            emitted: self.get(Stat::Emitted),
        }
    }
}

/// A snapshot of a workflow subscription's counters.
///
/// # Examples
///
/// ```
/// let m = syncbus_workflow::WorkflowMetrics::default();
/// assert_eq!(m.succeeded + m.failed, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkflowMetrics {
    /// Deliveries handled successfully (after any retries).
    pub succeeded: u64,
    /// Deliveries that failed for good (dead-lettered or, without a store, logged).
    pub failed: u64,
    /// Handler attempts, retries included.
    pub attempts: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Failures recorded in the dead-letter store.
    pub dead_lettered: u64,
    /// Failures the dead-letter store refused to record (it failed); each is logged.
    pub dead_letter_lost: u64,
    /// Deliveries acknowledged as duplicates by the dedup layer.
    pub duplicates: u64,
    /// Stale or repeated versions dropped by the ordering layer.
    pub stale: u64,
    /// Events held by the ordering layer waiting for a gap to fill.
    pub held: u64,
    /// Held events released in order after their gap filled.
    pub released: u64,
    /// Held events whose hold expired (then released or dead-lettered by policy).
    pub expired: u64,
    /// Attempts that hit the per-attempt timeout.
    pub timeouts: u64,
    /// Attempts refused because the circuit was open.
    pub circuit_rejected: u64,
    /// Attempts that waited for a rate-limit token.
    pub rate_limited: u64,
    /// Attempts that panicked.
    pub panicked: u64,
    /// Follow-up events published.
    pub emitted: u64,
}
