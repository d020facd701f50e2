//! Counters: cheap to bump on hot paths, read on demand, exported through `metrics`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

const STRIPES: usize = 8;

/// A counter split over cache lines so threads bumping it do not fight over one line.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    stripes: [CachePadded<AtomicU64>; STRIPES],
}

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(v);
        v
    })
}

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.stripes[stripe()].fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.stripes.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }
}

/// Counters of one subscription or consumer.
#[derive(Debug, Default)]
pub(crate) struct SubStats {
    pub(crate) delivered: Counter,
    pub(crate) failed: Counter,
    pub(crate) panicked: Counter,
    pub(crate) dropped: Counter,
    pub(crate) rejected: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) redelivered: Counter,
}

impl SubStats {
    pub(crate) fn snapshot(&self, pending: usize) -> SubscriptionMetrics {
        SubscriptionMetrics {
            delivered: self.delivered.get(),
            failed: self.failed.get(),
            panicked: self.panicked.get(),
            dropped: self.dropped.get(),
            rejected: self.rejected.get(),
            dead_lettered: self.dead_lettered.get(),
            redelivered: self.redelivered.get(),
            pending,
        }
    }
}

/// A point-in-time reading of one subscription's counters.
///
/// # Examples
///
/// ```
/// use syncbus_core::Bus;
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// let bus = Bus::new();
/// let sub = bus.subscribe::<Ping>("ping").unwrap().inline(|_| {});
/// bus.publish(Ping).unwrap();
/// assert_eq!(sub.metrics().delivered, 1);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionMetrics {
    /// Events the handler finished successfully (push) or that were acked (pull).
    pub delivered: u64,
    /// Handler runs that returned an error.
    pub failed: u64,
    /// Handler runs that panicked (also counted in `failed`).
    pub panicked: u64,
    /// Events dropped by the `DropOldest` policy: this subscription lagged.
    pub dropped: u64,
    /// Publishes refused by the `Reject` policy.
    pub rejected: u64,
    /// Events handed to the dead-letter hook (pull consumers).
    pub dead_lettered: u64,
    /// Redeliveries after a nack or an ack timeout (pull consumers).
    pub redelivered: u64,
    /// Events waiting in the queue right now.
    pub pending: usize,
}

/// A point-in-time reading of the bus counters, summed over its subscriptions.
///
/// # Examples
///
/// ```
/// use syncbus_core::Bus;
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// let bus = Bus::new();
/// let _sub = bus.subscribe::<Ping>("ping").unwrap().inline(|_| {});
/// bus.publish(Ping).unwrap();
/// let m = bus.metrics();
/// assert_eq!((m.published, m.delivered), (1, 1));
/// m.emit(); // through the `metrics` facade, to whatever recorder is installed
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusMetrics {
    /// Successful publishes (an event with no subscriber counts too).
    pub published: u64,
    /// Publishes that matched no subscription.
    pub unrouted: u64,
    /// Successful handler runs and acks.
    pub delivered: u64,
    /// Handler failures, panics included.
    pub failed: u64,
    /// Handler panics.
    pub panicked: u64,
    /// Events dropped by `DropOldest` subscriptions.
    pub dropped: u64,
    /// Publishes refused by `Reject` subscriptions.
    pub rejected: u64,
    /// Events handed to dead-letter hooks.
    pub dead_lettered: u64,
    /// Subscriptions that lost events to `DropOldest` (lagging) since they started.
    pub lagging: u64,
    /// Events queued and not yet handled, over all subscriptions.
    pub pending: u64,
    /// Live subscriptions and consumers.
    pub subscriptions: u64,
}

impl BusMetrics {
    pub(crate) fn add_sub(&mut self, s: &SubscriptionMetrics) {
        self.delivered += s.delivered;
        self.failed += s.failed;
        self.panicked += s.panicked;
        self.dropped += s.dropped;
        self.rejected += s.rejected;
        self.dead_lettered += s.dead_lettered;
        self.lagging += u64::from(s.dropped > 0);
        self.pending += s.pending as u64;
        self.subscriptions += 1;
    }

    /// Sets the `syncbus_*` counters and gauges of the installed `metrics` recorder to these
    /// values. Call it from a reporter task, or before a scrape.
    pub fn emit(&self) {
        metrics::counter!("syncbus_published_total").absolute(self.published);
        metrics::counter!("syncbus_unrouted_total").absolute(self.unrouted);
        metrics::counter!("syncbus_delivered_total").absolute(self.delivered);
        metrics::counter!("syncbus_failed_total").absolute(self.failed);
        metrics::counter!("syncbus_panicked_total").absolute(self.panicked);
        metrics::counter!("syncbus_dropped_total").absolute(self.dropped);
        metrics::counter!("syncbus_rejected_total").absolute(self.rejected);
        metrics::counter!("syncbus_dead_lettered_total").absolute(self.dead_lettered);
        metrics::gauge!("syncbus_lagging_subscriptions").set(self.lagging as f64);
        metrics::gauge!("syncbus_pending").set(self.pending as f64);
        metrics::gauge!("syncbus_subscriptions").set(self.subscriptions as f64);
    }
}
