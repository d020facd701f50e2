//! The core of syncbus: topics and wildcard patterns, a lock-free router, push subscriptions
//! (inline, queued, keyed lanes) and pull consumers.
//!
//! ```
//! use syncbus_core::{Bus, Event, EntityId};
//!
//! #[derive(Clone, Debug)]
//! struct OrderPlaced { order: u64, total_cents: u64 }
//!
//! impl Event for OrderPlaced {
//!     const TYPE: &'static str = "orders.placed";
//!     fn entity_id(&self) -> Option<EntityId> { Some(self.order.into()) }
//! }
//!
//! let bus = Bus::new();
//! let _sub = bus.subscribe::<OrderPlaced>("orders.>")?.inline(|env| {
//!     println!("order {} for {} cents", env.payload().order, env.payload().total_cents);
//! })?;
//! bus.blocking_publish(OrderPlaced { order: 1, total_cents: 999 })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Topics and patterns
//!
//! A [`Topic`] is dot-separated tokens, `orders.eu.created`. A [`Pattern`] may use `*` for
//! exactly one token and `>` for one or more trailing tokens (NATS rules): `orders.*.created`,
//! `orders.>`. Both are validated once, when made (they live in the envelope crate, so an
//! envelope's metadata carries a [`Topic`], not a string the bus must parse again); a bad
//! name is a [`NameError`] saying what and where.
//!
//! # Delivery
//!
//! An event reaches every subscription whose pattern matches its topic and whose payload type
//! is the published type, and every [tap](#taps) whose pattern matches, whatever the type.
//! Delivery is at-least-once at best and never exactly-once: make
//! handlers idempotent (the workflow layers add dedup by event id).
//!
//! - **Inline** handlers run on the publisher's thread, inside `publish`.
//! - **Queued** handlers run on worker threads (or tokio tasks for async handlers), fed by a
//!   bounded queue per subscription. With one worker, events are handled in queue order.
//!   A one-worker subscription under `Block` or `Reject` (and every keyed lane) queues in a
//!   broadcast ring whose slots the worker thread's handler reads in place: the envelope it
//!   borrows is the one the publisher wrote, not a copy.
//! - **Keyed** subscriptions hash the entity id to one of N lanes, each with one worker:
//!   events of one entity are handled one at a time and in publish order; entities run in
//!   parallel.
//!
//! A handler that fails or panics is counted ([`SubscriptionMetrics`]), logged at WARN with
//! the event id (a panic at ERROR), and handed with its envelope to the subscription's
//! [`on_failure`](SubscribeBuilder::on_failure) hook; the bus and the other subscriptions go
//! on. The failure is final: a plain subscription never retries. Retries, dead letters and
//! redrive are the workflow crate's (`syncbus-workflow`).
//!
//! # Publishing
//!
//! One verb rule, tokio's: [`Bus::publish`] awaits room in a full `Block` queue (use it in
//! async code), [`Bus::try_publish`] never waits, and [`Bus::blocking_publish`] blocks the
//! thread (for threads outside a runtime). The same triple exists for an explicit topic
//! (`publish_to`), for a ready-made envelope (`publish_envelope`) and on a [`Publisher`]. A
//! [`Publisher`] bound to a topic caches its route. A refused event always comes back in the
//! [`PublishError`].
//!
//! # Overflow
//!
//! Each queue has a capacity and an [`Overflow`] policy: `Block` (the publisher waits: the
//! default), `Reject` (the publish fails with the event handed back) or `DropOldest` (the
//! oldest queued event is dropped, counted, and reported to the subscription's `on_lag`).
//!
//! # Taps
//!
//! [`Bus::tap`] subscribes to every event on a pattern whatever its payload type, typed or
//! bytes, for audit logs, log feeds and debugging. Its handler gets a [`Tapped`]: the full
//! metadata always, and the payload as bytes where it encodes: a bytes envelope as it is, a
//! typed event through its [`Event::encode`] (one line with [`Encoded::json`] for a
//! `Serialize` type). A type that does not encode (`Event::encode` left at its default) is
//! seen with its metadata and **no payload**, [`TapPayload::NotEncodable`]; a failed
//! encoding with its metadata and [`TapPayload::Failed`].
//!
//! - **Cost.** Where no tap matches, a publish pays one length check. Where one does, the
//!   publisher clones the envelope into the tap's queue (one allocation, for the type
//!   erasure) and goes on: the tap's worker encodes it, so the publisher never runs a
//!   serializer. An inline tap encodes on the publisher's thread, as inline handlers run
//!   there.
//! - **Ordering.** A queued tap has one worker, so it handles events in the order they
//!   reached its queue: each publisher's in publish order. Within one publish taps come
//!   before typed subscriptions, so a tap sees an event before any follow-up an inline
//!   handler publishes while handling it.
//! - **Overflow.** A tap's queue follows the same [`Overflow`] policies as a
//!   subscription's: `Block` (the default) makes the publisher wait; `Reject` fails the
//!   publish with [`PublishError::Full`], or [`PublishError::Partial`] naming the tap among
//!   the refusers when others took the event; `DropOldest` drops the oldest, counts it and
//!   reports it to [`on_lag`](TapBuilder::on_lag). A tap is a [`Subscription`]: shutdown
//!   drains it and reports what it left in the [`ShutdownReport`], under its name.
//! - **Receivers and observers.** A tap only observes by default: it is not counted in a
//!   publish's `Ok(n)` (nor in [`PartialPublish::took`]: it is listed in
//!   [`PartialPublish::observed`]), and an event only observers took counts as unrouted. So
//!   "somebody received it", the outbox relay's rule for marking an event sent, still means
//!   a subscription did, and a debugging tap cannot make an event look delivered.
//!   [`TapBuilder::receiver`] makes a tap count like a subscription, for a tap whose taking
//!   an event is as good as handling it (a feed into an event log).
//!
//! # Pull consumers
//!
//! [`Bus::consumer`] retains matching events until the consumer fetches and acks them; see
//! [`Consumer`] for ack timeouts, `ack` / `nak` / `term` / `in_progress`, max deliveries and
//! dead letters. It is a [`Source`], the consume contract every pull reader shares.
//!
//! # Closing
//!
//! [`Bus::shutdown`] (or [`Bus::blocking_shutdown`] from a thread) stops intake (publishing returns [`PublishError::Closed`] with the event),
//! lets workers drain their queues until a deadline, and returns a [`ShutdownReport`] with
//! what was left undelivered.
//!
//! A publish racing a shutdown (or an unsubscribe) is linearised against it: each
//! subscription counted in its `Ok(n)` handles the event, or reports it in the
//! [`ShutdownReport`]; a publish that finds intake closed gets [`PublishError::Closed`] with
//! the event, never `Ok(0)`. After an unsubscribe a publish simply skips that subscription.
//!
//! # Observability
//!
//! `tracing` spans `publish` and `handle` at TRACE level; [`Bus::metrics`] reads the
//! counters, and [`BusMetrics::record`] hands them to the `metrics` facade.

// A loom build keeps only the ring's models: the subscriptions' use of it is left out.
#![cfg_attr(all(loom, test), allow(dead_code))]

// The modules from the bottom up; each uses only those above it in this list (the test
// `tests/module_graph.rs` holds the files to that). The sink seam is at the bottom, the
// router and dispatch above it, then push subscriptions and pull consumers, the bound
// publisher, shutdown, and the `Bus` handle on top.
mod bus;
mod dispatch;
mod error;
// The shared fan-out rings; as `lanes`, not in loom builds.
#[cfg(not(all(loom, test)))]
mod fanout;
mod handler;
mod hub;
// The subscriptions' rings; loom builds swap the ring's atomics for loom's, so they go without.
#[cfg(not(all(loom, test)))]
mod lanes;
mod metrics;
mod overflow;
mod publisher;
mod pull;
mod queue;
mod ring;
mod router;
mod settled;
mod shutdown;
mod sink;
mod source;
mod subscription;
mod tap;
mod tapped;
mod trie;
mod wait;
mod worker;
mod workers;

pub use crate::bus::Bus;
pub use crate::error::{PartialPublish, PublishError, SubscribeError};
pub use crate::handler::{HandlerFailure, HandlerResult};
pub use crate::metrics::{BusMetrics, SubscriptionMetrics};
pub use crate::overflow::Overflow;
pub use crate::publisher::Publisher;
pub use crate::pull::{AckError, Consumer, ConsumerConfig, DeadLetter, DeadLetterReason, Delivery};
pub use crate::settled::{wait_settled, Busy, Unsettled};
pub use crate::shutdown::{ShutdownReport, Undelivered};
pub use crate::source::{Settle, Source};
pub use crate::subscription::{SubscribeBuilder, Subscription};
pub use crate::tap::TapBuilder;
pub use crate::tapped::{TapPayload, Tapped};
pub use syncbus_envelope::{
    Bytes, EncodeError, Encoded, EntityId, Envelope, Event, EventId, EventType, Headers, Metadata,
    NameError, NameKind, NameReason, Pattern, Payload, SmolStr, Timestamp, Topic,
};
