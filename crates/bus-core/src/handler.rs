//! What a push handler may return, and running it so a panic is a counted failure.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use syncbus_envelope::EventId;

use crate::metrics::{Stat, Stripe, SubStats};

/// The return type of a push handler: `()` (always succeeds) or `Result<(), E>`.
///
/// A failure is counted in the subscription's metrics, logged at WARN with the event id,
/// and handed to the subscription's
/// [`on_failure`](crate::SubscribeBuilder::on_failure) hook if it has one. It is final: a
/// plain subscription never retries. Retries, dead letters and redrive are the workflow
/// crate's (`syncbus-workflow` subscriptions and `Workflow::serve`).
///
/// # Examples
///
/// ```
/// use syncbus_core::Bus;
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl syncbus_core::Event for Ping { const TYPE: &'static str = "ping"; }
///
/// let bus = Bus::new();
/// let sub = bus
///     .subscribe::<Ping>("ping")
///     .unwrap()
///     .inline(|_| -> Result<(), String> { Err("downstream is down".into()) })
///     .unwrap();
/// bus.blocking_publish(Ping).unwrap();
/// assert_eq!(sub.metrics().failed, 1);
/// ```
pub trait HandlerResult {
    /// `Ok` on success, the error's text on failure.
    fn into_outcome(self) -> Result<(), String>;
}

impl HandlerResult for () {
    #[inline]
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> HandlerResult for Result<(), E> {
    #[inline]
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// Why a plain subscription's handler did not succeed, as its
/// [`on_failure`](crate::SubscribeBuilder::on_failure) hook sees it.
///
/// # Examples
///
/// ```
/// use syncbus_core::HandlerFailure;
///
/// let failure = HandlerFailure::Error("downstream is down".into());
/// assert_eq!(failure.message(), "downstream is down");
/// assert!(!failure.is_panic());
/// assert_eq!(failure.to_string(), "handler failed: downstream is down");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerFailure {
    /// The handler returned an error; its text.
    Error(String),
    /// The handler panicked; the panic message.
    Panic(String),
}

impl HandlerFailure {
    /// The error's text or the panic message; see [`HandlerFailure`] for an example.
    pub fn message(&self) -> &str {
        match self {
            HandlerFailure::Error(m) | HandlerFailure::Panic(m) => m,
        }
    }

    /// Whether the handler panicked; see [`HandlerFailure`] for an example.
    pub fn is_panic(&self) -> bool {
        matches!(self, HandlerFailure::Panic(_))
    }
}

impl fmt::Display for HandlerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerFailure::Error(m) => write!(f, "handler failed: {m}"),
            HandlerFailure::Panic(m) => write!(f, "handler panicked: {m}"),
        }
    }
}

impl std::error::Error for HandlerFailure {}

/// Whether TRACE spans would be recorded: one load of the global level filter, so hot paths
/// skip building spans when nobody listens.
#[inline]
pub(crate) fn tracing_on() -> bool {
    tracing::level_enabled!(tracing::Level::TRACE)
}

/// Runs a sync handler, catching a panic, and counts and logs the outcome.
#[inline]
pub(crate) fn run_sync<R: HandlerResult>(
    stats: &SubStats,
    name: &str,
    id: &EventId,
    f: impl FnOnce() -> R,
) -> Result<(), HandlerFailure> {
    run_sync_on(stats, None, name, id, f)
}

/// [`run_sync`], counting a success on `stripe` when the caller looked it up already.
#[inline]
pub(crate) fn run_sync_on<R: HandlerResult>(
    stats: &SubStats,
    stripe: Option<Stripe>,
    name: &str,
    id: &EventId,
    f: impl FnOnce() -> R,
) -> Result<(), HandlerFailure> {
    match catch_unwind(AssertUnwindSafe(|| f().into_outcome())) {
        Ok(Ok(())) => {
            match stripe {
                Some(stripe) => stats.incr_on(stripe, Stat::Delivered),
                None => stats.incr(Stat::Delivered),
            }
            Ok(())
        }
        Ok(Err(e)) => Err(failed(stats, name, id, e)),
        Err(panic) => Err(panicked(stats, name, id, &panic)),
    }
}

/// Runs a subscription's hook (`on_failure`, `on_lag`), catching a panic: a hook that
/// panics is logged at ERROR and the worker goes on, as after a panicking handler.
#[inline]
pub(crate) fn run_hook(name: &str, hook: &'static str, f: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
        hook_panicked(name, hook, &panic);
    }
}

#[cold]
fn hook_panicked(name: &str, hook: &'static str, panic: &Panic) {
    let message = panic_message(panic);
    tracing::error!(subscription = name, hook, panic = message, "hook panicked");
}

/// Calls an async handler, catching a panic in the call itself: the handler's own body
/// before the future it returns (a closure's code outside its `async` block) panics like
/// any handler, and is counted as one by [`run_async`]. Called where the caller has the
/// envelope, so it moves straight into the handler's future.
pub(crate) fn call_async<Fut>(call: impl FnOnce() -> Fut) -> Result<Fut, Panic> {
    catch_unwind(AssertUnwindSafe(call))
}

/// Runs an async handler's future (or the panic of its call, see [`call_async`]), catching
/// a panic, and counts and logs the outcome.
pub(crate) async fn run_async<R: HandlerResult>(
    stats: &SubStats,
    name: &str,
    id: &EventId,
    called: Result<impl Future<Output = R>, Panic>,
) -> Result<(), HandlerFailure> {
    let fut = match called {
        Ok(fut) => fut,
        Err(panic) => return Err(panicked(stats, name, id, &panic)),
    };
    tokio::pin!(fut);
    let caught = CatchUnwind { fut: fut.as_mut() }.await;
    match caught {
        Ok(r) => run_sync(stats, name, id, || r),
        Err(panic) => Err(panicked(stats, name, id, &panic)),
    }
}

pub(crate) type Panic = Box<dyn std::any::Any + Send>;

/// Counts and logs a handler error: final for a plain subscription.
#[cold]
fn failed(stats: &SubStats, name: &str, id: &EventId, error: String) -> HandlerFailure {
    stats.incr(Stat::Failed);
    tracing::warn!(subscription = name, event_id = %id, error = %error, "handler failed");
    HandlerFailure::Error(error)
}

/// Counts and logs a handler panic: a failure like any other, never a crashed worker.
#[cold]
fn panicked(stats: &SubStats, name: &str, id: &EventId, panic: &Panic) -> HandlerFailure {
    stats.incr(Stat::Failed);
    stats.incr(Stat::Panicked);
    let message = panic_message(panic);
    tracing::error!(subscription = name, event_id = %id, panic = message, "handler panicked");
    HandlerFailure::Panic(message.to_owned())
}

struct CatchUnwind<'a, F> {
    fut: Pin<&'a mut F>,
}

impl<F: Future> Future for CatchUnwind<'_, F> {
    type Output = Result<F::Output, Panic>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.fut.as_mut();
        match catch_unwind(AssertUnwindSafe(move || fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

fn panic_message(p: &Panic) -> &str {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}
