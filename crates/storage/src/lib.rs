//! The storage seams of syncbus: every storage trait, their records, one error, the memory
//! backends, and what runs on top of any backend (the durable consumer, the bus → log feed,
//! the outbox relay, the dedup purger).
//!
//! The traits are object-safe (their futures are boxed, [`StoreFuture`]), so a program holds
//! `Arc<dyn EventLog>` or `Arc<dyn DedupStore>` and picks the backend at run time. The SQLite
//! (embedded default) and PostgreSQL backends live in `syncbus-store`; the facade puts both
//! under `syncbus::store`.
//!
//! | trait | what it stores | memory backend |
//! | --- | --- | --- |
//! | [`EventLog`] | appended envelopes, consumer offsets, claims | [`MemoryStore`] |
//! | [`Checkpoints`] | named cursors of pollers, CDC readers, bridges | [`MemoryStore`] |
//! | [`Outbox`] | events enqueued in the caller's transaction | [`MemoryStore`] |
//! | [`DedupStore`] | idempotent-consumer keys | [`MemoryDedupStore`] |
//! | [`DeadLetterStore`] | failed events, for listing and redrive | [`MemoryDeadLetterStore`] |
//! | [`SagaStore`] | saga instances | [`MemorySagaStore`] |
//!
//! On top of the traits: [`DurableConsumer`] (a [`Source`](syncbus_core::Source) over any log:
//! fetch, then ack / nak / term / in progress, resuming after a restart), [`LogFeed`]
//! (bus → log), [`Relay`] (outbox → bus, in commit order; an event leaves the outbox only
//! once a subscription took it) and [`DedupPurger`].
//!
//! # Examples
//!
//! A durable consumer picks up where its acks stopped:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use syncbus_core::{Bytes, Envelope, EventType, Metadata};
//! use syncbus_storage::{DurableConfig, DurableConsumer, EventLog, MemoryStore};
//!
//! let log: Arc<dyn EventLog> = Arc::new(MemoryStore::new());
//! let meta = Metadata::new(EventType::new("order.placed")?).with_topic(syncbus_core::Topic::from_static("orders.placed"));
//! log.append(Envelope::new(meta, Bytes::from_static(b"{}"))).await?;
//!
//! let billing = DurableConsumer::open(log.clone(), "billing", DurableConfig::new()).await?;
//! let batch = billing.fetch(10, Duration::ZERO).await?;
//! assert_eq!(batch.len(), 1);
//! for delivery in batch {
//!     delivery.ack().await?;
//! }
//! assert_eq!(billing.committed().await?, log.head().await?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Errors
//!
//! Every storage operation fails with [`StoreError`]: a [`StoreErrorKind`] to decide on, a
//! message to show, and the backend's error as its `source()`. Bad input (an empty consumer
//! name, an envelope without a topic in the outbox) is refused before it reaches the
//! backend, as [`StoreErrorKind::Invalid`].
//!
//! # Testing a backend
//!
//! With the cargo feature `testing`, [`testing`] holds the contract suite every backend
//! passes: the memory backends here, SQLite and PostgreSQL in `syncbus-store`.

mod checkpoint;
mod consumer;
mod dead_letter;
mod dedup;
mod error;
mod failure;
mod feed;
mod into_arc;
mod log;
mod memory;
mod outbox;
mod purge;
mod relay;
mod saga;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::checkpoint::Checkpoints;
pub use crate::consumer::{DurableConfig, DurableConsumer, DurableDelivery};
pub use crate::dead_letter::{
    dead_letter_not_found, DeadLetterFilter, DeadLetterId, DeadLetterIdError, DeadLetterRecord,
    DeadLetterStore, MemoryDeadLetterStore,
};
pub use crate::dedup::{
    Claim, DedupKey, DedupStore, InboxEntry, KeyState, MemoryDedupStore, Outcome,
};
pub use crate::error::{check_name, StoreError, StoreErrorKind, StoreFuture};
pub use crate::failure::ErrorKind;
pub use crate::feed::LogFeed;
pub use crate::into_arc::IntoArc;
pub use crate::log::{Claimed, EventLog, LogRecord, Retention};
pub use crate::memory::MemoryStore;
pub use crate::outbox::{check_outbox_topic, Outbox, OutboxRecord};
pub use crate::purge::{DedupPurger, PurgeStats};
pub use crate::relay::{Relay, RelayError, RelayHandle, RelayStats};
pub use crate::saga::{
    MemorySagaStore, SagaInstance, SagaStatus, SagaStepRecord, SagaStore, StepAction,
};
