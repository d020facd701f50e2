//! The consume contract: anything that hands out deliveries to be settled.
//!
//! A [`Source`] is a pull-style reader: the bus's pull [`Consumer`](crate::Consumer), the
//! store's durable consumer, and the JetStream, poll and CDC readers. Each delivery it hands
//! out is settled exactly once, with the same four words everywhere (JetStream's):
//!
//! | settle | meaning |
//! | --- | --- |
//! | [`ack`](Settle::ack) | done: it will not come back |
//! | [`nak`](Settle::nak) | failed: deliver it again after the delay (zero: as soon as possible) |
//! | [`term`](Settle::term) | failed for good: never deliver it again (the caller has recorded it) |
//! | [`in_progress`](Settle::in_progress) | still working: extend the lease so it is not redelivered yet |
//!
//! A delivery dropped without being settled comes back once its lease (ack timeout) runs
//! out: delivery is at-least-once. The workflow runner (`Workflow::serve` in the workflow
//! crate) runs any source through the reliability layers and settles from the outcome.
//!
//! Both traits use `impl Future` in their methods, so they are implemented by plain `async`
//! code and called generically; they are not object-safe.

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use syncbus_envelope::{Envelope, Payload};

/// A pull-style reader that hands out [`Settle`]-able deliveries.
///
/// # Examples
///
/// The bus's pull consumer is a source:
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{Bus, ConsumerConfig, Event, Settle, Source};
/// # #[derive(Clone, Debug)] struct Job(u32);
/// # impl Event for Job { const TYPE: &'static str = "jobs.new"; }
///
/// type BoxError = Box<dyn std::error::Error + Send + Sync>;
///
/// async fn drain<S: Source>(source: &S) -> Result<usize, BoxError> {
///     let mut done = 0;
///     loop {
///         let batch = source.fetch(16, Duration::from_millis(20)).await?;
///         if batch.is_empty() {
///             return Ok(done);
///         }
///         for delivery in batch {
///             delivery.ack().await?;
///             done += 1;
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let bus = Bus::new();
/// let jobs = bus.consumer::<Job>("jobs.*", ConsumerConfig::default())?;
/// bus.try_publish(Job(1))?;
/// bus.try_publish(Job(2))?;
/// assert_eq!(drain(&jobs).await?, 2);
/// # Ok(()) }
/// ```
pub trait Source: Send + Sync {
    /// The payload type of the envelopes it hands out (`Bytes` for stored or foreign ones).
    type Payload: Payload;
    /// One delivery.
    type Delivery: Settle<Payload = Self::Payload>;
    /// What a failed fetch reports.
    type Error: Error + Send + Sync + 'static;

    /// The source's name, for metrics, logs and dead-letter records.
    fn name(&self) -> &str;

    /// Waits up to `wait` for at least one delivery, then takes up to `max`. An empty batch
    /// means none came in time (or the source is closed: see [`is_closed`](Self::is_closed)).
    /// `Duration::ZERO` looks once without waiting.
    ///
    /// # Cancel safety
    ///
    /// Implementations are cancel safe: nothing is handed out until the future completes.
    fn fetch(
        &self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Self::Delivery>, Self::Error>> + Send;

    /// Whether the source will hand out nothing more (its bus shut down, its stream was
    /// deleted). A runner stops when a source is closed.
    fn is_closed(&self) -> bool {
        false
    }
}

/// A delivery handed out by a [`Source`], settled once.
pub trait Settle: Send + Sized + 'static {
    /// The payload type of its envelope.
    type Payload: Payload;
    /// What a failed settle reports (for instance: the lease ran out and it was handed out
    /// again, or the store could not be written).
    type Error: Error + Send + Sync + 'static;

    /// The event.
    fn envelope(&self) -> &Envelope<Self::Payload>;

    /// How many times it was handed out, this time included (1 the first time).
    fn deliveries(&self) -> u32;

    /// Done: it will not come back.
    fn ack(self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Failed: deliver it again after `delay` (`Duration::ZERO`: as soon as possible).
    fn nak(self, delay: Duration) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Failed for good: never deliver it again. The source does not record it anywhere: the
    /// caller has (the workflow runner writes a dead letter first).
    fn term(self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Still working on it: extend its lease by the source's ack timeout.
    fn in_progress(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A shared source is a source: serve it while keeping a handle to look at it (its
/// `pending()`, its metrics).
impl<S: Source + ?Sized> Source for std::sync::Arc<S> {
    type Payload = S::Payload;
    type Delivery = S::Delivery;
    type Error = S::Error;

    fn name(&self) -> &str {
        (**self).name()
    }

    fn fetch(
        &self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Self::Delivery>, Self::Error>> + Send {
        (**self).fetch(max, wait)
    }

    fn is_closed(&self) -> bool {
        (**self).is_closed()
    }
}
