//! The handler contract: an envelope and a context in, success or a [`HandlerError`] out.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context as TaskContext, Poll};

use syncbus_envelope::Envelope;

use crate::context::Context;
use crate::error::{ErrorKind, HandlerError};

/// Handles one delivery of an event.
///
/// Layers ([`Retry`](crate::Retry), [`Dedup`](crate::Dedup), ...) are handlers wrapping a
/// handler; build your own from a closure with [`handler_fn`] or [`sync_handler_fn`]. The
/// future may borrow the handler; a retry calls it again with a clone of the envelope and
/// the same context.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{Context, Handler, HandlerError};
/// use syncbus_core::Envelope;
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// struct CountPings(std::sync::atomic::AtomicU64);
///
/// impl Handler<Ping> for CountPings {
///     async fn call(&self, _env: Envelope<Ping>, _ctx: Context) -> Result<(), HandlerError> {
///         self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         Ok(())
///     }
/// }
/// ```
pub trait Handler<P>: Send + Sync + 'static {
    /// Handles one delivery.
    fn call(
        &self,
        env: Envelope<P>,
        ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<P, H: Handler<P>> Handler<P> for std::sync::Arc<H> {
    fn call(
        &self,
        env: Envelope<P>,
        ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (**self).call(env, ctx)
    }
}

/// A handler made from an async closure; see [`handler_fn`]. Private: its closure type
/// makes it unnameable anyway, so [`handler_fn`] returns `impl Handler<P>`.
struct HandlerFn<F, P> {
    f: F,
    _p: PhantomData<fn(P)>,
}

impl<F, P> fmt::Debug for HandlerFn<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerFn")
    }
}

/// Builds a [`Handler`] from an async closure taking the envelope and the context. A panic
/// inside it is caught and becomes an [`ErrorKind::Panicked`] error.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{handler_fn, HandlerError};
/// # #[derive(Clone, Debug)] struct OrderPlaced { order: u64 }
/// # impl syncbus_core::Event for OrderPlaced { const TYPE: &'static str = "shop.order.placed"; }
///
/// let reserve = handler_fn(|env: syncbus_core::Envelope<OrderPlaced>, _ctx| async move {
///     if env.payload().order == 0 {
///         return Err(HandlerError::permanent("order 0 does not exist"));
///     }
///     Ok(())
/// });
/// # let _ = reserve;
/// ```
pub fn handler_fn<P, F, Fut>(f: F) -> impl Handler<P> + fmt::Debug
where
    P: 'static,
    F: Fn(Envelope<P>, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    HandlerFn { f, _p: PhantomData }
}

impl<P, F, Fut> Handler<P> for HandlerFn<F, P>
where
    P: 'static,
    F: Fn(Envelope<P>, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn call(
        &self,
        env: Envelope<P>,
        ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let fut = catch_unwind(AssertUnwindSafe(|| (self.f)(env, ctx)));
        async move {
            match fut {
                Ok(fut) => catch_panic(fut).await,
                Err(panic) => Err(panicked(&panic)),
            }
        }
    }
}

/// A handler made from a blocking closure; see [`sync_handler_fn`]. Private, as
/// [`HandlerFn`] is.
struct SyncHandlerFn<F, P> {
    f: F,
    _p: PhantomData<fn(P)>,
}

impl<F, P> fmt::Debug for SyncHandlerFn<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SyncHandlerFn")
    }
}

/// Builds a [`Handler`] from a plain closure. It runs on the runtime's thread, so keep it
/// short (CPU work, an in-memory update); blocking I/O belongs in `spawn_blocking`.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{sync_handler_fn, HandlerError};
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
/// let h = sync_handler_fn(|_env: syncbus_core::Envelope<Ping>, _ctx| Ok::<(), HandlerError>(()));
/// # let _ = h;
/// ```
pub fn sync_handler_fn<P, F>(f: F) -> impl Handler<P> + fmt::Debug
where
    P: Send + 'static,
    F: Fn(Envelope<P>, Context) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    SyncHandlerFn { f, _p: PhantomData }
}

impl<P, F> Handler<P> for SyncHandlerFn<F, P>
where
    P: Send + 'static,
    F: Fn(Envelope<P>, Context) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    fn call(
        &self,
        env: Envelope<P>,
        ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let out = match catch_unwind(AssertUnwindSafe(|| (self.f)(env, ctx))) {
            Ok(r) => r,
            Err(panic) => Err(panicked(&panic)),
        };
        std::future::ready(out)
    }
}

type Panic = Box<dyn std::any::Any + Send>;

#[cold]
pub(crate) fn panicked(p: &Panic) -> HandlerError {
    let msg = if let Some(s) = p.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.as_str()
    } else {
        "non-string panic payload"
    };
    HandlerError::new(ErrorKind::Panicked, format!("handler panicked: {msg}"))
}

/// Awaits a future, turning a panic into an [`ErrorKind::Panicked`] error.
pub(crate) fn catch_panic<F>(fut: F) -> CatchPanic<F>
where
    F: Future<Output = Result<(), HandlerError>>,
{
    CatchPanic { fut }
}

/// [`catch_panic`] for futures with a value.
pub(crate) fn catch_panic_value<T, F>(fut: F) -> CatchPanic<F>
where
    F: Future<Output = Result<T, HandlerError>>,
{
    CatchPanic { fut }
}

pin_project_lite::pin_project! {
    /// The future of [`catch_panic`]: a plain struct around the inner future, so wrapping
    /// costs no second copy of it (an `async fn` wrapper would keep the argument and the
    /// awaited future side by side).
    pub(crate) struct CatchPanic<F> {
        #[pin]
        fut: F,
    }
}

impl<T, F> Future for CatchPanic<F>
where
    F: Future<Output = Result<T, HandlerError>>,
{
    type Output = Result<T, HandlerError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let fut = self.project().fut;
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(p) => p,
            Err(panic) => Poll::Ready(Err(panicked(&panic))),
        }
    }
}
