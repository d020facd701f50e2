//! What a push handler may return, and running it so a panic is a counted failure.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::metrics::{Stat, SubStats};

/// The return type of a push handler: `()` (always succeeds) or `Result<(), E>`.
///
/// A failure is counted in the subscription's metrics and logged with `tracing`; retries and
/// dead letters for push handlers are the job of the workflow layers.
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

/// Whether TRACE spans would be recorded: one load of the global level filter, so hot paths
/// skip building spans when nobody listens.
#[inline]
pub(crate) fn tracing_on() -> bool {
    tracing::level_enabled!(tracing::Level::TRACE)
}

/// Runs a sync handler, catching a panic, and counts the outcome.
#[inline]
pub(crate) fn run_sync<R: HandlerResult>(
    stats: &SubStats,
    name: &str,
    f: impl FnOnce() -> R,
) -> bool {
    match catch_unwind(AssertUnwindSafe(|| f().into_outcome())) {
        Ok(Ok(())) => {
            stats.incr(Stat::Delivered);
            true
        }
        Ok(Err(e)) => {
            stats.incr(Stat::Failed);
            tracing::warn!(subscription = name, error = %e, "handler failed");
            false
        }
        Err(panic) => panicked(stats, name, &panic),
    }
}

/// Runs an async handler's future, catching a panic, and counts the outcome.
pub(crate) async fn run_async<R: HandlerResult>(
    stats: &SubStats,
    name: &str,
    fut: impl Future<Output = R>,
) -> bool {
    tokio::pin!(fut);
    let caught = CatchUnwind { fut: fut.as_mut() }.await;
    match caught {
        Ok(r) => run_sync(stats, name, || r),
        Err(panic) => panicked(stats, name, &panic),
    }
}

type Panic = Box<dyn std::any::Any + Send>;

/// Counts and logs a handler panic: a failure like any other, never a crashed worker.
#[cold]
fn panicked(stats: &SubStats, name: &str, panic: &Panic) -> bool {
    stats.incr(Stat::Failed);
    stats.incr(Stat::Panicked);
    tracing::error!(
        subscription = name,
        panic = panic_message(panic),
        "handler panicked"
    );
    false
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
