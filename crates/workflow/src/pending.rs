//! Keeping a long run alive: a tick every so often while a future is still pending (the
//! serve runner's `in_progress`, the dedup layer's claim renewal).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

/// What [`Ticking::next`] saw first.
pub(crate) enum Step<T> {
    /// The run finished.
    Done(T),
    /// `every` passed and the run is still pending: do the keep-alive, then call `next` again.
    Tick,
}

/// A run with a tick every `every` while it is pending. Most runs finish in their first poll:
/// only one still pending gets a timer (no clock read, nothing registered otherwise). While
/// the caller handles a tick the run is not polled, so keep ticks short.
pub(crate) struct Ticking<'a, F: ?Sized> {
    run: Pin<&'a mut F>,
    every: Duration,
    timer: Option<Interval>,
}

impl<'a, F: Future + ?Sized> Ticking<'a, F> {
    pub(crate) fn new(run: Pin<&'a mut F>, every: Duration) -> Self {
        Ticking {
            run,
            every,
            timer: None,
        }
    }

    pub(crate) async fn next(&mut self) -> Step<F::Output> {
        let timer = match &mut self.timer {
            Some(timer) => timer,
            None => {
                let run = &mut self.run;
                if let Poll::Ready(out) =
                    std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await
                {
                    return Step::Done(out);
                }
                let mut timer = tokio::time::interval_at(Instant::now() + self.every, self.every);
                timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
                self.timer.insert(timer)
            }
        };
        tokio::select! {
            biased;
            out = self.run.as_mut() => Step::Done(out),
            _ = timer.tick() => Step::Tick,
        }
    }
}
