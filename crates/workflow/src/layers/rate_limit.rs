//! The rate limit: a token bucket in front of each attempt.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use syncbus_envelope::Envelope;
use tokio::time::Instant;

use crate::context::Context;
use crate::error::HandlerError;
use crate::handler::Handler;
use crate::layer::Layer;
use crate::metrics::Stat;

/// A token bucket: `rate` tokens per `per`, holding at most `burst`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_workflow::RateLimitConfig;
/// let limit = RateLimitConfig::per_second(100).burst(20);
/// let slow = RateLimitConfig::new(1, Duration::from_secs(60)); // one a minute
/// # let _ = (limit, slow);
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    rate: u32,
    per: Duration,
    burst: u32,
}

impl RateLimitConfig {
    /// `rate` (at least 1) events per `per`, with a burst of `rate`.
    ///
    /// # Examples
    ///
    /// ```
    /// let hourly = syncbus_workflow::RateLimitConfig::new(600, std::time::Duration::from_secs(3600));
    /// # let _ = hourly;
    /// ```
    pub fn new(rate: u32, per: Duration) -> Self {
        let rate = rate.max(1);
        RateLimitConfig {
            rate,
            per: per.max(Duration::from_nanos(1)),
            burst: rate,
        }
    }

    /// `n` events per second.
    ///
    /// # Examples
    ///
    /// ```
    /// let limit = syncbus_workflow::RateLimitConfig::per_second(100);
    /// # let _ = limit;
    /// ```
    pub fn per_second(n: u32) -> Self {
        RateLimitConfig::new(n, Duration::from_secs(1))
    }

    /// How many tokens the bucket holds (at least 1): the burst allowed after a quiet spell.
    ///
    /// # Examples
    ///
    /// ```
    /// // 10 a second on average, but never two at once after a quiet spell.
    /// let smooth = syncbus_workflow::RateLimitConfig::per_second(10).burst(1);
    /// # let _ = smooth;
    /// ```
    pub fn burst(mut self, n: u32) -> Self {
        self.burst = n.max(1);
        self
    }

    /// This limit as a layer; every handler it makes shares the bucket.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = syncbus_workflow::RateLimitConfig::per_second(50).layer();
    /// # let _ = layer;
    /// ```
    pub fn layer(self) -> RateLimitLayer {
        RateLimitLayer::new(self)
    }
}

#[derive(Debug)]
pub(crate) struct Bucket {
    limit: RateLimitConfig,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimitConfig) -> Bucket {
        let full = f64::from(limit.burst);
        Bucket {
            limit,
            state: Mutex::new((full, Instant::now())),
        }
    }

    /// Takes a token, or says how long until one is there.
    fn try_take(&self) -> Result<(), Duration> {
        let per_token = self.limit.per.as_secs_f64() / f64::from(self.limit.rate);
        let now = Instant::now();
        let mut s = self.state.lock();
        let refill = now.saturating_duration_since(s.1).as_secs_f64() / per_token;
        s.0 = (s.0 + refill).min(f64::from(self.limit.burst));
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.0) * per_token))
        }
    }

    /// Takes a token, waiting as long as needed; a wait is counted in `ctx`'s metrics.
    pub(crate) async fn take(&self, ctx: Option<&Context>) {
        let mut counted = false;
        while let Err(wait) = self.try_take() {
            if let (Some(ctx), false) = (ctx, counted) {
                ctx.bump(Stat::RateLimited);
                counted = true;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// Makes [`RateLimit`] handlers sharing one bucket.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::Envelope;
/// use syncbus_workflow::{handler_fn, Context, Handler, Layer, RateLimitConfig, RateLimitLayer};
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = RateLimitLayer::new(RateLimitConfig::per_second(10).burst(1));
/// let h = layer.layer(handler_fn(|_e: Envelope<Ping>, _c| async { Ok(()) }));
/// let bus = syncbus_core::Bus::new();
/// let start = tokio::time::Instant::now();
/// for _ in 0..3 {
///     let env = Envelope::from_event(Ping);
///     h.call(env.clone(), Context::new(&bus, env.meta())).await?;
/// }
/// assert!(start.elapsed() >= Duration::from_millis(200)); // one token per 100 ms
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    bucket: Arc<Bucket>,
}

impl RateLimitLayer {
    /// A layer whose handlers share one bucket set by `cfg`; the same as
    /// [`RateLimitConfig::layer`].
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::{RateLimitConfig, RateLimitLayer};
    /// let layer = RateLimitLayer::new(RateLimitConfig::per_second(50));
    /// # let _ = layer;
    /// ```
    pub fn new(cfg: RateLimitConfig) -> RateLimitLayer {
        RateLimitLayer {
            bucket: Arc::new(Bucket::new(cfg)),
        }
    }
}

impl<H> Layer<H> for RateLimitLayer {
    type Handler = RateLimit<H>;
    fn layer(&self, inner: H) -> RateLimit<H> {
        RateLimit {
            inner,
            bucket: self.bucket.clone(),
        }
    }
}

/// Waits for a token before each attempt; see [`RateLimitConfig`].
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bus, Envelope};
/// use syncbus_workflow::{handler_fn, Context, Handler, Layer, RateLimit, RateLimitConfig};
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let h: RateLimit<_> = RateLimitConfig::per_second(100)
///     .layer()
///     .layer(handler_fn(|_e: Envelope<Ping>, _c| async { Ok(()) }));
/// let bus = Bus::new();
/// let env = Envelope::from_event(Ping);
/// h.call(env.clone(), Context::new(&bus, env.meta())).await?; // a full bucket: no wait
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimit<H> {
    inner: H,
    bucket: Arc<Bucket>,
}

impl<P: Send + 'static, H: Handler<P>> Handler<P> for RateLimit<H> {
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        self.bucket.take(Some(&ctx)).await;
        self.inner.call(env, ctx).await
    }
}
