//! The in-memory store: the same contracts as SQLite, nothing survives the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use syncbus_envelope::{Bytes, Envelope, Event, Timestamp};

use crate::check_name;
use crate::{
    Checkpoints, Claimed, EventLog, LogRecord, Outbox, OutboxRecord, Retention, StoreError,
    StoreFuture,
};
use syncbus_core::NameKind;

/// A store kept in process memory, for tests and for data that may be lost on exit. It
/// implements every storage trait; clones share the same data.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use syncbus_storage::{Checkpoints, EventLog, MemoryStore};
///
/// let store = MemoryStore::new();
/// let log: Arc<dyn EventLog> = Arc::new(store.clone());
/// let cursors: Arc<dyn Checkpoints> = Arc::new(store);
/// assert_eq!(log.head().await?, None);
/// assert_eq!(cursors.get("c").await?, None);
/// # Ok::<(), syncbus_storage::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    next_offset: u64,
    log: BTreeMap<u64, LogRecord>,
    consumers: HashMap<String, ConsumerState>,
    checkpoints: HashMap<String, Vec<u8>>,
    next_outbox: u64,
    outbox: BTreeMap<u64, Envelope<Bytes>>,
}

#[derive(Debug, Default)]
struct ConsumerState {
    committed: Option<u64>,
    claims: BTreeMap<u64, ClaimRow>,
}

#[derive(Debug)]
struct ClaimRow {
    member: Option<String>,
    expires_ms: i64,
    deliveries: u32,
    acked: bool,
}

fn now_ms() -> i64 {
    Timestamp::now().as_unix_nanos() / 1_000_000
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl MemoryStore {
    /// An empty store.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = syncbus_storage::MemoryStore::new();
    /// # let _ = store;
    /// ```
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Enqueues an outbox event. Memory has no transactions to join: the event is committed
    /// at once. Returns its id.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid) if the envelope has no valid topic (the relay could never
    /// publish it).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{MemoryStore, Outbox};
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let store = MemoryStore::new();
    /// let id = store.enqueue(env)?;
    /// assert_eq!(store.pending(1).await?[0].id, id);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn enqueue(&self, envelope: Envelope<Bytes>) -> Result<u64, StoreError> {
        crate::check_outbox_topic(&envelope)?;
        let mut s = self.inner.lock();
        s.next_outbox += 1;
        let id = s.next_outbox;
        s.outbox.insert(id, envelope);
        Ok(id)
    }

    /// Enqueues the typed `event`: [`enqueue`](Self::enqueue) of its envelope, its payload as
    /// JSON, on the event's topic.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use serde::Serialize;
    /// use syncbus_core::Event;
    /// use syncbus_storage::{MemoryStore, Outbox};
    ///
    /// #[derive(Clone, Debug, Serialize)]
    /// struct Renamed { user: u64 }
    /// impl Event for Renamed { const TYPE: &'static str = "user.renamed"; }
    ///
    /// let store = MemoryStore::new();
    /// store.enqueue_event(Renamed { user: 7 })?;
    /// assert_eq!(store.pending(10).await?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Corrupt`](crate::StoreErrorKind::Corrupt) if the event does not
    /// serialize, and as [`enqueue`](Self::enqueue).
    pub fn enqueue_event<E: Event + Serialize>(&self, event: E) -> Result<u64, StoreError> {
        let envelope = Envelope::from_event(event)
            .to_bytes_payload()
            .map_err(StoreError::codec)?;
        self.enqueue(envelope)
    }

    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> StoreFuture<'_, T> {
        let result = f(&mut self.inner.lock());
        Box::pin(std::future::ready(result))
    }
}

impl State {
    fn append(&mut self, envelope: Envelope<Bytes>, now: Timestamp) -> u64 {
        self.next_offset += 1;
        let offset = self.next_offset;
        self.log.insert(
            offset,
            LogRecord {
                offset,
                appended_at: now,
                envelope,
            },
        );
        offset
    }

    fn advance(&mut self, consumer: &str) {
        let Some(c) = self.consumers.get_mut(consumer) else {
            return;
        };
        let start = c.committed.map_or(0, |o| o + 1);
        let mut committed = c.committed;
        for &offset in self.log.range(start..).map(|(o, _)| o) {
            if c.claims.get(&offset).is_some_and(|r| r.acked) {
                committed = Some(offset);
            } else {
                break;
            }
        }
        if let Some(done) = committed {
            c.claims.retain(|&o, _| o > done);
        }
        c.committed = committed;
    }
}

impl EventLog for MemoryStore {
    fn append(&self, envelope: Envelope<Bytes>) -> StoreFuture<'_, u64> {
        self.with(|s| Ok(s.append(envelope, Timestamp::now())))
    }

    fn append_batch(&self, envelopes: Vec<Envelope<Bytes>>) -> StoreFuture<'_, Vec<u64>> {
        self.with(|s| {
            let now = Timestamp::now();
            Ok(envelopes.into_iter().map(|e| s.append(e, now)).collect())
        })
    }

    fn read(&self, from: u64, max: usize) -> StoreFuture<'_, Vec<LogRecord>> {
        self.with(|s| {
            Ok(s.log
                .range(from..)
                .take(max)
                .map(|(_, r)| r.clone())
                .collect())
        })
    }

    fn head(&self) -> StoreFuture<'_, Option<u64>> {
        self.with(|s| Ok(s.log.keys().next_back().copied()))
    }

    fn commit<'a>(&'a self, consumer: &'a str, offset: u64) -> StoreFuture<'a, ()> {
        self.with(|s| {
            check_name(NameKind::Consumer, consumer)?;
            let c = s.consumers.entry(consumer.to_owned()).or_default();
            c.committed = Some(offset);
            c.claims.retain(|&o, _| o > offset);
            Ok(())
        })
    }

    fn committed<'a>(&'a self, consumer: &'a str) -> StoreFuture<'a, Option<u64>> {
        self.with(|s| {
            check_name(NameKind::Consumer, consumer)?;
            Ok(s.consumers.get(consumer).and_then(|c| c.committed))
        })
    }

    fn claim<'a>(
        &'a self,
        consumer: &'a str,
        member: &'a str,
        max: usize,
        lease: Duration,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        self.with(|s| {
            check_name(NameKind::Consumer, consumer)?;
            check_name(NameKind::Member, member)?;
            let now = now_ms();
            let State { log, consumers, .. } = s;
            let c = consumers.entry(consumer.to_owned()).or_default();
            let start = c.committed.map_or(0, |o| o + 1);
            let mut out = Vec::new();
            for (&offset, record) in log.range(start..) {
                if out.len() >= max {
                    break;
                }
                let row = c.claims.entry(offset).or_insert(ClaimRow {
                    member: None,
                    expires_ms: i64::MIN,
                    deliveries: 0,
                    acked: false,
                });
                if row.acked || row.expires_ms > now {
                    continue;
                }
                row.member = Some(member.to_owned());
                row.expires_ms = now.saturating_add(ms(lease));
                row.deliveries = row.deliveries.saturating_add(1);
                out.push(Claimed {
                    record: record.clone(),
                    deliveries: row.deliveries,
                });
            }
            Ok(out)
        })
    }

    fn ack<'a>(&'a self, consumer: &'a str, offsets: &'a [u64]) -> StoreFuture<'a, ()> {
        self.with(|s| {
            check_name(NameKind::Consumer, consumer)?;
            let State { log, consumers, .. } = &mut *s;
            let c = consumers.entry(consumer.to_owned()).or_default();
            for &offset in offsets {
                if c.committed.is_some_and(|done| offset <= done) || !log.contains_key(&offset) {
                    continue;
                }
                let row = c.claims.entry(offset).or_insert(ClaimRow {
                    member: None,
                    expires_ms: i64::MIN,
                    deliveries: 0,
                    acked: false,
                });
                row.acked = true;
            }
            s.advance(consumer);
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        consumer: &'a str,
        offsets: &'a [u64],
        delay: Duration,
    ) -> StoreFuture<'a, ()> {
        self.with(|s| {
            check_name(NameKind::Consumer, consumer)?;
            let until = now_ms().saturating_add(ms(delay));
            if let Some(c) = s.consumers.get_mut(consumer) {
                for offset in offsets {
                    if let Some(row) = c.claims.get_mut(offset).filter(|r| !r.acked) {
                        row.member = None;
                        row.expires_ms = until;
                    }
                }
            }
            Ok(())
        })
    }

    fn extend<'a>(
        &'a self,
        consumer: &'a str,
        member: &'a str,
        offsets: &'a [u64],
        lease: Duration,
    ) -> StoreFuture<'a, u64> {
        self.with(|s| {
            check_name(NameKind::Consumer, consumer)?;
            check_name(NameKind::Member, member)?;
            let until = now_ms().saturating_add(ms(lease));
            let mut n = 0;
            if let Some(c) = s.consumers.get_mut(consumer) {
                for offset in offsets {
                    if let Some(row) = c
                        .claims
                        .get_mut(offset)
                        .filter(|r| !r.acked && r.member.as_deref() == Some(member))
                    {
                        row.expires_ms = until;
                        n += 1;
                    }
                }
            }
            Ok(n)
        })
    }

    fn release_member<'a>(&'a self, consumer: &'a str, member: &'a str) -> StoreFuture<'a, u64> {
        self.with(|s| {
            check_name(NameKind::Consumer, consumer)?;
            check_name(NameKind::Member, member)?;
            let now = now_ms();
            let mut n = 0;
            if let Some(c) = s.consumers.get_mut(consumer) {
                for row in c.claims.values_mut() {
                    if !row.acked && row.member.as_deref() == Some(member) && row.expires_ms > now {
                        row.member = None;
                        row.expires_ms = now;
                        n += 1;
                    }
                }
            }
            Ok(n)
        })
    }

    fn retain(&self, retention: Retention) -> StoreFuture<'_, u64> {
        self.with(|s| {
            let before = s.log.len();
            if let Some(age) = retention.max_age {
                let cutoff = Timestamp::now()
                    .as_unix_nanos()
                    .saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
                s.log.retain(|_, r| r.appended_at.as_unix_nanos() >= cutoff);
            }
            if let Some(max) = retention.max_records {
                let max = usize::try_from(max).unwrap_or(usize::MAX);
                while s.log.len() > max {
                    s.log.pop_first();
                }
            }
            Ok((before - s.log.len()) as u64)
        })
    }
}

impl Checkpoints for MemoryStore {
    fn get<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.with(|s| {
            check_name(NameKind::Checkpoint, name)?;
            Ok(s.checkpoints.get(name).cloned())
        })
    }

    fn put<'a>(&'a self, name: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
        self.with(|s| {
            check_name(NameKind::Checkpoint, name)?;
            s.checkpoints.insert(name.to_owned(), value);
            Ok(())
        })
    }

    fn remove<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool> {
        self.with(|s| {
            check_name(NameKind::Checkpoint, name)?;
            Ok(s.checkpoints.remove(name).is_some())
        })
    }
}

impl Outbox for MemoryStore {
    fn pending(&self, max: usize) -> StoreFuture<'_, Vec<OutboxRecord>> {
        self.with(|s| {
            Ok(s.outbox
                .iter()
                .take(max)
                .map(|(&id, env)| OutboxRecord {
                    id,
                    envelope: env.clone(),
                })
                .collect())
        })
    }

    fn mark_sent<'a>(&'a self, ids: &'a [u64]) -> StoreFuture<'a, ()> {
        self.with(|s| {
            for id in ids {
                s.outbox.remove(id);
            }
            Ok(())
        })
    }
}
