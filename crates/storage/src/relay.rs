//! The outbox relay: publishes committed outbox events to the bus, in commit order.

use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use syncbus_core::{Bus, Bytes, Envelope, Event, PublishError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::into_arc::IntoArc;
use crate::{Outbox, StoreError};

/// Why a relay round stopped early. In every case the event named stays pending, and the
/// events after it wait, so commit order holds; the next round tries it again.
///
/// # Examples
///
/// ```
/// use syncbus_storage::RelayError;
/// let e = RelayError::Publish { id: 4, reason: "the bus is closed".into() };
/// assert_eq!(e.to_string(), "outbox event 4 was not published: the bus is closed");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum RelayError {
    /// Reading the outbox or marking events sent failed.
    Store(StoreError),
    /// The bus refused an event (closed, full, invalid topic).
    Publish {
        /// The outbox row id.
        id: u64,
        /// What the bus said.
        reason: String,
    },
    /// No subscription took the event: none matches its topic and payload type (an event
    /// relayed as bytes reaches only `subscribe::<Bytes>` subscriptions; see
    /// [`Relay::typed`]), or none exists yet. Taps that only observe do not count (see the
    /// [`Relay`] docs, "Taps"). Marking it sent would lose it, so it stays
    /// pending until a subscription takes it, unless [`Relay::drop_unreceived`] says to let
    /// it go. To keep events for consumers that are not running, move them into the same
    /// database's event log instead (`move_outbox_to_log` on `syncbus-store`'s stores).
    Unreceived {
        /// The outbox row id.
        id: u64,
        /// The event's type.
        event_type: String,
        /// The topic it was published on.
        topic: String,
    },
    /// The event's type was registered with [`Relay::typed`] but its payload does not
    /// decode as that type.
    Undecodable {
        /// The outbox row id.
        id: u64,
        /// The event's type.
        event_type: String,
        /// Why it does not decode.
        reason: String,
    },
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::Store(e) => write!(f, "outbox relay store error: {e}"),
            RelayError::Publish { id, reason } => {
                write!(f, "outbox event {id} was not published: {reason}")
            }
            RelayError::Unreceived {
                id,
                event_type,
                topic,
            } => write!(
                f,
                "outbox event {id} ({event_type} on {topic}) was taken by no subscription; \
                 it stays pending"
            ),
            RelayError::Undecodable {
                id,
                event_type,
                reason,
            } => write!(
                f,
                "outbox event {id} ({event_type}) does not decode: {reason}; it stays pending"
            ),
        }
    }
}

impl Error for RelayError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RelayError::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StoreError> for RelayError {
    fn from(e: StoreError) -> Self {
        RelayError::Store(e)
    }
}

/// What a relay has done since it was made, shared by its clones; see [`Relay::stats`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use syncbus_storage::{MemoryStore, Relay, RelayStats};
/// let relay = Relay::new(MemoryStore::new(), syncbus_core::Bus::new());
/// assert_eq!(relay.stats(), RelayStats::default());
/// assert_eq!(
///     relay.stats().to_string(),
///     "sent 0, dropped 0, unreceived 0, undecodable 0, refused 0, partial 0"
/// );
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Events marked sent after at least one subscription took them.
    pub sent: u64,
    /// Events marked sent that no subscription took ([`Relay::drop_unreceived`] only).
    pub dropped: u64,
    /// Rounds stopped at an event no subscription took ([`RelayError::Unreceived`]).
    pub unreceived: u64,
    /// Rounds stopped at an event that does not decode ([`RelayError::Undecodable`]).
    pub undecodable: u64,
    /// Rounds stopped because the bus refused an event ([`RelayError::Publish`]).
    pub refused: u64,
    /// Events marked sent that some subscriptions took and others refused (full under their
    /// `Reject` policy): publishing again would reach the takers twice, so each is logged at
    /// WARN with both sides and counted here.
    pub partial: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    unreceived: AtomicU64,
    undecodable: AtomicU64,
    refused: AtomicU64,
    partial: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RelayStats {
        RelayStats {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            unreceived: self.unreceived.load(Ordering::Relaxed),
            undecodable: self.undecodable.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            partial: self.partial.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Display for RelayStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, dropped {}, unreceived {}, undecodable {}, refused {}, partial {}",
            self.sent, self.dropped, self.unreceived, self.undecodable, self.refused, self.partial
        )
    }
}

/// Why a decoder did not publish.
enum Refusal {
    Undecodable(String),
    Publish(String),
    /// Some subscriptions took it, others refused (full under `Reject`): it cannot go out
    /// again without reaching the takers twice.
    Partial(String),
}

/// What a refused publish means to the relay.
fn refusal<T>(e: PublishError<T>) -> Refusal {
    match e {
        // Only taps that observe took it: no subscription received it, so it must not be
        // marked sent. Publishing it again reaches those taps twice, which at-least-once
        // allows.
        PublishError::Partial(_, who) if who.took.is_empty() => Refusal::Publish(format!(
            "refused by subscriptions {:?} (full under their Reject policy); only taps {:?}, \
             which do not count as receivers, took it",
            who.refused, who.observed
        )),
        PublishError::Partial(_, who) => Refusal::Partial(format!(
            "taken by subscriptions {:?}, refused by {:?} (full under their Reject policy)",
            who.took, who.refused
        )),
        e => Refusal::Publish(describe(&e)),
    }
}

/// Moves outbox events to the bus: reads committed, unsent events in commit order, publishes
/// each with [`Bus::publish_envelope`] (a full `Block` queue is awaited), and marks sent the
/// ones a subscription took.
///
/// Delivery is at-least-once: if the process stops between publishing and marking, those
/// events are published again on the next round. An event leaves the outbox only when at
/// least one subscription took it: an event nobody took ([`RelayError::Unreceived`]), one
/// that does not decode ([`RelayError::Undecodable`]) or one the bus refuses stops the round
/// with the reason (it and everything after it stay pending), so nothing is lost and order is
/// kept. [`drop_unreceived`](Self::drop_unreceived) is the opt-in to let events nobody takes
/// go. For events that must outlive the process, move them into the same database's event
/// log instead (`SqliteStore::move_outbox_to_log`, `PgStore::move_outbox_to_log` in
/// `syncbus-store`), one transaction per batch, and consume them with a durable consumer.
///
/// # Taps
///
/// A tap ([`Bus::tap`]) sees every relayed event whatever its type, with no
/// [`typed`](Self::typed) per type: a tap on `>` audits everything the relay publishes, and
/// [`LogFeed::tap`](crate::LogFeed::tap) records it. But a tap only observes: it is **not**
/// a receiver for the rule above. An event that only taps took is
/// [`RelayError::Unreceived`] and stays pending (the taps see it again on the next round,
/// which at-least-once allows), and one a subscription refused while only taps took it stays
/// pending as [`RelayError::Publish`]; so a debugging tap can never make the relay let an
/// event go. A tap made a receiver on purpose
/// ([`TapBuilder::receiver`](syncbus_core::TapBuilder::receiver)) counts like a
/// subscription; [`LogFeed::tap`](crate::LogFeed::tap)'s is one, so an event only the feed
/// took is marked sent: it is in the log. To deliver outbox events to `subscribe::<E>`
/// handlers, [`typed`](Self::typed) is still the way; taps then see the typed publish, its
/// payload encoded by `E`'s `Event::encode`.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata, Topic};
/// use syncbus_storage::{LogFeed, MemoryStore, Outbox, Relay, RelayError};
///
/// let store = MemoryStore::new();
/// let meta = Metadata::new(EventType::new("order.placed")?).with_topic(Topic::new("orders.placed")?);
/// store.enqueue(Envelope::new(meta, Bytes::from_static(b"{}")))?;
/// let bus = Bus::new();
/// let relay = Relay::new(store.clone(), bus.clone());
///
/// let _debug = bus.tap(">")?.inline(|t| println!("relayed {}", t.meta().event_type()))?;
/// assert!(matches!(relay.run_once().await, Err(RelayError::Unreceived { .. }))); // seen, kept
/// assert_eq!(store.pending(10).await?.len(), 1);
///
/// let _feed = LogFeed::tap(&bus, ">", MemoryStore::new())?; // a receiver: the event is stored
/// assert_eq!(relay.run_once().await?, 1);
/// assert!(store.pending(10).await?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata};
/// use syncbus_storage::{MemoryStore, Outbox, Relay};
///
/// // SQLite and PostgreSQL enqueue in the application's own transaction; memory just adds.
/// let store = MemoryStore::new();
/// let meta = Metadata::new(EventType::new("order.placed").unwrap()).with_topic(syncbus_core::Topic::from_static("orders.placed"));
/// store.enqueue(Envelope::new(meta, Bytes::from_static(b"{}")))?;
///
/// let bus = Bus::new();
/// let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
/// let s = seen.clone();
/// let _sub = bus.subscribe::<Bytes>("orders.>")?.inline(move |_| {
///     s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
/// })?;
/// let relay = Relay::new(store.clone(), bus);
/// assert_eq!(relay.run_once().await?, 1);
/// assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
/// assert!(store.pending(10).await?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Relay {
    outbox: Arc<dyn Outbox>,
    bus: Bus,
    batch: usize,
    typed: HashMap<String, Decoder>,
    drop_unreceived: bool,
    counters: Arc<Counters>,
}

/// Publishes one outbox envelope as a typed event.
type Decoder = Arc<
    dyn for<'a> Fn(
            &'a Bus,
            Envelope<Bytes>,
        ) -> Pin<Box<dyn Future<Output = Result<usize, Refusal>> + Send + 'a>>
        + Send
        + Sync,
>;

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("batch", &self.batch)
            .field("typed", &self.typed.keys().collect::<Vec<_>>())
            .field("drop_unreceived", &self.drop_unreceived)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay from `outbox` to `bus`, moving up to 256 events per round trip.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_storage::{MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new(), syncbus_core::Bus::new());
    /// assert_eq!(relay.run_once().await?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn new(outbox: impl IntoArc<dyn Outbox>, bus: Bus) -> Relay {
        let outbox = outbox.into_arc();
        Relay {
            outbox,
            bus,
            batch: 256,
            typed: HashMap::new(),
            drop_unreceived: false,
            counters: Arc::default(),
        }
    }

    /// Opt-in: mark sent an event that no subscription took, instead of keeping it pending.
    /// Such an event is gone; each one is logged at WARN and counted in
    /// [`RelayStats::dropped`]. Off by default.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata, Topic};
    /// use syncbus_storage::{MemoryStore, Outbox, Relay};
    /// let store = MemoryStore::new();
    /// let meta = Metadata::new(EventType::new("a.b")?).with_topic(Topic::from_static("a.b"));
    /// store.enqueue(Envelope::new(meta, Bytes::new()))?;
    /// let relay = Relay::new(store.clone(), Bus::new()).drop_unreceived();
    /// assert_eq!(relay.run_once().await?, 0); // nobody took it, and it is gone
    /// assert!(store.pending(10).await?.is_empty());
    /// assert_eq!(relay.stats().dropped, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn drop_unreceived(mut self) -> Relay {
        self.drop_unreceived = true;
        self
    }

    /// What this relay and its clones have done so far.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata, Topic};
    /// use syncbus_storage::{MemoryStore, Outbox, Relay, RelayError};
    /// let store = MemoryStore::new();
    /// let meta = Metadata::new(EventType::new("a.b")?).with_topic(Topic::from_static("a.b"));
    /// store.enqueue(Envelope::new(meta, Bytes::new()))?;
    /// let relay = Relay::new(store.clone(), Bus::new());
    /// assert!(matches!(relay.run_once().await, Err(RelayError::Unreceived { .. })));
    /// assert_eq!(relay.stats().unreceived, 1);
    /// assert_eq!(store.pending(10).await?.len(), 1); // still there
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn stats(&self) -> RelayStats {
        self.counters.snapshot()
    }

    /// Events read per round trip (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use syncbus_storage::{MemoryStore, Relay};
    /// let relay = Relay::new(MemoryStore::new(), syncbus_core::Bus::new()).batch_size(32);
    /// # let _ = relay;
    /// ```
    pub fn batch_size(mut self, batch: usize) -> Relay {
        self.batch = batch.max(1);
        self
    }

    /// Publishes everything pending now; returns how many events were taken by a
    /// subscription and marked sent.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata};
    /// use syncbus_storage::{MemoryStore, Relay, RelayError};
    /// let store = MemoryStore::new();
    /// let meta = Metadata::new(EventType::new("a.b")?).with_topic(syncbus_envelope::Topic::from_static("a.b"));
    /// store.enqueue(Envelope::new(meta, Bytes::new()))?;
    /// let bus = Bus::new();
    /// let relay = Relay::new(store, bus.clone());
    /// // Nobody subscribed: the event stays in the outbox.
    /// assert!(matches!(relay.run_once().await, Err(RelayError::Unreceived { id: _, .. })));
    /// let _sub = bus.subscribe::<Bytes>("a.>")?.inline(|_| {})?;
    /// assert_eq!(relay.run_once().await?, 1);
    /// assert_eq!(relay.run_once().await?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`RelayError::Store`] if the outbox cannot be read or marked;
    /// [`RelayError::Unreceived`], [`RelayError::Undecodable`] or [`RelayError::Publish`]
    /// for the first event that no subscription took, that does not decode, or that the bus
    /// refused. Events taken before the error are marked sent.
    ///
    /// # Cancel safety
    ///
    /// Events published but not yet marked when the future is dropped are published again
    /// next time.
    pub async fn run_once(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let batch = self.outbox.pending(self.batch).await?;
            if batch.is_empty() {
                return Ok(total);
            }
            let full = batch.len() == self.batch;
            let mut sent = Vec::with_capacity(batch.len());
            let mut taken = 0u64;
            let mut dropped = 0u64;
            let mut stopped = None;
            for record in batch {
                let event_type = record.envelope.meta().event_type().as_str().to_owned();
                let topic = record
                    .envelope
                    .meta()
                    .topic()
                    .map_or_else(String::new, |t| t.as_str().to_owned());
                let published = match self.typed.get(&event_type) {
                    Some(publish) => publish(&self.bus, record.envelope).await,
                    None => self
                        .bus
                        .publish_envelope(record.envelope)
                        .await
                        .map_err(refusal),
                };
                let error = match published {
                    Ok(0) if self.drop_unreceived => {
                        tracing::warn!(
                            id = record.id,
                            event_type = %event_type,
                            topic = %topic,
                            "outbox event taken by no subscription; dropped (drop_unreceived)"
                        );
                        dropped += 1;
                        sent.push(record.id);
                        continue;
                    }
                    Ok(0) => {
                        self.counters.unreceived.fetch_add(1, Ordering::Relaxed);
                        RelayError::Unreceived {
                            id: record.id,
                            event_type,
                            topic,
                        }
                    }
                    Ok(_) => {
                        taken += 1;
                        sent.push(record.id);
                        continue;
                    }
                    Err(Refusal::Partial(who)) => {
                        tracing::warn!(
                            id = record.id,
                            event_type = %event_type,
                            topic = %topic,
                            %who,
                            "outbox event reached only some subscriptions; marked sent"
                        );
                        self.counters.partial.fetch_add(1, Ordering::Relaxed);
                        taken += 1;
                        sent.push(record.id);
                        continue;
                    }
                    Err(Refusal::Undecodable(reason)) => {
                        self.counters.undecodable.fetch_add(1, Ordering::Relaxed);
                        RelayError::Undecodable {
                            id: record.id,
                            event_type,
                            reason,
                        }
                    }
                    Err(Refusal::Publish(reason)) => {
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                        RelayError::Publish {
                            id: record.id,
                            reason,
                        }
                    }
                };
                stopped = Some(error);
                break;
            }
            if !sent.is_empty() {
                self.outbox.mark_sent(&sent).await?;
                self.counters.sent.fetch_add(taken, Ordering::Relaxed);
                self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
            }
            total += usize::try_from(taken).unwrap_or(usize::MAX);
            if let Some(e) = stopped {
                return Err(e);
            }
            if !full {
                return Ok(total);
            }
        }
    }

    /// Publishes outbox events of type `E` as typed events (decoded from their JSON
    /// payload), so `subscribe::<E>` handlers receive them; other types go out as bytes.
    /// An event that does not decode stops the round with [`RelayError::Undecodable`]: it
    /// stays pending with the reason, and is counted in [`RelayStats::undecodable`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_core::{Bus, Envelope, Event};
    /// use syncbus_storage::{MemoryStore, Relay};
    ///
    /// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    /// struct Shipped { order: u64 }
    /// impl Event for Shipped { const TYPE: &'static str = "order.shipped"; }
    ///
    /// let store = Arc::new(MemoryStore::new());
    /// store.enqueue(Envelope::from_event(Shipped { order: 7 }).to_bytes_payload()?)?;
    /// let bus = Bus::new();
    /// let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    /// let s = seen.clone();
    /// let _sub = bus.subscribe::<Shipped>("order.shipped")?.inline(move |e| {
    ///     s.store(e.payload().order, std::sync::atomic::Ordering::SeqCst);
    /// })?;
    /// Relay::new(store, bus).typed::<Shipped>().run_once().await?;
    /// assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn typed<E: Event + DeserializeOwned>(mut self) -> Relay {
        let decode: Decoder = Arc::new(|bus: &Bus, env: Envelope<Bytes>| {
            Box::pin(async move {
                let typed = env
                    .decode_payload::<E>()
                    .map_err(|e| Refusal::Undecodable(format!("not a {}: {e}", E::TYPE)))?;
                bus.publish_envelope(typed).await.map_err(refusal)
            })
        });
        self.typed.insert(E::TYPE.to_owned(), decode);
        self
    }

    /// Runs the relay on a tokio task every `interval` until the handle is stopped. Errors
    /// are logged at WARN and retried next round.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use syncbus_storage::{MemoryStore, Relay};
    /// let handle = Relay::new(MemoryStore::new(), syncbus_core::Bus::new())
    ///     .spawn(Duration::from_millis(10));
    /// handle.stop().await;
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn`).
    pub fn spawn(self, interval: Duration) -> RelayHandle {
        let counters = self.counters.clone();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = self.run_once().await {
                    tracing::warn!(error = %e, "outbox relay round failed; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        RelayHandle {
            stop,
            task,
            counters,
        }
    }
}

fn describe<T>(e: &PublishError<T>) -> String {
    match e {
        PublishError::Closed(_) => "the bus is closed".into(),
        PublishError::Full(_) => "a subscription queue is full (Reject policy)".into(),
        PublishError::WouldBlock(_) => "a subscription queue is full (would block)".into(),
        PublishError::InvalidTopic(_, t) => format!("invalid topic: {t}"),
        _ => "the bus refused the event".into(),
    }
}

/// A running relay task; see [`Relay::spawn`].
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use syncbus_storage::{MemoryStore, Relay, RelayHandle};
/// let handle: RelayHandle = Relay::new(MemoryStore::new(), syncbus_core::Bus::new())
///     .spawn(Duration::from_millis(10));
/// handle.stop().await;
/// # });
/// ```
#[derive(Debug)]
#[must_use = "dropping a RelayHandle stops the relay"]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    counters: Arc<Counters>,
}

impl RelayHandle {
    /// The running relay's counters, as [`Relay::stats`] gives them.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata, Topic};
    /// use syncbus_storage::{MemoryStore, Relay};
    /// let store = MemoryStore::new();
    /// let bus = Bus::new();
    /// let _sub = bus.subscribe::<Bytes>("a.b")?.inline(|_| {})?;
    /// let meta = Metadata::new(EventType::new("a.b")?).with_topic(Topic::from_static("a.b"));
    /// store.enqueue(Envelope::new(meta, Bytes::new()))?;
    /// let handle = Relay::new(store, bus).spawn(Duration::from_millis(5));
    /// while handle.stats().sent == 0 {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// let last = handle.stop().await; // the counters of the whole run
    /// assert_eq!(last.sent, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn stats(&self) -> RelayStats {
        self.counters.snapshot()
    }

    /// Stops the relay after its current round and waits for it.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use syncbus_storage::{MemoryStore, Relay};
    /// let handle = Relay::new(MemoryStore::new(), syncbus_core::Bus::new())
    ///     .spawn(Duration::from_secs(3600));
    /// handle.stop().await; // does not wait out the interval
    /// # });
    /// ```
    ///
    /// # Cancel safety
    ///
    /// If dropped, the relay still stops after its current round.
    pub async fn stop(self) -> RelayStats {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.counters.snapshot()
    }
}
