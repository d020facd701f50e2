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
/// use syncbus_workflow::RateLimit;
/// let limit = RateLimit::per_second(100).burst(20);
/// let slow = RateLimit::new(1, Duration::from_secs(60)); // one a minute
/// # let _ = (limit, slow);
/// ```
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: u32,
    per: Duration,
    burst: u32,
}

impl RateLimit {
    /// `rate` (at least 1) events per `per`, with a burst of `rate`.
    ///
    /// # Examples
    ///
    /// See [`RateLimit`].
    pub fn new(rate: u32, per: Duration) -> Self {
        let rate = rate.max(1);
        RateLimit {
            rate,
            per: per.max(Duration::from_nanos(1)),
            burst: rate,
        }
    }

    /// `n` events per second.
    ///
    /// # Examples
    ///
    /// See [`RateLimit`].
    pub fn per_second(n: u32) -> Self {
        RateLimit::new(n, Duration::from_secs(1))
    }

    /// How many tokens the bucket holds (at least 1): the burst allowed after a quiet spell.
    ///
    /// # Examples
    ///
    /// See [`RateLimit`].
    pub fn burst(mut self, n: u32) -> Self {
        self.burst = n.max(1);
        self
    }

    /// This limit as a layer; every handler it makes shares the bucket.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = syncbus_workflow::RateLimit::per_second(50).layer();
    /// # let _ = layer;
    /// ```
    pub fn layer(self) -> RateLimitLayer {
        RateLimitLayer {
            bucket: Arc::new(Bucket::new(self)),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Bucket {
    limit: RateLimit,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimit) -> Bucket {
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

/// Makes [`RateLimited`] handlers sharing one bucket.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    bucket: Arc<Bucket>,
}

impl<H> Layer<H> for RateLimitLayer {
    type Handler = RateLimited<H>;
    fn layer(&self, inner: H) -> RateLimited<H> {
        RateLimited {
            inner,
            bucket: self.bucket.clone(),
        }
    }
}

/// Waits for a token before each attempt; see [`RateLimit`].
#[derive(Debug, Clone)]
pub struct RateLimited<H> {
    inner: H,
    bucket: Arc<Bucket>,
}

impl<P: Send + 'static, H: Handler<P>> Handler<P> for RateLimited<H> {
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        self.bucket.take(Some(&ctx)).await;
        self.inner.call(env, ctx).await
    }
}
