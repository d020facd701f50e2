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
    DedupWaits,
}

const N: usize = Stat::DedupWaits as usize + 1;

#[derive(Debug, Default)]
pub(crate) struct Stats {
    counters: [AtomicU64; N],
    /// Events the resequence layer holds now (a gauge).
    holding: AtomicU64,
    /// Deliveries waiting now for a dedup key another run holds (a gauge).
    waiting: AtomicU64,
}

fn gauge(g: &AtomicU64, up: bool) {
    if up {
        g.fetch_add(1, Relaxed);
    } else {
        let _ = g.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }
}

impl Stats {
    #[inline]
    pub(crate) fn incr(&self, s: Stat) {
        self.counters[s as usize].fetch_add(1, Relaxed);
    }

    /// Moves the held-now gauge up (`start`) or down, never below zero.
    pub(crate) fn holding(&self, start: bool) {
        gauge(&self.holding, start);
    }

    /// Moves the dedup-waiting-now gauge up (`start`) or down, never below zero.
    pub(crate) fn waiting(&self, start: bool) {
        gauge(&self.waiting, start);
    }

    fn get(&self, s: Stat) -> u64 {
        self.counters[s as usize].load(Relaxed)
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
            dedup_waits: self.get(Stat::DedupWaits),
            held_now: self.holding.load(Relaxed),
            dedup_waiting_now: self.waiting.load(Relaxed),
        }
    }
}

/// A snapshot of a workflow subscription's counters.
///
/// Each delivery's outcome is counted once: `succeeded` (the handler ran and succeeded,
/// a held version when it is released and succeeds), `failed`, `duplicates`, `stale`, or
/// still held (`held_now`). `held` and `released` count the passage through the
/// resequencer, not outcomes. `attempts` counts every handler run, with or without a retry
/// policy.
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
    /// Deliveries handled successfully (after any retries), each once; duplicates, stale
    /// and held versions are not among them (a held one counts here when released and
    /// handled).
    pub succeeded: u64,
    /// Deliveries that failed for good (dead-lettered or, without a store, logged).
    pub failed: u64,
    /// Handler attempts, retries included (one per run under `no_retry`).
    pub attempts: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Failures recorded in the dead-letter store.
    pub dead_lettered: u64,
    /// Failures the dead-letter store refused to record (it failed); each is logged.
    pub dead_letter_lost: u64,
    /// Deliveries acknowledged as duplicates by the dedup layer.
    pub duplicates: u64,
    /// Stale or repeated versions dropped by the resequence layer.
    pub stale: u64,
    /// Events held by the resequence layer waiting for a gap to fill.
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
    /// Deliveries that found their dedup key held by another run (a concurrent delivery,
    /// or a consumer that died holding it) and waited for its outcome or its lease.
    pub dedup_waits: u64,
    /// A gauge: events the resequence layer holds now, waiting for a gap to fill.
    pub held_now: u64,
    /// A gauge: deliveries waiting now for a dedup key another run holds.
    pub dedup_waiting_now: u64,
}

impl WorkflowMetrics {
    /// Sets the `syncbus_workflow_*` counters (and the `syncbus_workflow_held_now` and
    /// `syncbus_workflow_dedup_waiting_now` gauges) of
    /// the installed `metrics` recorder, labelled
    /// with the subscription's name. Call it from a reporter task, or before a scrape.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = syncbus_workflow::WorkflowMetrics::default();
    /// m.record("billing"); // no recorder installed: nothing happens
    /// ```
    pub fn record(&self, subscription: &str) {
        let sub = subscription.to_owned();
        let set = |name: &'static str, v: u64| {
            metrics::counter!(name, "subscription" => sub.clone()).absolute(v);
        };
        set("syncbus_workflow_succeeded_total", self.succeeded);
        set("syncbus_workflow_failed_total", self.failed);
        set("syncbus_workflow_attempts_total", self.attempts);
        set("syncbus_workflow_retries_total", self.retries);
        set("syncbus_workflow_dead_lettered_total", self.dead_lettered);
        set(
            "syncbus_workflow_dead_letter_lost_total",
            self.dead_letter_lost,
        );
        set("syncbus_workflow_duplicates_total", self.duplicates);
        set("syncbus_workflow_stale_total", self.stale);
        set("syncbus_workflow_held_total", self.held);
        set("syncbus_workflow_released_total", self.released);
        set("syncbus_workflow_expired_total", self.expired);
        set("syncbus_workflow_timeouts_total", self.timeouts);
        set(
            "syncbus_workflow_circuit_rejected_total",
            self.circuit_rejected,
        );
        set("syncbus_workflow_rate_limited_total", self.rate_limited);
        set("syncbus_workflow_panicked_total", self.panicked);
        set("syncbus_workflow_emitted_total", self.emitted);
        set("syncbus_workflow_dedup_waits_total", self.dedup_waits);
        metrics::gauge!("syncbus_workflow_held_now", "subscription" => sub.clone())
            .set(self.held_now as f64);
        metrics::gauge!("syncbus_workflow_dedup_waiting_now", "subscription" => sub.clone())
            .set(self.dedup_waiting_now as f64);
    }
}

impl std::fmt::Display for WorkflowMetrics {
    /// One line, outcomes first: `succeeded 5, failed 1 (dead-lettered 1), duplicates 2, ...`.
    ///
    /// ```
    /// let m = syncbus_workflow::WorkflowMetrics::default();
    /// assert!(m.to_string().starts_with("succeeded 0, failed 0 (dead-lettered 0"));
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "succeeded {}, failed {} (dead-lettered {}, dead letters lost {}), duplicates {}, stale {}, held now {}; attempts {}, retries {}, timeouts {}, panicked {}, circuit rejected {}, rate limited {}, held {}, released {}, expired {}, emitted {}, dedup waits {} (waiting now {})",
            self.succeeded,
            self.failed,
            self.dead_lettered,
            self.dead_letter_lost,
            self.duplicates,
            self.stale,
            self.held_now,
            self.attempts,
            self.retries,
            self.timeouts,
            self.panicked,
            self.circuit_rejected,
            self.rate_limited,
            self.held,
            self.released,
            self.expired,
            self.emitted,
            self.dedup_waits,
            self.dedup_waiting_now
        )
    }
}
