//! The durable pull consumer as a [`Source`]: JetStream's own settle words, one to one.
//!
//! | settle | JetStream |
//! | --- | --- |
//! | `ack` | `+ACK`, confirmed by the server with [`AckMode::Double`] (the default) |
//! | `nak(delay)` | `-NAK {"delay": ..}`: the runner's retry delay (a plain nak would ignore it, and the consumer's BackOff too) |
//! | `term` | `+TERM`: never again (the runner wrote the dead letter first) |
//! | `in_progress` | `+WPI`: the ack wait starts over |
//!
//! Every process that opens the same durable consumer shares it: JetStream hands each
//! message to one of them. Delivery is at-least-once: a process killed between its effect
//! and its ack gets the message again after the ack wait (or another process does). Serve it
//! with the dedup layer, recording the key with the effect (`ctx.inbox()`).
//!
//! A message whose body does not decode is recorded in the dead-letter store given to
//! [`NatsBridge::source`](crate::NatsBridge::source) (with its raw bytes as payload), then
//! termed; it is never handed out, and never dropped unrecorded: if that store fails, it is
//! nak'd and comes back.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures_util::StreamExt;
use syncbus_core::{Settle, Source};
use syncbus_envelope::{Bytes, Envelope, EventType, Limits, Metadata, Timestamp};
use syncbus_storage::{DeadLetterId, DeadLetterRecord, DeadLetterStore, ErrorKind};

use crate::config::AckMode;
use crate::error::SourceError;
use crate::wire;

/// Counters of a [`JetStreamSource`].
///
/// # Examples
///
/// See [`JetStreamSource::counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceCounts {
    /// Messages handed out.
    pub fetched: u64,
    /// Messages whose body did not decode (dead-lettered, then termed).
    pub undecodable: u64,
}

#[derive(Debug, Default)]
struct Counts {
    fetched: AtomicU64,
    undecodable: AtomicU64,
}

struct Inner {
    consumer: PullConsumer,
    name: String,
    ack_mode: AckMode,
    limits: Limits,
    dead_letters: Option<Arc<dyn DeadLetterStore>>,
    counts: Counts,
}

/// A JetStream durable pull consumer: a [`Source`] of `Envelope<Bytes>` for
/// `Workflow::serve`. Made by [`NatsBridge::source`](crate::NatsBridge::source); cheap to
/// clone.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use syncbus_core::{Settle, Source};
/// use syncbus_nats::{NatsBridge, NatsConfig};
///
/// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
/// let source = bridge.source(None).await?;
/// for delivery in source.fetch(10, Duration::from_secs(1)).await? {
///     println!("{} (delivery {})", delivery.envelope().id(), delivery.deliveries());
///     delivery.ack().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JetStreamSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JetStreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSource")
            .field("name", &self.inner.name)
            .field("ack_mode", &self.inner.ack_mode)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl JetStreamSource {
    pub(crate) fn new(
        consumer: PullConsumer,
        name: String,
        ack_mode: AckMode,
        dead_letters: Option<Arc<dyn DeadLetterStore>>,
    ) -> JetStreamSource {
        JetStreamSource {
            inner: Arc::new(Inner {
                consumer,
                name,
                ack_mode,
                limits: Limits::default(),
                dead_letters,
                counts: Counts::default(),
            }),
        }
    }

    /// What it handed out and refused so far.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// let source = bridge.source(None).await?;
    /// assert_eq!(source.counts().undecodable, 0);
    /// # Ok(()) }
    /// ```
    pub fn counts(&self) -> SourceCounts {
        SourceCounts {
            fetched: self.inner.counts.fetched.load(Relaxed),
            undecodable: self.inner.counts.undecodable.load(Relaxed),
        }
    }

    /// The async-nats consumer underneath (its `info()`, for instance).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// let source = bridge.source(None).await?;
    /// let info = source.consumer().clone().info().await?.clone();
    /// println!("{} pending", info.num_pending);
    /// # Ok(()) }
    /// ```
    pub fn consumer(&self) -> &PullConsumer {
        &self.inner.consumer
    }

    /// Up to `max` messages: those there now, or, when there are none, the first that comes
    /// within `wait` with whatever came with it.
    async fn take(&self, max: usize, wait: Duration) -> Result<Vec<Message>, SourceError> {
        let consumer = &self.inner.consumer;
        let mut out = Vec::new();
        let now = consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(|e| SourceError::Fetch(Box::new(e)))?;
        collect(now, &mut out).await?;
        if !out.is_empty() || wait < Duration::from_millis(10) {
            return Ok(out);
        }
        let first = consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| SourceError::Fetch(Box::new(e)))?;
        collect(first, &mut out).await?;
        if out.is_empty() || max <= 1 {
            return Ok(out);
        }
        let rest = consumer
            .fetch()
            .max_messages(max - 1)
            .messages()
            .await
            .map_err(|e| SourceError::Fetch(Box::new(e)))?;
        collect(rest, &mut out).await?;
        Ok(out)
    }

    async fn refuse(&self, message: Message, error: String) {
        self.inner.counts.undecodable.fetch_add(1, Relaxed);
        metrics::counter!("syncbus_nats_undecodable_total", "consumer" => self.inner.name.clone())
            .increment(1);
        let (subject, delivered) = (
            message.subject.to_string(),
            message.info().map(|i| i.delivered).unwrap_or(1),
        );
        tracing::error!(consumer = %self.inner.name, %subject, %error, "nats: message body does not decode");
        let Some(store) = &self.inner.dead_letters else {
            // Nowhere to record it: leave it in the stream for a person to look at, without
            // redelivering it in a loop (JetStream keeps it; the advisory names it).
            let _ = message.ack_with(AckKind::Term).await;
            return;
        };
        let meta = match EventType::new("syncbus.nats.undecodable") {
            Ok(t) => Metadata::new(t),
            Err(_) => return,
        };
        let now = Timestamp::now();
        let record = DeadLetterRecord {
            id: DeadLetterId::new(),
            envelope: Envelope::new(meta, Bytes::copy_from_slice(&message.payload)),
            subscription: self.inner.name.clone(),
            handler: self.inner.name.clone(),
            error_kind: ErrorKind::Permanent,
            error_chain: vec![format!("message on {subject} does not decode: {error}")],
            attempts: u32::try_from(delivered).unwrap_or(1),
            first_failure: now,
            last_failure: now,
        };
        let settle = match store.put(record).await {
            Ok(()) => AckKind::Term,
            Err(e) => {
                tracing::error!(consumer = %self.inner.name, error = %e, "nats: dead-letter store failed; nak");
                AckKind::Nak(Some(Duration::from_secs(1)))
            }
        };
        let _ = message.ack_with(settle).await;
    }
}

async fn collect(
    mut batch: async_nats::jetstream::consumer::pull::Batch,
    out: &mut Vec<Message>,
) -> Result<(), SourceError> {
    while let Some(next) = batch.next().await {
        match next {
            Ok(m) => out.push(m),
            // What came before the error is handed out; the rest comes back after the ack wait.
            Err(e) if !out.is_empty() => {
                tracing::debug!(error = %e, "nats fetch ended early");
                break;
            }
            Err(e) => return Err(SourceError::Fetch(e)),
        }
    }
    Ok(())
}

impl Source for JetStreamSource {
    type Payload = Bytes;
    type Delivery = NatsDelivery;
    type Error = SourceError;

    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<NatsDelivery>, SourceError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let messages = self.take(max, wait).await?;
        let mut out = Vec::with_capacity(messages.len());
        for message in messages {
            match wire::decode(
                message.headers.as_ref(),
                &message.payload,
                &self.inner.limits,
            ) {
                Ok(envelope) => {
                    let deliveries = message
                        .info()
                        .map(|i| u32::try_from(i.delivered.max(1)).unwrap_or(u32::MAX))
                        .unwrap_or(1);
                    out.push(NatsDelivery {
                        message,
                        envelope,
                        deliveries,
                        ack_mode: self.inner.ack_mode,
                    });
                }
                Err(e) => self.refuse(message, e.to_string()).await,
            }
        }
        self.inner
            .counts
            .fetched
            .fetch_add(out.len() as u64, Relaxed);
        Ok(out)
    }
}

/// One message of a [`JetStreamSource`], settled once.
///
/// # Examples
///
/// See [`JetStreamSource`].
pub struct NatsDelivery {
    message: Message,
    envelope: Envelope<Bytes>,
    deliveries: u32,
    ack_mode: AckMode,
}

impl std::fmt::Debug for NatsDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsDelivery")
            .field("event", self.envelope.id())
            .field("subject", &self.message.subject)
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

impl NatsDelivery {
    /// The subject it was published on.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use syncbus_core::Source;
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// for d in bridge.source(None).await?.fetch(1, Duration::from_secs(1)).await? {
    ///     println!("{}", d.subject());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    async fn send(&self, kind: AckKind, what: &'static str) -> Result<(), SourceError> {
        self.message
            .ack_with(kind)
            .await
            .map_err(|source| SourceError::Settle { what, source })
    }
}

impl Settle for NatsDelivery {
    type Payload = Bytes;
    type Error = SourceError;

    fn envelope(&self) -> &Envelope<Bytes> {
        &self.envelope
    }

    fn deliveries(&self) -> u32 {
        self.deliveries
    }

    async fn ack(self) -> Result<(), SourceError> {
        match self.ack_mode {
            AckMode::Double => {
                self.message
                    .double_ack()
                    .await
                    .map_err(|source| SourceError::Settle {
                        what: "ack",
                        source,
                    })
            }
            _ => self.send(AckKind::Ack, "ack").await,
        }
    }

    async fn nak(self, delay: Duration) -> Result<(), SourceError> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.send(AckKind::Nak(delay), "nak").await
    }

    async fn term(self) -> Result<(), SourceError> {
        self.send(AckKind::Term, "term").await
    }

    async fn in_progress(&mut self) -> Result<(), SourceError> {
        self.send(AckKind::Progress, "in_progress").await
    }
}
