//! Counters: cheap to bump on hot paths, read on demand, exported through `metrics`.
//!
//! Each counter is split into stripes, one cache line each. A thread claims a stripe of its
//! own the first time it counts and gives it back when it exits; while it owns the stripe it
//! is the only writer, so a bump is a plain load and store, no locked instruction and no
//! cache line shared with other writers. Threads beyond the stripe count share the last
//! stripe with atomic adds. Readers sum the stripes.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Stripes per counter: the last one is shared by threads that found no free stripe. Few
/// and one cache line each, so a subscription's counters take 512 bytes: a bus with ten
/// thousand subscriptions keeps its counters in cache.
const STRIPES: usize = 8;
const _: () = assert!(STRIPES.is_power_of_two());
const SHARED: usize = STRIPES - 1;

static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static FREE_INIT: std::sync::Once = std::sync::Once::new();

struct Claim {
    index: Cell<usize>,
}

impl Claim {
    #[cold]
    fn claim(&self) -> usize {
        FREE_INIT.call_once(|| FREE.lock().extend((0..SHARED).rev()));
        let index = FREE.lock().pop().unwrap_or(SHARED);
        self.index.set(index);
        index
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let index = self.index.get();
        if index < SHARED {
            FREE.lock().push(index);
        }
    }
}

thread_local! {
    static CLAIM: Claim = const { Claim { index: Cell::new(usize::MAX) } };
}

/// A thread's stripe, looked up once for the several counters one publish bumps. Not
/// `Send`: only the thread that looked it up may write through it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stripe(usize, PhantomData<*const ()>);

impl Stripe {
    /// This thread's stripe.
    #[inline]
    pub(crate) fn current() -> Stripe {
        Stripe(stripe(), PhantomData)
    }
}

/// This thread's stripe. During thread exit (the claim already dropped) the shared one.
#[inline]
fn stripe() -> usize {
    CLAIM
        .try_with(|c| match c.index.get() {
            usize::MAX => c.claim(),
            i => i,
        })
        .unwrap_or(SHARED)
}

/// One stripe: `N <= 8` counters on one cache line.
#[derive(Debug)]
#[repr(align(64))]
struct Line<const N: usize>([AtomicU64; N]);

/// `N` counters striped together: a thread's bumps of any of them touch one cache line.
/// The stripes are inline, so reaching them costs no pointer hop beyond the owner.
#[derive(Debug)]
pub(crate) struct Striped<const N: usize> {
    stripes: [Line<N>; STRIPES],
}

impl<const N: usize> Default for Striped<N> {
    fn default() -> Self {
        Striped {
            stripes: std::array::from_fn(|_| Line(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }
}

impl<const N: usize> Striped<N> {
    #[inline]
    pub(crate) fn add(&self, field: usize, n: u64) {
        self.add_on(Stripe::current(), field, n);
    }

    /// [`add`](Self::add) on a stripe looked up already by this thread.
    #[inline]
    pub(crate) fn add_on(&self, Stripe(s, _): Stripe, field: usize, n: u64) {
        // `stripe()` is below STRIPES, a power of two: the mask only spares the bounds check.
        let cell = &self.stripes[s % STRIPES].0[field];
        if s == SHARED {
            cell.fetch_add(n, Ordering::Relaxed);
        } else {
            // Sole writer of this stripe: see the module docs.
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        }
    }

    pub(crate) fn get(&self, field: usize) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[field].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// One striped counter.
#[derive(Debug, Default)]
pub(crate) struct Counter(Striped<1>);

impl Counter {
    #[inline]
    pub(crate) fn incr(&self) {
        self.0.add(0, 1);
    }

    /// [`incr`](Self::incr) on this thread's stripe, looked up already.
    #[inline]
    pub(crate) fn incr_on(&self, stripe: Stripe) {
        self.0.add_on(stripe, 0, 1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.get(0)
    }
}

/// The counters of one subscription or consumer.
#[derive(Debug)]
#[repr(usize)]
pub(crate) enum Stat {
    Delivered,
    Failed,
    Panicked,
    Dropped,
    Rejected,
    DeadLettered,
    Redelivered,
    Terminated,
}

/// Counters per subscription: at most 8, so one thread's stripe is one cache line.
const STATS: usize = 8;

/// Counters of one subscription or consumer.
#[derive(Debug, Default)]
pub(crate) struct SubStats(Striped<STATS>);

impl SubStats {
    #[inline]
    pub(crate) fn incr(&self, stat: Stat) {
        self.0.add(stat as usize, 1);
    }

    /// [`incr`](Self::incr) on this thread's stripe, looked up already.
    #[inline]
    pub(crate) fn incr_on(&self, stripe: Stripe, stat: Stat) {
        self.0.add_on(stripe, stat as usize, 1);
    }

    pub(crate) fn snapshot(&self, pending: usize) -> SubscriptionMetrics {
        SubscriptionMetrics {
            delivered: self.0.get(Stat::Delivered as usize),
            failed: self.0.get(Stat::Failed as usize),
            panicked: self.0.get(Stat::Panicked as usize),
            dropped: self.0.get(Stat::Dropped as usize),
            rejected: self.0.get(Stat::Rejected as usize),
            dead_lettered: self.0.get(Stat::DeadLettered as usize),
            redelivered: self.0.get(Stat::Redelivered as usize),
            terminated: self.0.get(Stat::Terminated as usize),
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
/// let sub = bus.subscribe::<Ping>("ping").unwrap().inline(|_| {}).unwrap();
/// bus.blocking_publish(Ping).unwrap();
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
    /// Redeliveries after a nak or an ack timeout (pull consumers).
    pub redelivered: u64,
    /// Deliveries settled with `term` (pull consumers): never delivered again, and not dead
    /// letters (the caller recorded them).
    pub terminated: u64,
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
/// let _sub = bus.subscribe::<Ping>("ping").unwrap().inline(|_| {}).unwrap();
/// bus.blocking_publish(Ping).unwrap();
/// let m = bus.metrics();
/// assert_eq!((m.published, m.delivered), (1, 1));
/// m.record(); // through the `metrics` facade, to whatever recorder is installed
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
    /// Pull deliveries settled with `term`.
    pub terminated: u64,
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
        self.terminated += s.terminated;
        self.lagging += u64::from(s.dropped > 0);
        self.pending += s.pending as u64;
    }

    /// Sets the `syncbus_*` counters and gauges of the installed `metrics` recorder to these
    /// values. Call it from a reporter task, or before a scrape.
    ///
    /// # Examples
    ///
    /// ```
    /// let bus = syncbus_core::Bus::new();
    /// bus.metrics().record(); // a no-op until a recorder is installed
    /// ```
    pub fn record(&self) {
        metrics::counter!("syncbus_published_total").absolute(self.published);
        metrics::counter!("syncbus_unrouted_total").absolute(self.unrouted);
        metrics::counter!("syncbus_delivered_total").absolute(self.delivered);
        metrics::counter!("syncbus_failed_total").absolute(self.failed);
        metrics::counter!("syncbus_panicked_total").absolute(self.panicked);
        metrics::counter!("syncbus_dropped_total").absolute(self.dropped);
        metrics::counter!("syncbus_rejected_total").absolute(self.rejected);
        metrics::counter!("syncbus_dead_lettered_total").absolute(self.dead_lettered);
        metrics::counter!("syncbus_terminated_total").absolute(self.terminated);
        metrics::gauge!("syncbus_lagging_subscriptions").set(self.lagging as f64);
        metrics::gauge!("syncbus_pending").set(self.pending as f64);
        metrics::gauge!("syncbus_subscriptions").set(self.subscriptions as f64);
    }
}

impl std::fmt::Display for SubscriptionMetrics {
    /// One line: `delivered 5, failed 1 (panicked 0), dropped 0, rejected 0, ...`.
    ///
    /// ```
    /// let m = syncbus_core::SubscriptionMetrics::default();
    /// assert!(m.to_string().starts_with("delivered 0, failed 0"));
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "delivered {}, failed {} (panicked {}), dropped {}, rejected {}, dead-lettered {}, redelivered {}, terminated {}, pending {}",
            self.delivered,
            self.failed,
            self.panicked,
            self.dropped,
            self.rejected,
            self.dead_lettered,
            self.redelivered,
            self.terminated,
            self.pending
        )
    }
}

impl std::fmt::Display for BusMetrics {
    /// One line: `published 3 (unrouted 0), delivered 6, failed 0, ...`. A publish reaches
    /// every subscription it matches, so `delivered` may exceed `published`.
    ///
    /// ```
    /// let m = syncbus_core::BusMetrics::default();
    /// assert!(m.to_string().starts_with("published 0 (unrouted 0), delivered 0"));
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "published {} (unrouted {}), delivered {}, failed {} (panicked {}), dropped {}, rejected {}, dead-lettered {}, terminated {}, lagging {}, pending {}, subscriptions {}",
            self.published,
            self.unrouted,
            self.delivered,
            self.failed,
            self.panicked,
            self.dropped,
            self.rejected,
            self.dead_lettered,
            self.terminated,
            self.lagging,
            self.pending,
            self.subscriptions
        )
    }
}
