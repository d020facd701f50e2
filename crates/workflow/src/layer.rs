//! Composing handlers: the [`Layer`] trait, [`Stack`], and optional layers.

use std::fmt;

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
    async fn call(&self, env: Envelope<P>, ctx: Context) -> Result<(), HandlerError> {
        match self {
            Either::Left(a) => a.call(env, ctx).await,
            Either::Right(b) => b.call(env, ctx).await,
        }
    }
}

/// Layers applied outside-in, in the order they were added: the first added is outermost.
///
/// # Examples
///
/// See [`Layer`].
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
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl<H> Layer<H> for Identity {
    type Handler = H;
    fn layer(&self, inner: H) -> H {
        inner
    }
}

/// Two layers: `outer` wraps what `inner` made.
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
    /// See [`Layer`].
    pub fn new() -> Stack {
        Stack { layers: Identity }
    }
}

impl<L> Stack<L> {
    /// Adds a layer inside the ones added before.
    ///
    /// # Examples
    ///
    /// See [`Layer`].
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
    /// See [`Layer`].
    pub fn handler<H>(&self, handler: H) -> L::Handler
    where
        L: Layer<H>,
    {
        self.layers.layer(handler)
    }
}
