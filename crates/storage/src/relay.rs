//! The outbox relay: publishes committed outbox events to the bus, in commit order.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use syncbus_core::{Bus, Bytes, Envelope, Event, PublishError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Outbox, StoreError};

/// Why a relay round stopped early.
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
    /// The bus refused an event (closed, full, invalid topic). It stays pending, and the
    /// events after it wait, so commit order holds.
    Publish {
        /// The outbox row id.
        id: u64,
        /// What the bus said.
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
        }
    }
}

impl Error for RelayError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RelayError::Store(e) => Some(e),
            RelayError::Publish { .. } => None,
        }
    }
}

impl From<StoreError> for RelayError {
    fn from(e: StoreError) -> Self {
        RelayError::Store(e)
    }
}

/// Moves outbox events to the bus: reads committed, unsent events in commit order, publishes
/// each with [`Bus::publish_envelope`] (a full `Block` queue is awaited), and marks the
/// published ones sent.
///
/// Delivery is at-least-once: if the process stops between publishing and marking, those
/// events are published again on the next round. An event that the bus refuses stops the
/// round (it and everything after it stay pending), so order is kept.
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
/// let relay = Relay::new(Arc::new(store.clone()), bus);
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
}

/// Publishes one outbox envelope as a typed event.
type Decoder = Arc<
    dyn for<'a> Fn(
            &'a Bus,
            Envelope<Bytes>,
        ) -> Pin<Box<dyn Future<Output = Result<usize, String>> + Send + 'a>>
        + Send
        + Sync,
>;

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("batch", &self.batch)
            .field("typed", &self.typed.keys().collect::<Vec<_>>())
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
    /// let relay = Relay::new(Arc::new(MemoryStore::new()), syncbus_core::Bus::new());
    /// assert_eq!(relay.run_once().await?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn new(outbox: Arc<dyn Outbox>, bus: Bus) -> Relay {
        Relay {
            outbox,
            bus,
            batch: 256,
            typed: HashMap::new(),
        }
    }

    /// Events read per round trip (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use syncbus_storage::{MemoryStore, Relay};
    /// let relay = Relay::new(Arc::new(MemoryStore::new()), syncbus_core::Bus::new()).batch_size(32);
    /// # let _ = relay;
    /// ```
    pub fn batch_size(mut self, batch: usize) -> Relay {
        self.batch = batch.max(1);
        self
    }

    /// Publishes everything pending now; returns how many events were published.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata};
    /// use syncbus_storage::{MemoryStore, Relay};
    /// let store = MemoryStore::new();
    /// let meta = Metadata::new(EventType::new("a.b")?).with_topic(syncbus_envelope::Topic::from_static("a.b"));
    /// store.enqueue(Envelope::new(meta, Bytes::new()))?;
    /// let relay = Relay::new(Arc::new(store), Bus::new());
    /// assert_eq!(relay.run_once().await?, 1); // published, even with nobody subscribed
    /// assert_eq!(relay.run_once().await?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`RelayError::Store`] if the outbox cannot be read or marked, [`RelayError::Publish`]
    /// if the bus refuses an event; events published before the error are marked sent.
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
            let mut refused = None;
            for record in batch {
                let decoder = self.typed.get(record.envelope.meta().event_type().as_str());
                let published = match decoder {
                    Some(publish) => publish(&self.bus, record.envelope).await,
                    None => self
                        .bus
                        .publish_envelope(record.envelope)
                        .await
                        .map_err(|e| describe(&e)),
                };
                match published {
                    Ok(_) => sent.push(record.id),
                    Err(reason) => {
                        refused = Some(RelayError::Publish {
                            id: record.id,
                            reason,
                        });
                        break;
                    }
                }
            }
            if !sent.is_empty() {
                self.outbox.mark_sent(&sent).await?;
            }
            total += sent.len();
            if let Some(e) = refused {
                return Err(e);
            }
            if !full {
                return Ok(total);
            }
        }
    }

    /// Publishes outbox events of type `E` as typed events (decoded from their JSON
    /// payload), so `subscribe::<E>` handlers receive them; other types go out as bytes.
    /// An event that does not decode stops the round like a refused one: it stays pending
    /// with the reason in the error.
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
                    .map_err(|e| format!("does not decode as {}: {e}", E::TYPE))?;
                bus.publish_envelope(typed).await.map_err(|e| describe(&e))
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
    /// let handle = Relay::new(Arc::new(MemoryStore::new()), syncbus_core::Bus::new())
    ///     .spawn(Duration::from_millis(10));
    /// handle.stop().await;
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn`).
    pub fn spawn(self, interval: Duration) -> RelayHandle {
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
        RelayHandle { stop, task }
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
/// let handle: RelayHandle = Relay::new(Arc::new(MemoryStore::new()), syncbus_core::Bus::new())
///     .spawn(Duration::from_millis(10));
/// handle.stop().await;
/// # });
/// ```
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// Stops the relay after its current round and waits for it.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use syncbus_storage::{MemoryStore, Relay};
    /// let handle = Relay::new(Arc::new(MemoryStore::new()), syncbus_core::Bus::new())
    ///     .spawn(Duration::from_secs(3600));
    /// handle.stop().await; // does not wait out the interval
    /// # });
    /// ```
    ///
    /// # Cancel safety
    ///
    /// If dropped, the relay still stops after its current round.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
