//! Dedup keys: the memory of the idempotent consumer.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use syncbus_envelope::{EventId, NameError, NameKind, NameReason};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::StoreFuture;

/// The key an idempotent consumer remembers: by default the event id, or a key derived from
/// the event (a webhook id, `entity@version`).
///
/// Keys compare by their text, except that every spelling of one UUID (any case, with or
/// without hyphens) is one key. Keys made from text are 1 to 256 bytes with no whitespace
/// or control characters; a key made from an event id is the id's text, which CloudEvents
/// lets hold spaces.
///
/// # Examples
///
/// ```
/// use syncbus_storage::DedupKey;
/// use syncbus_envelope::EventId;
///
/// let id = EventId::new();
/// assert_eq!(DedupKey::from(id.clone()).to_string(), id.to_string());
/// let k = DedupKey::new("webhook:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")?;
/// assert_eq!(k.to_string(), "webhook:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");
/// assert!(DedupKey::new("two words").is_err());
///
/// // An event id keeps its spelling; its dedup key does not depend on it.
/// let upper = EventId::parse("0190123456787ABC8DEF0123456789AB")?;
/// assert_eq!(DedupKey::from(upper), DedupKey::new("01901234-5678-7abc-8def-0123456789ab")?);
/// # Ok::<(), syncbus_envelope::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey(EventId);

impl DedupKey {
    /// A key from text.
    ///
    /// # Errors
    ///
    /// [`NameError`] for empty text, more than 256 bytes, whitespace or control characters.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_storage::DedupKey;
    /// assert!(DedupKey::new("order-7@3").is_ok());
    /// assert!(DedupKey::new("").is_err());
    /// ```
    pub fn new(key: &str) -> Result<DedupKey, NameError> {
        let id = EventId::parse(key)?;
        if let Some((byte, ch)) = key.char_indices().find(|(_, c)| c.is_whitespace()) {
            let rule = "control characters and whitespace are not allowed";
            let reason = NameReason::InvalidChar { ch, byte, rule };
            return Err(NameError::new(NameKind::EventId, reason, key));
        }
        Ok(DedupKey::from(id))
    }
}

impl From<EventId> for DedupKey {
    fn from(id: EventId) -> Self {
        // Ids keep the spelling they came with; a key is the UUID, however it was spelled.
        match id.uuid() {
            Some(v) if id.as_u128().is_none() => DedupKey(EventId::from_u128(v)),
            _ => DedupKey(id),
        }
    }
}

impl From<&EventId> for DedupKey {
    fn from(id: &EventId) -> Self {
        DedupKey::from(id.clone())
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DedupKey({self})")
    }
}

/// What [`DedupStore::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Not `non_exhaustive`: the dedup layer must handle every answer a store can give.
pub enum Claim {
    /// The key was free (new, failed before, or its lease expired): run the handler.
    Acquired,
    /// The key is done: this delivery is a duplicate, acknowledge it without running.
    Duplicate,
    /// Another delivery holds the key and has not finished: wait for its outcome.
    InFlight,
}

/// How a claimed key ended, for [`DedupStore::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler succeeded: later deliveries of the key are duplicates until it expires.
    Done,
    /// The handler failed: the key is released so a redelivery can run, unless it is done
    /// already (a done key stays done until it expires).
    Failed,
}

/// The dedup key of one delivery, as the handler sees it: the transactional inbox.
///
/// The dedup layer claims the key before the handler runs and marks it done after. A
/// handler whose effect is a database transaction can instead mark it done *inside* that
/// transaction (`SqliteStore::record_done`, `PgStore::record_done` in `syncbus-store`), on
/// the database that holds the dedup store: the effect and the key then commit together,
/// so a crash between them cannot make the effect happen twice. If the key turns out to be
/// done already (another delivery committed first), recording fails with
/// [`StoreErrorKind::Duplicate`](crate::StoreErrorKind::Duplicate) and
/// [`note_duplicate`](Self::note_duplicate)s this entry: the handler's transaction rolls
/// back, and the dedup layer acknowledges the delivery as a duplicate whatever error the
/// handler returns.
///
/// Clones share the duplicate mark.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_storage::{DedupKey, InboxEntry};
///
/// let entry = InboxEntry::new(DedupKey::new("billing:payment-81")?, Duration::from_secs(3600));
/// assert_eq!(entry.key().to_string(), "billing:payment-81");
/// assert!(!entry.is_duplicate());
/// entry.clone().note_duplicate();
/// assert!(entry.is_duplicate());
/// # Ok::<(), syncbus_envelope::NameError>(())
/// ```
#[derive(Debug, Clone)]
pub struct InboxEntry {
    key: DedupKey,
    ttl: Duration,
    duplicate: Arc<AtomicBool>,
}

impl InboxEntry {
    /// The entry for `key` (as stored: scoped to its subscription), remembered for `ttl` once
    /// done.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_storage::{DedupKey, InboxEntry};
    /// let e = InboxEntry::new(DedupKey::new("k")?, Duration::from_secs(60));
    /// assert_eq!(e.ttl(), Duration::from_secs(60));
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    pub fn new(key: DedupKey, ttl: Duration) -> InboxEntry {
        InboxEntry {
            key,
            ttl,
            duplicate: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The key, as the dedup store holds it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_storage::{DedupKey, InboxEntry};
    /// let e = InboxEntry::new(DedupKey::new("k")?, Duration::from_secs(60));
    /// assert_eq!(e.key(), &DedupKey::new("k")?);
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    pub fn key(&self) -> &DedupKey {
        &self.key
    }

    /// How long the key is remembered once done.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_storage::{DedupKey, InboxEntry};
    /// let e = InboxEntry::new(DedupKey::new("k")?, Duration::from_secs(5));
    /// assert_eq!(e.ttl().as_secs(), 5);
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Marks the delivery a duplicate: its key was done already when the handler tried to
    /// record it. Backends call this when they refuse to record a done key again.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_storage::{DedupKey, InboxEntry};
    /// let e = InboxEntry::new(DedupKey::new("k")?, Duration::from_secs(5));
    /// e.note_duplicate();
    /// assert!(e.is_duplicate());
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    pub fn note_duplicate(&self) {
        self.duplicate.store(true, Ordering::Release);
    }

    /// Whether recording found the key done already: the delivery is a duplicate.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_storage::{DedupKey, InboxEntry};
    /// let e = InboxEntry::new(DedupKey::new("k")?, Duration::from_secs(5));
    /// assert!(!e.is_duplicate());
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    pub fn is_duplicate(&self) -> bool {
        self.duplicate.load(Ordering::Acquire)
    }

    /// The error a backend returns when the key was done already, after marking the entry.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_storage::{DedupKey, InboxEntry, StoreErrorKind};
    /// let e = InboxEntry::new(DedupKey::new("k")?, Duration::from_secs(5));
    /// assert_eq!(e.duplicate_error().kind(), StoreErrorKind::Duplicate);
    /// assert!(e.is_duplicate());
    /// # Ok::<(), syncbus_envelope::NameError>(())
    /// ```
    pub fn duplicate_error(&self) -> crate::StoreError {
        self.note_duplicate();
        crate::StoreError::new(
            crate::StoreErrorKind::Duplicate,
            format!(
                "dedup key {} is done already: roll back, this delivery is a duplicate",
                self.key
            ),
        )
    }
}

/// The state of a key, as [`DedupStore::state`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Claimed and running, until the lease expires.
    InFlight,
    /// Handled successfully.
    Done,
    /// The last attempt failed; the key may be claimed again.
    Failed,
}

/// Where the idempotent consumer keeps its keys.
///
/// A key is claimed before the handler runs and finished after: `Done` keeps it (duplicates
/// are acknowledged) for a time-to-live, `Failed` releases it. An in-flight claim carries a
/// lease, which its holder [`renew`](Self::renew)s while it runs: if the holder dies, the
/// key is claimable again once the lease expires. Claiming must be atomic: of two
/// concurrent claims of a free key exactly one gets [`Claim::Acquired`]. A done key stays
/// done until it expires: `finish(Failed)` does not release it (a run whose lease expired
/// must not undo the run that finished the key, nor a handler that recorded it in its own
/// transaction, see [`InboxEntry`]).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_storage::{Claim, DedupKey, DedupStore, MemoryDedupStore, Outcome};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryDedupStore::new(10_000);
/// let key = DedupKey::new("payment-81")?;
/// let minute = Duration::from_secs(60);
/// assert_eq!(store.claim(&key, minute).await?, Claim::Acquired);
/// assert_eq!(store.claim(&key, minute).await?, Claim::InFlight);
/// store.finish(&key, Outcome::Done, minute).await?;
/// assert_eq!(store.claim(&key, minute).await?, Claim::Duplicate);
/// # Ok(()) }
/// ```
pub trait DedupStore: Send + Sync + 'static {
    /// Claims `key` for one run, holding it in flight for at most `lease`.
    ///
    /// # Errors
    ///
    /// A [`StoreError`](crate::StoreError) when the backend fails.
    fn claim<'a>(&'a self, key: &'a DedupKey, lease: Duration) -> StoreFuture<'a, Claim>;

    /// Records how a claimed run ended; `ttl` is how long a `Done` key is remembered.
    ///
    /// # Errors
    ///
    /// A [`StoreError`](crate::StoreError) when the backend fails.
    fn finish<'a>(
        &'a self,
        key: &'a DedupKey,
        outcome: Outcome,
        ttl: Duration,
    ) -> StoreFuture<'a, ()>;

    /// Extends the lease of an in-flight key to `lease` from now; `false` if the key is not in
    /// flight (done, failed, expired or unknown), when nothing changes.
    ///
    /// # Errors
    ///
    /// A [`StoreError`](crate::StoreError) when the backend fails.
    fn renew<'a>(&'a self, key: &'a DedupKey, lease: Duration) -> StoreFuture<'a, bool>;

    /// Waits until the key's state may have changed, or `max` passed. The default polls;
    /// stores that can notify (the memory store) wake the waiter when the key finishes.
    fn wait<'a>(
        &'a self,
        key: &'a DedupKey,
        max: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let _ = key;
        Box::pin(tokio::time::sleep(max.min(Duration::from_millis(20))))
    }

    /// The key's current state, `None` if unknown or expired.
    ///
    /// # Errors
    ///
    /// A [`StoreError`](crate::StoreError) when the backend fails.
    fn state<'a>(&'a self, key: &'a DedupKey) -> StoreFuture<'a, Option<KeyState>>;

    /// Removes expired keys and returns how many went.
    ///
    /// # Errors
    ///
    /// A [`StoreError`](crate::StoreError) when the backend fails.
    fn purge_expired(&self) -> StoreFuture<'_, u64>;
}

const SHARDS: usize = 16;

/// The in-memory [`DedupStore`]: bounded by count, expiring by time (tokio's clock, so tests
/// on a paused clock are exact). When full, the oldest keys go first (first inserted, first
/// out); a live in-flight key is never evicted, since that would let a duplicate run.
///
/// # Examples
///
/// ```
/// use syncbus_storage::MemoryDedupStore;
/// let store = MemoryDedupStore::new(100_000);
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug)]
pub struct MemoryDedupStore {
    shards: Box<[Shard]>,
    per_shard: usize,
    hasher: Hasher,
}

/// A fast seeded hasher: keys may come from outside (webhook ids), so not an unseeded one.
type Hasher = foldhash::quality::RandomState;

#[derive(Debug, Default)]
struct Shard {
    keys: Mutex<Keys>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct Keys {
    map: HashMap<DedupKey, Entry, Hasher>,
    /// Keys in the order they were first inserted: eviction takes from the front.
    order: VecDeque<DedupKey>,
}

impl Keys {
    fn len(&self) -> usize {
        self.map.len()
    }

    fn get(&self, key: &DedupKey) -> Option<&Entry> {
        self.map.get(key)
    }

    fn insert(&mut self, key: &DedupKey, entry: Entry) {
        match self.map.get_mut(key) {
            Some(e) => *e = entry,
            None => {
                self.map.insert(key.clone(), entry);
                self.order.push_back(key.clone());
            }
        }
    }

    /// Makes room for one more key: drops expired keys from the front, then the oldest
    /// settled ones. In-flight keys stay (dropping one would let a duplicate run): they go
    /// to the back. A full shard of in-flight keys grows past its bound rather than lie.
    fn make_room(&mut self, now: Instant, cap: usize) {
        let mut budget = self.order.len();
        while self.map.len() >= cap && budget > 0 {
            budget -= 1;
            let Some(k) = self.order.pop_front() else {
                return;
            };
            // One lookup for the common case (remove); a live in-flight key goes back.
            if let Some(e) = self.map.remove(&k) {
                if e.state == KeyState::InFlight && e.expires > now {
                    self.map.insert(k.clone(), e);
                    self.order.push_back(k);
                }
            }
        }
    }

    fn purge(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        self.map.retain(|_, e| e.expires > now);
        let map = &self.map;
        self.order.retain(|k| map.contains_key(k));
        before - self.map.len()
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: KeyState,
    expires: Instant,
}

impl MemoryDedupStore {
    /// A store that remembers at most about `capacity` keys.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = syncbus_storage::MemoryDedupStore::new(1_000);
    /// assert!(store.is_empty());
    /// ```
    pub fn new(capacity: usize) -> MemoryDedupStore {
        MemoryDedupStore {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: Default::default(),
        }
    }

    /// How many keys are held, expired ones included until purged.
    ///
    /// # Examples
    ///
    /// ```
    /// # let store = syncbus_storage::MemoryDedupStore::new(10);
    /// assert_eq!(store.len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.keys.lock().len()).sum()
    }

    /// Whether no key is held.
    ///
    /// # Examples
    ///
    /// ```
    /// # let store = syncbus_storage::MemoryDedupStore::new(10);
    /// assert!(store.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &DedupKey) -> &Shard {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Claims without awaiting: the memory store never waits for I/O.
    fn claim_now(&self, key: &DedupKey, lease: Duration) -> Claim {
        let now = Instant::now();
        let shard = self.shard(key);
        let mut keys = shard.keys.lock();
        if let Some(e) = keys.map.get_mut(key) {
            let live = e.expires > now;
            return match e.state {
                KeyState::Done if live => Claim::Duplicate,
                KeyState::InFlight if live => Claim::InFlight,
                _ => {
                    *e = Entry {
                        state: KeyState::InFlight,
                        expires: deadline(now, lease),
                    };
                    Claim::Acquired
                }
            };
        }
        if keys.len() >= self.per_shard {
            keys.make_room(now, self.per_shard);
        }
        keys.insert(
            key,
            Entry {
                state: KeyState::InFlight,
                expires: deadline(now, lease),
            },
        );
        Claim::Acquired
    }

    fn finish_now(&self, key: &DedupKey, outcome: Outcome, ttl: Duration) {
        let shard = self.shard(key);
        let state = match outcome {
            Outcome::Done => KeyState::Done,
            Outcome::Failed => KeyState::Failed,
        };
        let now = Instant::now();
        let expires = deadline(now, ttl);
        {
            let mut keys = shard.keys.lock();
            let done = keys
                .get(key)
                .is_some_and(|e| e.state == KeyState::Done && e.expires > now);
            if !(done && outcome == Outcome::Failed) {
                keys.insert(key, Entry { state, expires });
            }
        }
        shard.changed.notify_waiters();
    }

    fn renew_now(&self, key: &DedupKey, lease: Duration) -> bool {
        let now = Instant::now();
        let mut keys = self.shard(key).keys.lock();
        match keys.map.get_mut(key) {
            Some(e) if e.state == KeyState::InFlight && e.expires > now => {
                e.expires = deadline(now, lease);
                true
            }
            _ => false,
        }
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
pub(crate) fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl DedupStore for MemoryDedupStore {
    fn claim<'a>(&'a self, key: &'a DedupKey, lease: Duration) -> StoreFuture<'a, Claim> {
        let claim = self.claim_now(key, lease);
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn finish<'a>(
        &'a self,
        key: &'a DedupKey,
        outcome: Outcome,
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        self.finish_now(key, outcome, ttl);
        Box::pin(std::future::ready(Ok(())))
    }

    fn renew<'a>(&'a self, key: &'a DedupKey, lease: Duration) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(self.renew_now(key, lease))))
    }

    fn wait<'a>(
        &'a self,
        key: &'a DedupKey,
        max: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let shard = self.shard(key);
            let notified = shard.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let in_flight = shard
                .keys
                .lock()
                .get(key)
                .is_some_and(|e| e.state == KeyState::InFlight && e.expires > Instant::now());
            if in_flight {
                let _ = tokio::time::timeout(max, notified).await;
            }
        })
    }

    fn state<'a>(&'a self, key: &'a DedupKey) -> StoreFuture<'a, Option<KeyState>> {
        let now = Instant::now();
        let state = self
            .shard(key)
            .keys
            .lock()
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| e.state);
        Box::pin(std::future::ready(Ok(state)))
    }

    fn purge_expired(&self) -> StoreFuture<'_, u64> {
        let now = Instant::now();
        let mut purged = 0u64;
        for shard in self.shards.iter() {
            purged += shard.keys.lock().purge(now) as u64;
        }
        Box::pin(std::future::ready(Ok(purged)))
    }
}
