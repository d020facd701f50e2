//! Circuit breaker: stop calling a failing downstream for a while, then probe it.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use syncbus_envelope::Envelope;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::context::Context;
use crate::error::{ErrorKind, HandlerError};
use crate::handler::Handler;
use crate::layer::Layer;
use crate::metrics::Stat;

/// What an attempt does while the circuit is open.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{CircuitBreakerConfig, WhenOpen};
/// // Fail fast while the downstream is down; redrive the dead letters once it is back.
/// let cb = CircuitBreakerConfig::new().when_open(WhenOpen::DeadLetter);
/// # let _ = cb;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenOpen {
    /// Wait until the circuit half-opens and the probe succeeds (the default).
    Wait,
    /// Fail at once with a permanent [`ErrorKind::CircuitOpen`] error: the event goes to
    /// dead letters, to be redriven once the downstream is back.
    DeadLetter,
}

/// Circuit breaker settings.
///
/// Closed, the breaker counts outcomes over a sliding time `window`; when at least
/// `min_calls` attempts ended there and the share of failures reaches `failure_ratio`, it
/// opens. Open, attempts do not reach the handler ([`WhenOpen`] says what they do instead)
/// for `open_for`; then it half-opens and lets one probe through: success closes it, failure
/// opens it again. Failures are retryable errors and timeouts (permanent errors say
/// the event was bad, not the downstream).
///
/// Defaults: window 30 s, at least 10 calls, ratio 0.5, open for 30 s, [`WhenOpen::Wait`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_workflow::{CircuitBreakerConfig, WhenOpen};
/// let cb = CircuitBreakerConfig::new()
///     .failure_ratio(0.25)
///     .min_calls(20)
///     .open_for(Duration::from_secs(10))
///     .when_open(WhenOpen::DeadLetter);
/// # let _ = cb;
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerConfig {
    window: Duration,
    min_calls: u32,
    failure_ratio: f64,
    open_for: Duration,
    when_open: WhenOpen,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            window: Duration::from_secs(30),
            min_calls: 10,
            failure_ratio: 0.5,
            open_for: Duration::from_secs(30),
            when_open: WhenOpen::Wait,
        }
    }
}

/// Where a breaker is.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{CircuitBreakerConfig, CircuitState};
/// let layer = CircuitBreakerConfig::new().layer();
/// assert_eq!(layer.state(), CircuitState::Closed); // a new breaker lets calls through
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are held back.
    Open,
    /// One probe is allowed through.
    HalfOpen,
}

impl CircuitBreakerConfig {
    /// The defaults (see the type's docs).
    ///
    /// # Examples
    ///
    /// ```
    /// let cb = syncbus_workflow::CircuitBreakerConfig::new();
    /// assert_eq!(cb.layer().state(), syncbus_workflow::CircuitState::Closed);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The sliding window outcomes are counted over.
    ///
    /// # Examples
    ///
    /// ```
    /// let cb = syncbus_workflow::CircuitBreakerConfig::new().window(std::time::Duration::from_secs(60));
    /// # let _ = cb;
    /// ```
    pub fn window(mut self, d: Duration) -> Self {
        self.window = d.max(Duration::from_millis(10));
        self
    }

    /// Fewest calls in the window before the ratio counts (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let cb = syncbus_workflow::CircuitBreakerConfig::new().min_calls(50);
    /// # let _ = cb;
    /// ```
    pub fn min_calls(mut self, n: u32) -> Self {
        self.min_calls = n.max(1);
        self
    }

    /// Share of failures that opens the circuit, in `(0, 1]`.
    ///
    /// # Examples
    ///
    /// ```
    /// let cb = syncbus_workflow::CircuitBreakerConfig::new().failure_ratio(0.9);
    /// # let _ = cb;
    /// ```
    pub fn failure_ratio(mut self, r: f64) -> Self {
        self.failure_ratio = if r.is_finite() {
            r.clamp(0.000_001, 1.0)
        } else {
            0.5
        };
        self
    }

    /// How long it stays open before a probe.
    ///
    /// # Examples
    ///
    /// ```
    /// let cb = syncbus_workflow::CircuitBreakerConfig::new().open_for(std::time::Duration::from_secs(60));
    /// # let _ = cb;
    /// ```
    pub fn open_for(mut self, d: Duration) -> Self {
        self.open_for = d;
        self
    }

    /// What attempts do while it is open.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::{CircuitBreakerConfig, WhenOpen};
    /// let cb = CircuitBreakerConfig::new().when_open(WhenOpen::DeadLetter);
    /// # let _ = cb;
    /// ```
    pub fn when_open(mut self, w: WhenOpen) -> Self {
        self.when_open = w;
        self
    }

    /// This breaker as a layer; the handlers it makes share one breaker.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = syncbus_workflow::CircuitBreakerConfig::new().layer();
    /// assert_eq!(layer.state(), syncbus_workflow::CircuitState::Closed);
    /// ```
    pub fn layer(self) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(self)
    }
}

const BUCKETS: usize = 10;

#[derive(Debug, Default)]
struct Window {
    /// (bucket start, successes, failures), oldest first.
    buckets: std::collections::VecDeque<(Instant, u32, u32)>,
}

impl Window {
    fn add(&mut self, now: Instant, span: Duration, failed: bool) {
        let width = span / BUCKETS as u32;
        while self
            .buckets
            .front()
            .is_some_and(|b| now.saturating_duration_since(b.0) >= span)
        {
            self.buckets.pop_front();
        }
        match self.buckets.back_mut() {
            Some(b) if now.saturating_duration_since(b.0) < width => {
                if failed {
                    b.2 += 1
                } else {
                    b.1 += 1
                }
            }
            _ => self
                .buckets
                .push_back((now, u32::from(!failed), u32::from(failed))),
        }
    }

    fn totals(&self) -> (u32, u32) {
        self.buckets
            .iter()
            .fold((0, 0), |(s, f), b| (s + b.1, f + b.2))
    }
}

#[derive(Debug)]
enum State {
    Closed(Window),
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Shared {
    cfg: CircuitBreakerConfig,
    state: Mutex<State>,
    changed: Notify,
}

enum Admit {
    Go { probe: bool },
    WaitUntil(Instant),
    WaitProbe,
}

impl Shared {
    fn admit(&self) -> Admit {
        let now = Instant::now();
        let mut s = self.state.lock();
        match &mut *s {
            State::Closed(_) => Admit::Go { probe: false },
            State::Open { until } if now < *until => Admit::WaitUntil(*until),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *s = State::HalfOpen { probing: true };
                Admit::Go { probe: true }
            }
            State::HalfOpen { probing: true } => Admit::WaitProbe,
        }
    }

    fn record(&self, probe: bool, failed: bool) {
        let now = Instant::now();
        let mut s = self.state.lock();
        let cfg = &self.cfg;
        let next = match &mut *s {
            State::Closed(w) => {
                w.add(now, cfg.window, failed);
                let (ok, bad) = w.totals();
                let calls = ok + bad;
                (failed
                    && calls >= cfg.min_calls
                    && f64::from(bad) / f64::from(calls) >= cfg.failure_ratio)
                    .then(|| State::Open {
                        until: now + cfg.open_for,
                    })
            }
            State::HalfOpen { .. } if probe => Some(if failed {
                State::Open {
                    until: now + cfg.open_for,
                }
            } else {
                State::Closed(Window::default())
            }),
            // An attempt admitted before the circuit opened: its outcome is old news.
            _ => None,
        };
        if let Some(next) = next {
            if matches!(next, State::Open { .. }) {
                tracing::warn!("circuit opened");
            }
            *s = next;
            drop(s);
            self.changed.notify_waiters();
        }
    }

    fn state(&self) -> CircuitState {
        match &*self.state.lock() {
            State::Closed(_) => CircuitState::Closed,
            State::Open { until } if Instant::now() < *until => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

/// Frees the half-open slot if a probe's future is dropped before it ends, so the next
/// attempt can probe instead of waiting forever.
struct Probe<'a> {
    shared: &'a Shared,
    probe: bool,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if self.probe {
            let mut s = self.shared.state.lock();
            if matches!(*s, State::HalfOpen { probing: true }) {
                *s = State::HalfOpen { probing: false };
            }
            drop(s);
            self.shared.changed.notify_waiters();
        }
    }
}

/// Makes [`CircuitBreaker`] handlers sharing one breaker.
///
/// # Examples
///
/// ```
/// use syncbus_core::Envelope;
/// use syncbus_workflow::{
///     handler_fn, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, Context, Handler,
///     HandlerError, Layer,
/// };
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::new().min_calls(2));
/// let h = layer.layer(handler_fn(|_e: Envelope<Ping>, _c| async {
///     Err::<(), _>(HandlerError::retryable("downstream is down"))
/// }));
/// let bus = syncbus_core::Bus::new();
/// for _ in 0..2 {
///     let env = Envelope::from_event(Ping);
///     assert!(h.call(env.clone(), Context::new(&bus, env.meta())).await.is_err());
/// }
/// assert_eq!(layer.state(), CircuitState::Open);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    shared: Arc<Shared>,
}

impl CircuitBreakerLayer {
    /// A layer whose handlers share one breaker set by `cfg`; the same as
    /// [`CircuitBreakerConfig::layer`].
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
    /// let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::new());
    /// assert_eq!(layer.state(), CircuitState::Closed);
    /// ```
    pub fn new(cfg: CircuitBreakerConfig) -> CircuitBreakerLayer {
        CircuitBreakerLayer {
            shared: Arc::new(Shared {
                cfg,
                state: Mutex::new(State::Closed(Window::default())),
                changed: Notify::new(),
            }),
        }
    }

    /// Where the breaker is now.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = syncbus_workflow::CircuitBreakerConfig::new().layer();
    /// assert_eq!(layer.state(), syncbus_workflow::CircuitState::Closed);
    /// ```
    pub fn state(&self) -> CircuitState {
        self.shared.state()
    }
}

impl<H> Layer<H> for CircuitBreakerLayer {
    type Handler = CircuitBreaker<H>;
    fn layer(&self, inner: H) -> CircuitBreaker<H> {
        CircuitBreaker {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A handler behind a circuit breaker; see [`CircuitBreakerConfig`].
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bus, Envelope};
/// use syncbus_workflow::{
///     handler_fn, CircuitBreakerConfig, CircuitState, Context, ErrorKind, Handler, HandlerError,
///     Layer, WhenOpen,
/// };
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let h = CircuitBreakerConfig::new()
///     .min_calls(1)
///     .when_open(WhenOpen::DeadLetter)
///     .layer()
///     .layer(handler_fn(|_e: Envelope<Ping>, _c| async {
///         Err::<(), _>(HandlerError::retryable("503"))
///     }));
/// let bus = Bus::new();
/// let env = Envelope::from_event(Ping);
/// let first = h.call(env.clone(), Context::new(&bus, env.meta())).await.unwrap_err();
/// assert_eq!(first.kind(), ErrorKind::Retryable); // the handler ran and failed: open
/// assert_eq!(h.state(), CircuitState::Open);
/// let next = h.call(env.clone(), Context::new(&bus, env.meta())).await.unwrap_err();
/// assert_eq!(next.kind(), ErrorKind::CircuitOpen); // the handler was not called
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreaker<H> {
    inner: H,
    shared: Arc<Shared>,
}

impl<H> CircuitBreaker<H> {
    /// Where the breaker is now.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::{handler_fn, CircuitBreakerConfig, CircuitState, Layer};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let h = CircuitBreakerConfig::new().layer().layer(handler_fn(|_e: syncbus_core::Envelope<Ping>, _c| async { Ok(()) }));
    /// assert_eq!(h.state(), CircuitState::Closed);
    /// ```
    pub fn state(&self) -> CircuitState {
        self.shared.state()
    }
}

impl<P: Send + 'static, H: Handler<P>> Handler<P> for CircuitBreaker<H> {
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        let probe = loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wait = match self.shared.admit() {
                Admit::Go { probe } => break probe,
                Admit::WaitUntil(t) => Some(t),
                Admit::WaitProbe => None,
            };
            ctx.bump(Stat::CircuitRejected);
            if self.shared.cfg.when_open == WhenOpen::DeadLetter {
                return Err(HandlerError::new(
                    ErrorKind::CircuitOpen,
                    "circuit open: the handler was not called",
                ));
            }
            match wait {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        };
        let guard = Probe {
            shared: &self.shared,
            probe,
        };
        let r = self.inner.call(env, ctx).await;
        std::mem::forget(guard);
        let failed = r.as_ref().is_err_and(|e| e.is_retryable());
        self.shared.record(probe, failed);
        r
    }
}
