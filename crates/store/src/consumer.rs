//! Durable pull consumers over an [`EventLog`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncbus_envelope::{EventId, Timestamp};
use syncbus_workflow::store::{DeadLetterRecord, DeadLetterStore};
use syncbus_workflow::ErrorKind;

use crate::error::check_name;
use crate::{Claimed, EventLog, StoreError};

/// How a [`DurableConsumer`] claims and waits.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_store::DurableConfig;
///
/// let config = DurableConfig::new().member("worker-2").ack_timeout(Duration::from_secs(60));
/// assert_eq!(config.get_member(), Some("worker-2"));
/// ```
#[derive(Clone)]
pub struct DurableConfig {
    member: Option<String>,
    ack_timeout: Duration,
    poll_interval: Duration,
    poison: Option<(u32, Arc<dyn DeadLetterStore>)>,
}

impl fmt::Debug for DurableConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableConfig")
            .field("member", &self.member)
            .field("ack_timeout", &self.ack_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("max_deliveries", &self.poison.as_ref().map(|p| p.0))
            .finish()
    }
}

impl Default for DurableConfig {
    fn default() -> Self {
        DurableConfig {
            member: None,
            ack_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
            poison: None,
        }
    }
}

impl DurableConfig {
    /// Defaults: a single member named after the consumer, 30 s ack timeout, 50 ms poll.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = syncbus_store::DurableConfig::new();
    /// assert_eq!(config.get_ack_timeout(), Duration::from_secs(30));
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
    /// let config = syncbus_store::DurableConfig::new().member("host-a");
    /// assert_eq!(config.get_member(), Some("host-a"));
    /// ```
    pub fn member(mut self, member: impl Into<String>) -> Self {
        self.member = Some(member.into());
        self
    }

    /// How long a fetched record stays with this member before it is redelivered (to any
    /// member) if not acked or nacked.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = syncbus_store::DurableConfig::new().ack_timeout(Duration::from_secs(5));
    /// assert_eq!(config.get_ack_timeout(), Duration::from_secs(5));
    /// ```
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// How often [`fetch_wait`](DurableConsumer::fetch_wait) looks at the log while it is
    /// empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = syncbus_store::DurableConfig::new().poll_interval(Duration::from_millis(10));
    /// assert_eq!(config.get_poll_interval(), Duration::from_millis(10));
    /// ```
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Moves a record delivered `max` times without an ack (a poison message) to `store`
    /// instead of delivering it again: the next fetch that would hand it out a
    /// `max + 1`-th time records it as a dead letter (subscription = the consumer's name,
    /// handler = the member) and acks it. If the dead-letter store fails, the record is not
    /// acked and comes back later. Without this, a record is redelivered forever.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use syncbus_workflow::store::MemoryDeadLetterStore;
    /// let config = syncbus_store::DurableConfig::new()
    ///     .max_deliveries(5, Arc::new(MemoryDeadLetterStore::new(1000)));
    /// assert_eq!(config.get_max_deliveries(), Some(5));
    /// ```
    pub fn max_deliveries(mut self, max: u32, store: Arc<dyn DeadLetterStore>) -> Self {
        self.poison = Some((max.max(1), store));
        self
    }

    /// The delivery limit, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_store::DurableConfig::new().get_max_deliveries(), None);
    /// ```
    pub fn get_max_deliveries(&self) -> Option<u32> {
        self.poison.as_ref().map(|p| p.0)
    }

    /// The member name, if set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_store::DurableConfig::new().get_member(), None);
    /// ```
    pub fn get_member(&self) -> Option<&str> {
        self.member.as_deref()
    }

    /// The ack timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(syncbus_store::DurableConfig::new().get_ack_timeout(), Duration::from_secs(30));
    /// ```
    pub fn get_ack_timeout(&self) -> Duration {
        self.ack_timeout
    }

    /// The poll interval.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(syncbus_store::DurableConfig::new().get_poll_interval(), Duration::from_millis(50));
    /// ```
    pub fn get_poll_interval(&self) -> Duration {
        self.poll_interval
    }
}

/// A pull consumer whose position lives in an [`EventLog`], so it survives restarts.
///
/// - [`fetch`](Self::fetch) claims records above the committed offset that nobody holds:
///   new ones, ones whose ack timeout passed, ones nacked and due.
/// - [`ack`](Self::ack) marks a record done; the committed offset advances over the
///   contiguous acked prefix.
/// - [`nack`](Self::nack) hands a record back for redelivery after a delay.
/// - After a restart (same consumer name and member), everything not acked is delivered
///   again, at once: opening releases what this member held.
///
/// Delivery is at-least-once: a crash between the handler's effect and the ack redelivers
/// the record. Make the handler idempotent, for example by recording the event id in the same
/// transaction as the effect.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use syncbus_core::{Bytes, Envelope, EventType, Metadata};
/// use syncbus_store::{DurableConfig, DurableConsumer, EventLog, SqliteStore};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("events.db");
/// let meta = Metadata::new(EventType::new("order.placed").unwrap()).with_topic(syncbus_envelope::Topic::from_static("orders.placed"));
/// {
///     let log: Arc<dyn EventLog> = Arc::new(SqliteStore::open(&path).await?);
///     log.append_batch(vec![
///         Envelope::new(meta.clone(), Bytes::from_static(b"1")),
///         Envelope::new(meta.with_id(Default::default()), Bytes::from_static(b"2")),
///     ]).await?;
///     let billing = DurableConsumer::open(log, "billing", DurableConfig::new()).await?;
///     let batch = billing.fetch(10).await?;
///     billing.ack(&batch[0]).await?; // the second is never acked: the process "crashes"
/// }
/// let log: Arc<dyn EventLog> = Arc::new(SqliteStore::open(&path).await?);
/// let billing = DurableConsumer::open(log, "billing", DurableConfig::new()).await?;
/// let again = billing.fetch(10).await?;
/// assert_eq!(again.len(), 1);
/// assert_eq!(again[0].record.envelope.payload().as_ref(), b"2");
/// assert_eq!(again[0].deliveries, 2);
/// # Ok::<(), syncbus_store::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct DurableConsumer {
    log: Arc<dyn EventLog>,
    name: String,
    member: String,
    config: DurableConfig,
}

impl DurableConsumer {
    /// Opens the consumer `name` on `log`, releasing whatever this member held before (a
    /// restart), so unacked records come back at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_store::{DurableConfig, DurableConsumer, MemoryStore};
    /// let consumer = DurableConsumer::open(Arc::new(MemoryStore::new()), "audit", DurableConfig::new()).await?;
    /// assert_eq!((consumer.name(), consumer.member()), ("audit", "audit"));
    /// # Ok::<(), syncbus_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for an empty or too long name or member, or a zero ack
    /// timeout; errors of the log.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe; the release may or may not have happened.
    pub async fn open(
        log: Arc<dyn EventLog>,
        name: impl Into<String>,
        config: DurableConfig,
    ) -> Result<DurableConsumer, StoreError> {
        let name = name.into();
        let member = config.member.clone().unwrap_or_else(|| name.clone());
        check_name("consumer", &name)?;
        check_name("member", &member)?;
        if config.ack_timeout.is_zero() {
            return Err(StoreError::InvalidInput(
                "ack timeout must be greater than zero".into(),
            ));
        }
        let released = log.release_member(&name, &member).await?;
        if released > 0 {
            tracing::debug!(consumer = %name, member = %member, released, "took back unacked records");
        }
        Ok(DurableConsumer {
            log,
            name,
            member,
            config,
        })
    }

    /// The configuration it was opened with.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_store::{DurableConfig, DurableConsumer, MemoryStore};
    /// let c = DurableConsumer::open(Arc::new(MemoryStore::new()), "audit", DurableConfig::new()).await?;
    /// assert_eq!(c.config().get_member(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn config(&self) -> &DurableConfig {
        &self.config
    }

    /// The consumer's name.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_store::{DurableConfig, DurableConsumer, MemoryStore};
    /// let c = DurableConsumer::open(Arc::new(MemoryStore::new()), "audit", DurableConfig::new()).await?;
    /// assert_eq!(c.name(), "audit");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This member's name.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_store::{DurableConfig, DurableConsumer, MemoryStore};
    /// let config = DurableConfig::new().member("host-b");
    /// let c = DurableConsumer::open(Arc::new(MemoryStore::new()), "audit", config).await?;
    /// assert_eq!(c.member(), "host-b");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn member(&self) -> &str {
        &self.member
    }

    /// Claims up to `max` records without waiting; empty if none is due.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_store::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = Arc::new(MemoryStore::new());
    /// let consumer = DurableConsumer::open(log.clone(), "c", DurableConfig::new()).await?;
    /// assert!(consumer.fetch(10).await?.is_empty());
    /// log.append(env).await?;
    /// assert_eq!(consumer.fetch(10).await?.len(), 1);
    /// # Ok::<(), syncbus_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Errors of the log.
    ///
    /// # Cancel safety
    ///
    /// Records claimed by a dropped future come back after the ack timeout.
    pub async fn fetch(&self, max: usize) -> Result<Vec<Claimed>, StoreError> {
        let claimed = self
            .log
            .claim(&self.name, &self.member, max, self.config.ack_timeout)
            .await?;
        let Some((limit, store)) = &self.config.poison else {
            return Ok(claimed);
        };
        if claimed.iter().all(|c| c.deliveries <= *limit) {
            return Ok(claimed);
        }
        let mut out = Vec::with_capacity(claimed.len());
        let mut dead = Vec::new();
        for c in claimed {
            if c.deliveries <= *limit {
                out.push(c);
                continue;
            }
            let now = Timestamp::now();
            let record = DeadLetterRecord {
                id: EventId::new(),
                envelope: c.record.envelope.clone(),
                subscription: self.name.clone(),
                handler: self.member.clone(),
                error_kind: ErrorKind::Permanent,
                error_chain: vec![format!(
                    "delivered {limit} times without an ack (durable consumer {}, offset {})",
                    self.name, c.record.offset
                )],
                attempts: c.deliveries - 1,
                first_failure: c.record.appended_at,
                last_failure: now,
            };
            match store.put(record).await {
                Ok(()) => {
                    tracing::warn!(consumer = %self.name, offset = c.record.offset, "poison record dead-lettered");
                    dead.push(c.record.offset);
                }
                Err(e) => tracing::error!(
                    consumer = %self.name,
                    offset = c.record.offset,
                    error = %e,
                    "poison record not dead-lettered (the store failed); it stays unacked"
                ),
            }
        }
        if !dead.is_empty() {
            self.log.ack(&self.name, &dead).await?;
        }
        Ok(out)
    }

    /// Claims up to `max` records, polling the log until at least one is due or `timeout`
    /// passes (then returns empty).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use syncbus_store::{DurableConfig, DurableConsumer, MemoryStore};
    /// let consumer = DurableConsumer::open(Arc::new(MemoryStore::new()), "c", DurableConfig::new()).await?;
    /// assert!(consumer.fetch_wait(10, Duration::from_millis(20)).await?.is_empty());
    /// # Ok::<(), syncbus_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Errors of the log.
    ///
    /// # Cancel safety
    ///
    /// As [`fetch`](Self::fetch).
    pub async fn fetch_wait(
        &self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            let batch = self.fetch(max).await?;
            let now = Instant::now();
            if !batch.is_empty() || now >= deadline || max == 0 {
                return Ok(batch);
            }
            tokio::time::sleep(self.config.poll_interval.min(deadline - now)).await;
        }
    }

    /// Acks one record: done, never delivered to this consumer again.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_store::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = Arc::new(MemoryStore::new());
    /// let offset = log.append(env).await?;
    /// let consumer = DurableConsumer::open(log.clone(), "c", DurableConfig::new()).await?;
    /// let batch = consumer.fetch(1).await?;
    /// consumer.ack(&batch[0]).await?;
    /// assert_eq!(log.committed("c").await?, Some(offset));
    /// # Ok::<(), syncbus_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Errors of the log.
    ///
    /// # Cancel safety
    ///
    /// The ack may or may not happen; an unacked record is redelivered.
    pub async fn ack(&self, delivery: &Claimed) -> Result<(), StoreError> {
        self.log.ack(&self.name, &[delivery.record.offset]).await
    }

    /// Acks several records in one store round trip.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_store::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = Arc::new(MemoryStore::new());
    /// let offsets = log.append_batch(vec![env.clone(), env]).await?;
    /// let consumer = DurableConsumer::open(log.clone(), "c", DurableConfig::new()).await?;
    /// let batch = consumer.fetch(10).await?;
    /// consumer.ack_all(&batch).await?;
    /// assert_eq!(log.committed("c").await?, Some(offsets[1]));
    /// # Ok::<(), syncbus_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Errors of the log.
    ///
    /// # Cancel safety
    ///
    /// As [`ack`](Self::ack).
    pub async fn ack_all(&self, deliveries: &[Claimed]) -> Result<(), StoreError> {
        let offsets: Vec<u64> = deliveries.iter().map(|d| d.record.offset).collect();
        self.log.ack(&self.name, &offsets).await
    }

    /// Hands a record back: it is delivered again (to any member) once `delay` has passed.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use std::time::Duration;
    /// use syncbus_store::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = Arc::new(MemoryStore::new());
    /// log.append(env).await?;
    /// let consumer = DurableConsumer::open(log, "c", DurableConfig::new()).await?;
    /// let first = consumer.fetch(1).await?;
    /// consumer.nack(&first[0], Duration::ZERO).await?;
    /// assert_eq!(consumer.fetch(1).await?[0].deliveries, 2);
    /// # Ok::<(), syncbus_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Errors of the log.
    ///
    /// # Cancel safety
    ///
    /// If dropped, the record still comes back after the ack timeout.
    pub async fn nack(&self, delivery: &Claimed, delay: Duration) -> Result<(), StoreError> {
        self.log
            .release(&self.name, &[delivery.record.offset], delay)
            .await
    }

    /// The committed offset: every record at or below it is acked.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_store::{DurableConfig, DurableConsumer, MemoryStore};
    /// let consumer = DurableConsumer::open(Arc::new(MemoryStore::new()), "c", DurableConfig::new()).await?;
    /// assert_eq!(consumer.committed().await?, None);
    /// # Ok::<(), syncbus_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Errors of the log.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn committed(&self) -> Result<Option<u64>, StoreError> {
        self.log.committed(&self.name).await
    }
}
