//! Pull consumers: the subscriber asks for events and acknowledges each one.
//!
//! Semantics a caller relies on:
//!
//! - **At-least-once.** A fetched event stays *in flight* until it is settled. If it is not
//!   settled within the ack timeout, or it is [`nak`](Delivery::nak)ed, it is delivered
//!   again (its [`Delivery::deliveries`] count grows). Make handlers idempotent.
//!   [`in_progress`](Delivery::in_progress) extends the timeout of a slow one.
//! - **Term.** [`term`](Delivery::term) means "never deliver it again; I have recorded
//!   it" (JetStream's meaning): the event is dropped, counted in
//!   [`SubscriptionMetrics::terminated`], and does *not* go to the dead-letter hook.
//! - **Max deliveries.** The consumer's own give-up: an event delivered `max_deliver` times
//!   without an ack goes to the dead-letter hook; without a hook it is kept for
//!   [`Consumer::take_dead_letters`]. Nothing is dropped silently.
//! - **Retention.** At most `max_pending` unfetched events are kept; when full, the
//!   consumer's [`Overflow`] policy applies (block the publisher, reject, or drop the oldest,
//!   counted).
//! - **Order.** Fresh events come in publish order; redeliveries come first once due.
//! - **One clock.** Ack timeouts, nak delays and `fetch` waits follow tokio's clock
//!   ([`tokio::time::Instant`]), as the workflow layers do: under a paused test clock
//!   (`tokio::time::pause()`) they advance with it, and an empty `fetch` sleeps until its
//!   timeout instead of spinning. Outside a runtime that clock is the system's.
//! - This consumer lives in memory: what it holds is lost with the process, and reported by
//!   [`Bus::shutdown`](crate::Bus::shutdown). Durable consumers come with the store.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::Mutex;
use smol_str::SmolStr;
use syncbus_envelope::{Envelope, Payload};

use crate::error::SubscribeError;
use crate::hub::Hub;
use crate::metrics::{Stat, SubStats, SubscriptionMetrics};
use crate::overflow::Overflow;
use crate::queue::{Drainer, Queue};
use crate::router::SubEntry;
use crate::sink::{Deliver, Delivered, Pack, Room, Sink, Take, Wait};
use crate::source::{Settle, Source};
use crate::wait::Signal;
use syncbus_envelope::Pattern;

type DeadLetterFn<P> = Arc<dyn Fn(DeadLetter<P>) + Send + Sync>;

/// Settings of a pull consumer.
///
/// Defaults: ack timeout 30 s, at most 5 deliveries, 10,000 retained events,
/// [`Overflow::Block`], dead letters kept for [`Consumer::take_dead_letters`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{ConsumerConfig, Overflow};
/// # #[derive(Clone, Debug)] struct Ping;
///
/// let config = ConsumerConfig::<Ping>::default()
///     .name("billing")
///     .ack_timeout(Duration::from_secs(5))
///     .max_deliver(3)
///     .max_pending(1_000)
///     .overflow(Overflow::Reject)
///     .on_dead_letter(|dl| eprintln!("gave up on {} after {}", dl.envelope.id(), dl.deliveries));
/// # let _ = config;
/// ```
pub struct ConsumerConfig<P> {
    name: Option<SmolStr>,
    ack_timeout: Duration,
    max_deliver: u32,
    max_pending: usize,
    overflow: Overflow,
    dead_letter: Option<DeadLetterFn<P>>,
}

impl<P> Default for ConsumerConfig<P> {
    fn default() -> Self {
        ConsumerConfig {
            name: None,
            ack_timeout: Duration::from_secs(30),
            max_deliver: 5,
            max_pending: 10_000,
            overflow: Overflow::Block,
            dead_letter: None,
        }
    }
}

impl<P> fmt::Debug for ConsumerConfig<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("name", &self.name)
            .field("ack_timeout", &self.ack_timeout)
            .field("max_deliver", &self.max_deliver)
            .field("max_pending", &self.max_pending)
            .field("overflow", &self.overflow)
            .field("dead_letter", &self.dead_letter.is_some())
            .finish()
    }
}

impl<P> ConsumerConfig<P> {
    /// Names the consumer in metrics and shutdown reports (default: the pattern).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, ConsumerConfig, Event, Overflow};
    /// # #[derive(Clone, Debug)] struct Job;
    /// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
    /// # let bus = Bus::new();
    /// let jobs = bus.consumer::<Job>("jobs.*", ConsumerConfig::default().name("billing"))?;
    /// # drop(jobs);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(mut self, name: impl Into<SmolStr>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How long a fetched event may stay unacked before it is delivered again.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, ConsumerConfig, Event, Overflow};
    /// # #[derive(Clone, Debug)] struct Job;
    /// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
    /// # let bus = Bus::new();
    /// let config = ConsumerConfig::<Job>::default().ack_timeout(Duration::ZERO);
    /// assert!(bus.consumer("jobs.*", config).is_err()); // must be positive
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Deliveries before an event goes to the dead-letter hook (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, ConsumerConfig, Event, Overflow};
    /// # #[derive(Clone, Debug)] struct Job;
    /// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
    /// # let bus = Bus::new();
    /// let jobs = bus.consumer::<Job>("jobs.*", ConsumerConfig::default().max_deliver(3))?;
    /// # drop(jobs);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.max_deliver = n;
        self
    }

    /// Unfetched events retained before the overflow policy applies.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, ConsumerConfig, Event, Overflow};
    /// # #[derive(Clone, Debug)] struct Job;
    /// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
    /// # let bus = Bus::new();
    /// let config = ConsumerConfig::default().max_pending(1).overflow(Overflow::Reject);
    /// let jobs = bus.consumer::<Job>("jobs.*", config)?;
    /// bus.try_publish(Job)?;
    /// assert!(bus.try_publish(Job).is_err()); // the one slot is taken
    /// # drop(jobs);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n;
        self
    }

    /// What a publish does when `max_pending` events wait; see
    /// [`max_pending`](Self::max_pending) for an example.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Where dead letters go, instead of [`Consumer::take_dead_letters`]. Called outside the
    /// consumer's lock.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, ConsumerConfig, Event, Overflow};
    /// # #[derive(Clone, Debug)] struct Job;
    /// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
    /// # let bus = Bus::new();
    /// let config = ConsumerConfig::default()
    ///     .max_deliver(1)
    ///     .on_dead_letter(|dl: syncbus_core::DeadLetter<Job>| eprintln!("gave up on {}", dl.envelope.id()));
    /// let jobs = bus.consumer::<Job>("jobs.*", config)?;
    /// bus.try_publish(Job)?;
    /// for d in jobs.try_fetch(1) { d.nak(Duration::ZERO)?; }
    /// assert!(jobs.take_dead_letters().is_empty()); // the hook took it
    /// assert_eq!(jobs.metrics().dead_lettered, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_dead_letter(mut self, f: impl Fn(DeadLetter<P>) + Send + Sync + 'static) -> Self {
        self.dead_letter = Some(Arc::new(f));
        self
    }
}

/// Why the consumer gave up on an event.
///
/// Only the consumer's own give-up is a dead letter: a [`Delivery::term`] is the caller's
/// decision, recorded by the caller, and never reaches the dead-letter hook.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{Bus, ConsumerConfig, DeadLetterReason, Event};
/// # #[derive(Clone, Debug)] struct Job;
/// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
///
/// let bus = Bus::new();
/// let jobs = bus.consumer::<Job>("jobs.*", ConsumerConfig::default().max_deliver(1))?;
/// bus.try_publish(Job)?;
/// for d in jobs.try_fetch(1) { d.nak(Duration::ZERO)?; } // the one delivery it gets
/// let dead = jobs.take_dead_letters();
/// assert_eq!(dead[0].reason, DeadLetterReason::MaxDeliveries);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// Delivered `max_deliver` times without an ack.
    MaxDeliveries,
}

/// An event the consumer gave up on; see [`DeadLetterReason`] for an example.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter<P> {
    /// The event.
    pub envelope: Envelope<P>,
    /// How many times it was delivered.
    pub deliveries: u32,
    /// Why it was given up.
    pub reason: DeadLetterReason,
}

/// An `ack`, `nak`, `term` or `in_progress` that could not be applied.
///
/// # Examples
///
/// ```
/// use syncbus_core::{AckError, Bus, ConsumerConfig, Event};
/// # #[derive(Clone, Debug)] struct Job;
/// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
///
/// let bus = Bus::new();
/// let jobs = bus.consumer::<Job>("jobs.*", ConsumerConfig::default())?;
/// bus.try_publish(Job)?;
/// let mut batch = jobs.try_fetch(1);
/// // Shutting down drops what consumers hold: what was handed out is no longer in flight.
/// bus.blocking_shutdown(std::time::Duration::from_millis(10));
/// assert_eq!(batch.remove(0).ack(), Err(AckError::NotInFlight));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckError {
    /// The delivery is no longer in flight: its ack timeout passed and it was handed out
    /// again, or the consumer closed.
    NotInFlight,
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckError::NotInFlight => f.write_str(
                "delivery is no longer in flight (ack timeout passed or consumer closed)",
            ),
        }
    }
}

impl std::error::Error for AckError {}

struct Waiting<P> {
    ready_at: Instant,
    seq: u64,
    envelope: Envelope<P>,
    deliveries: u32,
}

impl<P> PartialEq for Waiting<P> {
    fn eq(&self, other: &Self) -> bool {
        (self.ready_at, self.seq) == (other.ready_at, other.seq)
    }
}
impl<P> Eq for Waiting<P> {}
impl<P> PartialOrd for Waiting<P> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<P> Ord for Waiting<P> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ready_at, self.seq).cmp(&(other.ready_at, other.seq))
    }
}

struct InFlight<P> {
    envelope: Envelope<P>,
    deliveries: u32,
    deadline: Instant,
}

/// The events in flight, in slots reused through a free list. A delivery names its slot and
/// its lease's sequence, so settling finds the lease without hashing, and a stale delivery
/// (its lease ended, the slot holds another) is told apart by the sequence.
struct Leases<P> {
    slots: Vec<Lease<P>>,
    /// The slots holding no lease: every other slot holds one.
    free: Vec<usize>,
}

struct Lease<P> {
    seq: u64,
    held: Option<InFlight<P>>,
}

impl<P> Leases<P> {
    fn new() -> Self {
        Leases {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Leases `f` under `seq`; returns its slot.
    #[inline]
    fn insert(&mut self, seq: u64, f: InFlight<P>) -> usize {
        match self.free.pop() {
            Some(slot) => {
                // Field by field: a whole `Lease` built and moved in took two copies.
                let lease = &mut self.slots[slot];
                lease.seq = seq;
                lease.held = Some(f);
                slot
            }
            None => {
                self.slots.push(Lease { seq, held: Some(f) });
                self.slots.len() - 1
            }
        }
    }

    /// The slot's contents if it holds (or last held) the lease `seq`.
    #[inline]
    fn lease(&mut self, slot: usize, seq: u64) -> Option<&mut Option<InFlight<P>>> {
        let lease = self.slots.get_mut(slot).filter(|l| l.seq == seq)?;
        Some(&mut lease.held)
    }

    #[inline]
    fn get_mut(&mut self, slot: usize, seq: u64) -> Option<&mut InFlight<P>> {
        self.lease(slot, seq)?.as_mut()
    }

    /// Ends the lease `seq` in `slot` and hands its event back (a nak requeues it).
    #[inline]
    fn take(&mut self, slot: usize, seq: u64) -> Option<InFlight<P>> {
        let f = self.lease(slot, seq)?.take()?;
        self.free.push(slot);
        Some(f)
    }

    /// Ends the lease `seq` in `slot`, dropping its event where it lies (an ack or a term:
    /// no move of the envelope); false if the slot holds no such lease.
    #[inline]
    fn release(&mut self, slot: usize, seq: u64) -> bool {
        let Some(held) = self.lease(slot, seq).filter(|h| h.is_some()) else {
            return false;
        };
        *held = None;
        self.free.push(slot);
        true
    }

    /// Ends every lease whose deadline is at or before `now`, in lease order.
    fn expire(&mut self, now: Instant) -> Vec<(u64, InFlight<P>)> {
        let mut ended = Vec::new();
        for (slot, lease) in self.slots.iter_mut().enumerate() {
            if let Some(f) = lease.held.take_if(|f| f.deadline <= now) {
                ended.push((lease.seq, f));
                self.free.push(slot);
            }
        }
        ended.sort_unstable_by_key(|(seq, _)| *seq);
        ended
    }

    fn earliest(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|l| l.held.as_ref().map(|f| f.deadline))
            .min()
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
    }
}

struct State<P> {
    redeliver: BinaryHeap<Reverse<Waiting<P>>>,
    in_flight: Leases<P>,
    /// No in-flight deadline is earlier than this (`None`: nothing in flight since the last
    /// scan): a fetch before it skips the scan for expired leases. A lease only ever moves
    /// later (`in_progress`), so the bound stays true until the next scan makes it exact.
    earliest: Option<Instant>,
    dead: VecDeque<DeadLetter<P>>,
    next_seq: u64,
}

struct Shared<P> {
    intake: Queue<Envelope<P>>,
    state: Mutex<State<P>>,
    ack_timeout: Duration,
    max_deliver: u32,
    dead_letter: Option<DeadLetterFn<P>>,
    stats: Arc<SubStats>,
}

impl<P: Clone> Shared<P> {
    /// Moves expired in-flight events back to the redelivery heap or to dead letters.
    fn expire(&self, st: &mut State<P>, now: Instant, dead: &mut Vec<DeadLetter<P>>) {
        if st.earliest.is_none_or(|t| now < t) {
            return;
        }
        for (seq, f) in st.in_flight.expire(now) {
            self.requeue(st, seq, f.envelope, f.deliveries, now, dead);
        }
        st.earliest = st.in_flight.earliest();
    }

    fn requeue(
        &self,
        st: &mut State<P>,
        seq: u64,
        envelope: Envelope<P>,
        deliveries: u32,
        ready_at: Instant,
        dead: &mut Vec<DeadLetter<P>>,
    ) {
        if deliveries >= self.max_deliver {
            dead.push(DeadLetter {
                envelope,
                deliveries,
                reason: DeadLetterReason::MaxDeliveries,
            });
        } else {
            st.redeliver.push(Reverse(Waiting {
                ready_at,
                seq,
                envelope,
                deliveries,
            }));
        }
    }

    /// Hands `dead` to the hook or the list. Inline for the usual empty `dead`: a call that
    /// takes the `Vec` by value costs an ack about a tenth of its instructions.
    #[inline]
    fn bury(&self, dead: Vec<DeadLetter<P>>) {
        if !dead.is_empty() {
            self.bury_all(dead);
        }
    }

    #[cold]
    fn bury_all(&self, dead: Vec<DeadLetter<P>>) {
        for dl in dead {
            self.stats.incr(Stat::DeadLettered);
            tracing::warn!(id = %dl.envelope.id(), deliveries = dl.deliveries, reason = ?dl.reason, "dead letter");
            match &self.dead_letter {
                Some(f) => f(dl),
                None => self.state.lock().dead.push_back(dl),
            }
        }
    }

    fn try_fetch(self: &Arc<Self>, max: usize) -> Vec<Delivery<P>> {
        let now = Instant::now();
        let mut dead = Vec::new();
        let out = {
            let mut st = self.state.lock();
            self.expire(&mut st, now, &mut dead);
            let st = &mut *st;
            let held = st.redeliver.len() + self.intake.len();
            let mut out = Vec::with_capacity(max.min(held));
            let deadline = now + self.ack_timeout;
            let mut lease = |st: &mut State<P>, envelope: Envelope<P>, deliveries: u32| {
                let seq = st.next_seq;
                st.next_seq += 1;
                let copy = envelope.clone();
                let slot = st.in_flight.insert(
                    seq,
                    InFlight {
                        envelope,
                        deliveries,
                        deadline,
                    },
                );
                out.push(Delivery {
                    envelope: copy,
                    seq,
                    slot,
                    deliveries,
                    shared: self.clone(),
                });
            };
            let mut taken = 0;
            while taken < max {
                match st.redeliver.peek() {
                    Some(Reverse(w)) if w.ready_at <= now => {}
                    _ => break,
                }
                if let Some(Reverse(w)) = st.redeliver.pop() {
                    self.stats.incr(Stat::Redelivered);
                    lease(st, w.envelope, w.deliveries + 1);
                    taken += 1;
                }
            }
            taken += self
                .intake
                .pop_each(max - taken, |envelope| lease(st, envelope, 1));
            if taken > 0 {
                st.earliest = Some(st.earliest.map_or(deadline, |t| t.min(deadline)));
            }
            out
        };
        self.bury(dead);
        out
    }

    /// When the next redelivery or ack timeout falls due, if any.
    fn next_due(&self) -> Option<Instant> {
        let st = self.state.lock();
        let a = st.redeliver.peek().map(|Reverse(w)| w.ready_at);
        // A lower bound: a waiter woken early finds nothing expired, and the scan that tells
        // it so makes the bound exact.
        let b = st.earliest;
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn settle(&self, slot: usize, seq: u64, how: Outcome) -> Result<(), AckError> {
        let mut dead = Vec::new();
        {
            let mut st = self.state.lock();
            if let Outcome::InProgress = how {
                let f = st
                    .in_flight
                    .get_mut(slot, seq)
                    .ok_or(AckError::NotInFlight)?;
                f.deadline = Instant::now() + self.ack_timeout;
                return Ok(());
            }
            if let Outcome::Nak(delay) = how {
                let f = st.in_flight.take(slot, seq).ok_or(AckError::NotInFlight)?;
                self.stats.incr(Stat::Failed);
                let ready = Instant::now() + delay;
                self.requeue(&mut st, seq, f.envelope, f.deliveries, ready, &mut dead);
            } else if st.in_flight.release(slot, seq) {
                // A term's caller recorded the event (a term is never a dead letter here).
                let stat = match how {
                    Outcome::Term => Stat::Terminated,
                    _ => Stat::Delivered,
                };
                self.stats.incr(stat);
            } else {
                return Err(AckError::NotInFlight);
            }
        }
        let woke = !dead.is_empty();
        self.bury(dead);
        if matches!(how, Outcome::Nak(_)) && !woke {
            // A nak makes an event fetchable now or at a time a waiting fetch does not know
            // of yet: wake fetchers. An ack or a term leaves nothing new to fetch.
            self.intake.nudge();
        }
        Ok(())
    }

    fn held(&self) -> usize {
        let st = self.state.lock();
        self.intake.len() + st.redeliver.len() + st.in_flight.len()
    }
}

/// How a delivery was settled.
#[derive(Clone, Copy)]
enum Outcome {
    Ack,
    Nak(Duration),
    Term,
    InProgress,
}

/// One fetched event. Settle it with [`ack`](Self::ack), [`nak`](Self::nak) or
/// [`term`](Self::term), or extend its lease with [`in_progress`](Self::in_progress);
/// dropping it unsettled means it comes back after the ack timeout.
///
/// These methods never wait, so they are plain functions; the [`Settle`]
/// trait's async methods forward to them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{Bus, ConsumerConfig, Event};
/// # #[derive(Clone, Debug)] struct Job(u32);
/// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
///
/// let bus = Bus::new();
/// let jobs = bus.consumer::<Job>("jobs.*", ConsumerConfig::default())?;
/// bus.try_publish(Job(1))?;
/// let mut d = jobs.try_fetch(1).remove(0);
/// assert_eq!((d.payload().0, d.deliveries()), (1, 1));
/// d.in_progress()?;            // still working: the lease starts again
/// d.nak(Duration::ZERO)?;      // failed: deliver it again now
/// let d = jobs.try_fetch(1).remove(0);
/// assert_eq!(d.deliveries(), 2);
/// d.term()?;                   // never again (recorded elsewhere)
/// assert!(jobs.take_dead_letters().is_empty());
/// assert_eq!(jobs.metrics().terminated, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Delivery<P> {
    envelope: Envelope<P>,
    /// The lease: its sequence and its slot among the consumer's leases.
    seq: u64,
    slot: usize,
    deliveries: u32,
    shared: Arc<Shared<P>>,
}

impl<P: fmt::Debug> fmt::Debug for Delivery<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope", &self.envelope)
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

impl<P: Clone> Delivery<P> {
    /// The event; see [`Delivery`] for an example.
    pub fn envelope(&self) -> &Envelope<P> {
        &self.envelope
    }

    /// The event's payload; see [`Delivery`] for an example.
    pub fn payload(&self) -> &P {
        self.envelope.payload()
    }

    /// How many times this event was handed out, this time included (1 the first time);
    /// see [`Delivery`] for an example.
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// Done: the event will not come back. Counted as delivered.
    ///
    /// # Examples
    ///
    /// See [`Delivery`].
    ///
    /// # Errors
    ///
    /// [`AckError::NotInFlight`] if the ack timeout passed and it was handed out again, or
    /// the consumer closed.
    pub fn ack(self) -> Result<(), AckError> {
        self.shared.settle(self.slot, self.seq, Outcome::Ack)
    }

    /// Failed: deliver it again after `delay` (`Duration::ZERO`: now), or dead-letter it if
    /// it reached `max_deliver`. Counted as failed.
    ///
    /// # Examples
    ///
    /// See [`Delivery`].
    ///
    /// # Errors
    ///
    /// As [`ack`](Self::ack).
    pub fn nak(self, delay: Duration) -> Result<(), AckError> {
        self.shared.settle(self.slot, self.seq, Outcome::Nak(delay))
    }

    /// Failed for good: never deliver it again. The caller has recorded it, so it does not
    /// go to the dead-letter hook; it is counted in [`SubscriptionMetrics::terminated`].
    ///
    /// # Examples
    ///
    /// See [`Delivery`].
    ///
    /// # Errors
    ///
    /// As [`ack`](Self::ack).
    pub fn term(self) -> Result<(), AckError> {
        self.shared.settle(self.slot, self.seq, Outcome::Term)
    }

    /// Still working: push its ack timeout back by the consumer's `ack_timeout` from now.
    ///
    /// # Examples
    ///
    /// See [`Delivery`].
    ///
    /// # Errors
    ///
    /// As [`ack`](Self::ack).
    pub fn in_progress(&mut self) -> Result<(), AckError> {
        self.shared.settle(self.slot, self.seq, Outcome::InProgress)
    }
}

impl<P: Payload> Settle for Delivery<P> {
    type Payload = P;
    type Error = AckError;

    fn envelope(&self) -> &Envelope<P> {
        &self.envelope
    }

    fn deliveries(&self) -> u32 {
        self.deliveries
    }

    async fn ack(self) -> Result<(), AckError> {
        Delivery::ack(self)
    }

    async fn nak(self, delay: Duration) -> Result<(), AckError> {
        Delivery::nak(self, delay)
    }

    async fn term(self) -> Result<(), AckError> {
        Delivery::term(self)
    }

    async fn in_progress(&mut self) -> Result<(), AckError> {
        Delivery::in_progress(self)
    }
}

impl<P: Payload> Source for Consumer<P> {
    type Payload = P;
    type Delivery = Delivery<P>;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        &self.entry.name
    }

    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery<P>>, Self::Error> {
        Ok(Consumer::fetch(self, max, wait).await)
    }

    fn is_closed(&self) -> bool {
        self.shared.intake.is_closed()
    }
}

/// A pull consumer; see the [module docs](crate#pull-consumers) and [`Bus::consumer`](crate::Bus::consumer).
///
/// Dropping it unsubscribes it; what it held is dropped with it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{Bus, ConsumerConfig, Event};
/// # #[derive(Clone, Debug)] struct Job(u32);
/// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::new();
/// let jobs = bus.consumer::<Job>("jobs.*", ConsumerConfig::default().max_deliver(2))?;
/// bus.publish(Job(1)).await?;
/// let first = jobs.fetch(10, Duration::from_millis(100)).await;
/// first.into_iter().for_each(|d| d.nak(Duration::ZERO).unwrap()); // fails once...
/// let again = jobs.fetch(10, Duration::from_millis(100)).await;
/// assert_eq!(again[0].deliveries(), 2);               // ...and comes back
/// again.into_iter().for_each(|d| d.ack().unwrap());
/// # Ok(()) }
/// ```
///
/// A consumer made as a statement would be dropped at once, with what it held, so it is
/// `#[must_use]`:
///
/// ```compile_fail
/// # #![deny(unused_must_use)]
/// # #[derive(Clone, Debug)] struct Job(u32);
/// # impl syncbus_core::Event for Job { const TYPE: &'static str = "jobs.new"; }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = syncbus_core::Bus::new();
/// bus.consumer::<Job>("jobs.*", syncbus_core::ConsumerConfig::default())?; // error: unused
/// # Ok(()) }
/// ```
#[must_use = "dropping a Consumer unsubscribes it and drops what it holds"]
pub struct Consumer<P> {
    hub: Arc<Hub>,
    entry: Arc<SubEntry>,
    shared: Arc<Shared<P>>,
}

impl<P> fmt::Debug for Consumer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.entry.name)
            .field("pattern", &self.entry.pattern)
            .finish_non_exhaustive()
    }
}

impl<P: Payload> Consumer<P> {
    pub(crate) fn create(
        hub: Arc<Hub>,
        pattern: Pattern,
        config: ConsumerConfig<P>,
    ) -> Result<Consumer<P>, SubscribeError> {
        if config.max_deliver == 0 {
            return Err(SubscribeError::InvalidConfig(
                "max_deliver must be at least 1",
            ));
        }
        if config.max_pending == 0 {
            return Err(SubscribeError::InvalidConfig(
                "max_pending must be at least 1",
            ));
        }
        if config.ack_timeout.is_zero() {
            return Err(SubscribeError::InvalidConfig(
                "ack_timeout must be positive",
            ));
        }
        let stats = Arc::new(SubStats::default());
        let shared = Arc::new(Shared {
            intake: Queue::new(config.max_pending, config.overflow, Drainer::Tasks),
            state: Mutex::new(State {
                redeliver: BinaryHeap::new(),
                in_flight: Leases::new(),
                earliest: None,
                dead: VecDeque::new(),
                next_seq: 0,
            }),
            ack_timeout: config.ack_timeout,
            max_deliver: config.max_deliver,
            dead_letter: config.dead_letter,
            stats: stats.clone(),
        });
        let name = config
            .name
            .unwrap_or_else(|| SmolStr::new(pattern.as_str()));
        let sink = Arc::new(PullSink {
            shared: shared.clone(),
        });
        let entry = Arc::new(SubEntry::new(
            hub.router.next_id(),
            name,
            pattern,
            stats,
            sink,
            None,
        ));
        if !hub.add_subscription(entry.clone()) {
            return Err(SubscribeError::Closed);
        }
        Ok(Consumer { hub, entry, shared })
    }

    /// Takes up to `max` deliverable events without waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, ConsumerConfig, Event};
    /// # #[derive(Clone, Debug)] struct Job;
    /// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
    /// let bus = Bus::new();
    /// let jobs = bus.consumer::<Job>("jobs.*", ConsumerConfig::default())?;
    /// assert!(jobs.try_fetch(10).is_empty());
    /// bus.try_publish(Job)?;
    /// assert_eq!(jobs.try_fetch(10).len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_fetch(&self, max: usize) -> Vec<Delivery<P>> {
        self.shared.try_fetch(max)
    }

    /// Waits up to `timeout` for at least one event, then takes up to `max`.
    /// Returns an empty batch if none came, or if the bus shut down.
    ///
    /// # Examples
    ///
    /// See [`Consumer`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is taken until the future completes.
    pub async fn fetch(&self, max: usize, timeout: Duration) -> Vec<Delivery<P>> {
        let deadline = Instant::now() + timeout;
        loop {
            let batch = self.shared.try_fetch(max);
            let now = Instant::now();
            if !batch.is_empty() || now >= deadline || self.shared.intake.is_closed() {
                return batch;
            }
            let wake = self.shared.next_due().map_or(deadline, |d| d.min(deadline));
            let _ = tokio::time::timeout_at(wake, self.shared.intake.readable_async()).await;
        }
    }

    /// Blocking form of [`fetch`](Self::fetch), for threads outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, ConsumerConfig, Event};
    /// # #[derive(Clone, Debug)] struct Job;
    /// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
    /// let bus = Bus::new();
    /// let jobs = bus.consumer::<Job>("jobs.*", ConsumerConfig::default())?;
    /// let publisher = bus.clone();
    /// std::thread::spawn(move || publisher.blocking_publish(Job));
    /// let batch = jobs.blocking_fetch(10, Duration::from_secs(5));
    /// assert_eq!(batch.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn blocking_fetch(&self, max: usize, timeout: Duration) -> Vec<Delivery<P>> {
        let deadline = Instant::now() + timeout;
        loop {
            let batch = self.shared.try_fetch(max);
            let now = Instant::now();
            if !batch.is_empty() || now >= deadline || self.shared.intake.is_closed() {
                return batch;
            }
            let wake = self.shared.next_due().map_or(deadline, |d| d.min(deadline));
            self.shared.intake.wait_readable(wake.into_std());
        }
    }

    /// Dead letters kept because no hook was configured; takes them out. See
    /// [`DeadLetterReason`] for an example.
    pub fn take_dead_letters(&self) -> Vec<DeadLetter<P>> {
        self.shared.state.lock().dead.drain(..).collect()
    }

    /// Events held: unfetched, waiting for redelivery, or in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_core::{Bus, ConsumerConfig, Event};
    /// # #[derive(Clone, Debug)] struct Job;
    /// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
    /// let bus = Bus::new();
    /// let jobs = bus.consumer::<Job>("jobs.*", ConsumerConfig::default())?;
    /// bus.try_publish(Job)?;
    /// let batch = jobs.try_fetch(10);
    /// assert_eq!(jobs.pending(), 1); // in flight
    /// for d in batch { d.ack()?; }
    /// assert_eq!(jobs.pending(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pending(&self) -> usize {
        self.shared.held()
    }

    /// The consumer's counters now; see [`Delivery`] for an example.
    pub fn metrics(&self) -> SubscriptionMetrics {
        self.shared.stats.snapshot(self.shared.held())
    }
}

impl<P> Drop for Consumer<P> {
    fn drop(&mut self) {
        self.hub.remove_subscription(self.entry.id);
    }
}

struct PullSink<P> {
    shared: Arc<Shared<P>>,
}

impl<P: Payload> Deliver<P> for PullSink<P> {
    fn deliver(
        &self,
        slot: &mut Option<Envelope<P>>,
        take: Take,
        _pack: Pack,
        wait: Wait,
    ) -> Delivered {
        let Some(env) = take.out(slot) else {
            return Delivered::Closed;
        };
        self.shared
            .intake
            .push(env, wait)
            .delivered(slot, take, |env| env)
    }

    fn room(&self, _envelope: &Envelope<P>) -> Option<Arc<dyn Room>> {
        Some(self.shared.clone())
    }
}

impl<P: Payload> Room for Shared<P> {
    fn signal(&self) -> &Signal {
        self.intake.signal()
    }

    fn has_room(&self) -> bool {
        self.intake.has_room()
    }
}

impl<P: Payload> Sink for PullSink<P> {
    fn close(&self) {
        self.shared.intake.close();
    }

    fn pending(&self) -> usize {
        self.shared.held()
    }

    fn discard(&self) -> usize {
        let mut st = self.shared.state.lock();
        let n = st.redeliver.len() + st.in_flight.len();
        st.redeliver.clear();
        st.in_flight.clear();
        drop(st);
        n + self.shared.intake.discard()
    }
}
