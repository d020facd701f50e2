//! Batch subscriptions: a handler that takes a `Vec` of envelopes, over any
//! [`Source`] (the bus's pull consumer for bus topics, the durable consumer, JetStream, a
//! poller).

mod config;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use syncbus_core::{Settle, Source};
use syncbus_envelope::{Bytes, Envelope, Payload, Timestamp};
use syncbus_storage::{DeadLetterId, DeadLetterRecord, DeadLetterStore};
use syncbus_workflow::HandlerError;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::{BatchConfig, OnBatchFailure};

use crate::error::{ConfigError, StreamError};

/// A handler of a batch of envelopes. Implemented for every
/// `Fn(Vec<Envelope<P>>) -> impl Future<Output = Result<(), HandlerError>>`.
///
/// # Examples
///
/// ```
/// use syncbus_core::Envelope;
/// use syncbus_stream::BatchHandler;
/// use syncbus_workflow::HandlerError;
///
/// fn takes<H: BatchHandler<String>>(_: H) {}
/// takes(|batch: Vec<Envelope<String>>| async move {
///     println!("{} events", batch.len());
///     Ok::<(), HandlerError>(())
/// });
/// ```
pub trait BatchHandler<P>: Send + Sync + 'static {
    /// Handles one batch; `Ok` acks every event of it.
    fn handle(
        &self,
        batch: Vec<Envelope<P>>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<P, F, Fut> BatchHandler<P> for F
where
    F: Fn(Vec<Envelope<P>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(
        &self,
        batch: Vec<Envelope<P>>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(batch)
    }
}

/// What a batch runner has done. The same counts go to the `metrics` facade, labelled
/// `batch` (the runner's name): `syncbus_batch_batches_total` (label `trigger`: `size`,
/// `time`, `flush`), `syncbus_batch_events_total`, `syncbus_batch_acked_total`,
/// `syncbus_batch_failed_attempts_total`, `syncbus_batch_splits_total`,
/// `syncbus_batch_dead_lettered_total`, `syncbus_batch_redelivered_total`.
///
/// # Examples
///
/// ```
/// let m = syncbus_stream::BatchMetrics::default();
/// assert_eq!(m.batches, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchMetrics {
    /// Batches handed to the handler (first attempts, split slices not counted).
    pub batches: u64,
    /// Events in those batches.
    pub events: u64,
    /// Batches handed over because they were full.
    pub by_size: u64,
    /// Batches handed over because their first event had waited `max_wait`.
    pub by_time: u64,
    /// Batches handed over at shutdown or when the source closed.
    pub flushed: u64,
    /// Events acked after their handler returned `Ok`.
    pub acked: u64,
    /// Handler calls that failed (every attempt of every batch or slice).
    pub failed_attempts: u64,
    /// Failing batches or slices split in two.
    pub splits: u64,
    /// Events dead-lettered alone.
    pub dead_lettered: u64,
    /// Events nak'ed to be handed out again.
    pub redelivered: u64,
    /// Settles the source refused (the source hands those deliveries out again).
    pub settle_failed: u64,
}

/// Why a batch was handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Size,
    Time,
    Flush,
}

/// A batch handler running over a source on a tokio task.
///
/// # Triggers
///
/// A batch is handed over when it holds [`max_size`](BatchConfig::max_size) events, when
/// its first event has waited [`max_wait`](BatchConfig::max_wait), or when the runner
/// stops ([`BatchRunner::stop`]) or the source closes: a flush of what is held and of what
/// the source has ready (fetched without waiting until it has nothing; stop the producers
/// first, or a source fed faster than the handler keeps the flush going). One batch is
/// handled at a time: a slow handler slows the fetching, and the source holds the rest.
///
/// # Order
///
/// A batch holds its events in the order the source handed them out, so events of one
/// entity keep their order inside a batch and across batches. When a failing batch is split
/// ([`OnBatchFailure::Isolate`]) its halves are handled left first; an isolated poison
/// event is dead-lettered and later events of its entity go on.
///
/// # Failures
///
/// A batch whose handler fails is retried whole by [`BatchConfig::retry`] (retryable
/// errors only). Then, by [`OnBatchFailure`]: the whole batch is nak'ed to come back later
/// (the default), or it is split to isolate the event that fails alone, which alone goes to
/// the dead-letter store. Acks happen only after the handler returned `Ok` for the events.
///
/// # Leases
///
/// While a batch is handled, and between its retries, its deliveries are marked
/// `in_progress` every [`BatchConfig::in_progress_every`], so the source does not hand them
/// out again meanwhile. While a batch forms they are not: keep
/// [`max_wait`](BatchConfig::max_wait) well under the source's ack timeout.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use syncbus_core::{Bus, ConsumerConfig, Envelope};
/// use syncbus_stream::{BatchConfig, BatchRunner};
/// use syncbus_workflow::HandlerError;
/// # #[derive(Clone, Debug)] struct Sale(u32);
/// # impl syncbus_core::Event for Sale { const TYPE: &'static str = "shop.sale"; }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::new();
/// let sales = bus.consumer::<Sale>("shop.sale", ConsumerConfig::default())?;
/// let sizes = Arc::new(Mutex::new(vec![]));
/// let seen = sizes.clone();
/// let config = BatchConfig::new("sales").max_size(3).max_wait(Duration::from_secs(60));
/// let runner = BatchRunner::spawn(sales, config, move |batch: Vec<Envelope<Sale>>| {
///     seen.lock().unwrap().push(batch.len());
///     async { Ok::<(), HandlerError>(()) }
/// })?;
/// for i in 0..4 {
///     bus.publish_to("shop.sale", Sale(i)).await?;
/// }
/// while runner.metrics().acked < 3 {
///     tokio::time::sleep(Duration::from_millis(5)).await; // the full batch goes at once
/// }
/// let metrics = runner.stop().await?; // flushes the last one
/// assert_eq!(*sizes.lock().unwrap(), [3, 1]);
/// assert_eq!((metrics.by_size, metrics.flushed, metrics.acked), (1, 1, 4));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BatchRunner {
    stop: watch::Sender<bool>,
    metrics: Arc<Mutex<BatchMetrics>>,
    task: JoinHandle<Result<(), StreamError>>,
}

impl BatchRunner {
    /// Runs `handler` over batches from `source` until [`stop`](Self::stop), the source
    /// closes or a fetch fails.
    ///
    /// # Examples
    ///
    /// See [`BatchRunner`].
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a batch size of zero or a wait under a millisecond.
    pub fn spawn<S, H>(source: S, config: BatchConfig, handler: H) -> Result<Self, ConfigError>
    where
        S: Source + 'static,
        H: BatchHandler<S::Payload>,
    {
        config.check()?;
        let (stop, stop_rx) = watch::channel(false);
        let metrics = Arc::new(Mutex::new(BatchMetrics::default()));
        let run = Run {
            source,
            config,
            handler,
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(run.run(stop_rx));
        Ok(BatchRunner {
            stop,
            metrics,
            task,
        })
    }

    /// The counters so far.
    ///
    /// # Examples
    ///
    /// See [`BatchRunner`].
    pub fn metrics(&self) -> BatchMetrics {
        *self.metrics.lock()
    }

    /// Whether the runner has stopped (the source closed or failed).
    ///
    /// # Examples
    ///
    /// See [`BatchRunner`].
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops: waits for the batch in hand, hands over (flushes) what is held and what the
    /// source has ready without waiting, settles it all, and returns the counters.
    ///
    /// # Examples
    ///
    /// See [`BatchRunner`].
    ///
    /// # Errors
    ///
    /// [`StreamError::Source`] if a fetch failed (what was held before is flushed first).
    pub async fn stop(self) -> Result<BatchMetrics, StreamError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result.map(|()| *self.metrics.lock()),
            Err(e) => Err(StreamError::Source(Box::new(e))),
        }
    }
}

struct Run<S: Source, H> {
    source: S,
    config: BatchConfig,
    handler: H,
    metrics: Arc<Mutex<BatchMetrics>>,
}

impl<S: Source, H: BatchHandler<S::Payload>> Run<S, H> {
    async fn run(self, mut stop: watch::Receiver<bool>) -> Result<(), StreamError> {
        let mut held: Vec<S::Delivery> = Vec::with_capacity(self.config.max_size);
        let mut since: Option<Instant> = None;
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            let wait = match since {
                Some(t) => (t + self.config.max_wait).saturating_duration_since(Instant::now()),
                None => self.config.max_wait,
            };
            let room = self.config.max_size - held.len();
            let fetched = tokio::select! {
                fetched = self.source.fetch(room, wait) => fetched,
                _ = stop.changed() => continue,
            };
            let fetched = match fetched {
                Ok(f) => f,
                Err(e) => {
                    self.handle(std::mem::take(&mut held), Trigger::Flush).await;
                    return Err(StreamError::Source(Box::new(e)));
                }
            };
            let empty = fetched.is_empty();
            if !empty && since.is_none() {
                since = Some(Instant::now());
            }
            held.extend(fetched);
            let trigger = if held.len() >= self.config.max_size {
                Some(Trigger::Size)
            } else if since.is_some_and(|t| t.elapsed() >= self.config.max_wait) {
                Some(Trigger::Time)
            } else {
                None
            };
            if let Some(trigger) = trigger {
                since = None;
                self.handle(std::mem::take(&mut held), trigger).await;
            }
            if empty && self.source.is_closed() {
                break;
            }
        }
        // Stopping: what is held, then what the source has ready now, looked at without
        // waiting until it has nothing.
        loop {
            let room = self.config.max_size - held.len();
            let ready = self
                .source
                .fetch(room, Duration::ZERO)
                .await
                .map_err(|e| StreamError::Source(Box::new(e)));
            let ready = match ready {
                Ok(r) => r,
                Err(e) => {
                    self.handle(held, Trigger::Flush).await;
                    return Err(e);
                }
            };
            let empty = ready.is_empty();
            held.extend(ready);
            if empty || held.len() >= self.config.max_size {
                self.handle(std::mem::take(&mut held), Trigger::Flush).await;
            }
            if empty {
                return Ok(());
            }
        }
    }

    fn bump(&self, f: impl FnOnce(&mut BatchMetrics)) {
        f(&mut self.metrics.lock());
    }

    /// A counter of the `metrics` facade, labelled with the runner's name.
    fn count(&self, name: &'static str, n: u64) {
        metrics::counter!(name, "batch" => self.config.name.clone()).increment(n);
    }

    /// Handles one batch to the end: every delivery in it is settled when this returns.
    async fn handle(&self, batch: Vec<S::Delivery>, trigger: Trigger) {
        if batch.is_empty() {
            return;
        }
        self.bump(|m| {
            m.batches += 1;
            m.events += batch.len() as u64;
            match trigger {
                Trigger::Size => m.by_size += 1,
                Trigger::Time => m.by_time += 1,
                Trigger::Flush => m.flushed += 1,
            }
        });
        let trigger_name = match trigger {
            Trigger::Size => "size",
            Trigger::Time => "time",
            Trigger::Flush => "flush",
        };
        metrics::counter!("syncbus_batch_batches_total", "batch" => self.config.name.clone(), "trigger" => trigger_name).increment(1);
        self.count("syncbus_batch_events_total", batch.len() as u64);
        // Slices still to handle, the next on top: halves are pushed right then left.
        let mut todo = vec![batch];
        while let Some(mut slice) = todo.pop() {
            let envelopes: Vec<_> = slice.iter().map(|d| d.envelope().clone()).collect();
            let (result, attempts, first_failure) = self.attempt(&mut slice, envelopes).await;
            let Err(err) = result else {
                let n = slice.len() as u64;
                for d in slice {
                    self.settle(d.ack().await);
                }
                self.bump(|m| m.acked += n);
                self.count("syncbus_batch_acked_total", n);
                continue;
            };
            match &self.config.on_failure {
                OnBatchFailure::Redeliver(delay) => {
                    tracing::warn!(batch = %self.config.name, events = slice.len(), error = %err, "the batch failed: handed out again later");
                    let n = slice.len() as u64;
                    for d in slice {
                        self.settle(d.nak(*delay).await);
                    }
                    self.bump(|m| m.redelivered += n);
                    self.count("syncbus_batch_redelivered_total", n);
                }
                OnBatchFailure::Isolate(_) if slice.len() > 1 => {
                    let right = slice.split_off(slice.len() / 2);
                    todo.push(right);
                    todo.push(slice);
                    self.bump(|m| m.splits += 1);
                    self.count("syncbus_batch_splits_total", 1);
                }
                OnBatchFailure::Isolate(store) => {
                    let Some(d) = slice.pop() else { continue };
                    self.dead_letter(&**store, d, &err, attempts, first_failure)
                        .await;
                }
            }
        }
    }

    /// The handler on a slice, retried by the policy: its last result, the attempts made
    /// and when the first failed.
    async fn attempt(
        &self,
        slice: &mut [S::Delivery],
        mut envelopes: Vec<Envelope<S::Payload>>,
    ) -> (Result<(), HandlerError>, u32, Timestamp) {
        let limit = self.config.retry.attempt_limit();
        let mut first_failure = None;
        let mut previous = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The last attempt takes the envelopes themselves; earlier ones a (cheap) clone.
            let batch = if attempt >= limit {
                std::mem::take(&mut envelopes)
            } else {
                envelopes.clone()
            };
            let result = self.ticking(slice, self.handler.handle(batch)).await;
            let Err(err) = result else {
                return (
                    Ok(()),
                    attempt,
                    first_failure.unwrap_or_else(Timestamp::now),
                );
            };
            self.bump(|m| m.failed_attempts += 1);
            self.count("syncbus_batch_failed_attempts_total", 1);
            let first = *first_failure.get_or_insert_with(Timestamp::now);
            if !err.is_retryable() || attempt >= limit {
                return (Err(err), attempt, first);
            }
            let delay = err
                .retry_after_hint()
                .unwrap_or_else(|| self.config.retry.delay(attempt, previous));
            previous = delay;
            self.ticking(slice, tokio::time::sleep(delay)).await;
        }
    }

    /// Awaits `fut`, marking the slice's deliveries in progress every
    /// [`BatchConfig::in_progress_every`] meanwhile, so their leases do not run out.
    async fn ticking<F: Future>(&self, slice: &mut [S::Delivery], fut: F) -> F::Output {
        let Some(every) = self.config.in_progress_every else {
            return fut.await;
        };
        tokio::pin!(fut);
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                _ = tick.tick() => {
                    for d in slice.iter_mut() {
                        self.settle(d.in_progress().await);
                    }
                }
            }
        }
    }

    async fn dead_letter(
        &self,
        store: &dyn DeadLetterStore,
        delivery: S::Delivery,
        err: &HandlerError,
        attempts: u32,
        first_failure: Timestamp,
    ) {
        let mut chain = err.chain();
        let envelope = stored(delivery.envelope(), &mut chain);
        let event = envelope.meta().id().clone();
        let record = DeadLetterRecord {
            id: DeadLetterId::new(),
            envelope,
            subscription: self.config.name.clone(),
            handler: format!("batch handler over {}", self.source.name()),
            error_kind: err.kind(),
            error_chain: chain,
            attempts,
            first_failure,
            last_failure: Timestamp::now(),
        };
        match store.put(record).await {
            Ok(()) => {
                tracing::warn!(batch = %self.config.name, %event, error = %err, "poison event dead-lettered");
                self.bump(|m| m.dead_lettered += 1);
                self.count("syncbus_batch_dead_lettered_total", 1);
                self.settle(delivery.term().await);
            }
            Err(e) => {
                tracing::error!(batch = %self.config.name, %event, store_error = %e, "the dead-letter store failed: the event is handed out again");
                self.bump(|m| m.redelivered += 1);
                self.count("syncbus_batch_redelivered_total", 1);
                self.settle(delivery.nak(Duration::from_secs(1)).await);
            }
        }
    }

    fn settle<E: std::fmt::Display>(&self, result: Result<(), E>) {
        if let Err(e) = result {
            tracing::warn!(batch = %self.config.name, error = %e, "a settle was refused: the source hands the delivery out again");
            self.bump(|m| m.settle_failed += 1);
        }
    }
}

/// The envelope with its payload as bytes, for a dead letter: the payload's own encoding
/// (`Event::encode`, or the bytes themselves); empty bytes, said in the chain, otherwise.
fn stored<P: Payload>(env: &Envelope<P>, chain: &mut Vec<String>) -> Envelope<Bytes> {
    let mut meta = env.meta().clone();
    match env.payload().encode_payload() {
        Some(Ok(encoded)) => {
            if let (Some(ct), None) = (encoded.content_type(), meta.content_type()) {
                meta.set_content_type(ct.to_owned());
            }
            Envelope::new(meta, encoded.bytes().clone())
        }
        Some(Err(e)) => {
            chain.push(format!("the payload could not be stored: {e}"));
            Envelope::new(meta, Bytes::new())
        }
        None => {
            chain.push("the payload could not be stored: its type does not encode".to_owned());
            Envelope::new(meta, Bytes::new())
        }
    }
}
