//! The per-attempt timeout.

use std::time::Duration;

use syncbus_envelope::Envelope;

use crate::context::Context;
use crate::error::{ErrorKind, HandlerError};
use crate::handler::Handler;
use crate::layer::Layer;
use crate::metrics::Stat;

/// Makes [`Timeout`] handlers.
///
/// # Examples
///
/// ```
/// let layer = syncbus_workflow::TimeoutLayer::new(std::time::Duration::from_secs(10));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    after: Duration,
}

impl TimeoutLayer {
    /// Each attempt may take at most `after`.
    ///
    /// # Examples
    ///
    /// See [`TimeoutLayer`].
    pub fn new(after: Duration) -> Self {
        TimeoutLayer { after }
    }
}

impl<H> Layer<H> for TimeoutLayer {
    type Handler = Timeout<H>;
    fn layer(&self, inner: H) -> Timeout<H> {
        Timeout {
            inner,
            after: self.after,
        }
    }
}

/// Fails an attempt that takes too long with a retryable [`ErrorKind::Timeout`]; the
/// attempt's future is dropped (cancelled) at the deadline.
#[derive(Debug, Clone)]
pub struct Timeout<H> {
    inner: H,
    after: Duration,
}

impl<P: Send + 'static, H: Handler<P>> Handler<P> for Timeout<H> {
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        match tokio::time::timeout(self.after, self.inner.call(env, ctx.clone())).await {
            Ok(r) => r,
            Err(_) => {
                ctx.bump(Stat::Timeouts);
                Err(HandlerError::new(
                    ErrorKind::Timeout,
                    format!("attempt timed out after {:?}", self.after),
                ))
            }
        }
    }
}
