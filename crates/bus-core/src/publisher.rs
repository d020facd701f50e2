//! A publisher bound to one topic: it caches the route until subscriptions change.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use syncbus_envelope::{Event, Topic};

use crate::dispatch::{finish_publish, outcome, publish_event, start_publish, Started};
use crate::error::PublishError;
use crate::hub::Hub;
use crate::router::Route;
use crate::sink::Wait;

/// A publisher bound to one topic and one event type; see [`Bus::publisher`](crate::Bus::publisher).
///
/// Clone it per thread or share it: it is `Send + Sync`.
///
/// # Examples
///
/// ```
/// # use syncbus_core::{Bus, Event};
/// # #[derive(Clone, Debug)] struct Tick(u64);
/// # impl Event for Tick { const TYPE: &'static str = "clock.tick"; }
/// let bus = Bus::new();
/// let _s = bus.subscribe::<Tick>("clock.>")?.queued(|_| {})?;
/// let ticks = bus.publisher::<Tick>("clock.tick")?;
/// let per_thread = ticks.clone();
/// std::thread::spawn(move || per_thread.blocking_publish(Tick(1))).join().unwrap()?;
/// assert_eq!(ticks.topic().as_str(), "clock.tick");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Publisher<E> {
    hub: Arc<Hub>,
    topic: Topic,
    /// Names this publisher's route in the per-thread cache; clones share it (same bus, same
    /// topic, so the same route).
    key: u64,
    cache: ArcSwap<(u64, Arc<Route>)>,
    _event: std::marker::PhantomData<fn(E)>,
}

impl<E> Clone for Publisher<E> {
    fn clone(&self) -> Self {
        Publisher {
            hub: self.hub.clone(),
            topic: self.topic.clone(),
            key: self.key,
            cache: ArcSwap::new(self.cache.load_full()),
            _event: std::marker::PhantomData,
        }
    }
}

/// Per-thread copies of bound publishers' routes, direct-mapped by publisher key: a publish
/// whose route is current reads it here, with no atomic read-modify-write, instead of
/// loading the publisher's shared cache. A publish takes its entry out while it dispatches
/// and puts it back after, so a publish nested in an inline handler finds the slot empty
/// and takes the shared path. An entry outlives its publisher until the slot is reused or
/// the thread exits; it is stale by then (the generation moved on) and never read.
const BOUND_SLOTS: usize = 8;

struct Bound {
    key: u64,
    generation: u64,
    route: Arc<Route>,
}

thread_local! {
    static BOUND: [Cell<Option<Bound>>; BOUND_SLOTS] =
        const { [const { Cell::new(None) }; BOUND_SLOTS] };
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

impl<E> std::fmt::Debug for Publisher<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<E: Event> Publisher<E> {
    pub(crate) fn new(hub: Arc<Hub>, topic: Topic) -> Publisher<E> {
        let (generation, route) = hub.router.route_of(&topic);
        Publisher {
            hub,
            topic,
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            cache: ArcSwap::from_pointee((generation, route)),
            _event: std::marker::PhantomData,
        }
    }

    /// The topic this publisher sends to.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// Publishes `event`, awaiting room in full `Block` queues; see [`Bus::publish`](crate::Bus::publish).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Tick(u64);
    /// # impl Event for Tick { const TYPE: &'static str = "clock.tick"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Tick>("clock.>")?.queued_async(|_| async {})?;
    /// let ticks = bus.publisher::<Tick>("clock.tick")?;
    /// assert_eq!(ticks.publish(Tick(1)).await?, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Bus::publish`](crate::Bus::publish), with the event handed back.
    ///
    /// # Cancel safety
    ///
    /// As [`Bus::publish`](crate::Bus::publish).
    pub async fn publish(&self, event: E) -> Result<usize, PublishError<E>> {
        if self.hub.is_closed() {
            return Err(PublishError::Closed(event));
        }
        let mut slot = None;
        // Up to the first full queue on the cached route, borrowed.
        let started =
            self.with_route(|_, route| start_publish(&self.hub, Some(route), event, &mut slot));
        let result = match started {
            Started::Done(result) => result,
            Started::Paused(paused) => finish_publish(&self.hub, &mut slot, paused).await,
        };
        outcome(result, &mut slot)
    }

    /// Publishes `event` without waiting; see [`Bus::try_publish`](crate::Bus::try_publish).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Tick(u64);
    /// # impl Event for Tick { const TYPE: &'static str = "clock.tick"; }
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Tick>("clock.>")?.inline(|_| {})?;
    /// let ticks = bus.publisher::<Tick>("clock.tick")?;
    /// assert_eq!(ticks.try_publish(Tick(1))?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Bus::try_publish`](crate::Bus::try_publish), with the event handed back.
    #[inline]
    pub fn try_publish(&self, event: E) -> Result<usize, PublishError<E>> {
        self.publish_with(event, Wait::Never)
    }

    /// Publishes `event`, blocking the thread while a full `Block` queue has no room; see
    /// [`Bus::blocking_publish`](crate::Bus::blocking_publish).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, Event};
    /// # #[derive(Clone, Debug)] struct Tick(u64);
    /// # impl Event for Tick { const TYPE: &'static str = "clock.tick"; }
    /// let bus = Bus::new();
    /// let _s = bus.subscribe::<Tick>("clock.>")?.queued(|_| {})?;
    /// let ticks = bus.publisher::<Tick>("clock.tick")?;
    /// assert_eq!(ticks.blocking_publish(Tick(1))?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Bus::blocking_publish`](crate::Bus::blocking_publish), with the event handed back.
    #[inline]
    pub fn blocking_publish(&self, event: E) -> Result<usize, PublishError<E>> {
        self.publish_with(event, Wait::Block)
    }

    /// Runs `f` on the cached route and its generation, refreshed first if subscriptions
    /// changed since, without taking a reference count of it.
    fn with_route<R>(&self, f: impl FnOnce(u64, &Arc<Route>) -> R) -> R {
        let generation = self.hub.router.generation();
        let cached = self.cache.load();
        if cached.0 == generation {
            return f(cached.0, &cached.1);
        }
        drop(cached);
        let (generation, route) = self.hub.router.route_of(&self.topic);
        self.cache.store(Arc::new((generation, route.clone())));
        f(generation, &route)
    }

    /// The cached route and its generation, refreshed if subscriptions changed since.
    fn route(&self) -> (u64, Arc<Route>) {
        self.with_route(|generation, route| (generation, Arc::clone(route)))
    }

    #[inline]
    fn publish_with(&self, event: E, wait: Wait) -> Result<usize, PublishError<E>> {
        let hub = &*self.hub;
        if hub.is_closed() {
            return Err(PublishError::Closed(event));
        }
        let generation = hub.router.generation();
        let index = (self.key % BOUND_SLOTS as u64) as usize;
        let bound = match BOUND.try_with(|slots| slots[index].take()) {
            Ok(Some(b)) if b.key == self.key && b.generation == generation => Some(b),
            Ok(_) => {
                let (generation, route) = self.route();
                Some(Bound {
                    key: self.key,
                    generation,
                    route,
                })
            }
            // The thread is exiting: its cache is gone.
            Err(_) => None,
        };
        let mut slot = None;
        let result = match &bound {
            Some(b) => publish_event(hub, Some(&b.route), event, &mut slot, wait, None),
            None => publish_event(hub, Some(&self.route().1), event, &mut slot, wait, None),
        };
        if let Some(b) = bound {
            // What a nested publish left there is dropped here, outside the thread-local.
            let _replaced = BOUND.try_with(|slots| slots[index].replace(Some(b)));
        }
        outcome(result, &mut slot)
    }
}
