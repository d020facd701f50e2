//! syncbus over NATS JetStream: the same topics and handlers across processes and machines.
//!
//! - **Outbound**: [`NatsBridge::forward`] (an [`Outbound`]) publishes bus events on topics
//!   matching a pattern to the stream, on subjects `<root>.<topic>[.<entity>]`, with
//!   `Nats-Msg-Id` = the event id (the stream's duplicate window drops a retried publish).
//!   A publish counts once its PubAck is in ([`NatsPublisher::publish`]). The body is the
//!   whole envelope in the [`Codec`] chosen (binary or CloudEvents JSON), named by the
//!   `Content-Type` header; `ce-type` carries the event type, and
//!   [`NatsConfig::routing_headers`] adds the topic, entity id and version.
//! - **Inbound**: [`NatsBridge::source`] is the durable pull consumer as a
//!   [`Source`](syncbus_core::Source): serve it with `Workflow::serve(source).handle(..)`
//!   and the workflow runner acks after success (a double ack by default), naks with the
//!   retry delay, writes a dead letter and terms after the last attempt, and sends
//!   in-progress while a handler runs long.
//! - **Setup**: the stream and the durable consumer are created if absent with a safe
//!   profile (file storage, replicas as configured, a duplicate window ≥ the publish retry
//!   span, max deliver = the retry policy's attempts + 1); an existing stream that looks
//!   unsafe is warned about at start ([`NatsBridge::warnings`]).
//! - **Connection loss**: the first connection is retried, the client reconnects by itself,
//!   publishes in flight are bounded and retried with the same id until acknowledged, and
//!   the connection state is in [`NatsBridge::state`] and the `metrics` facade.
//!
//! Delivery is at-least-once. Make the handler idempotent with the dedup layer, recording
//! the key with the effect (`ctx.inbox()` and `SqliteStore::record_done` in one
//! transaction): then each event is applied once. The crate README has the step-by-step
//! scale-out (one process → several on one NATS → a cluster) and the server settings for
//! data you cannot lose (`sync_interval: always`).
//!
//! # Examples
//!
//! ```no_run
//! use syncbus_core::{Bus, Envelope, Event};
//! use syncbus_nats::{NatsBridge, NatsConfig};
//! use syncbus_workflow::{HandlerError, Workflow};
//!
//! #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
//! struct Placed { order: u64 }
//! impl Event for Placed { const TYPE: &'static str = "order.placed"; const TOPIC: &'static str = "orders.placed"; }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = Bus::new();
//! let bridge = NatsBridge::connect(NatsConfig::new("nats://127.0.0.1:4222", "ORDERS")).await?;
//! // Process A: orders.* events leave through JetStream.
//! let _out = bridge.forward_typed::<Placed>(&bus, "orders.>")?;
//! // Process B (or the same one): handle them from the durable consumer.
//! let served = Workflow::new(&bus)
//!     .serve(bridge.source(None).await?)
//!     .keyed(8)
//!     .handle(|env: Envelope<Placed>, _ctx| async move {
//!         println!("order {}", env.payload().order);
//!         Ok::<(), HandlerError>(())
//!     })?;
//! # served.stop().await;
//! # Ok(()) }
//! ```

mod bridge;
mod config;
mod connection;
mod error;
mod outbound;
mod publisher;
mod source;
mod subject;
mod wire;

pub use crate::bridge::NatsBridge;
pub use crate::config::{AckMode, Codec, NatsConfig, Storage};
pub use crate::connection::ConnectionState;
pub use crate::error::{PublishError, PublishErrorKind, SetupError, SourceError};
pub use crate::outbound::Outbound;
pub use crate::publisher::{NatsPublisher, Published};
pub use crate::source::{JetStreamSource, NatsDelivery, SourceCounts};
pub use crate::wire::{ENTITY_HEADER, TOPIC_HEADER, VERSION_HEADER};
