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
    /// ```
    /// let layer = syncbus_workflow::ConcurrencyLimitLayer::new(0); // clamped to 1
    /// # let _ = layer;
    /// ```
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
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use syncbus_core::{Bus, Envelope};
/// use syncbus_workflow::{handler_fn, ConcurrencyLimitLayer, Context, Handler, Layer};
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let (now, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
/// let (n, m) = (now.clone(), most.clone());
/// let h = ConcurrencyLimitLayer::new(1).layer(handler_fn(move |_e: Envelope<Ping>, _c| {
///     let (n, m) = (n.clone(), m.clone());
///     async move {
///         m.fetch_max(n.fetch_add(1, SeqCst) + 1, SeqCst);
///         tokio::time::sleep(Duration::from_millis(10)).await;
///         n.fetch_sub(1, SeqCst);
///         Ok(())
///     }
/// }));
/// let bus = Bus::new();
/// let (a, b) = (Envelope::from_event(Ping), Envelope::from_event(Ping));
/// let (ra, rb) = tokio::join!(
///     h.call(a.clone(), Context::new(&bus, a.meta())),
///     h.call(b.clone(), Context::new(&bus, b.meta())),
/// );
/// assert!(ra.is_ok() && rb.is_ok());
/// assert_eq!(most.load(SeqCst), 1); // the second waited for the first
/// # }
/// ```
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
