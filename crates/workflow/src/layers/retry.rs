//! Retry with exponential backoff and jitter.

use std::time::Duration;

use syncbus_envelope::Envelope;
use tokio::time::Instant;

use crate::context::Context;
use crate::error::HandlerError;
use crate::handler::Handler;
use crate::layer::Layer;
use crate::metrics::Stat;

/// How the delay before a retry is randomized, so failed consumers do not retry in lockstep.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_workflow::{Jitter, RetryPolicy};
/// let p = RetryPolicy::new().jitter(Jitter::Proportional(0.1)); // 100 ms ± 10 %
/// assert_eq!(p.bounds(1, Duration::ZERO), (Duration::from_millis(90), Duration::from_millis(110)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly the exponential delay.
    None,
    /// The exponential delay times a uniform factor in `[1 - f, 1 + f]` (`f` in 0..=1).
    Proportional(f64),
    /// Uniform in `[0, exponential delay]` ("full jitter").
    Full,
    /// Uniform in `[initial, 3 × previous delay]`, capped ("decorrelated jitter").
    Decorrelated,
}

/// When and how often to retry.
///
/// Defaults: first retry after 100 ms, doubling (100 ms × 2ⁿ), ±50 % jitter, each delay
/// capped at 5 minutes, at most 8 attempts in all, no limit on total time. Only
/// [retryable](HandlerError::is_retryable) errors are retried; a handler's
/// [`retry_after`](HandlerError::retry_after) replaces the computed delay.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_workflow::{Jitter, RetryPolicy};
///
/// let p = RetryPolicy::default()
///     .initial(Duration::from_millis(200))
///     .max_attempts(5)
///     .jitter(Jitter::None);
/// assert_eq!(p.base_delay(1), Duration::from_millis(200));
/// assert_eq!(p.base_delay(3), Duration::from_millis(800));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    initial: Duration,
    multiplier: f64,
    max_delay: Duration,
    max_attempts: u32,
    max_elapsed: Option<Duration>,
    jitter: Jitter,
    /// Fixed delays before each retry, replacing the exponential ones when set.
    schedule: Option<std::sync::Arc<[Duration]>>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(300),
            max_attempts: 8,
            max_elapsed: None,
            jitter: Jitter::Proportional(0.5),
            schedule: None,
        }
    }
}

impl RetryPolicy {
    /// The default policy (see the type's docs).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_workflow::RetryPolicy::new().attempt_limit(), 8);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Never retry: one attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_workflow::RetryPolicy::never().attempt_limit(), 1);
    /// ```
    pub fn never() -> Self {
        Self::default().max_attempts(1)
    }

    /// Retries on a fixed schedule instead of exponential backoff: `delays[i]` is the delay
    /// before retry `i + 1`, and there are `delays.len() + 1` attempts in all (set
    /// [`max_attempts`](Self::max_attempts) after this to stop earlier). Jitter still
    /// applies; `max_delay` does not cap a scheduled delay (a schedule of hours means hours).
    /// An empty schedule means one attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_workflow::{Jitter, RetryPolicy};
    /// let secs = Duration::from_secs;
    /// // Svix's schedule after the first attempt: 5 s, 5 min, 30 min, 2 h, ...
    /// let p = RetryPolicy::new()
    ///     .schedule([secs(5), secs(300), secs(1800), secs(7200)])
    ///     .jitter(Jitter::None);
    /// assert_eq!(p.attempt_limit(), 5);
    /// assert_eq!(p.base_delay(1), secs(5));
    /// assert_eq!(p.base_delay(4), secs(7200));
    /// assert_eq!(p.delay(2, Duration::ZERO), secs(300));
    /// ```
    pub fn schedule(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        let delays: std::sync::Arc<[Duration]> = delays.into_iter().collect();
        self.max_attempts = u32::try_from(delays.len())
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1);
        self.schedule = Some(delays);
        self
    }

    /// The fixed retry delays set by [`schedule`](Self::schedule), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_workflow::RetryPolicy;
    /// assert!(RetryPolicy::new().scheduled().is_none());
    /// let p = RetryPolicy::new().schedule([Duration::from_secs(1)]);
    /// assert_eq!(p.scheduled(), Some(&[Duration::from_secs(1)][..]));
    /// ```
    pub fn scheduled(&self) -> Option<&[Duration]> {
        self.schedule.as_deref()
    }

    /// The delay before the first retry.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_workflow::{Jitter, RetryPolicy};
    /// let p = RetryPolicy::new().initial(Duration::from_secs(1)).jitter(Jitter::None);
    /// assert_eq!(p.base_delay(1), Duration::from_secs(1));
    /// ```
    pub fn initial(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }

    /// The growth factor per retry (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let p = syncbus_workflow::RetryPolicy::new().multiplier(3.0).jitter(syncbus_workflow::Jitter::None);
    /// assert_eq!(p.base_delay(2), Duration::from_millis(300));
    /// ```
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = if m.is_finite() { m.max(1.0) } else { 1.0 };
        self
    }

    /// The cap on any one delay.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let p = syncbus_workflow::RetryPolicy::new().max_delay(Duration::from_secs(1));
    /// assert_eq!(p.base_delay(20), Duration::from_secs(1));
    /// ```
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Attempts in all, the first included (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let p = syncbus_workflow::RetryPolicy::new().max_attempts(0); // clamped
    /// assert_eq!(p.attempt_limit(), 1);
    /// ```
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Gives up when the next retry would start later than `d` after the first attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let p = syncbus_workflow::RetryPolicy::new().max_elapsed(Duration::from_secs(60));
    /// # let _ = p;
    /// ```
    pub fn max_elapsed(mut self, d: Duration) -> Self {
        self.max_elapsed = Some(d);
        self
    }

    /// The jitter.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_workflow::{Jitter, RetryPolicy};
    /// let p = RetryPolicy::new().jitter(Jitter::Full);
    /// assert_eq!(p.bounds(1, Duration::ZERO), (Duration::ZERO, Duration::from_millis(100)));
    /// ```
    pub fn jitter(mut self, j: Jitter) -> Self {
        self.jitter = match j {
            Jitter::Proportional(f) if f.is_finite() => Jitter::Proportional(f.clamp(0.0, 1.0)),
            Jitter::Proportional(_) => Jitter::None,
            other => other,
        };
        self
    }

    /// Attempts in all, the first included: what [`max_attempts`](Self::max_attempts) set.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = syncbus_workflow::RetryPolicy::new().max_attempts(3);
    /// assert_eq!(p.attempt_limit(), 3);
    /// ```
    pub fn attempt_limit(&self) -> u32 {
        self.max_attempts
    }

    /// The delay after failed attempt `n` (1-based) before jitter: `initial × multiplierⁿ⁻¹`,
    /// capped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = syncbus_workflow::RetryPolicy::new(); // 100 ms, doubling
    /// assert_eq!(p.base_delay(1), Duration::from_millis(100));
    /// assert_eq!(p.base_delay(4), Duration::from_millis(800));
    /// ```
    pub fn base_delay(&self, n: u32) -> Duration {
        if let Some(schedule) = &self.schedule {
            let i = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX);
            return schedule
                .get(i)
                .or(schedule.last())
                .copied()
                .unwrap_or(Duration::ZERO);
        }
        let exp = self.multiplier.powi(n.saturating_sub(1).min(1024) as i32);
        let secs = self.initial.as_secs_f64() * exp;
        if !secs.is_finite() || secs >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The range the delay after failed attempt `n` falls in, jitter included
    /// (`previous` is the last delay, used by decorrelated jitter).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let p = syncbus_workflow::RetryPolicy::new(); // 100 ms, ±50 %
    /// let (lo, hi) = p.bounds(1, Duration::ZERO);
    /// assert_eq!((lo, hi), (Duration::from_millis(50), Duration::from_millis(150)));
    /// ```
    pub fn bounds(&self, n: u32, previous: Duration) -> (Duration, Duration) {
        let base = self.base_delay(n);
        let max = if self.schedule.is_some() {
            Duration::MAX
        } else {
            self.max_delay
        };
        let cap = |d: Duration| d.min(max);
        match self.jitter {
            Jitter::None => (base, base),
            Jitter::Proportional(f) => (base.mul_f64(1.0 - f), cap(base.mul_f64(1.0 + f))),
            Jitter::Full => (Duration::ZERO, base),
            Jitter::Decorrelated => {
                let lo = cap(self.initial);
                let hi = cap(previous.max(self.initial).saturating_mul(3));
                (lo, hi.max(lo))
            }
        }
    }

    /// A delay after failed attempt `n`, drawn within [`bounds`](Self::bounds).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let p = syncbus_workflow::RetryPolicy::new();
    /// let d = p.delay(2, Duration::ZERO);
    /// assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(300));
    /// ```
    pub fn delay(&self, n: u32, previous: Duration) -> Duration {
        let (lo, hi) = self.bounds(n, previous);
        if hi <= lo {
            return lo;
        }
        lo + (hi - lo).mul_f64(fastrand::f64())
    }

    /// This policy as a layer.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = syncbus_workflow::RetryPolicy::new().max_attempts(3).layer();
    /// # let _ = layer;
    /// ```
    pub fn layer(self) -> RetryLayer {
        RetryLayer { policy: self }
    }
}

/// Makes [`Retry`] handlers.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{RetryLayer, RetryPolicy, Stack, TimeoutLayer};
/// // Each of three attempts gets its own 5 s.
/// let stack = Stack::new()
///     .layer(RetryLayer::new(RetryPolicy::new().max_attempts(3)))
///     .layer(TimeoutLayer::new(std::time::Duration::from_secs(5)));
/// # let _ = stack;
/// ```
#[derive(Debug, Clone)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer retrying by `policy`.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = syncbus_workflow::RetryLayer::new(syncbus_workflow::RetryPolicy::default());
    /// # let _ = layer;
    /// ```
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer { policy }
    }
}

impl<H> Layer<H> for RetryLayer {
    type Handler = Retry<H>;
    fn layer(&self, inner: H) -> Retry<H> {
        Retry {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// Retries the inner handler's retryable failures; see [`RetryPolicy`].
///
/// Each attempt gets a clone of the envelope and the same [`Context`], whose
/// [`attempt`](Context::attempt) counts up. The delay is slept on tokio's clock: the
/// delivery (and its worker) waits.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{Bus, Envelope};
/// use syncbus_workflow::{handler_fn, Context, Handler, HandlerError, Layer, RetryPolicy};
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let h = RetryPolicy::new().initial(Duration::from_millis(10)).layer().layer(handler_fn(
///     |_e: Envelope<Ping>, ctx: Context| async move {
///         if ctx.attempt() < 3 {
///             return Err(HandlerError::retryable("not yet"));
///         }
///         Ok(())
///     },
/// ));
/// let bus = Bus::new();
/// let env = Envelope::from_event(Ping);
/// let ctx = Context::new(&bus, env.meta());
/// h.call(env, ctx.clone()).await?; // failed twice, then succeeded
/// assert_eq!(ctx.attempt(), 3);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Retry<H> {
    inner: H,
    policy: RetryPolicy,
}

impl<P, H> Handler<P> for Retry<H>
where
    P: Clone + Send + Sync + 'static,
    H: Handler<P>,
{
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        let start = Instant::now();
        let mut previous = Duration::ZERO;
        let mut env = Some(env);
        loop {
            let attempt = ctx.begin_attempt();
            ctx.bump(Stat::Attempts);
            if attempt > 1 {
                ctx.bump(Stat::Retries);
            }
            let last = attempt >= self.policy.max_attempts;
            let this = if last { env.take() } else { env.clone() };
            let Some(this) = this else {
                // Unreachable: the envelope is only taken on the last attempt.
                return Err(HandlerError::permanent("retry ran past its last attempt"));
            };
            let err = match self.inner.call(this, ctx.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            ctx.note_failure();
            // A handler that found its inbox key done already is a duplicate: running it
            // again cannot succeed (the dedup layer acknowledges it).
            if last || !err.is_retryable() || ctx.is_duplicate() {
                return Err(err);
            }
            let delay = match err.retry_after_hint() {
                Some(d) => d,
                None => self.policy.delay(attempt, previous),
            };
            if let Some(max) = self.policy.max_elapsed {
                if start.elapsed() + delay > max {
                    return Err(err);
                }
            }
            tracing::debug!(
                subscription = ctx.subscription(),
                attempt,
                ?delay,
                error = %err,
                "retrying"
            );
            previous = delay;
            tokio::time::sleep(delay).await;
        }
    }
}
