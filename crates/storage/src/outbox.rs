//! The transactional outbox: events enqueued inside the caller's database transaction, and
//! the relay that publishes them to the bus in commit order.

use syncbus_envelope::{Bytes, Envelope};

use crate::{StoreError, StoreFuture};

/// One enqueued, not yet sent, outbox event.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use syncbus_storage::{MemoryStore, Outbox};
/// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
/// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
/// let store = MemoryStore::new();
/// store.enqueue(env.clone())?;
/// let pending = store.pending(10).await?;
/// assert_eq!(pending[0].envelope, env);
/// # Ok::<(), syncbus_storage::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxRecord {
    /// The row id: unique, and what [`Outbox::mark_sent`] takes. Its order is not
    /// necessarily the commit order; [`Outbox::pending`]'s order is.
    pub id: u64,
    /// The event.
    pub envelope: Envelope<Bytes>,
}

/// The relay's side of an outbox. Enqueueing is backend-specific, because it must join the
/// caller's own transaction (for SQLite: `SqliteStore::enqueue` in `syncbus-store`
/// on a `rusqlite::Transaction`).
///
/// # Ordering and gaps
///
/// [`pending`](Self::pending) returns committed, unsent events, and an event stays pending
/// until marked sent: a relay never skips an event whose transaction commits after a
/// later-numbered one (it is not a cursor over ids), and nothing can later appear before what
/// it already returned. The order is commit order on memory and SQLite (one writer at a
/// time); on PostgreSQL it is transaction order (the order in which overlapping transactions
/// first wrote; see `PgStore`), so there, write the business rows before enqueueing, and
/// give events an entity version when consumers need per-entity order.
pub trait Outbox: Send + Sync + std::fmt::Debug {
    /// Up to `max` committed, unsent events, in the order above.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{MemoryStore, Outbox};
    /// assert!(MemoryStore::new().pending(10).await?.is_empty());
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Corrupt`](crate::StoreErrorKind::Corrupt)(crate::StoreError::Codec), [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend)(crate::StoreError::Backend).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    fn pending(&self, max: usize) -> StoreFuture<'_, Vec<OutboxRecord>>;

    /// Marks events sent, so they are not relayed again.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{MemoryStore, Outbox};
    /// # use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// # let env = Envelope::new(Metadata::new(EventType::new("a").unwrap()).with_topic(syncbus_envelope::Topic::from_static("a")), Bytes::new());
    /// let store = MemoryStore::new();
    /// store.enqueue(env)?;
    /// let ids: Vec<u64> = store.pending(10).await?.iter().map(|r| r.id).collect();
    /// store.mark_sent(&ids).await?;
    /// assert!(store.pending(10).await?.is_empty());
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Backend`](crate::StoreErrorKind::Backend)(crate::StoreError::Backend).
    ///
    /// # Cancel safety
    ///
    /// If dropped, the marking may or may not happen; unmarked events are relayed again
    /// (at-least-once).
    fn mark_sent<'a>(&'a self, ids: &'a [u64]) -> StoreFuture<'a, ()>;
}

/// Checks an envelope before it enters an outbox, as every backend does at enqueue: an outbox
/// row the relay could never publish would hold up every event after it, so an event
/// without a topic is refused (a `Topic` is valid by construction).
///
/// # Errors
///
/// [`StoreErrorKind::Invalid`](crate::StoreErrorKind::Invalid), saying what is wrong.
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bytes, Envelope, EventType, Metadata, Topic};
/// use syncbus_storage::check_outbox_topic;
///
/// let meta = Metadata::new(EventType::from_static("order.placed"));
/// assert!(check_outbox_topic(&Envelope::new(meta.clone(), Bytes::new())).is_err());
/// let meta = meta.with_topic(Topic::from_static("orders.placed"));
/// assert!(check_outbox_topic(&Envelope::new(meta, Bytes::new())).is_ok());
/// ```
pub fn check_outbox_topic(envelope: &Envelope<Bytes>) -> Result<(), StoreError> {
    match envelope.meta().topic() {
        Some(_) => Ok(()),
        None => Err(StoreError::invalid(
            "an outbox event needs a topic to be published on",
        )),
    }
}
