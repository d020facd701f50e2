//! Publishing envelopes to JetStream: a publish counts once its PubAck is in.
//!
//! async-nats returns `Ok` from a publish while it is disconnected: the message only went
//! into the client's buffer. So [`NatsPublisher::publish`] never counts that: it waits for
//! the PubAck, and when none comes in `publish_timeout` it sends the same message again with
//! the same `Nats-Msg-Id` (the stream's duplicate window drops a second copy) until the
//! retry span runs out. Publishes in flight are bounded by the publish buffer; past it the
//! overflow policy applies.

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind as NatsKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use syncbus_core::Overflow;
use syncbus_envelope::{Bytes, Envelope};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::{Codec, NatsConfig};
use crate::error::{PublishError, PublishErrorKind};
use crate::subject::subject_for;
use crate::wire;

/// What the stream said about a publish.
///
/// # Examples
///
/// See [`NatsPublisher::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The stream's sequence number of the message.
    pub sequence: u64,
    /// The stream had this event id already (inside its duplicate window): nothing new was
    /// stored.
    pub duplicate: bool,
}

struct Inner {
    js: Context,
    root: String,
    codec: Codec,
    entity_in_subject: bool,
    routing_headers: bool,
    overflow: Overflow,
    buffer: Arc<Semaphore>,
    size: usize,
    timeout: Duration,
    span: Duration,
}

/// Publishes envelopes to the bridge's stream. Cheap to clone; clones share the buffer.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use syncbus_envelope::{Bytes, Envelope, EventType, Metadata, Topic};
/// use syncbus_nats::{NatsBridge, NatsConfig};
///
/// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
/// let publisher = bridge.publisher();
/// let meta = Metadata::new(EventType::new("order.placed")?).with_topic(Topic::from_static("orders.placed"));
/// let env = Envelope::new(meta, Bytes::from_static(b"{}"));
/// let first = publisher.publish(env.clone()).await?;
/// let again = publisher.publish(env).await?; // the same event id
/// assert!(again.duplicate);
/// assert_eq!(first.sequence, again.sequence);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NatsPublisher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NatsPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsPublisher")
            .field("root", &self.inner.root)
            .field("codec", &self.inner.codec)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl NatsPublisher {
    pub(crate) fn new(js: Context, config: &NatsConfig) -> NatsPublisher {
        NatsPublisher {
            inner: Arc::new(Inner {
                js,
                root: config.subject_root().to_owned(),
                codec: config.codec,
                entity_in_subject: config.entity_in_subject,
                routing_headers: config.routing_headers,
                overflow: config.overflow,
                buffer: Arc::new(Semaphore::new(config.publish_buffer)),
                size: config.publish_buffer,
                timeout: config.publish_timeout,
                span: config.publish_retry_span,
            }),
        }
    }

    /// Publishes `env` on `<root>.<topic>[.<entity>]` with `Nats-Msg-Id` = its event id and
    /// returns once the stream acknowledged it.
    ///
    /// # Errors
    ///
    /// [`PublishErrorKind::Encode`] for an envelope without a topic or that the codec cannot
    /// write, [`PublishErrorKind::Full`] when the buffer is full and the policy is
    /// `Reject`, [`PublishErrorKind::Rejected`] when the server refuses it,
    /// [`PublishErrorKind::NoAck`] when no PubAck came within the retry span. Each hands the
    /// envelope back.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the message in the stream or not; publishing the same
    /// envelope again is safe (deduplicated by event id within the duplicate window).
    ///
    /// # Examples
    ///
    /// See [`NatsPublisher`].
    pub async fn publish(&self, env: Envelope<Bytes>) -> Result<Published, PublishError> {
        let inner = &*self.inner;
        let (subject, headers, body) = match self.parts(&env) {
            Ok(p) => p,
            Err(m) => return Err(PublishError::new(PublishErrorKind::Encode, m, env)),
        };
        let _permit = match inner.overflow {
            Overflow::Reject => match inner.buffer.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    metrics::counter!("syncbus_nats_publish_full_total").increment(1);
                    return Err(PublishError::new(
                        PublishErrorKind::Full,
                        "the publish buffer is full",
                        env,
                    ));
                }
            },
            _ => match inner.buffer.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => {
                    return Err(PublishError::new(
                        PublishErrorKind::Closed,
                        "the publisher is closed",
                        env,
                    ))
                }
            },
        };
        let mut first = Some((subject, headers));
        let deadline = Instant::now() + inner.span;
        let mut pause = Duration::from_millis(50);
        let mut tries = 0u32;
        loop {
            tries += 1;
            // The first try takes the parts; a retry (rare) builds them again, so the common
            // case copies no header map.
            let (subject, headers) = match first.take() {
                Some(parts) => parts,
                None => match self.parts(&env) {
                    Ok((subject, headers, _)) => (subject, headers),
                    Err(m) => return Err(PublishError::new(PublishErrorKind::Encode, m, env)),
                },
            };
            let message = PublishMessage::build()
                .payload(body.clone())
                .headers(headers);
            // The context's ack timeout is `publish_timeout` (the bridge sets it), so waiting
            // for the PubAck ends in `TimedOut` by itself; only the send, which waits while the
            // client's buffer is full, needs a timer of ours, and it is registered only if the
            // send has to wait.
            let sent =
                tokio::time::timeout(inner.timeout, inner.js.send_publish(subject, message)).await;
            let outcome = match sent {
                Ok(Ok(ack)) => Ok(ack.into_future().await),
                Ok(Err(e)) => Ok(Err(e)),
                Err(elapsed) => Err(elapsed),
            };
            let error = match outcome {
                Ok(Ok(ack)) => return Ok(acked(ack)),
                Ok(Err(e)) if lost(&e) => e.to_string(),
                Ok(Err(e)) => return Err(refused(e, env)),
                Err(_) => format!("the send did not go out within {:?}", inner.timeout),
            };
            let now = Instant::now();
            if now + pause >= deadline {
                metrics::counter!("syncbus_nats_publish_failed_total").increment(1);
                return Err(PublishError::new(
                    PublishErrorKind::NoAck,
                    format!("no PubAck after {tries} tries in {:?}: {error}", inner.span),
                    env,
                ));
            }
            metrics::counter!("syncbus_nats_publish_retries_total").increment(1);
            tracing::debug!(event = %env.id(), tries, %error, "nats publish: retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Publishes every envelope with the sends pipelined in one task (up to the publish buffer in flight)
    /// and returns each outcome in input order, once every PubAck is in or given up. Messages
    /// go out in input order; a retried one may land after later ones.
    ///
    /// # Errors
    ///
    /// Each element as [`publish`](Self::publish).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_envelope::{Bytes, Envelope, EventType, Metadata, Topic};
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// let meta = Metadata::new(EventType::new("order.placed")?).with_topic(Topic::from_static("orders.placed"));
    /// let batch: Vec<_> = (0..100).map(|_| Envelope::new(meta.clone().with_id(Default::default()), Bytes::new())).collect();
    /// let outcomes = bridge.publisher().publish_all(batch).await;
    /// assert!(outcomes.iter().all(|o| o.is_ok()));
    /// # Ok(()) }
    /// ```
    pub async fn publish_all(
        &self,
        envelopes: impl IntoIterator<Item = Envelope<Bytes>>,
    ) -> Vec<Result<Published, PublishError>> {
        let inner = &*self.inner;
        let envelopes = envelopes.into_iter();
        let hint = envelopes.size_hint().0;
        let mut out: Vec<Option<Result<Published, PublishError>>> = Vec::with_capacity(hint);
        // Sent in input order; the oldest PubAck is awaited when the buffer is full, so the
        // acks are mostly in by the time they are looked at (one task, no wakeup per event).
        let mut flight: VecDeque<(
            usize,
            Envelope<Bytes>,
            PublishAckFuture,
            OwnedSemaphorePermit,
        )> = VecDeque::with_capacity(hint.min(inner.size));
        for env in envelopes {
            let i = out.len();
            let (subject, headers, body) = match self.parts(&env) {
                Ok(p) => p,
                Err(m) => {
                    out.push(Some(Err(PublishError::new(
                        PublishErrorKind::Encode,
                        m,
                        env,
                    ))));
                    continue;
                }
            };
            out.push(None);
            let permit = loop {
                if let Ok(p) = inner.buffer.clone().try_acquire_owned() {
                    break Some(p);
                }
                match flight.pop_front() {
                    Some((j, e, ack, _permit)) => out[j] = Some(self.settle_ack(e, ack).await),
                    // The buffer is full of other callers' publishes: the policy decides.
                    None => break None,
                }
            };
            let Some(permit) = permit else {
                out[i] = Some(self.publish(env).await);
                continue;
            };
            let message = PublishMessage::build().payload(body).headers(headers);
            match tokio::time::timeout(inner.timeout, inner.js.send_publish(subject, message)).await
            {
                Ok(Ok(ack)) => flight.push_back((i, env, ack, permit)),
                // Not sent: the whole retry loop, with the same id.
                _ => {
                    drop(permit);
                    out[i] = Some(self.publish(env).await);
                }
            }
        }
        while let Some((j, e, ack, _permit)) = flight.pop_front() {
            out[j] = Some(self.settle_ack(e, ack).await);
        }
        // Every slot was filled above.
        out.into_iter().flatten().collect()
    }

    /// The outcome of a sent message's PubAck; a lost one goes through [`publish`]'s retry
    /// loop with the same `Nats-Msg-Id` (the stream drops a second copy).
    ///
    /// [`publish`]: Self::publish
    async fn settle_ack(
        &self,
        env: Envelope<Bytes>,
        ack: PublishAckFuture,
    ) -> Result<Published, PublishError> {
        match ack.into_future().await {
            Ok(ack) => Ok(acked(ack)),
            Err(e) if lost(&e) => self.publish(env).await,
            Err(e) => Err(refused(e, env)),
        }
    }

    /// The subject, headers and body of `env`'s message.
    fn parts(&self, env: &Envelope<Bytes>) -> Result<(String, HeaderMap, Bytes), String> {
        let inner = &*self.inner;
        let subject = subject_for(&inner.root, env, inner.entity_in_subject)?;
        let (headers, body) = wire::encode(env, inner.codec, inner.routing_headers)?;
        Ok((subject, headers, body))
    }

    /// Publishes sent and not yet acknowledged.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use syncbus_nats::{NatsBridge, NatsConfig};
    /// let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
    /// assert_eq!(bridge.publisher().in_flight(), 0);
    /// # Ok(()) }
    /// ```
    pub fn in_flight(&self) -> usize {
        // The semaphore starts at the buffer size; permits out are publishes in flight.
        self.inner.size - self.inner.buffer.available_permits()
    }
}

/// No PubAck yet, the connection dropped, or JetStream is not answering on the subject while
/// a server restarts: worth sending again with the same id.
fn lost(e: &async_nats::jetstream::context::PublishError) -> bool {
    matches!(
        e.kind(),
        NatsKind::TimedOut | NatsKind::BrokenPipe | NatsKind::StreamNotFound
    )
}

fn acked(ack: async_nats::jetstream::publish::PublishAck) -> Published {
    metrics::counter!("syncbus_nats_published_total").increment(1);
    Published {
        sequence: ack.sequence,
        duplicate: ack.duplicate,
    }
}

fn refused(e: async_nats::jetstream::context::PublishError, env: Envelope<Bytes>) -> PublishError {
    metrics::counter!("syncbus_nats_publish_failed_total").increment(1);
    PublishError::new(
        PublishErrorKind::Rejected,
        format!("the server refused it: {e}"),
        env,
    )
    .with_source(e)
}
