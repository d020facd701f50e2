//! The innermost layer: publishes an attempt's follow-up events when it succeeded.

use syncbus_envelope::Envelope;

use crate::context::Context;
use crate::error::{ErrorKind, HandlerError};
use crate::handler::Handler;
use crate::layer::Layer;
use crate::metrics::Stat;

/// Makes [`Emit`] handlers. A workflow subscription puts it innermost; put it innermost in a
/// [`Stack`](crate::Stack) of your own too, or the follow-ups a handler queues with
/// [`Context::emit`] are never published.
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bus, Envelope, Event};
/// use syncbus_workflow::{handler_fn, Context, EmitLayer, Handler, RetryPolicy, Stack};
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl Event for Ping { const TYPE: &'static str = "ping"; }
/// # #[derive(Clone, Debug)] struct Pong;
/// # impl Event for Pong { const TYPE: &'static str = "pong"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::new();
/// let pongs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
/// let p = pongs.clone();
/// let _s = bus.subscribe::<Pong>("pong")?.inline(move |_| {
///     p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
/// })?;
/// let h = Stack::new()
///     .layer(RetryPolicy::default().layer())
///     .layer(EmitLayer)
///     .handler(handler_fn(|_e: Envelope<Ping>, ctx: Context| async move {
///         ctx.emit(Pong);
///         Ok(())
///     }));
/// let env = Envelope::from_event(Ping);
/// h.call(env.clone(), Context::new(&bus, env.meta())).await?;
/// assert_eq!(pongs.load(std::sync::atomic::Ordering::SeqCst), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct EmitLayer;

impl<H> Layer<H> for EmitLayer {
    type Handler = Emit<H>;
    fn layer(&self, inner: H) -> Emit<H> {
        Emit(inner)
    }
}

/// Publishes the follow-ups of a successful attempt, in order; see [`EmitLayer`]. A failed
/// publish fails the attempt (retryably if the bus was only full), so a retry emits again.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
/// use std::sync::Arc;
/// use syncbus_core::{Bus, Envelope, Event};
/// use syncbus_workflow::{handler_fn, Context, Emit, EmitLayer, Handler, HandlerError, Layer};
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl Event for Ping { const TYPE: &'static str = "ping"; }
/// # #[derive(Clone, Debug)] struct Pong;
/// # impl Event for Pong { const TYPE: &'static str = "pong"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::new();
/// let pongs = Arc::new(AtomicU32::new(0));
/// let p = pongs.clone();
/// let _s = bus.subscribe::<Pong>("pong")?.inline(move |_| {
///     p.fetch_add(1, SeqCst);
/// })?;
/// let h: Emit<_> = EmitLayer.layer(handler_fn(|_e: Envelope<Ping>, ctx: Context| async move {
///     ctx.emit(Pong);
///     Err::<(), _>(HandlerError::retryable("failed after emitting"))
/// }));
/// let env = Envelope::from_event(Ping);
/// assert!(h.call(env.clone(), Context::new(&bus, env.meta())).await.is_err());
/// assert_eq!(pongs.load(SeqCst), 0); // a failed attempt publishes nothing
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Emit<H>(H);

impl<P: Send + 'static, H: Handler<P>> Handler<P> for Emit<H> {
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        if ctx.attempt() == 0 {
            // No retry layer or runner began an attempt (`no_retry`): this run is one.
            ctx.bump(Stat::Attempts);
        }
        match self.0.call(env, ctx.clone()).await {
            Ok(()) => ctx.flush().await,
            Err(e) => {
                if e.kind() == ErrorKind::Panicked {
                    ctx.bump(Stat::Panicked);
                }
                Err(e)
            }
        }
    }
}
