//! Durable pull consumers over an [`EventLog`]: a [`Source`] whose position survives restarts.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncbus_core::{Bytes, Envelope, Settle, Source};
use syncbus_envelope::Timestamp;

use crate::into_arc::IntoArc;
use crate::{
    check_name, Claimed, DeadLetterRecord, DeadLetterStore, ErrorKind, EventLog, LogRecord,
    StoreError,
};
use syncbus_core::NameKind;

/// How a [`DurableConsumer`] claims and waits.
///
/// Defaults: a single member named after the consumer, 30 s ack timeout, the log looked at
/// every 50 ms while a fetch waits, no delivery limit.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use syncbus_storage::{DurableConfig, MemoryDeadLetterStore};
///
/// let config = DurableConfig::new()
///     .member("worker-2")
///     .ack_timeout(Duration::from_secs(60))
///     .poll_interval(Duration::from_millis(20))
///     .max_deliver(5)
///     .dead_letters(MemoryDeadLetterStore::new(1_000));
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct DurableConfig {
    member: Option<String>,
    ack_timeout: Duration,
    poll_interval: Duration,
    max_deliver: Option<u32>,
    dead_letters: Option<Arc<dyn DeadLetterStore>>,
}

impl fmt::Debug for DurableConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableConfig")
            .field("member", &self.member)
            .field("ack_timeout", &self.ack_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("max_deliver", &self.max_deliver)
            .field("dead_letters", &self.dead_letters.is_some())
            .finish()
    }
}

impl Default for DurableConfig {
    fn default() -> Self {
        DurableConfig {
            member: None,
            ack_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
            max_deliver: None,
            dead_letters: None,
        }
    }
}

impl DurableConfig {
    /// The defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = syncbus_storage::DurableConfig::new();
    /// # let _ = config;
    /// ```
    pub fn new() -> DurableConfig {
        DurableConfig::default()
    }

    /// This process's member name within a consumer group. Give each process of a group its
    /// own, stable name: on open, a member takes back at once whatever it held when it last
    /// stopped. Defaults to the consumer's name (a group of one).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = syncbus_storage::DurableConfig::new().member("host-a");
    /// # let _ = config;
    /// ```
    pub fn member(mut self, member: impl Into<String>) -> Self {
        self.member = Some(member.into());
        self
    }

    /// How long a fetched record stays with this member before it is redelivered (to any
    /// member) if it is not settled; [`in_progress`](DurableDelivery::in_progress) extends it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = syncbus_storage::DurableConfig::new().ack_timeout(Duration::from_secs(5));
    /// # let _ = config;
    /// ```
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// How often a waiting [`fetch`](DurableConsumer::fetch) looks at the log while it is
    /// empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = syncbus_storage::DurableConfig::new().poll_interval(Duration::from_millis(10));
    /// # let _ = config;
    /// ```
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Deliveries before a record is given up (a poison message: a handler that crashes the
    /// process, or a consumer that never settles it). The fetch that would hand it out a
    /// `max + 1`-th time records it in the [`dead_letters`](Self::dead_letters) store instead
    /// (subscription = the consumer's name, handler = the member) and acks it; if that store
    /// fails, the record stays and comes back later. Requires a dead-letter store: opening
    /// refuses a limit without one, since the record would have nowhere to go. Without a
    /// limit, a record is redelivered until it is settled.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use syncbus_storage::{DurableConfig, MemoryDeadLetterStore};
    /// let config = DurableConfig::new()
    ///     .max_deliver(5)
    ///     .dead_letters(MemoryDeadLetterStore::new(1000));
    /// # let _ = config;
    /// ```
    pub fn max_deliver(mut self, max: u32) -> Self {
        self.max_deliver = Some(max);
        self
    }

    /// Where records given up after [`max_deliver`](Self::max_deliver) go.
    ///
    /// # Examples
    ///
    /// See [`max_deliver`](Self::max_deliver).
    pub fn dead_letters(mut self, store: impl IntoArc<dyn DeadLetterStore>) -> Self {
        let store = store.into_arc();
        self.dead_letters = Some(store);
        self
    }
}

struct Inner {
    log: Arc<dyn EventLog>,
    name: String,
    member: String,
    config: DurableConfig,
}

/// A pull consumer whose position lives in an [`EventLog`], so it survives restarts. It is a
/// [`Source`]: serve it with the workflow runner, or fetch and settle by hand.
///
/// - [`fetch`](Self::fetch) claims records above the committed offset that nobody holds:
///   new ones, ones whose ack timeout passed, ones nak'd and due.
/// - Each [`DurableDelivery`] settles once: [`ack`](DurableDelivery::ack) marks it done (the
///   committed offset advances over the contiguous acked prefix),
///   [`nak`](DurableDelivery::nak) hands it back after a delay,
///   [`term`](DurableDelivery::term) never delivers it again,
///   [`in_progress`](DurableDelivery::in_progress) extends its lease.
/// - After a restart (same consumer name and member), everything not acked is delivered
///   again, at once: opening releases what this member held.
///
/// Delivery is at-least-once: a crash between the handler's effect and the ack redelivers
/// the record. Make the handler idempotent, for example by recording the event id in the same
/// transaction as the effect. Cloning is cheap and shares the consumer.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use syncbus_core::{Bytes, Envelope, EventType, Metadata};
/// use syncbus_storage::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
///
/// let log: Arc<dyn EventLog> = Arc::new(MemoryStore::new());
/// let meta = Metadata::new(EventType::new("order.placed")?).with_topic(syncbus_core::Topic::from_static("orders.placed"));
/// log.append_batch(vec![
///     Envelope::new(meta.clone(), Bytes::from_static(b"1")),
///     Envelope::new(meta.with_id(Default::default()), Bytes::from_static(b"2")),
/// ]).await?;
/// {
///     let billing = DurableConsumer::open(log.clone(), "billing", DurableConfig::new()).await?;
///     let mut batch = billing.fetch(10, Duration::ZERO).await?;
///     batch.remove(0).ack().await?; // the second is never settled: the process "crashes"
/// }
/// let billing = DurableConsumer::open(log, "billing", DurableConfig::new()).await?;
/// let again = billing.fetch(10, Duration::ZERO).await?;
/// assert_eq!(again.len(), 1);
/// assert_eq!(again[0].envelope().payload().as_ref(), b"2");
/// assert_eq!(again[0].deliveries(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct DurableConsumer {
    inner: Arc<Inner>,
}

impl fmt::Debug for DurableConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableConsumer")
            .field("name", &self.inner.name)
            .field("member", &self.inner.member)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl DurableConsumer {
    /// Opens the consumer `name` on `log`, releasing what this member held before (so it is
    /// delivered again at once).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid) for an empty or too long
    /// name or member, a zero ack timeout, or a delivery limit without a dead-letter store;
    /// the log's error if the release fails.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_storage::{DurableConfig, DurableConsumer, MemoryStore};
    /// let c = DurableConsumer::open(MemoryStore::new(), "billing", DurableConfig::new()).await?;
    /// assert_eq!((c.name(), c.member()), ("billing", "billing"));
    /// assert!(DurableConsumer::open(MemoryStore::new(), "", DurableConfig::new()).await.is_err());
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn open(
        log: impl IntoArc<dyn EventLog>,
        name: impl Into<String>,
        config: DurableConfig,
    ) -> Result<DurableConsumer, StoreError> {
        let log = log.into_arc();
        let name = name.into();
        let member = config.member.clone().unwrap_or_else(|| name.clone());
        check_name(NameKind::Consumer, &name)?;
        check_name(NameKind::Member, &member)?;
        if config.ack_timeout.is_zero() {
            return Err(StoreError::invalid("ack timeout must be greater than zero"));
        }
        match (config.max_deliver, &config.dead_letters) {
            (Some(0), _) => return Err(StoreError::invalid("max_deliver must be at least 1")),
            (Some(_), None) => {
                return Err(StoreError::invalid(
                    "max_deliver needs a dead-letter store (DurableConfig::dead_letters): a record given up would have nowhere to go",
                ))
            }
            _ => {}
        }
        let released = log.release_member(&name, &member).await?;
        if released > 0 {
            tracing::debug!(consumer = %name, member = %member, released, "took back unsettled records");
        }
        Ok(DurableConsumer {
            inner: Arc::new(Inner {
                log,
                name,
                member,
                config,
            }),
        })
    }

    /// The consumer's name: its position in the log.
    ///
    /// # Examples
    ///
    /// See [`open`](Self::open).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This member's name within the consumer's group.
    ///
    /// # Examples
    ///
    /// See [`open`](Self::open).
    pub fn member(&self) -> &str {
        &self.inner.member
    }

    /// The log it reads.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_storage::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
    /// let log: Arc<dyn EventLog> = Arc::new(MemoryStore::new());
    /// let c = DurableConsumer::open(log.clone(), "billing", DurableConfig::new()).await?;
    /// assert!(Arc::ptr_eq(c.log(), &log));
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.inner.log
    }

    /// Waits up to `wait` for at least one record, then claims up to `max` (looking at the log
    /// every poll interval meanwhile). `Duration::ZERO` looks once. Records over the delivery
    /// limit are dead-lettered here instead of handed out (see
    /// [`DurableConfig::max_deliver`]).
    ///
    /// # Errors
    ///
    /// The log's error.
    ///
    /// # Cancel safety
    ///
    /// Records claimed by a dropped fetch come back when their lease runs out.
    ///
    /// # Examples
    ///
    /// See [`DurableConsumer`].
    pub async fn fetch(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<DurableDelivery>, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            let batch = self.claim(max).await?;
            let now = Instant::now();
            if !batch.is_empty() || now >= deadline || max == 0 {
                return Ok(batch
                    .into_iter()
                    .map(|claimed| DurableDelivery {
                        claimed,
                        consumer: self.clone(),
                    })
                    .collect());
            }
            tokio::time::sleep(self.inner.config.poll_interval.min(deadline - now)).await;
        }
    }

    async fn claim(&self, max: usize) -> Result<Vec<Claimed>, StoreError> {
        let Inner {
            log,
            name,
            member,
            config,
        } = &*self.inner;
        let claimed = log.claim(name, member, max, config.ack_timeout).await?;
        let (Some(limit), Some(store)) = (config.max_deliver, &config.dead_letters) else {
            return Ok(claimed);
        };
        if claimed.iter().all(|c| c.deliveries <= limit) {
            return Ok(claimed);
        }
        let mut out = Vec::with_capacity(claimed.len());
        let mut dead = Vec::new();
        for c in claimed {
            if c.deliveries <= limit {
                out.push(c);
                continue;
            }
            let record = DeadLetterRecord {
                id: crate::DeadLetterId::new(),
                envelope: c.record.envelope.clone(),
                subscription: name.clone(),
                handler: member.clone(),
                error_kind: ErrorKind::Permanent,
                error_chain: vec![format!(
                    "delivered {limit} times without an ack (durable consumer {name}, offset {})",
                    c.record.offset
                )],
                attempts: c.deliveries - 1,
                first_failure: c.record.appended_at,
                last_failure: Timestamp::now(),
            };
            match store.put(record).await {
                Ok(()) => {
                    tracing::warn!(consumer = %name, offset = c.record.offset, "poison record dead-lettered");
                    dead.push(c.record.offset);
                }
                Err(e) => tracing::error!(
                    consumer = %name,
                    offset = c.record.offset,
                    error = %e,
                    "poison record not dead-lettered (the store failed); it stays unacked"
                ),
            }
        }
        if !dead.is_empty() {
            log.ack(name, &dead).await?;
        }
        Ok(out)
    }

    /// Acks many deliveries in one write (one transaction on SQLite and PostgreSQL).
    ///
    /// # Errors
    ///
    /// The log's error; then none of them is acked.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_storage::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_core::Topic::from_static("a")), Bytes::new());
    /// let log = Arc::new(MemoryStore::new());
    /// log.append_batch(vec![env.clone(), env]).await?;
    /// let c = DurableConsumer::open(log.clone(), "c", DurableConfig::new()).await?;
    /// let batch = c.fetch(10, Duration::ZERO).await?;
    /// c.ack_all(batch).await?;
    /// assert_eq!(c.committed().await?, log.head().await?);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn ack_all(&self, deliveries: Vec<DurableDelivery>) -> Result<(), StoreError> {
        let offsets: Vec<u64> = deliveries.iter().map(|d| d.offset()).collect();
        self.inner.log.ack(&self.inner.name, &offsets).await
    }

    /// The committed offset: every record at or below it is acked.
    ///
    /// # Errors
    ///
    /// The log's error.
    ///
    /// # Examples
    ///
    /// See [`ack_all`](Self::ack_all).
    pub async fn committed(&self) -> Result<Option<u64>, StoreError> {
        self.inner.log.committed(&self.inner.name).await
    }
}

impl Source for DurableConsumer {
    type Payload = Bytes;
    type Delivery = DurableDelivery;
    type Error = StoreError;

    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<DurableDelivery>, StoreError> {
        DurableConsumer::fetch(self, max, wait).await
    }
}

/// One record handed out by a [`DurableConsumer`]; settle it once. Dropped unsettled, it
/// comes back when its lease (the ack timeout) runs out.
///
/// The settle methods are also those of the [`Settle`] trait, which the workflow runner uses.
///
/// # Examples
///
/// See [`DurableConsumer`].
pub struct DurableDelivery {
    claimed: Claimed,
    consumer: DurableConsumer,
}

impl fmt::Debug for DurableDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableDelivery")
            .field("offset", &self.claimed.record.offset)
            .field("deliveries", &self.claimed.deliveries)
            .field("envelope", &self.claimed.record.envelope)
            .finish_non_exhaustive()
    }
}

impl DurableDelivery {
    /// The stored event.
    ///
    /// # Examples
    ///
    /// See [`DurableConsumer`].
    pub fn envelope(&self) -> &Envelope<Bytes> {
        &self.claimed.record.envelope
    }

    /// The log record: offset, append time, envelope.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_storage::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_core::Topic::from_static("a")), Bytes::new());
    /// let log = Arc::new(MemoryStore::new());
    /// let offset = log.append(env).await?;
    /// let c = DurableConsumer::open(log, "c", DurableConfig::new()).await?;
    /// let d = c.fetch(1, Duration::ZERO).await?.remove(0);
    /// assert_eq!((d.record().offset, d.offset()), (offset, offset));
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn record(&self) -> &LogRecord {
        &self.claimed.record
    }

    /// The record's offset in the log.
    ///
    /// # Examples
    ///
    /// See [`record`](Self::record).
    pub fn offset(&self) -> u64 {
        self.claimed.record.offset
    }

    /// How many times it was handed out, this time included (1 the first time; a restart
    /// counts the delivery that was in flight).
    ///
    /// # Examples
    ///
    /// See [`DurableConsumer`].
    pub fn deliveries(&self) -> u32 {
        self.claimed.deliveries
    }

    /// Done: it will not come back, and the committed offset moves past it once everything
    /// before it is acked too.
    ///
    /// # Errors
    ///
    /// The log's error; the record then comes back after its lease.
    ///
    /// # Examples
    ///
    /// See [`DurableConsumer`].
    pub async fn ack(self) -> Result<(), StoreError> {
        let c = &self.consumer.inner;
        c.log.ack(&c.name, &[self.offset()]).await
    }

    /// Failed: deliver it again once `delay` has passed (`Duration::ZERO`: at once).
    ///
    /// # Errors
    ///
    /// The log's error; the record then comes back after its lease.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_storage::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_core::Topic::from_static("a")), Bytes::new());
    /// let log = Arc::new(MemoryStore::new());
    /// log.append(env).await?;
    /// let c = DurableConsumer::open(log, "c", DurableConfig::new()).await?;
    /// c.fetch(1, Duration::ZERO).await?.remove(0).nak(Duration::ZERO).await?;
    /// assert_eq!(c.fetch(1, Duration::ZERO).await?[0].deliveries(), 2);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn nak(self, delay: Duration) -> Result<(), StoreError> {
        let c = &self.consumer.inner;
        c.log.release(&c.name, &[self.offset()], delay).await
    }

    /// Failed for good: never deliver it again. Nothing is recorded here: the caller has
    /// recorded it (the workflow runner writes a dead letter first). In the log it counts as
    /// consumed, so the committed offset moves past it.
    ///
    /// # Errors
    ///
    /// The log's error; the record then comes back after its lease.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_storage::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_core::Topic::from_static("a")), Bytes::new());
    /// let log = Arc::new(MemoryStore::new());
    /// log.append(env).await?;
    /// let c = DurableConsumer::open(log, "c", DurableConfig::new()).await?;
    /// c.fetch(1, Duration::ZERO).await?.remove(0).term().await?;
    /// assert!(c.fetch(1, Duration::ZERO).await?.is_empty());
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn term(self) -> Result<(), StoreError> {
        let c = &self.consumer.inner;
        c.log.ack(&c.name, &[self.offset()]).await
    }

    /// Still working on it: its lease runs for another ack timeout from now.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Conflict`](crate::StoreErrorKind::Conflict) if this member no longer
    /// holds it (its lease ran out and another member claimed it, or it was settled); the
    /// log's error.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_storage::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_core::Topic::from_static("a")), Bytes::new());
    /// let log = Arc::new(MemoryStore::new());
    /// log.append(env).await?;
    /// let config = DurableConfig::new().ack_timeout(Duration::from_millis(300));
    /// let c = DurableConsumer::open(log.clone(), "c", config.clone()).await?;
    /// let mut d = c.fetch(1, Duration::ZERO).await?.remove(0);
    /// tokio::time::sleep(Duration::from_millis(200)).await;
    /// d.in_progress().await?; // 300 ms more from now
    /// tokio::time::sleep(Duration::from_millis(200)).await; // past the first lease
    /// let other = DurableConsumer::open(log, "c", config.member("other")).await?;
    /// assert!(other.fetch(1, Duration::ZERO).await?.is_empty(), "still leased");
    /// d.ack().await?;
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn in_progress(&mut self) -> Result<(), StoreError> {
        let c = &self.consumer.inner;
        let offset = [self.offset()];
        match c
            .log
            .extend(&c.name, &c.member, &offset, c.config.ack_timeout)
            .await?
        {
            0 => Err(StoreError::conflict(format!(
                "offset {} of consumer {} is no longer held by member {}",
                offset[0], c.name, c.member
            ))),
            _ => Ok(()),
        }
    }
}

impl Settle for DurableDelivery {
    type Payload = Bytes;
    type Error = StoreError;

    fn envelope(&self) -> &Envelope<Bytes> {
        DurableDelivery::envelope(self)
    }

    fn deliveries(&self) -> u32 {
        DurableDelivery::deliveries(self)
    }

    async fn ack(self) -> Result<(), StoreError> {
        DurableDelivery::ack(self).await
    }

    async fn nak(self, delay: Duration) -> Result<(), StoreError> {
        DurableDelivery::nak(self, delay).await
    }

    async fn term(self) -> Result<(), StoreError> {
        DurableDelivery::term(self).await
    }

    async fn in_progress(&mut self) -> Result<(), StoreError> {
        DurableDelivery::in_progress(self).await
    }
}
