//! syncbus: an embedded event bus and data-sync toolkit for Rust monoliths.
//!
//! Decouple modules with typed events on wildcard topics, deliver them inline, through
//! bounded queues, in per-entity lanes or to pull consumers, and move them across process
//! edges as CloudEvents JSON or a compact binary form.
//!
//! ```
//! use syncbus::prelude::*;
//!
//! #[derive(Clone, Debug)]
//! struct OrderPlaced { order: u64 }
//! impl Event for OrderPlaced {
//!     const TYPE: &'static str = "orders.placed";
//!     fn entity_id(&self) -> Option<EntityId> { Some(self.order.into()) }
//! }
//!
//! let bus = Bus::new();
//! let _audit = bus.subscribe::<OrderPlaced>("orders.>")?.inline(|env| {
//!     println!("{} {}", env.meta().event_type(), env.payload().order);
//! })?;
//! bus.blocking_publish(OrderPlaced { order: 7 })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is here
//!
//! | area | items |
//! | --- | --- |
//! | envelope | [`Envelope`], [`Metadata`], [`EventId`] (UUIDv7), [`Event`], [`CloudEventsJson`], [`Binary`] |
//! | topics | [`Topic`], [`Pattern`] (`*` one token, `>` the rest) |
//! | publish | [`Bus::publish`] (awaits), [`Bus::try_publish`] (never waits), [`Bus::blocking_publish`] (blocks the thread), [`Publisher`] |
//! | push | [`Bus::subscribe`]: inline, queued (threads or tasks), keyed lanes; [`Overflow`] |
//! | pull | [`Bus::consumer`]: fetch, ack, nak (with a delay), term, in progress, dead letters |
//! | lifecycle | [`Bus::shutdown`] (or [`Bus::blocking_shutdown`]) with a [`ShutdownReport`]; [`Bus::metrics`] |
//! | handlers | [`Handler`], [`handler_fn`], [`sync_handler_fn`], [`Context`] (follow-up events), [`HandlerError`] |
//! | reliability | [`Workflow::subscribe`] with [`Dedup`], [`Ordering`], [`RetryPolicy`], [`CircuitBreaker`], [`RateLimit`], timeout, concurrency, dead letters and [`Redrive`]; the layers one by one in [`workflow`] |
//! | sagas and chains | [`Saga`] with compensations, [`Workflow::chain`] |
//! | storage | [`store`]: SQLite by default, an event log with durable consumers, outbox + relay, checkpoints, persistent dedup keys, dead letters and saga state |

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub use syncbus_core::{
    AckError, Bus, BusMetrics, Consumer, ConsumerConfig, DeadLetter, DeadLetterReason, Delivery,
    HandlerResult, Overflow, PublishError, Publisher, ShutdownReport, SubscribeBuilder,
    SubscribeError, Subscription, SubscriptionMetrics, Undelivered,
};
pub use syncbus_envelope::{
    Binary, Bytes, CloudEventsJson, DecodeError, EncodeError, EntityId, Envelope, Event, EventId,
    EventType, HeaderError, Headers, Limits, Metadata, NameError, NameKind, NameReason, Pattern,
    Payload, SmolStr, TimeError, Timestamp, Topic,
};

pub use syncbus_workflow::{
    handler_fn, sync_handler_fn, ChainNode, CircuitBreaker, Context, Dedup, ErrorKind, Handler,
    HandlerError, Jitter, OnExpiry, Ordering, RateLimit, Redrive, RedriveReport, ResultExt,
    RetryPolicy, RunningSaga, Saga, StartAt, WhenOpen, Workflow, WorkflowMetrics,
    WorkflowSubscription,
};

/// Durable storage: the event log and durable consumers, checkpoints, the outbox and its
/// relay, and the SQLite (embedded default) backend of every store trait; with the
/// `postgres` feature, the PostgreSQL one too.
pub use syncbus_store as store;

/// The workflow crate whole: every layer on its own ([`workflow::Layer`], [`workflow::Stack`])
/// and the storage traits ([`workflow::store`]).
pub use syncbus_workflow as workflow;

/// The names most programs need: `use syncbus::prelude::*;`.
pub mod prelude {
    pub use crate::{
        handler_fn, Bus, Consumer, ConsumerConfig, Context, EntityId, Envelope, Event, EventId,
        HandlerError, Overflow, Pattern, ResultExt, RetryPolicy, Topic, Workflow,
    };
}

/// The README's examples, compiled and run as doc tests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
