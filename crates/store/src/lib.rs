//! Durable storage for syncbus: an event log with durable pull consumers, named checkpoints
//! and a transactional outbox, behind object-safe traits with an in-memory and an SQLite
//! backend.
//!
//! | trait | what it stores | memory | SQLite |
//! | --- | --- | --- | --- |
//! | [`EventLog`] | appended envelopes, consumer offsets and leases | [`MemoryStore`] | [`SqliteStore`] |
//! | [`Checkpoints`] | named cursors of pollers, CDC readers, bridges | [`MemoryStore`] | [`SqliteStore`] |
//! | [`Outbox`] | events enqueued in the caller's transaction | [`MemoryStore`] | [`SqliteStore`] |
//!
//! # Examples
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use syncbus_core::{Bytes, Envelope, EventType, Metadata};
//! use syncbus_store::{EventLog, MemoryStore};
//!
//! let log = MemoryStore::new();
//! let meta = Metadata::new(EventType::new("order.placed").unwrap()).with_topic("orders.placed");
//! let offset = log.append(Envelope::new(meta, Bytes::from_static(b"{}"))).await?;
//! assert_eq!(log.read(offset, 10).await?.len(), 1);
//! # Ok::<(), syncbus_store::StoreError>(())
//! # }).unwrap();
//! ```

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
mod sqlite;

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
pub use crate::sqlite::{
    SqliteConfig, SqliteDeadLetterStore, SqliteDedupStore, SqliteSagaStore, SqliteStore,
    Synchronous,
};
#[cfg(feature = "postgres")]
pub use tokio_postgres;
