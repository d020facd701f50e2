//! The event log: an append-only sequence of envelopes with per-consumer positions and
//! leases, the storage behind durable pull consumers.

use std::time::Duration;

use syncbus_envelope::{Bytes, Envelope, Timestamp};

use crate::StoreFuture;

/// One stored event.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use syncbus_storage::{EventLog, MemoryStore};
/// use syncbus_core::{Bytes, Envelope, EventType, Metadata};
///
/// let log = MemoryStore::new();
/// let meta = Metadata::new(EventType::new("a.b").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a.b"));
/// let offset = log.append(Envelope::new(meta, Bytes::from_static(b"1"))).await?;
/// let records = log.read(offset, 10).await?;
/// assert_eq!(records[0].offset, offset);
/// assert_eq!(records[0].envelope.payload().as_ref(), b"1");
/// # Ok::<(), syncbus_storage::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    /// Position in the log: positive, strictly increasing in append order, never reused.
    /// Offsets may have gaps (a rolled-back batch, a database sequence).
    pub offset: u64,
    /// When the record was appended (store clock).
    pub appended_at: Timestamp,
    /// The event.
    pub envelope: Envelope<Bytes>,
}

/// A record claimed by a consumer member under a lease; see [`EventLog::claim`].
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use syncbus_storage::{EventLog, MemoryStore};
/// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
/// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
///
/// let log = MemoryStore::new();
/// log.append(env).await?;
/// let claimed = log.claim("billing", "worker-1", 10, Duration::from_secs(30)).await?;
/// assert_eq!(claimed[0].deliveries, 1);
/// # Ok::<(), syncbus_storage::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    /// The record.
    pub record: LogRecord,
    /// How many times it has been claimed by this consumer, this time included (1 = first
    /// delivery).
    pub deliveries: u32,
}

/// What [`EventLog::retain`] removes: records older than `max_age`, and the oldest records
/// beyond `max_records`. `None` means no limit of that kind.
///
/// Retention ignores consumer positions: a consumer that falls behind it resumes at the
/// oldest record left.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_storage::Retention;
///
/// let keep_a_week = Retention { max_age: Some(Duration::from_secs(7 * 86_400)), max_records: None };
/// assert_eq!(Retention::default(), Retention { max_age: None, max_records: None });
/// # let _ = keep_a_week;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Remove records appended longer ago than this.
    pub max_age: Option<Duration>,
    /// Keep at most this many of the newest records.
    pub max_records: Option<u64>,
}

/// An append-only log of envelopes with consumer positions.
///
/// # Positions, claims and acks
///
/// Each named consumer has a committed offset: every record at or below it is done for that
/// consumer. Above it, a consumer's members [`claim`](Self::claim) records under a lease;
/// a claimed record is not handed to anyone else until its lease expires, it is
/// [`release`](Self::release)d (nack), or it is [`ack`](Self::ack)ed. Acks may come in any
/// order; the committed offset advances over the contiguous acked prefix, so after a restart
/// everything not acked is claimed again. Several processes may claim from one consumer
/// (a group): each record goes to one member at a time.
///
/// # Durability
///
/// When `append` or `append_batch` returns `Ok`, the records are as durable as the backend
/// makes them (SQLite with `synchronous=FULL`: on disk; memory: until the process exits).
pub trait EventLog: Send + Sync + std::fmt::Debug {
    /// Appends one envelope and returns its offset.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{EventLog, MemoryStore};
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = MemoryStore::new();
    /// let first = log.append(env.clone()).await?;
    /// let second = log.append(env).await?;
    /// assert!(second > first);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Corrupt`](crate::StoreErrorKind::Corrupt) if the envelope cannot be encoded, [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not cancel a write already handed to the backend: the record
    /// may or may not be appended.
    fn append(&self, envelope: Envelope<Bytes>) -> StoreFuture<'_, u64>;

    /// Appends envelopes atomically (all or none) and returns their offsets, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{EventLog, MemoryStore};
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = MemoryStore::new();
    /// let offsets = log.append_batch(vec![env.clone(), env]).await?;
    /// assert_eq!(offsets.len(), 2);
    /// assert!(offsets[0] < offsets[1]);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append); on error nothing was appended.
    ///
    /// # Cancel safety
    ///
    /// As [`append`](Self::append).
    fn append_batch(&self, envelopes: Vec<Envelope<Bytes>>) -> StoreFuture<'_, Vec<u64>>;

    /// Reads up to `max` records with offset `>= from`, in offset order.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{EventLog, MemoryStore};
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = MemoryStore::new();
    /// let offsets = log.append_batch(vec![env.clone(), env.clone(), env]).await?;
    /// let tail = log.read(offsets[1], 10).await?;
    /// assert_eq!(tail.len(), 2);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Corrupt`](crate::StoreErrorKind::Corrupt) for a stored record that no longer decodes, [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: reading changes nothing.
    fn read(&self, from: u64, max: usize) -> StoreFuture<'_, Vec<LogRecord>>;

    /// The offset of the newest record, `None` if the log is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{EventLog, MemoryStore};
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = MemoryStore::new();
    /// assert_eq!(log.head().await?, None);
    /// let offset = log.append(env).await?;
    /// assert_eq!(log.head().await?, Some(offset));
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    fn head(&self) -> StoreFuture<'_, Option<u64>>;

    /// Sets `consumer`'s committed offset: records up to `offset` are done. Claims at or below
    /// it are dropped. Moving the offset back is allowed (replay).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{EventLog, MemoryStore};
    /// let log = MemoryStore::new();
    /// log.commit("indexer", 41).await?;
    /// assert_eq!(log.committed("indexer").await?, Some(41));
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid) for an empty name, [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// The commit may or may not happen if the future is dropped.
    fn commit<'a>(&'a self, consumer: &'a str, offset: u64) -> StoreFuture<'a, ()>;

    /// `consumer`'s committed offset, `None` if it never committed.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{EventLog, MemoryStore};
    /// let log = MemoryStore::new();
    /// assert_eq!(log.committed("new-consumer").await?, None);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid) for an empty name, [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    fn committed<'a>(&'a self, consumer: &'a str) -> StoreFuture<'a, Option<u64>>;

    /// Claims up to `max` records above `consumer`'s committed offset for `member`, in offset
    /// order: records never claimed, and claimed records whose lease expired or was released.
    /// Each is leased to `member` for `lease`; its delivery count goes up by one.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use syncbus_storage::{EventLog, MemoryStore};
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = MemoryStore::new();
    /// log.append(env).await?;
    /// let lease = Duration::from_secs(30);
    /// assert_eq!(log.claim("c", "m1", 10, lease).await?.len(), 1);
    /// // Leased to m1: nobody else gets it meanwhile.
    /// assert!(log.claim("c", "m2", 10, lease).await?.is_empty());
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid) for an empty name, [`StoreErrorKind::Corrupt`](crate::StoreErrorKind::Corrupt),
    /// [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped the records may be claimed anyway; they come back when the
    /// lease expires.
    fn claim<'a>(
        &'a self,
        consumer: &'a str,
        member: &'a str,
        max: usize,
        lease: Duration,
    ) -> StoreFuture<'a, Vec<Claimed>>;

    /// Acks records for `consumer` and advances its committed offset over the contiguous
    /// acked prefix. Offsets at or below the committed offset, or not in the log, are ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use syncbus_storage::{EventLog, MemoryStore};
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = MemoryStore::new();
    /// let offsets = log.append_batch(vec![env.clone(), env]).await?;
    /// log.claim("c", "m", 10, Duration::from_secs(30)).await?;
    /// log.ack("c", &offsets[1..]).await?; // out of order: nothing committed yet
    /// assert_eq!(log.committed("c").await?, None);
    /// log.ack("c", &offsets[..1]).await?;
    /// assert_eq!(log.committed("c").await?, Some(offsets[1]));
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid) for an empty name, [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// The ack may or may not happen if the future is dropped; an unacked record is delivered
    /// again.
    fn ack<'a>(&'a self, consumer: &'a str, offsets: &'a [u64]) -> StoreFuture<'a, ()>;

    /// Releases claims (a nack): the records may be claimed again once `delay` has passed.
    /// Offsets that are not claimed are ignored. The release does not check who holds the
    /// claim: a member whose lease ran out and whose record another member claimed since
    /// hands that claim back too, so the record may be delivered once more (at-least-once
    /// allows it; an ack from either member settles it).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use syncbus_storage::{EventLog, MemoryStore};
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = MemoryStore::new();
    /// let offset = log.append(env).await?;
    /// log.claim("c", "m", 10, Duration::from_secs(30)).await?;
    /// log.release("c", &[offset], Duration::ZERO).await?;
    /// let again = log.claim("c", "m", 10, Duration::from_secs(30)).await?;
    /// assert_eq!(again[0].deliveries, 2);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid) for an empty name, [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// If dropped, the release may or may not happen; the lease expires anyway.
    fn release<'a>(
        &'a self,
        consumer: &'a str,
        offsets: &'a [u64],
        delay: Duration,
    ) -> StoreFuture<'a, ()>;

    /// Extends the leases `member` holds on `offsets` for `consumer` to `lease` from now (an
    /// "in progress" signal from a slow handler). Returns how many claims were extended: an
    /// offset no longer held by `member` (acked, released, or claimed by another member after
    /// its lease ran out) is left alone and not counted.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use syncbus_storage::{EventLog, MemoryStore};
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_core::Topic::from_static("a")), Bytes::new());
    /// let log = MemoryStore::new();
    /// let offset = log.append(env).await?;
    /// log.claim("c", "m", 10, Duration::from_millis(10)).await?;
    /// assert_eq!(log.extend("c", "m", &[offset], Duration::from_secs(60)).await?, 1);
    /// tokio::time::sleep(Duration::from_millis(30)).await;
    /// assert!(log.claim("c", "other", 10, Duration::from_secs(30)).await?.is_empty());
    /// assert_eq!(log.extend("c", "other", &[offset], Duration::from_secs(60)).await?, 0);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid) for an empty name,
    /// [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// If dropped, the extension may or may not happen.
    fn extend<'a>(
        &'a self,
        consumer: &'a str,
        member: &'a str,
        offsets: &'a [u64],
        lease: Duration,
    ) -> StoreFuture<'a, u64>;

    /// Releases every claim `member` holds for `consumer`, now. A member calls it when it
    /// starts, so what it held before a crash is redelivered at once instead of after the
    /// lease.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use syncbus_storage::{EventLog, MemoryStore};
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = MemoryStore::new();
    /// log.append(env).await?;
    /// log.claim("c", "m", 10, Duration::from_secs(3600)).await?;
    /// assert_eq!(log.release_member("c", "m").await?, 1);
    /// assert_eq!(log.claim("c", "m", 10, Duration::from_secs(30)).await?.len(), 1);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid) for an empty name, [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// If dropped, the release may or may not happen.
    fn release_member<'a>(&'a self, consumer: &'a str, member: &'a str) -> StoreFuture<'a, u64>;

    /// Removes records by age and count; returns how many were removed.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{EventLog, MemoryStore, Retention};
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let log = MemoryStore::new();
    /// log.append_batch(vec![env.clone(), env.clone(), env]).await?;
    /// let removed = log.retain(Retention { max_records: Some(1), ..Retention::default() }).await?;
    /// assert_eq!(removed, 2);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend).
    ///
    /// # Cancel safety
    ///
    /// If dropped, the removal may or may not happen.
    fn retain(&self, retention: Retention) -> StoreFuture<'_, u64>;
}
