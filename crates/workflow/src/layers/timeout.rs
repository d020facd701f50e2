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
    /// ```
    /// let layer = syncbus_workflow::TimeoutLayer::new(std::time::Duration::from_millis(250));
    /// # let _ = layer;
    /// ```
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
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{Bus, Envelope};
/// use syncbus_workflow::{handler_fn, Context, ErrorKind, Handler, Layer, TimeoutLayer};
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let h = TimeoutLayer::new(Duration::from_millis(100)).layer(handler_fn(|_e: Envelope<Ping>, _c| async {
///     tokio::time::sleep(Duration::from_secs(10)).await; // a downstream that hangs
///     Ok(())
/// }));
/// let bus = Bus::new();
/// let env = Envelope::from_event(Ping);
/// let err = h.call(env.clone(), Context::new(&bus, env.meta())).await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Timeout);
/// assert!(err.is_retryable());
/// # }
/// ```
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
