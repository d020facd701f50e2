//! Change data capture for syncbus: database changes as ordered events, served by the
//! workflow runner like any other [`Source`](syncbus_core::Source).
//!
//! - **PostgreSQL** (feature `postgres`): `PgCdc` reads a logical replication slot with
//!   the built-in `pgoutput` plugin and a publication (what managed services allow, no
//!   extension), over a replication connection (`START_REPLICATION`, the default) or
//!   through the slot's SQL functions (`PgTransport`).
//! - **SQLite** (the embedded default): [`SqliteCdc`] captures chosen tables with triggers
//!   into a change table and reads it in order.
//! - **Outbox through CDC**: an outbox table read through either, its rows coming out as the
//!   envelopes the business transaction wrote (their own id, type and entity id), in commit
//!   order.
//!
//! Every change is one [`Change`] (a JSON document) in an envelope of type
//! `<schema>.<table>.<op>`, its entity id the primary key, its id made from its position
//! (see [`change`](crate::Change) for the shape). Delivery is at-least-once: the confirmed
//! position moves, in the [`Checkpoints`](syncbus_storage::Checkpoints) store and on the
//! slot, only past changes that were settled; a restart resumes there, and what comes again
//! has the same ids, so the dedup layer makes it effectively once.
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use syncbus_cdc::{Change, SqliteCdc, SqliteCdcConfig};
//! use syncbus_core::{Bus, Envelope};
//! use syncbus_store::SqliteStore;
//! use syncbus_workflow::{Context, Workflow};
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("app.db")).await?;
//! store.with_connection(|c| Ok(c.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT)")?)).await?;
//! let source = SqliteCdc::open(store.clone(), SqliteCdcConfig::new(["orders"])?).await?;
//! store.with_connection(|c| Ok(c.execute("INSERT INTO orders VALUES (7, 'open')", [])?)).await?;
//!
//! let bus = Bus::new();
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let served = Workflow::new(&bus).serve(source).fetch_wait(Duration::from_millis(20)).handle(
//!     move |env: Envelope<Change>, _ctx: Context| {
//!         let tx = tx.clone();
//!         async move {
//!             let _ = tx.send(env.meta().event_type().to_string());
//!             Ok(())
//!         }
//!     },
//! )?;
//! assert_eq!(rx.recv().await.as_deref(), Some("main.orders.insert"));
//! served.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Cargo features
//!
//! | feature | default | adds |
//! | --- | --- | --- |
//! | `postgres` | no | `PgCdc`, `PgCdcConfig`, `PgTransport` (tokio-postgres, and the replication connection over its `postgres-protocol`) |
#![forbid(unsafe_code)]

mod change;
mod delivery;
mod error;
#[cfg(feature = "postgres")]
mod pgoutput;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;
mod tracker;
#[cfg(feature = "postgres")]
mod value;

pub use crate::change::{Change, Op};
pub use crate::delivery::CdcDelivery;
pub use crate::error::CdcError;
#[cfg(feature = "postgres")]
pub use crate::postgres::{PgCdc, PgCdcConfig, PgDelivery, PgTransport};
pub use crate::sqlite::{SqliteCdc, SqliteCdcConfig, SqliteDelivery};
