/// What a subscription does when its queue is full. Chosen per subscription; never silent.
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bus, Overflow};
/// # #[derive(Clone, Debug)] struct Tick;
/// # impl syncbus_core::Event for Tick { const TYPE: &'static str = "clock.tick"; }
///
/// let bus = Bus::new();
/// let _sub = bus
///     .subscribe::<Tick>("clock.tick")
///     .unwrap()
///     .capacity(1024)
///     .overflow(Overflow::DropOldest)
///     .queued(|_tick| {});
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// The publisher waits for room: backpressure. The default.
    ///
    /// Inside a tokio runtime, use `publish(..).await`, which awaits room. A
    /// `blocking_publish` there still works on a multi-thread runtime (the wait moves off the worker
    /// with `block_in_place`); on a current-thread runtime, where waiting would stop the
    /// thread that must make room, it fails with
    /// [`PublishError::WouldBlock`](crate::PublishError::WouldBlock) unless worker threads
    /// drain the queue. `try_publish` never waits: a full queue is
    /// [`PublishError::Full`](crate::PublishError::Full).
    #[default]
    Block,
    /// The publish fails with [`PublishError::Full`](crate::PublishError::Full), handing the
    /// event back. If other subscriptions had room they keep their copy, and the error is
    /// [`PublishError::Partial`](crate::PublishError::Partial) instead, naming who took it and
    /// who refused, so a retry can go to the refusers only.
    Reject,
    /// The oldest queued event is dropped to make room. Drops are counted in the
    /// subscription's metrics and reported to its `on_lag` callback before the next event.
    DropOldest,
}
