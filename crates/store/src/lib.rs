//! Durable storage for syncbus: an event log with durable pull consumers, named checkpoints,
//! a transactional outbox with its relay, and the workflow layers' dedup keys, dead letters
//! and saga instances, behind object-safe traits (hold them as `Arc<dyn EventLog>`...).
//!
//! | trait | what it stores | memory | SQLite | PostgreSQL |
//! | --- | --- | --- | --- | --- |
//! | [`EventLog`] | appended envelopes, consumer offsets, claims | [`MemoryStore`] | [`SqliteStore`] | [`PgStore`] |
//! | [`Checkpoints`] | named cursors of pollers, CDC readers, bridges | [`MemoryStore`] | [`SqliteStore`] | [`PgStore`] |
//! | [`Outbox`] | events enqueued in the caller's transaction | [`MemoryStore`] | [`SqliteStore`] | [`PgStore`] |
//! | [`DedupStore`](syncbus_workflow::store::DedupStore) | idempotent-consumer keys | `MemoryDedupStore` (workflow) | [`SqliteStore::dedup`] | [`PgStore::dedup`] |
//! | [`DeadLetterStore`](syncbus_workflow::store::DeadLetterStore) | failed events | `MemoryDeadLetterStore` (workflow) | [`SqliteStore::dead_letters`] | [`PgStore::dead_letters`] |
//! | [`SagaStore`](syncbus_workflow::store::SagaStore) | saga instances | `MemorySagaStore` (workflow) | [`SqliteStore::sagas`] | [`PgStore::sagas`] |
//!
//! [`PgStore`] (cargo feature `postgres`, on by default) keeps everything in one schema of a
//! PostgreSQL database shared by several processes; its docs say how offsets, consumer groups
//! and the outbox stay in commit order across them.
//!
//! On top of the traits: [`DurableConsumer`] (fetch / ack / nack from a log, resuming after
//! a restart), [`LogFeed`] (bus → log), [`Relay`] (outbox → bus, in commit order) and
//! [`DedupPurger`].
//!
//! # Examples
//!
//! A durable consumer on an SQLite file picks up after a restart where its acks stopped:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use syncbus_core::{Bytes, Envelope, EventType, Metadata};
//! use syncbus_store::{DurableConfig, DurableConsumer, EventLog, SqliteStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("events.db");
//! let meta = Metadata::new(EventType::new("order.placed").unwrap()).with_topic(syncbus_envelope::Topic::from_static("orders.placed"));
//!
//! let log: Arc<dyn EventLog> = Arc::new(SqliteStore::open(&path).await?);
//! log.append(Envelope::new(meta, Bytes::from_static(b"{}"))).await?; // Ok: on disk
//! let billing = DurableConsumer::open(log, "billing", DurableConfig::new()).await?;
//! assert_eq!(billing.fetch(10).await?.len(), 1); // not acked: the process "dies"
//! drop(billing);
//!
//! let log: Arc<dyn EventLog> = Arc::new(SqliteStore::open(&path).await?);
//! let billing = DurableConsumer::open(log, "billing", DurableConfig::new()).await?;
//! let again = billing.fetch(10).await?;
//! assert_eq!(again[0].deliveries, 2);
//! billing.ack_all(&again).await?;
//! # Ok::<(), syncbus_store::StoreError>(())
//! # }).unwrap();
//! ```
//!
//! # Durability
//!
//! With SQLite and the default `synchronous=FULL`, an `Ok` from an append, an ack or any
//! store write means it is on disk. The bus itself is in memory: [`LogFeed`] appends after
//! `publish` returned, and [`Relay`] marks an outbox event sent once the bus accepted it.
//! Delivery is at-least-once; make handlers idempotent. The crate's README says how to
//! choose a backend and what is durable in more detail.
//!
//! # Errors
//!
//! Every storage trait fails with [`StoreError`]; it converts into the workflow crate's
//! `StoreError` (same message and source, the closest kind). A file that is not SQLite or is
//! corrupt, or a store written by a newer syncbus, is a typed error, never a panic.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod checkpoint;
mod consumer;
mod error;
mod feed;
mod log;
mod memory;
mod outbox;
#[cfg(feature = "postgres")]
mod postgres;
mod purge;
mod relay;
mod serve;
mod sqlite;

/// The SQLite driver the store is built on, for the closures of
/// [`SqliteStore::with_connection`] and for [`SqliteStore::enqueue`] on the application's own
/// connection: the same version, so the types match.
pub use rusqlite;

pub use crate::checkpoint::Checkpoints;
pub use crate::consumer::{DurableConfig, DurableConsumer};
pub use crate::error::StoreError;
pub use crate::feed::LogFeed;
pub use crate::log::{Claimed, EventLog, LogRecord, Retention, StoreFuture};
pub use crate::memory::MemoryStore;
pub use crate::outbox::{Outbox, OutboxRecord};
#[cfg(feature = "postgres")]
pub use crate::postgres::{PgDeadLetterStore, PgDedupStore, PgSagaStore, PgStore, PgStoreBuilder};
pub use crate::purge::DedupPurger;
pub use crate::relay::{Relay, RelayError, RelayHandle};
pub use crate::serve::{ServeMetrics, Served};
pub use crate::sqlite::{
    SqliteConfig, SqliteDeadLetterStore, SqliteDedupStore, SqliteSagaStore, SqliteStore,
    Synchronous,
};
#[cfg(feature = "postgres")]
pub use tokio_postgres;
