//! The concurrency limit.

use std::sync::Arc;

use syncbus_envelope::Envelope;
use tokio::sync::Semaphore;

use crate::context::Context;
use crate::error::HandlerError;
use crate::handler::Handler;
use crate::layer::Layer;

/// Makes [`ConcurrencyLimit`] handlers sharing one set of permits.
///
/// # Examples
///
/// ```
/// let layer = syncbus_workflow::ConcurrencyLimitLayer::new(8);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    permits: Arc<Semaphore>,
}

impl ConcurrencyLimitLayer {
    /// At most `n` (at least 1) attempts run at once.
    ///
    /// # Examples
    ///
    /// See [`ConcurrencyLimitLayer`].
    pub fn new(n: usize) -> Self {
        ConcurrencyLimitLayer {
            permits: Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }
}

impl<H> Layer<H> for ConcurrencyLimitLayer {
    type Handler = ConcurrencyLimit<H>;
    fn layer(&self, inner: H) -> ConcurrencyLimit<H> {
        ConcurrencyLimit {
            inner,
            permits: self.permits.clone(),
        }
    }
}

/// Lets at most N attempts run at once; the others wait for a permit.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit<H> {
    inner: H,
    permits: Arc<Semaphore>,
}

impl<P: Send + 'static, H: Handler<P>> Handler<P> for ConcurrencyLimit<H> {
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        // The semaphore is never closed, so acquiring only fails if it were.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HandlerError::retryable("concurrency limiter closed"))?;
        self.inner.call(env, ctx).await
    }
}
