//! The hub every handle of one bus shares: the router, whether the bus is closed, the
//! publish counters, the subscriptions removed while their workers drain, and the count of
//! running workers.
//!
//! Push subscriptions and pull consumers register and unregister here; they hold the hub,
//! never the [`Bus`](crate::Bus), so the handle on top depends on them and not the reverse.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

#[cfg(not(all(loom, test)))]
use crate::fanout::FanRings;
use crate::metrics::{BusMetrics, Counter, Stripe};
use crate::router::{Router, SubEntry};
use crate::settled::Busy;
use crate::sink::InFlight;
use crate::workers::Workers;

#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) router: Router,
    closed: AtomicBool,
    lifecycle: Mutex<Retired>,
    published: Counter,
    unrouted: Counter,
    /// Every worker of every subscription: shutdown waits for it to reach zero.
    pub(crate) completion: Arc<Workers>,
    /// The rings queued subscriptions share ([`fanout`](crate::fanout)).
    #[cfg(not(all(loom, test)))]
    pub(crate) fan_rings: FanRings,
}

/// Subscriptions removed while their workers may still drain, and the totals of those done.
#[derive(Debug, Default)]
struct Retired {
    draining: Vec<Arc<SubEntry>>,
    totals: BusMetrics,
}

impl Retired {
    fn compact(&mut self) {
        let totals = &mut self.totals;
        self.draining.retain(|e| {
            let done = e.workers.as_ref().is_none_or(|w| w.is_idle());
            if done {
                let mut m = e.stats.snapshot(0);
                m.pending = 0;
                totals.add_sub(&m);
            }
            !done
        });
    }
}

impl Hub {
    pub(crate) fn new() -> Hub {
        Hub {
            router: Router::new(),
            closed: AtomicBool::new(false),
            lifecycle: Mutex::new(Retired::default()),
            published: Counter::default(),
            unrouted: Counter::default(),
            completion: Arc::new(Workers::default()),
            #[cfg(not(all(loom, test)))]
            fan_rings: FanRings::default(),
        }
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Adds a subscription unless the bus is closed (then `false`).
    pub(crate) fn add_subscription(&self, entry: Arc<SubEntry>) -> bool {
        let _life = self.lifecycle.lock();
        if self.is_closed() {
            return false;
        }
        self.router.add(entry);
        true
    }

    /// Removes a subscription and closes its sink; its workers drain what it holds.
    pub(crate) fn remove_subscription(&self, id: u64) {
        let mut life = self.lifecycle.lock();
        if let Some(entry) = self.router.remove(id) {
            entry.sink.close();
            life.draining.push(entry);
            life.compact();
        }
    }

    /// Counts a publish that went through.
    #[inline]
    pub(crate) fn count_published(&self) {
        self.published.incr();
    }

    /// [`count_published`](Self::count_published) on this thread's stripe, looked up already.
    #[inline]
    pub(crate) fn count_published_on(&self, stripe: Stripe) {
        self.published.incr_on(stripe);
    }

    /// Counts a publish nobody receives; it reached 0 subscriptions. On a bus that closed
    /// since the publish began (shutdown empties the routes), it is refused instead: a
    /// publish after intake closed is `Closed`, never `Ok(0)`: then `None`.
    #[inline]
    pub(crate) fn count_unrouted(&self) -> Option<usize> {
        if self.is_closed() {
            return None;
        }
        self.published.incr();
        self.unrouted.incr();
        Some(0)
    }

    /// Counts a publish that only taps which observe took: published, and unrouted (no
    /// subscription receives it).
    pub(crate) fn count_observed_only(&self) {
        self.published.incr();
        self.unrouted.incr();
    }

    /// The bus counters now: published and unrouted, plus the sums over subscriptions
    /// (including ones removed since).
    pub(crate) fn metrics(&self) -> BusMetrics {
        let mut m = {
            let mut life = self.lifecycle.lock();
            life.compact();
            let mut m = life.totals;
            for e in &life.draining {
                m.add_sub(&e.stats.snapshot(e.sink.pending()));
            }
            m
        };
        m.published = self.published.get();
        m.unrouted = self.unrouted.get();
        let live = self.router.entries();
        m.subscriptions = live.len() as u64;
        for e in &live {
            m.add_sub(&e.stats.snapshot(e.sink.pending()));
        }
        m
    }

    /// Every subscription, live or draining, with events queued or a handler running now.
    pub(crate) fn busy(&self) -> Vec<Busy> {
        let mut busy = Vec::new();
        let mut look = |e: &SubEntry| {
            let f = e.sink.in_flight();
            if f != InFlight::default() {
                busy.push(Busy {
                    name: e.name.to_string(),
                    queued: f.queued,
                    running: f.running,
                });
            }
        };
        for e in &self.lifecycle.lock().draining {
            look(e);
        }
        for e in &self.router.entries() {
            look(e);
        }
        busy
    }

    /// Closes the bus: no more publishes or subscriptions. Returns every subscription, live
    /// or draining, with its intake closed.
    pub(crate) fn close(&self) -> Vec<Arc<SubEntry>> {
        let mut life = self.lifecycle.lock();
        self.closed.store(true, Ordering::Release);
        let mut entries = self.router.clear();
        entries.append(&mut life.draining);
        for e in &entries {
            e.sink.close();
        }
        entries
    }

    /// Keeps the counters of subscriptions taken out by [`close`](Self::close) in the bus
    /// totals.
    pub(crate) fn retire(&self, entries: Vec<Arc<SubEntry>>) {
        let mut life = self.lifecycle.lock();
        life.draining.extend(entries);
        life.compact();
    }
}
