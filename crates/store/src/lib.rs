//! The storage backends of syncbus: SQLite (embedded default, cargo feature `sqlite`) and
//! PostgreSQL (feature `postgres`). Each implements every trait of `syncbus-storage` and
//! passes its contract suite; everything built on the traits (durable consumers, the outbox
//! relay, the log feed) works on either.
//!
//! | trait (`syncbus-storage`) | SQLite | PostgreSQL |
//! | --- | --- | --- |
//! | [`EventLog`](syncbus_storage::EventLog), [`Checkpoints`](syncbus_storage::Checkpoints), [`Outbox`](syncbus_storage::Outbox) | `SqliteStore` | `PgStore` |
//! | [`DedupStore`](syncbus_storage::DedupStore) | `SqliteStore::dedup` | `PgStore::dedup` |
//! | [`DeadLetterStore`](syncbus_storage::DeadLetterStore) | `SqliteStore::dead_letters` | `PgStore::dead_letters` |
//! | [`SagaStore`](syncbus_storage::SagaStore) | `SqliteStore::sagas` | `PgStore::sagas` |
//!
//! `PgStore` keeps everything in one schema of a PostgreSQL database shared by several
//! processes; its docs say how offsets, consumer groups and the outbox stay in commit order
//! across them.
//!
//! # Examples
//!
//! A durable consumer on an SQLite file picks up after a restart where its acks stopped:
//!
#![cfg_attr(feature = "sqlite", doc = "```")]
#![cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use syncbus_core::{Bytes, Envelope, EventType, Metadata};
//! use syncbus_storage::{DurableConfig, DurableConsumer, EventLog};
//! use syncbus_store::SqliteStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("events.db");
//! let meta = Metadata::new(EventType::new("order.placed").unwrap()).with_topic(syncbus_envelope::Topic::from_static("orders.placed"));
//!
//! let log: Arc<dyn EventLog> = Arc::new(SqliteStore::open(&path).await?);
//! log.append(Envelope::new(meta, Bytes::from_static(b"{}"))).await?; // Ok: on disk
//! let billing = DurableConsumer::open(log, "billing", DurableConfig::new()).await?;
//! assert_eq!(billing.fetch(10, Duration::ZERO).await?.len(), 1); // not acked: the process "dies"
//! drop(billing);
//!
//! let log: Arc<dyn EventLog> = Arc::new(SqliteStore::open(&path).await?);
//! let billing = DurableConsumer::open(log, "billing", DurableConfig::new()).await?;
//! let again = billing.fetch(10, Duration::ZERO).await?;
//! assert_eq!(again[0].deliveries(), 2);
//! billing.ack_all(again).await?;
//! # Ok::<(), syncbus_storage::StoreError>(())
//! # }).unwrap();
//! ```
//!
//! # Durability
//!
//! With SQLite and the default `synchronous=FULL`, an `Ok` from an append, an ack or any
//! store write means it is on disk. The bus itself is in memory: `LogFeed` appends after
//! `publish` returned, and `Relay` marks an outbox event sent once a subscription took it.
//! For outbox events that must outlive the process, `move_outbox_to_log` moves them into the
//! same database's event log in one transaction.
//! Delivery is at-least-once; make handlers idempotent. The crate's README says how to
//! choose a backend and what is durable in more detail.
//!
//! # Errors
//!
//! Every operation fails with `syncbus_storage::StoreError`. A file that is not SQLite or is
//! corrupt, or a store written by a newer syncbus, is a typed error, never a panic.

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

/// The SQLite driver the store is built on, for the closures of
/// [`SqliteStore::with_connection`] and for [`SqliteStore::enqueue`] on the application's own
/// connection: the same version, so the types match.
#[cfg(feature = "sqlite")]
pub use rusqlite;

#[cfg(feature = "postgres")]
pub use crate::postgres::{PgDeadLetterStore, PgDedupStore, PgSagaStore, PgStore, PgStoreBuilder};
#[cfg(feature = "sqlite")]
pub use crate::sqlite::{
    SqliteConfig, SqliteDeadLetterStore, SqliteDedupStore, SqliteError, SqliteSagaStore,
    SqliteStore, Synchronous,
};
#[cfg(feature = "postgres")]
pub use tokio_postgres;
