//! Dead letters: events whose handling failed for good, kept for inspection and redrive.

use std::collections::BTreeMap;
use std::fmt;

use parking_lot::Mutex;
use syncbus_core::Pattern;
use syncbus_envelope::{Bytes, Envelope, EventId, Timestamp};

use crate::ErrorKind;
use crate::StoreFuture;

/// A dead letter's id: a fresh UUIDv7, so ids sort by the time they were recorded.
///
/// Strict: [`parse`](Self::parse) takes a UUID (hyphenated or 32 hex digits) and refuses
/// anything else, so a typo is an error rather than a lookup that finds nothing.
///
/// # Examples
///
/// ```
/// use syncbus_storage::DeadLetterId;
/// let id = DeadLetterId::new();
/// assert_eq!(DeadLetterId::parse(&id.to_string()), Ok(id));
/// assert!(DeadLetterId::parse("order-7").is_err());
/// assert!(DeadLetterId::parse("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeadLetterId(EventId);

impl DeadLetterId {
    /// A fresh id (UUIDv7).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = (syncbus_storage::DeadLetterId::new(), syncbus_storage::DeadLetterId::new());
    /// assert!(a < b); // later ids sort after earlier ones
    /// ```
    #[allow(clippy::new_without_default)] // a fresh id each call is no default
    pub fn new() -> DeadLetterId {
        DeadLetterId(EventId::new())
    }

    /// An id from a UUID given as a 128-bit big-endian integer (tests, imports).
    ///
    /// # Examples
    ///
    /// ```
    /// let id = syncbus_storage::DeadLetterId::from_u128(0x0190_1234_5678_7abc_8def_0123_4567_89ab);
    /// assert_eq!(id.to_string(), "01901234-5678-7abc-8def-0123456789ab");
    /// ```
    pub fn from_u128(v: u128) -> DeadLetterId {
        DeadLetterId(EventId::from_u128(v))
    }

    /// Parses an id as [`Display`](fmt::Display) writes it.
    ///
    /// # Errors
    ///
    /// [`DeadLetterIdError`] unless `s` is a UUID (hyphenated or not, any case).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_storage::DeadLetterId;
    /// assert!(DeadLetterId::parse("01901234-5678-7abc-8def-0123456789ab").is_ok());
    /// assert!(DeadLetterId::parse("01901234-5678-7abc-8def-0123456789ab ").is_err());
    /// // Any spelling of the UUID names the same dead letter.
    /// assert_eq!(
    ///     DeadLetterId::parse("0190123456787ABC8DEF0123456789AB").unwrap().to_string(),
    ///     "01901234-5678-7abc-8def-0123456789ab"
    /// );
    /// ```
    pub fn parse(s: &str) -> Result<DeadLetterId, DeadLetterIdError> {
        // Any spelling of a UUID names the same dead letter.
        match EventId::parse(s).ok().and_then(|id| id.uuid()) {
            Some(v) => Ok(DeadLetterId(EventId::from_u128(v))),
            None => Err(DeadLetterIdError(s.chars().take(64).collect())),
        }
    }
}

impl fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for DeadLetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeadLetterId({self})")
    }
}

impl std::str::FromStr for DeadLetterId {
    type Err = DeadLetterIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeadLetterId::parse(s)
    }
}

/// Text that is not a [`DeadLetterId`].
///
/// # Examples
///
/// ```
/// let e = syncbus_storage::DeadLetterId::parse("nope").unwrap_err();
/// assert_eq!(e.to_string(), "\"nope\" is not a dead-letter id (a UUID)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterIdError(String);

impl fmt::Display for DeadLetterIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a dead-letter id (a UUID)", self.0)
    }
}

impl std::error::Error for DeadLetterIdError {}

/// One event that failed for good: what it was, where it failed, why, and how often.
///
/// The envelope is kept with its payload serialized (JSON), so a record outlives the process
/// and can be redriven into a typed handler.
#[derive(Debug, Clone)]
pub struct DeadLetterRecord {
    /// This record's id (not the event's).
    pub id: DeadLetterId,
    /// The event, payload as bytes.
    pub envelope: Envelope<Bytes>,
    /// The subscription it failed in.
    pub subscription: String,
    /// The handler's name.
    pub handler: String,
    /// The kind of the last error.
    pub error_kind: ErrorKind,
    /// The last error's message and its causes, outermost first.
    pub error_chain: Vec<String>,
    /// How many attempts ran.
    pub attempts: u32,
    /// When the first attempt failed.
    pub first_failure: Timestamp,
    /// When the last attempt failed.
    pub last_failure: Timestamp,
}

impl DeadLetterRecord {
    /// The last error's message (the first entry of the chain).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::DeadLetterRecord;
    /// # fn show(r: &DeadLetterRecord) {
    /// println!("{} failed: {}", r.envelope.meta().id(), r.error());
    /// # }
    /// ```
    pub fn error(&self) -> &str {
        self.error_chain.first().map_or("", String::as_str)
    }
}

/// Which dead letters to list or redrive. Every set field must match; an empty filter
/// matches everything. Records come back oldest failure first.
///
/// # Examples
///
/// ```
/// use syncbus_storage::DeadLetterFilter;
/// use syncbus_core::Pattern;
///
/// let f = DeadLetterFilter::new()
///     .topic(Pattern::new("orders.>")?)
///     .error_contains("timeout")
///     .limit(50);
/// assert_eq!(f.limit, Some(50));
/// # Ok::<(), syncbus_core::NameError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DeadLetterFilter {
    /// Topic matching this pattern.
    pub topic: Option<Pattern>,
    /// Exact event type.
    pub event_type: Option<String>,
    /// Exact subscription name.
    pub subscription: Option<String>,
    /// Any entry of the error chain contains this text (case-sensitive).
    pub error_contains: Option<String>,
    /// Last failure at or after.
    pub since: Option<Timestamp>,
    /// Last failure before.
    pub until: Option<Timestamp>,
    /// At most this many records.
    pub limit: Option<usize>,
}

impl DeadLetterFilter {
    /// A filter that matches everything.
    ///
    /// # Examples
    ///
    /// ```
    /// let f = syncbus_storage::DeadLetterFilter::new();
    /// assert!(f.topic.is_none());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Only topics matching `pattern`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::DeadLetterFilter;
    /// let f = DeadLetterFilter::new().topic(syncbus_core::Pattern::new("orders.*")?);
    /// # Ok::<(), syncbus_core::NameError>(())
    /// ```
    pub fn topic(mut self, pattern: Pattern) -> Self {
        self.topic = Some(pattern);
        self
    }

    /// Only this event type.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::DeadLetterFilter;
    /// let f = DeadLetterFilter::new().event_type("shop.order.placed");
    /// ```
    pub fn event_type(mut self, t: impl Into<String>) -> Self {
        self.event_type = Some(t.into());
        self
    }

    /// Only this subscription.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::DeadLetterFilter;
    /// let f = DeadLetterFilter::new().subscription("billing");
    /// ```
    pub fn subscription(mut self, s: impl Into<String>) -> Self {
        self.subscription = Some(s.into());
        self
    }

    /// Only records whose error chain contains `text`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::DeadLetterFilter;
    /// let f = DeadLetterFilter::new().error_contains("503");
    /// ```
    pub fn error_contains(mut self, text: impl Into<String>) -> Self {
        self.error_contains = Some(text.into());
        self
    }

    /// Only records whose last failure is in `[since, until)`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::DeadLetterFilter;
    /// use syncbus_envelope::Timestamp;
    /// let f = DeadLetterFilter::new().between(Timestamp::from_unix_millis(0), Timestamp::now());
    /// ```
    pub fn between(mut self, since: Timestamp, until: Timestamp) -> Self {
        self.since = Some(since);
        self.until = Some(until);
        self
    }

    /// At most `n` records.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::DeadLetterFilter;
    /// assert_eq!(DeadLetterFilter::new().limit(10).limit, Some(10));
    /// ```
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether `record` passes the filter (ignoring `limit`). SQL stores prefilter in SQL
    /// and must agree with this reference.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::{DeadLetterFilter, DeadLetterRecord};
    /// # fn check(r: &DeadLetterRecord) {
    /// assert!(DeadLetterFilter::new().matches(r));
    /// # }
    /// ```
    pub fn matches(&self, r: &DeadLetterRecord) -> bool {
        let meta = r.envelope.meta();
        self.topic
            .as_ref()
            .is_none_or(|p| meta.topic().is_some_and(|t| p.matches(t)))
            && self
                .event_type
                .as_deref()
                .is_none_or(|t| meta.event_type().as_str() == t)
            && self
                .subscription
                .as_deref()
                .is_none_or(|s| r.subscription == s)
            && self
                .error_contains
                .as_deref()
                .is_none_or(|t| r.error_chain.iter().any(|e| e.contains(t)))
            && self.since.is_none_or(|s| r.last_failure >= s)
            && self.until.is_none_or(|u| r.last_failure < u)
    }
}

/// Where dead letters are kept.
///
/// # Examples
///
/// ```
/// use syncbus_storage::{DeadLetterFilter, DeadLetterStore, MemoryDeadLetterStore};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryDeadLetterStore::new(1_000);
/// assert!(store.list(&DeadLetterFilter::new()).await?.is_empty());
/// # Ok(()) }
/// ```
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Records a dead letter.
    ///
    /// # Errors
    ///
    /// A [`StoreError`](crate::StoreError) when the backend fails.
    fn put(&self, record: DeadLetterRecord) -> StoreFuture<'_, ()>;

    /// The records passing `filter`, oldest last failure first (then by id).
    ///
    /// # Errors
    ///
    /// A [`StoreError`](crate::StoreError) when the backend fails or a stored record cannot be decoded.
    fn list<'a>(&'a self, filter: &'a DeadLetterFilter) -> StoreFuture<'a, Vec<DeadLetterRecord>>;

    /// One record by id.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::NotFound`](crate::StoreErrorKind::NotFound) if no record has this
    /// id; a [`StoreError`](crate::StoreError) when the backend fails or the record cannot
    /// be decoded.
    fn get<'a>(&'a self, id: &'a DeadLetterId) -> StoreFuture<'a, DeadLetterRecord>;

    /// Deletes a record.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::NotFound`](crate::StoreErrorKind::NotFound) if no record has this
    /// id; a [`StoreError`](crate::StoreError) when the backend fails.
    fn delete<'a>(&'a self, id: &'a DeadLetterId) -> StoreFuture<'a, ()>;
}

/// The in-memory [`DeadLetterStore`], bounded: when full, the oldest record is dropped and
/// counted in [`evicted`](Self::evicted) (and logged), never silently.
///
/// # Examples
///
/// ```
/// let store = syncbus_storage::MemoryDeadLetterStore::new(10_000);
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug)]
pub struct MemoryDeadLetterStore {
    inner: Mutex<MemoryDl>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct MemoryDl {
    records: BTreeMap<DeadLetterId, DeadLetterRecord>,
    evicted: u64,
}

impl MemoryDeadLetterStore {
    /// A store keeping at most `capacity` records (at least one).
    ///
    /// # Examples
    ///
    /// ```
    /// let store = syncbus_storage::MemoryDeadLetterStore::new(100);
    /// assert!(store.is_empty());
    /// ```
    pub fn new(capacity: usize) -> Self {
        MemoryDeadLetterStore {
            inner: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    /// How many records are held.
    ///
    /// # Examples
    ///
    /// ```
    /// # let store = syncbus_storage::MemoryDeadLetterStore::new(100);
    /// assert_eq!(store.len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.lock().records.len()
    }

    /// Whether no record is held.
    ///
    /// # Examples
    ///
    /// ```
    /// # let store = syncbus_storage::MemoryDeadLetterStore::new(100);
    /// assert!(store.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many records were dropped because the store was full.
    ///
    /// # Examples
    ///
    /// ```
    /// # let store = syncbus_storage::MemoryDeadLetterStore::new(100);
    /// assert_eq!(store.evicted(), 0);
    /// ```
    pub fn evicted(&self) -> u64 {
        self.inner.lock().evicted
    }
}

impl DeadLetterStore for MemoryDeadLetterStore {
    fn put(&self, record: DeadLetterRecord) -> StoreFuture<'_, ()> {
        let mut inner = self.inner.lock();
        while inner.records.len() >= self.capacity {
            if let Some((id, old)) = inner.records.pop_first() {
                inner.evicted += 1;
                tracing::error!(
                    dead_letter = %id,
                    event = %old.envelope.meta().id(),
                    "memory dead-letter store full: dropped the oldest record"
                );
            }
        }
        inner.records.insert(record.id.clone(), record);
        Box::pin(std::future::ready(Ok(())))
    }

    fn list<'a>(&'a self, filter: &'a DeadLetterFilter) -> StoreFuture<'a, Vec<DeadLetterRecord>> {
        let inner = self.inner.lock();
        let mut out: Vec<DeadLetterRecord> = inner
            .records
            .values()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.last_failure, &a.id).cmp(&(b.last_failure, &b.id)));
        if let Some(n) = filter.limit {
            out.truncate(n);
        }
        Box::pin(std::future::ready(Ok(out)))
    }

    fn get<'a>(&'a self, id: &'a DeadLetterId) -> StoreFuture<'a, DeadLetterRecord> {
        let r = self.inner.lock().records.get(id).cloned();
        Box::pin(std::future::ready(
            r.ok_or_else(|| dead_letter_not_found(id)),
        ))
    }

    fn delete<'a>(&'a self, id: &'a DeadLetterId) -> StoreFuture<'a, ()> {
        let gone = self.inner.lock().records.remove(id).is_some();
        Box::pin(std::future::ready(if gone {
            Ok(())
        } else {
            Err(dead_letter_not_found(id))
        }))
    }
}

/// The error every backend gives for a dead-letter id it does not hold.
///
/// # Examples
///
/// ```
/// let e = syncbus_storage::dead_letter_not_found(&syncbus_storage::DeadLetterId::new());
/// assert_eq!(e.kind(), syncbus_storage::StoreErrorKind::NotFound);
/// ```
pub fn dead_letter_not_found(id: &DeadLetterId) -> crate::StoreError {
    crate::StoreError::not_found(format_args!("no dead letter has the id {id}"))
}
