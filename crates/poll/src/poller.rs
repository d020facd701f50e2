//! [`Poller`]: a [`PollSource`] run on a schedule, as a `Source` for `Workflow::serve`.
//!
//! One page is in flight at a time. Its items are handed out as deliveries; the page's
//! cursor is written to `Checkpoints` only when every one of them was acked or termed (the
//! runner terms after recording a dead letter), and only then is the next page polled. A
//! crash (or a stop) before that leaves the old cursor stored: the page is polled again and
//! its items delivered again (at least once; dedup by entity version or event id makes the
//! effect once). A nak puts the item back into the page after its delay.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use syncbus_core::{Settle, Source};
use syncbus_envelope::{Bytes, Envelope};
use syncbus_storage::{Checkpoints, IntoArc, StoreError};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::{jittered, ConfigError, PollConfig, Schedule};
use crate::error::PollError;
use crate::source::{Cursor, PollSource};

/// What a poller has done, read at one moment ([`Poller::metrics`]). The same figures go to
/// the `metrics` facade, labelled `poller`: `syncbus_poll_polls_total` (label `outcome`:
/// `items`, `empty`, `not_modified`, `throttled`, `error`), `syncbus_poll_items_total`,
/// `syncbus_poll_last_success_timestamp_seconds`, `syncbus_poll_lag_seconds`,
/// `syncbus_poll_paused`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PollMetrics {
    /// Polls made (each call of the source).
    pub polls: u64,
    /// Polls that found items.
    pub pages: u64,
    /// Items handed out for the first time.
    pub items: u64,
    /// Polls answered "not modified".
    pub not_modified: u64,
    /// Polls that failed, throttled ones included.
    pub errors: u64,
    /// Polls refused with a 429 / 503.
    pub throttled: u64,
    /// Failures in a row now.
    pub consecutive_failures: u32,
    /// Cursors stored.
    pub checkpoints: u64,
    /// When the last poll succeeded (wall clock).
    pub last_success: Option<SystemTime>,
    /// How long ago the last poll succeeded (tokio's clock).
    pub since_success: Option<Duration>,
    /// How far behind the upstream the handled events may be: the time since the start of
    /// the last poll that found the upstream drained and whose items are all handled (since
    /// the poller started, before that).
    pub lag: Duration,
    /// Paused now.
    pub paused: bool,
    /// The cursor stored last.
    pub cursor: Option<Cursor>,
}

#[derive(Debug)]
struct Pending {
    env: Envelope<Bytes>,
    deliveries: u32,
}

#[derive(Debug)]
struct InFlight {
    ready: VecDeque<Pending>,
    delayed: Vec<(Instant, Pending)>,
    /// Not acked or termed yet (ready, delayed and handed out).
    left: usize,
    done: Done,
}

#[derive(Debug, Clone)]
struct Done {
    next: Option<Cursor>,
    more: bool,
    items: usize,
    polled_at: Instant,
}

#[derive(Debug)]
struct State {
    cursor: Option<Cursor>,
    page: Option<InFlight>,
    /// A handled page whose cursor is not stored yet.
    commit: Option<Done>,
    next_poll: Instant,
    schedule: Schedule,
    paused: bool,
    last_success: Option<(SystemTime, Instant)>,
    caught_up: Instant,
}

#[derive(Debug, Default)]
struct Counts {
    polls: AtomicU64,
    pages: AtomicU64,
    items: AtomicU64,
    not_modified: AtomicU64,
    errors: AtomicU64,
    throttled: AtomicU64,
    checkpoints: AtomicU64,
}

/// What deliveries share with the poller: the page, the cursor, the store.
struct Shared {
    name: String,
    checkpoints: Arc<dyn Checkpoints>,
    config: PollConfig,
    state: Mutex<State>,
    changed: Notify,
    committing: tokio::sync::Mutex<()>,
    counts: Counts,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poller")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("state", &*self.state.lock())
            .finish_non_exhaustive()
    }
}

struct Inner<S> {
    shared: Arc<Shared>,
    source: S,
    fetching: tokio::sync::Mutex<()>,
}

/// A [`PollSource`] polled on its schedule ([`PollConfig`]), its cursor kept in
/// [`Checkpoints`] under the poller's name: a [`Source`] for `Workflow::serve`, so the
/// items get the workflow stack (dedup, resequencing, retries as naks, dead letters).
///
/// Cloning gives another handle on the same poller ([`pause`](Self::pause),
/// [`metrics`](Self::metrics) while a runner serves it).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{Bus, Envelope};
/// use syncbus_envelope::{Bytes, EventType, Metadata};
/// use syncbus_poll::{Cursor, Page, PollConfig, PollError, PollSource, Poller, RawEvent};
/// use syncbus_storage::MemoryStore;
/// use syncbus_workflow::Workflow;
///
/// struct Numbers;
/// impl PollSource for Numbers {
///     async fn poll(&self, cursor: Option<&Cursor>) -> Result<Page, PollError> {
///         let n: u64 = cursor.and_then(|c| c.as_str()?.parse().ok()).unwrap_or(0);
///         if n == 3 {
///             return Ok(Page::new(vec![])); // caught up
///         }
///         let meta = Metadata::new(EventType::new("number.seen").unwrap());
///         let env = Envelope::new(meta, Bytes::from(n.to_string()));
///         Ok(Page::new(vec![env]).next(Cursor::from((n + 1).to_string())).more(true))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let poller = Poller::open("numbers", Numbers, store.clone(), PollConfig::new()).await?;
/// let bus = Bus::new();
/// let served = Workflow::new(&bus)
///     .serve(poller.clone())
///     .fetch_wait(Duration::from_millis(10))
///     .handle(|env: Envelope<RawEvent>, _ctx| async move {
///         println!("{}", std::str::from_utf8(env.payload().as_bytes()).unwrap());
///         Ok(())
///     })?;
/// served.settled().await;
/// served.stop().await;
/// assert_eq!(poller.metrics().cursor, Some(Cursor::from("3")));
/// # Ok(()) }
/// ```
pub struct Poller<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Poller<S> {
    fn clone(&self) -> Self {
        Poller {
            inner: self.inner.clone(),
        }
    }
}

impl<S> fmt::Debug for Poller<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.shared.fmt(f)
    }
}

/// Why [`Poller::open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A setting is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The stored cursor could not be read.
    #[error("reading the cursor: {0}")]
    Store(#[from] StoreError),
}

impl<S: PollSource> Poller<S> {
    /// A poller named `name` (its checkpoint's name and its metrics label) over `source`,
    /// resuming from the cursor stored under `name`, if any. The first poll is at once.
    ///
    /// # Errors
    ///
    /// [`OpenError::Config`] for a setting out of range, [`OpenError::Store`] when the
    /// stored cursor cannot be read (an empty name included).
    ///
    /// # Examples
    ///
    /// See [`Poller`].
    pub async fn open(
        name: impl Into<String>,
        source: S,
        checkpoints: impl IntoArc<dyn Checkpoints>,
        config: PollConfig,
    ) -> Result<Poller<S>, OpenError> {
        config.check()?;
        let name = name.into();
        let checkpoints = checkpoints.into_arc();
        let cursor = checkpoints.get(&name).await?.map(Cursor::new);
        let now = Instant::now();
        let shared = Arc::new(Shared {
            name,
            checkpoints,
            config,
            state: Mutex::new(State {
                cursor,
                page: None,
                commit: None,
                next_poll: now,
                schedule: Schedule::default(),
                paused: false,
                last_success: None,
                caught_up: now,
            }),
            changed: Notify::new(),
            committing: tokio::sync::Mutex::new(()),
            counts: Counts::default(),
        });
        Ok(Poller {
            inner: Arc::new(Inner {
                shared,
                source,
                fetching: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

impl<S> Poller<S> {
    /// The poller's name.
    ///
    /// # Examples
    ///
    /// See [`Poller`].
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The source.
    ///
    /// # Examples
    ///
    /// See [`Poller`].
    pub fn source(&self) -> &S {
        &self.inner.source
    }

    /// Stops polling: the page in flight is still handed out and settled, no new poll starts
    /// until [`resume`](Self::resume).
    ///
    /// # Examples
    ///
    /// See [`resume`](Self::resume).
    pub fn pause(&self) {
        let shared = &self.inner.shared;
        shared.state.lock().paused = true;
        metrics::gauge!("syncbus_poll_paused", "poller" => shared.name.clone()).set(1.0);
        shared.changed.notify_one();
    }

    /// Polls again at once, every backoff reset.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_poll::{Cursor, Page, PollConfig, PollError, PollSource, Poller};
    /// # struct Nothing;
    /// # impl PollSource for Nothing {
    /// #     async fn poll(&self, _: Option<&Cursor>) -> Result<Page, PollError> { Ok(Page::new(vec![])) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = syncbus_storage::MemoryStore::new();
    /// let poller = Poller::open("p", Nothing, store, PollConfig::new()).await?;
    /// poller.pause();
    /// assert!(poller.is_paused());
    /// poller.resume();
    /// assert!(!poller.metrics().paused);
    /// # Ok(()) }
    /// ```
    pub fn resume(&self) {
        let shared = &self.inner.shared;
        {
            let mut st = shared.state.lock();
            st.paused = false;
            st.schedule.reset();
            st.next_poll = Instant::now();
        }
        metrics::gauge!("syncbus_poll_paused", "poller" => shared.name.clone()).set(0.0);
        shared.changed.notify_one();
    }

    /// Whether the poller is paused.
    ///
    /// # Examples
    ///
    /// See [`resume`](Self::resume).
    pub fn is_paused(&self) -> bool {
        self.inner.shared.state.lock().paused
    }

    /// When the next poll is due (tokio's clock), if none is in flight.
    ///
    /// # Examples
    ///
    /// See [`Poller`].
    pub fn next_poll(&self) -> Instant {
        self.inner.shared.state.lock().next_poll
    }

    /// The figures now.
    ///
    /// # Examples
    ///
    /// See [`Poller`].
    pub fn metrics(&self) -> PollMetrics {
        let shared = &self.inner.shared;
        let c = &shared.counts;
        let st = shared.state.lock();
        let now = Instant::now();
        PollMetrics {
            polls: c.polls.load(Relaxed),
            pages: c.pages.load(Relaxed),
            items: c.items.load(Relaxed),
            not_modified: c.not_modified.load(Relaxed),
            errors: c.errors.load(Relaxed),
            throttled: c.throttled.load(Relaxed),
            consecutive_failures: st.schedule.failures(),
            checkpoints: c.checkpoints.load(Relaxed),
            last_success: st.last_success.map(|(t, _)| t),
            since_success: st.last_success.map(|(_, i)| now - i),
            lag: now - st.caught_up,
            paused: st.paused,
            cursor: st.cursor.clone(),
        }
    }
}

enum Step {
    Hand(Vec<PollDelivery>),
    Commit,
    Poll(Option<Cursor>),
    Wait(Option<Instant>),
}

impl Shared {
    /// Stores the handled page's cursor, then schedules the next poll.
    async fn commit(&self) -> Result<(), StoreError> {
        let _one = self.committing.lock().await;
        let Some(done) = self.state.lock().commit.clone() else {
            return Ok(());
        };
        if let Some(next) = &done.next {
            self.checkpoints
                .put(&self.name, next.as_bytes().to_vec())
                .await?;
            self.counts.checkpoints.fetch_add(1, Relaxed);
        }
        let now = Instant::now();
        {
            let mut st = self.state.lock();
            st.commit = None;
            if let Some(next) = done.next {
                st.cursor = Some(next);
            }
            if !done.more {
                st.caught_up = done.polled_at;
            }
            let wait = st.schedule.after_page(&self.config, done.items, done.more);
            st.next_poll = now + jittered(wait, self.config.jitter);
            metrics::gauge!("syncbus_poll_lag_seconds", "poller" => self.name.clone())
                .set((now - st.caught_up).as_secs_f64());
        }
        self.changed.notify_one();
        Ok(())
    }

    /// One delivery settled: done (ack, term) or back into the page after `delay` (nak).
    fn settle(&self, pending: Option<(Pending, Duration)>) -> bool {
        let mut st = self.state.lock();
        let Some(page) = st.page.as_mut() else {
            return false;
        };
        let finished = match pending {
            Some((p, delay)) if delay.is_zero() => {
                page.ready.push_front(p);
                false
            }
            Some((p, delay)) => {
                page.delayed.push((Instant::now() + delay, p));
                false
            }
            None => {
                page.left = page.left.saturating_sub(1);
                page.left == 0
            }
        };
        if finished {
            let page = st.page.take().expect("checked above");
            st.commit = Some(page.done);
        }
        drop(st);
        self.changed.notify_one();
        finished
    }

    fn step(self: &Arc<Self>, max: usize) -> Step {
        let mut st = self.state.lock();
        let now = Instant::now();
        if st.commit.is_some() {
            return Step::Commit;
        }
        if let Some(page) = st.page.as_mut() {
            let mut i = 0;
            while i < page.delayed.len() {
                if page.delayed[i].0 <= now {
                    let (_, p) = page.delayed.swap_remove(i);
                    page.ready.push_back(p);
                } else {
                    i += 1;
                }
            }
            if !page.ready.is_empty() {
                let n = max.min(page.ready.len());
                let out = page
                    .ready
                    .drain(..n)
                    .map(|p| PollDelivery {
                        shared: self.clone(),
                        deliveries: p.deliveries + 1,
                        env: Some(p.env),
                    })
                    .collect();
                return Step::Hand(out);
            }
            return Step::Wait(page.delayed.iter().map(|(t, _)| *t).min());
        }
        if st.paused {
            return Step::Wait(None);
        }
        if now >= st.next_poll {
            return Step::Poll(st.cursor.clone());
        }
        Step::Wait(Some(st.next_poll))
    }

    fn record_poll(&self, outcome: &'static str) {
        self.counts.polls.fetch_add(1, Relaxed);
        metrics::counter!("syncbus_poll_polls_total", "poller" => self.name.clone(), "outcome" => outcome)
            .increment(1);
    }
}

impl<S: PollSource> Inner<S> {
    async fn poll(&self, cursor: Option<Cursor>) -> Result<(), PollError> {
        let shared = &self.shared;
        let started = Instant::now();
        match self.source.poll(cursor.as_ref()).await {
            Ok(page) => {
                let (items, next, more, not_modified) = page.into_parts();
                let next = next.filter(|n| Some(n) != cursor.as_ref());
                // "More" without a new cursor would ask the same question again at once:
                // a spin. It waits for the schedule instead.
                let more = more && next.is_some();
                let c = &shared.counts;
                let outcome = if not_modified {
                    c.not_modified.fetch_add(1, Relaxed);
                    "not_modified"
                } else if items.is_empty() {
                    "empty"
                } else {
                    c.pages.fetch_add(1, Relaxed);
                    c.items.fetch_add(items.len() as u64, Relaxed);
                    metrics::counter!("syncbus_poll_items_total", "poller" => shared.name.clone())
                        .increment(items.len() as u64);
                    "items"
                };
                shared.record_poll(outcome);
                let wall = SystemTime::now();
                if let Ok(t) = wall.duration_since(SystemTime::UNIX_EPOCH) {
                    metrics::gauge!("syncbus_poll_last_success_timestamp_seconds", "poller" => shared.name.clone())
                        .set(t.as_secs_f64());
                }
                let done = Done {
                    next,
                    more,
                    items: items.len(),
                    polled_at: started,
                };
                let mut st = shared.state.lock();
                st.last_success = Some((wall, Instant::now()));
                if items.is_empty() {
                    st.commit = Some(done);
                } else {
                    st.page = Some(InFlight {
                        left: items.len(),
                        ready: items
                            .into_iter()
                            .map(|env| Pending { env, deliveries: 0 })
                            .collect(),
                        delayed: Vec::new(),
                        done,
                    });
                }
                Ok(())
            }
            Err(e) => {
                let throttled = matches!(e, PollError::Throttled { .. });
                shared.counts.errors.fetch_add(1, Relaxed);
                if throttled {
                    shared.counts.throttled.fetch_add(1, Relaxed);
                }
                shared.record_poll(if throttled { "throttled" } else { "error" });
                let mut st = shared.state.lock();
                let wait = st.schedule.after_error(&shared.config, e.retry_after());
                st.next_poll = Instant::now() + jittered(wait, shared.config.jitter);
                let lag = (Instant::now() - st.caught_up).as_secs_f64();
                metrics::gauge!("syncbus_poll_lag_seconds", "poller" => shared.name.clone())
                    .set(lag);
                Err(e)
            }
        }
    }
}

impl<S: PollSource> Source for Poller<S> {
    type Payload = Bytes;
    type Delivery = PollDelivery;
    type Error = PollError;

    fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// Hands out items of the page in flight; polls when the schedule says so and no page
    /// is in flight; waits up to `wait` otherwise. A failed poll is logged, counted and
    /// backed off from here (it is not a fetch error); a cursor that cannot be stored is.
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<PollDelivery>, PollError> {
        let inner = &self.inner;
        let _one = inner.fetching.lock().await;
        let deadline = Instant::now() + wait;
        loop {
            let step = inner.shared.step(max.max(1));
            match step {
                Step::Hand(out) => return Ok(out),
                Step::Commit => inner.shared.commit().await?,
                Step::Poll(cursor) => {
                    // A failed poll is the poller's to back off from (its schedule, counted
                    // in its metrics), not a fetch error: the runner's own pause after fetch
                    // errors would stretch the configured waits.
                    if let Err(e) = inner.poll(cursor).await {
                        tracing::warn!(poller = %inner.shared.name, error = %e, "poll failed; backing off");
                    }
                }
                Step::Wait(until) => {
                    let until = until.map_or(deadline, |u| u.min(deadline));
                    tokio::select! {
                        _ = inner.shared.changed.notified() => {}
                        _ = tokio::time::sleep_until(until) => {}
                    }
                    if Instant::now() >= deadline {
                        return Ok(Vec::new());
                    }
                }
            }
        }
    }
}

/// One item of a poller's page, to settle: [`ack`](Settle::ack) or [`term`](Settle::term)
/// marks it done (the last one stores the page's cursor), [`nak`](Settle::nak) hands it out
/// again after the delay. Dropped unsettled, it is handed out again at once.
pub struct PollDelivery {
    shared: Arc<Shared>,
    env: Option<Envelope<Bytes>>,
    deliveries: u32,
}

impl fmt::Debug for PollDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollDelivery")
            .field("poller", &self.shared.name)
            .field("event", &self.env.as_ref().map(|e| e.id().clone()))
            .field("deliveries", &self.deliveries)
            .finish()
    }
}

impl PollDelivery {
    async fn done(mut self) -> Result<(), StoreError> {
        self.env = None;
        if self.shared.settle(None) {
            self.shared.commit().await?;
        }
        Ok(())
    }
}

impl Drop for PollDelivery {
    fn drop(&mut self) {
        if let Some(env) = self.env.take() {
            let p = Pending {
                env,
                deliveries: self.deliveries,
            };
            self.shared.settle(Some((p, Duration::ZERO)));
        }
    }
}

impl Settle for PollDelivery {
    type Payload = Bytes;
    type Error = StoreError;

    fn envelope(&self) -> &Envelope<Bytes> {
        self.env.as_ref().expect("present until settled")
    }

    fn deliveries(&self) -> u32 {
        self.deliveries
    }

    async fn ack(self) -> Result<(), StoreError> {
        self.done().await
    }

    async fn nak(mut self, delay: Duration) -> Result<(), StoreError> {
        if let Some(env) = self.env.take() {
            let p = Pending {
                env,
                deliveries: self.deliveries,
            };
            self.shared.settle(Some((p, delay)));
        }
        Ok(())
    }

    async fn term(self) -> Result<(), StoreError> {
        self.done().await
    }

    async fn in_progress(&mut self) -> Result<(), StoreError> {
        // Nothing runs out while a delivery is held: the page waits for every settle.
        Ok(())
    }
}
