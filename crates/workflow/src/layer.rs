//! Composing handlers: the [`Layer`] trait, [`Stack`], and optional layers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use syncbus_envelope::Envelope;

use crate::context::Context;
use crate::error::HandlerError;
use crate::handler::Handler;

/// Wraps a handler in another, like tower's `Layer`: `RetryLayer` makes a `Retry<H>`.
///
/// `Option<L>` is a layer too: `None` leaves the handler as it is.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_workflow::{handler_fn, Layer, RetryPolicy, Stack, TimeoutLayer};
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// let handler = Stack::new()
///     .layer(RetryPolicy::default().layer())
///     .layer(TimeoutLayer::new(Duration::from_secs(5)))
///     .handler(handler_fn(|_env: syncbus_core::Envelope<Ping>, _ctx| async { Ok(()) }));
/// # let _ = handler;
/// ```
pub trait Layer<H> {
    /// The wrapped handler.
    type Handler;

    /// Wraps `inner`.
    fn layer(&self, inner: H) -> Self::Handler;
}

impl<H, L: Layer<H>> Layer<H> for Option<L> {
    type Handler = Either<L::Handler, H>;

    fn layer(&self, inner: H) -> Self::Handler {
        match self {
            Some(l) => Either::Left(l.layer(inner)),
            None => Either::Right(inner),
        }
    }
}

/// One of two handlers; what an optional layer makes.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{handler_fn, Either, Layer, TimeoutLayer};
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
/// let timeout: Option<TimeoutLayer> = None; // e.g. from configuration
/// let h = timeout.layer(handler_fn(|_e: syncbus_core::Envelope<Ping>, _c| async { Ok(()) }));
/// assert!(matches!(h, Either::Right(_))); // no layer: the handler itself
/// ```
#[derive(Debug, Clone)]
pub enum Either<A, B> {
    /// The layer was there.
    Left(A),
    /// It was not.
    Right(B),
}

impl<P, A, B> Handler<P> for Either<A, B>
where
    P: Send + 'static,
    A: Handler<P>,
    B: Handler<P>,
{
    fn call(
        &self,
        env: Envelope<P>,
        ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        // One future or the other, never both: an `async fn` with an `.await` per arm would
        // keep room for both, doubling the size at every optional layer.
        match self {
            Either::Left(a) => EitherFuture::Left {
                fut: a.call(env, ctx),
            },
            Either::Right(b) => EitherFuture::Right {
                fut: b.call(env, ctx),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Either`]'s handler.
    #[project = EitherProj]
    enum EitherFuture<A, B> {
        Left { #[pin] fut: A },
        Right { #[pin] fut: B },
    }
}

impl<T, A: Future<Output = T>, B: Future<Output = T>> Future for EitherFuture<A, B> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<T> {
        match self.project() {
            EitherProj::Left { fut } => fut.poll(cx),
            EitherProj::Right { fut } => fut.poll(cx),
        }
    }
}

/// Layers applied outside-in, in the order they were added: the first added is outermost.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{Bus, Envelope};
/// use syncbus_workflow::{handler_fn, Context, Handler, HandlerError, RetryPolicy, Stack, TimeoutLayer};
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// // The timeout is inside the retry: each attempt gets 1 s, and a timeout is retried.
/// let h = Stack::new()
///     .layer(RetryPolicy::new().max_attempts(2).layer())
///     .layer(TimeoutLayer::new(Duration::from_secs(1)))
///     .handler(handler_fn(|_e: Envelope<Ping>, _c| async {
///         tokio::time::sleep(Duration::from_secs(60)).await;
///         Ok::<(), HandlerError>(())
///     }));
/// let bus = Bus::new();
/// let env = Envelope::from_event(Ping);
/// let ctx = Context::new(&bus, env.meta());
/// assert!(h.call(env, ctx.clone()).await.is_err());
/// assert_eq!(ctx.attempt(), 2); // both attempts timed out
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Stack<L = Identity> {
    layers: L,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stack")
    }
}

/// The empty layer.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{handler_fn, Identity, Layer};
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
/// let h = Identity.layer(handler_fn(|_e: syncbus_core::Envelope<Ping>, _c| async { Ok(()) }));
/// # let _ = h;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl<H> Layer<H> for Identity {
    type Handler = H;
    fn layer(&self, inner: H) -> H {
        inner
    }
}

/// Two layers: `outer` wraps what `inner` made.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::{Identity, Pair, RetryLayer, Stack, TimeoutLayer};
/// // The type of a stack names its layers, outermost first.
/// let stack: Stack<Pair<Pair<Identity, RetryLayer>, TimeoutLayer>> = Stack::new()
///     .layer(syncbus_workflow::RetryPolicy::new().layer())
///     .layer(TimeoutLayer::new(std::time::Duration::from_secs(1)));
/// # let _ = stack;
/// ```
#[derive(Debug, Clone)]
pub struct Pair<Outer, Inner> {
    outer: Outer,
    inner: Inner,
}

impl<H, Outer, Inner> Layer<H> for Pair<Outer, Inner>
where
    Inner: Layer<H>,
    Outer: Layer<Inner::Handler>,
{
    type Handler = Outer::Handler;
    fn layer(&self, h: H) -> Self::Handler {
        self.outer.layer(self.inner.layer(h))
    }
}

impl Stack {
    /// An empty stack.
    ///
    /// # Examples
    ///
    /// ```
    /// let stack = syncbus_workflow::Stack::new(); // adds nothing: the handler as it is
    /// # let _ = stack;
    /// ```
    pub fn new() -> Stack {
        Stack { layers: Identity }
    }
}

impl<L> Stack<L> {
    /// Adds a layer inside the ones added before.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::{ConcurrencyLimitLayer, RetryPolicy, Stack};
    /// let stack = Stack::new()
    ///     .layer(RetryPolicy::new().layer()) // outermost
    ///     .layer(ConcurrencyLimitLayer::new(4)); // inside the retry: a retry waits for a permit
    /// # let _ = stack;
    /// ```
    pub fn layer<N>(self, layer: N) -> Stack<Pair<L, N>> {
        Stack {
            layers: Pair {
                outer: self.layers,
                inner: layer,
            },
        }
    }

    /// Wraps `handler` in every layer.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::{handler_fn, Stack, TimeoutLayer};
    /// # #[derive(Clone, Debug)] struct Ping;
    /// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
    /// let stack = Stack::new().layer(TimeoutLayer::new(std::time::Duration::from_secs(1)));
    /// // One stack can wrap several handlers.
    /// let a = stack.handler(handler_fn(|_e: syncbus_core::Envelope<Ping>, _c| async { Ok(()) }));
    /// let b = stack.handler(handler_fn(|_e: syncbus_core::Envelope<Ping>, _c| async { Ok(()) }));
    /// # let _ = (a, b);
    /// ```
    pub fn handler<H>(&self, handler: H) -> L::Handler
    where
        L: Layer<H>,
    {
        self.layers.layer(handler)
    }
}
