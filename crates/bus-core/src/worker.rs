//! What runs a queued subscription's or tap's worker: its context, the handler calls both
//! kinds of worker make (a queue's, here, and a ring's, in `lanes`), the queue loops, and
//! the stop flag a shutdown sets.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use smol_str::SmolStr;
use syncbus_envelope::{Envelope, EventId, Payload};

use crate::handler::{
    call_async, run_async, run_hook, run_sync, tracing_on, HandlerFailure, HandlerResult,
};
use crate::metrics::SubStats;
use crate::queue::Queue;
use crate::tapped::Tapped;
use crate::workers::Workers;

pub(crate) type LagFn = Arc<dyn Fn(u64) + Send + Sync>;
/// A failure hook for handlers of `V` (an envelope, or what a tap sees).
pub(crate) type Hook<V> = dyn Fn(&V, &HandlerFailure) + Send + Sync;

/// What a worker hands its handler: an envelope, or what a tap sees. It names the event in
/// logs.
pub(crate) trait Handled: Clone + Send + 'static {
    fn event_id(&self) -> &EventId;
}

impl<P: Payload> Handled for Envelope<P> {
    #[inline]
    fn event_id(&self) -> &EventId {
        self.id()
    }
}

impl Handled for Tapped {
    #[inline]
    fn event_id(&self) -> &EventId {
        self.id()
    }
}

pub(crate) struct WorkerCtx {
    pub(crate) stats: Arc<SubStats>,
    pub(crate) stop: Arc<Stop>,
    pub(crate) name: SmolStr,
    pub(crate) on_lag: Option<LagFn>,
    pub(crate) workers: Arc<Workers>,
    pub(crate) completion: Arc<Workers>,
}

impl WorkerCtx {
    /// Pops items of `queue`, turns each into what the handler takes with `unpack`, and runs
    /// the handler on it, until the queue is closed and empty or shutdown aborts.
    pub(crate) fn run_thread<T, V: Handled, U, F, R>(
        self,
        queue: &Queue<T>,
        unpack: U,
        handler: &F,
        on_failure: Option<&Hook<V>>,
    ) where
        U: Fn(T) -> V,
        F: Fn(&V) -> R,
        R: HandlerResult,
    {
        let _done = Done(&self);
        while let Some(packed) = queue.pop_wait() {
            if self.stop.aborted() {
                self.stop.abandon(1);
                break;
            }
            let env = unpack(packed);
            self.report_lag(queue.take_lost());
            self.handle(&env, handler, on_failure);
        }
    }

    /// Runs a sync handler on one event: counted, traced, a failure passed to the hook.
    #[inline]
    pub(crate) fn handle<V: Handled, F, R>(
        &self,
        env: &V,
        handler: &F,
        on_failure: Option<&Hook<V>>,
    ) where
        F: Fn(&V) -> R,
        R: HandlerResult,
    {
        let id = env.event_id();
        let outcome = if tracing_on() {
            let _span = tracing::trace_span!("handle", subscription = %self.name).entered();
            run_sync(&self.stats, &self.name, id, || handler(env))
        } else {
            run_sync(&self.stats, &self.name, id, || handler(env))
        };
        if let (Err(failure), Some(hook)) = (outcome, on_failure) {
            run_hook(&self.name, "on_failure", || hook(env, &failure));
        }
    }

    /// The async form of [`handle`](Self::handle): the handler takes the envelope. The
    /// handler is called here, not at the first poll, so the envelope moves straight into
    /// its future instead of waiting in this one; a panic in that call is caught as one in
    /// the future.
    pub(crate) fn handle_async<'a, V: Handled + 'a, F, Fut, R>(
        &'a self,
        env: V,
        handler: &F,
        on_failure: Option<&'a Hook<V>>,
    ) -> impl Future<Output = ()> + 'a
    where
        F: Fn(V) -> Fut,
        Fut: Future<Output = R> + 'a,
        R: HandlerResult,
    {
        let id = env.event_id().clone();
        // The handler takes the envelope: keep a copy only for a hook that wants it.
        let copy = on_failure.map(|_| env.clone());
        let called = call_async(|| handler(env));
        async move {
            let outcome = if tracing_on() {
                use tracing::Instrument;
                let span = tracing::trace_span!("handle", subscription = %self.name);
                run_async(&self.stats, &self.name, &id, called)
                    .instrument(span)
                    .await
            } else {
                run_async(&self.stats, &self.name, &id, called).await
            };
            if let (Err(failure), Some(hook), Some(env)) = (outcome, on_failure, copy) {
                run_hook(&self.name, "on_failure", || hook(&env, &failure));
            }
        }
    }

    /// The async form of [`run_thread`](Self::run_thread).
    pub(crate) async fn run_task<T, V: Handled, U, F, Fut, R>(
        self,
        queue: &Queue<T>,
        unpack: U,
        handler: &F,
        on_failure: Option<&Hook<V>>,
    ) where
        U: Fn(T) -> V,
        F: Fn(V) -> Fut,
        Fut: Future<Output = R>,
        R: HandlerResult,
    {
        let _done = Done(&self);
        while let Some(packed) = queue.pop_wait_async().await {
            if self.stop.aborted() {
                self.stop.abandon(1);
                break;
            }
            let env = unpack(packed);
            self.report_lag(queue.take_lost());
            self.handle_async(env, handler, on_failure).await;
        }
    }

    /// Reports events lost to `DropOldest` (logged, and to the `on_lag` callback).
    #[inline]
    pub(crate) fn report_lag(&self, lost: u64) {
        if lost > 0 {
            tracing::warn!(subscription = %self.name, lost, "subscription lagged: events dropped");
            if let Some(f) = &self.on_lag {
                run_hook(&self.name, "on_lag", || f(lost));
            }
        }
    }
}

/// Marks a worker finished even if its loop unwinds.
pub(crate) struct Done<'a>(&'a WorkerCtx);

impl WorkerCtx {
    /// The guard a worker loop holds: it marks the worker finished when dropped.
    pub(crate) fn done(&self) -> Done<'_> {
        Done(self)
    }
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.workers.finish();
        self.0.completion.finish();
    }
}
/// Tells workers to stop before their queue is empty (a shutdown deadline passed), and
/// collects the events they had taken but not handled.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    abort: AtomicBool,
    abandoned: AtomicUsize,
}

impl Stop {
    #[inline]
    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    pub(crate) fn abandon(&self, n: usize) {
        if n > 0 {
            self.abandoned.fetch_add(n, Ordering::SeqCst);
            tracing::warn!(count = n, "worker stopped by shutdown with events in hand");
        }
    }

    /// Tells the workers to stop after the event in hand.
    pub(crate) fn abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
    }

    /// The events workers took and put down unhandled since the last call.
    pub(crate) fn take_abandoned(&self) -> usize {
        self.abandoned.swap(0, Ordering::SeqCst)
    }
}
