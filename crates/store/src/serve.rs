//! Serving a durable consumer: a task that fetches records, runs a workflow handler on each,
//! and acks or hands them back by the outcome.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use syncbus_core::{Bus, Event};
use syncbus_workflow::{Context, Handler};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Claimed, DurableConsumer};

/// How many records a serving task takes per fetch.
const BATCH: usize = 32;

/// What a [`Served`] consumer has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeMetrics {
    /// Records the handler succeeded on, acked.
    pub handled: u64,
    /// Records the handler failed on, handed back for redelivery.
    pub failed: u64,
    /// Records of other event types, acked without running the handler.
    pub skipped: u64,
    /// Records of the handler's type whose payload did not decode, handed back.
    pub undecodable: u64,
    /// Store calls that failed (fetch, ack, nack); each is retried and logged.
    pub store_errors: u64,
}

#[derive(Debug, Default)]
struct Counts {
    handled: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    undecodable: AtomicU64,
    store_errors: AtomicU64,
}

/// A durable consumer being served on a tokio task; see [`DurableConsumer::serve`].
#[derive(Debug)]
pub struct Served {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    counts: Arc<Counts>,
}

impl Served {
    /// The counters.
    ///
    /// # Examples
    ///
    /// See [`DurableConsumer::serve`].
    pub fn metrics(&self) -> ServeMetrics {
        let c = &self.counts;
        ServeMetrics {
            handled: c.handled.load(Relaxed),
            failed: c.failed.load(Relaxed),
            skipped: c.skipped.load(Relaxed),
            undecodable: c.undecodable.load(Relaxed),
            store_errors: c.store_errors.load(Relaxed),
        }
    }

    /// Stops after the record being handled (the rest of a fetched batch is handed back at
    /// once) and waits for the task.
    ///
    /// # Examples
    ///
    /// See [`DurableConsumer::serve`].
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl DurableConsumer {
    /// Serves this consumer on a tokio task: fetches records, runs `handler` (a workflow
    /// handler, with whatever layers it was built with) on those of type `E`, acks each one
    /// it succeeded on, and hands a failed one back (`nack`) for redelivery after the error's
    /// [`retry_after`](syncbus_workflow::HandlerError::retry_after) or the ack timeout.
    /// Records of other types are acked without running the handler (this consumer is not
    /// for them); a record of type `E` whose payload does not decode is handed back and
    /// logged. Follow-up events the handler emits go to `bus`.
    ///
    /// A record that keeps failing comes back forever unless the consumer was opened with
    /// [`DurableConfig::max_deliveries`](crate::DurableConfig::max_deliveries), which moves
    /// it to dead letters. Records are handled one at a time, in fetch order.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use syncbus_core::{Bus, Envelope, Event};
    /// use syncbus_store::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
    /// use syncbus_workflow::handler_fn;
    ///
    /// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    /// struct Shipped { order: u64 }
    /// impl Event for Shipped { const TYPE: &'static str = "order.shipped"; }
    ///
    /// let log = Arc::new(MemoryStore::new());
    /// log.append(Envelope::from_event(Shipped { order: 7 }).to_bytes_payload()?).await?;
    /// let consumer = DurableConsumer::open(log, "mailer", DurableConfig::new()).await?;
    /// let served = consumer.serve(&Bus::new(), handler_fn(|e: Envelope<Shipped>, _ctx| async move {
    ///     println!("mail about order {}", e.payload().order);
    ///     Ok(())
    /// }));
    /// while served.metrics().handled < 1 {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// served.stop().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn`).
    pub fn serve<E, H>(self, bus: &Bus, handler: H) -> Served
    where
        E: Event + DeserializeOwned,
        H: Handler<E>,
    {
        let (stop, mut stopped) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let bus = bus.clone();
        let task = tokio::spawn(async move {
            let idle = self
                .config()
                .get_poll_interval()
                .max(Duration::from_millis(1));
            while !*stopped.borrow_and_update() {
                let batch = match self.fetch_wait(BATCH, idle * 4).await {
                    Ok(b) => b,
                    Err(e) => {
                        c.store_errors.fetch_add(1, Relaxed);
                        tracing::warn!(consumer = self.name(), error = %e, "fetch failed; retrying");
                        tokio::time::sleep(idle).await;
                        continue;
                    }
                };
                let mut rest = batch.into_iter();
                for claimed in rest.by_ref() {
                    self.handle_one::<E, H>(&bus, &handler, &claimed, &c).await;
                    if *stopped.borrow() {
                        break;
                    }
                }
                // Stopping: what was fetched and not handled goes back at once.
                for claimed in rest {
                    if let Err(e) = self.nack(&claimed, Duration::ZERO).await {
                        c.store_errors.fetch_add(1, Relaxed);
                        tracing::warn!(consumer = self.name(), error = %e, "could not hand a record back; it returns after the ack timeout");
                    }
                }
            }
        });
        Served { stop, task, counts }
    }

    async fn handle_one<E, H>(&self, bus: &Bus, handler: &H, claimed: &Claimed, c: &Counts)
    where
        E: Event + DeserializeOwned,
        H: Handler<E>,
    {
        let raw = &claimed.record.envelope;
        if raw.meta().event_type().as_str() != E::TYPE {
            c.skipped.fetch_add(1, Relaxed);
            self.settle(claimed, None, c).await;
            return;
        }
        let env = match raw.decode_payload::<E>() {
            Ok(env) => env,
            Err(e) => {
                c.undecodable.fetch_add(1, Relaxed);
                tracing::error!(
                    consumer = self.name(),
                    offset = claimed.record.offset,
                    error = %e,
                    "record does not decode; handed back"
                );
                let later = self.config().get_ack_timeout();
                self.settle(claimed, Some(later), c).await;
                return;
            }
        };
        let ctx = Context::new(bus, env.meta());
        match handler.call(env, ctx).await {
            Ok(()) => {
                c.handled.fetch_add(1, Relaxed);
                self.settle(claimed, None, c).await;
            }
            Err(e) => {
                c.failed.fetch_add(1, Relaxed);
                tracing::warn!(consumer = self.name(), offset = claimed.record.offset, error = %e, "handler failed; handed back");
                let later = e
                    .retry_after_hint()
                    .unwrap_or_else(|| self.config().get_ack_timeout());
                self.settle(claimed, Some(later), c).await;
            }
        }
    }

    /// Acks (`None`) or hands back after a delay; a store error is counted and logged (the
    /// record then returns after the ack timeout).
    async fn settle(&self, claimed: &Claimed, back_after: Option<Duration>, c: &Counts) {
        let r = match back_after {
            None => self.ack(claimed).await,
            Some(d) => self.nack(claimed, d).await,
        };
        if let Err(e) = r {
            c.store_errors.fetch_add(1, Relaxed);
            tracing::warn!(consumer = self.name(), offset = claimed.record.offset, error = %e, "ack or nack failed; the record returns after the ack timeout");
        }
    }
}
