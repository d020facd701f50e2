//! syncbus: an embedded event bus and data-sync toolkit for Rust monoliths.
//!
//! Decouple modules with typed events on wildcard topics, deliver them inline, through
//! bounded queues, in per-entity lanes or to pull consumers, and move them across process
//! edges as CloudEvents JSON or a compact binary form.
//!
//! ```
//! use syncbus::prelude::*;
//!
//! #[derive(Clone, Debug, Event)]
//! #[event(type = "orders.placed", entity = order)]
//! struct OrderPlaced { order: u64 }
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
//! | envelope | [`Envelope`], [`Metadata`], [`EventId`] (UUIDv7), [`Event`] (the trait, and `#[derive(Event)]` with the names checked at compile time), [`CloudEventsJson`], [`Binary`] |
//! | topics | [`Topic`], [`Pattern`] (`*` one token, `>` the rest) |
//! | publish | [`Bus::publish`] (awaits), [`Bus::try_publish`] (never waits), [`Bus::blocking_publish`] (blocks the thread), [`Publisher`] |
//! | push | [`Bus::subscribe`]: inline, queued (threads or tasks), keyed lanes; [`Overflow`] |
//! | taps | [`Bus::tap`]: every event on a pattern whatever its payload type, as [`Tapped`] (metadata always, the payload as bytes where [`Event::encode`] gives it), for audit logs, log feeds and debugging |
//! | pull | [`Bus::consumer`]: fetch, ack, nak (with a delay), term, in progress, dead letters |
//! | lifecycle | [`Bus::shutdown`] (or [`Bus::blocking_shutdown`]) with a [`ShutdownReport`]; [`Bus::metrics`] |
//! | handlers | [`Handler`], [`handler_fn`], [`sync_handler_fn`], [`Context`] (follow-up events), [`HandlerError`] |
//! | reliability | [`Workflow::subscribe`] with [`DedupConfig`], [`ResequenceConfig`], [`RetryPolicy`], [`CircuitBreakerConfig`], [`RateLimitConfig`], timeout, concurrency, dead letters and [`Redrive`]; the layers one by one in [`workflow`] (`Dedup<H>`, `DedupLayer`, ...) |
//! | sources | [`Source`] and [`Settle`]: anything that hands out deliveries to settle (the pull consumer, the durable consumer, connector readers); [`Workflow::serve`] runs the workflow stack over one and settles from the outcome |
//! | sagas and chains | [`Saga`] with compensations, [`Workflow::chain`] |
//! | storage | [`store`]: every storage trait, memory backends, the durable consumer, outbox + relay, checkpoints, dedup keys, dead letters and saga state; SQLite (feature `sqlite`, default) and PostgreSQL (`postgres`) backends |
//!
//! # Cargo features
//!
//! | feature | default | adds |
//! | --- | --- | --- |
//! | `sqlite` | yes | `store::SqliteStore` (SQLite compiled in) |
//! | `derive` | yes | `#[derive(Event)]` ([`derive@Event`]) |
//! | `postgres` | no | `store::PgStore` |
//! | `nats` | no | `syncbus::nats`: NATS JetStream bridge (publisher, durable consumer as a source) |
//! | `stream` | no | `stream`: operators, keyed state, windows, watermarks, joins, batch subscriptions, cron jobs, reconciliation |
//! | `webhook` | no | [`webhook`](mod@webhook) (with the `sqlite` backend): Standard Webhooks signatures, durable ingress (axum), signed egress (reqwest) |
//! | `poll` | no | [`poll`](mod@poll) (with the `sqlite` backend): pollers as sources, the HTTP poller (reqwest, ETag, Retry-After), webhook + poll + reconciliation handled once by entity version |
//! | `cdc` | no | [`cdc`](mod@cdc) (with the `sqlite` backend): SQLite trigger capture and the outbox through CDC as sources; with `postgres` too, PostgreSQL logical decoding (pgoutput) |
//!
//! Features are additive; without default features nothing is compiled from C. How the
//! crates fit together: `ARCHITECTURE.md` in the repository.

pub use syncbus_core::{
    AckError, Bus, BusMetrics, Busy, Consumer, ConsumerConfig, DeadLetter, DeadLetterReason,
    Delivery, HandlerFailure, HandlerResult, Overflow, PartialPublish, PublishError, Publisher,
    Settle, ShutdownReport, Source, SubscribeBuilder, SubscribeError, Subscription,
    SubscriptionMetrics, TapBuilder, TapPayload, Tapped, Undelivered, Unsettled,
};
pub use syncbus_envelope::{
    Binary, Bytes, CloudEventsJson, DecodeError, EncodeError, Encoded, EntityId, Envelope, Event,
    EventId, EventType, HeaderError, Headers, Limits, Metadata, NameError, NameKind, NameReason,
    Pattern, Payload, SmolStr, TimeError, Timestamp, ToEntityId, Topic,
};

// The derive lives in the macro namespace, beside the trait of the same name: `use
// syncbus::Event` (or the prelude) brings both, as serde's `Serialize` does.
#[cfg(feature = "derive")]
pub use syncbus_derive::Event;

// What the derive's `encode` calls (`#[derive(Event)]` writes `::syncbus::__derive`).
#[doc(hidden)]
pub use syncbus_envelope::__derive;

pub use syncbus_workflow::{
    handler_fn, sync_handler_fn, ChainNode, CircuitBreakerConfig, Context, DedupConfig, ErrorKind,
    Handler, HandlerError, Jitter, OnExpiry, OtherTypes, RateLimitConfig, Redrive, RedriveError,
    RedriveReport, ResequenceConfig, ResultExt, RetryPolicy, RunningSaga, Saga, ServeError,
    ServeMetrics, Served, SkipReason, Skipped, StartAt, Storable, WhenOpen, Workflow,
    WorkflowBuilder, WorkflowMetrics, WorkflowServe, WorkflowSubscribe, WorkflowSubscription,
};

/// Storage: every storage trait and its records ([`store::EventLog`], [`store::Checkpoints`],
/// [`store::Outbox`], [`store::DedupStore`], [`store::DeadLetterStore`], [`store::SagaStore`]),
/// one [`store::StoreError`], the memory backends, the durable consumer, the outbox relay;
/// and the backends: SQLite with the `sqlite` feature (on by default), PostgreSQL with
/// `postgres`.
pub mod store {
    #[doc(inline)]
    pub use syncbus_storage::*;
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[doc(inline)]
    pub use syncbus_store::*;
}

/// Stream processing (feature `stream`): operators over bus topics or any source, keyed
/// state checkpointed with the input offsets, event-time windows with watermarks, and
/// stream-table joins; batch subscriptions, cron jobs and reconciliation. See
/// [`stream::Stream`], [`stream::Topology`], [`stream::BatchRunner`], [`stream::Job`] and
/// [`stream::Reconcile`].
#[cfg(feature = "stream")]
pub mod stream {
    #[doc(inline)]
    pub use syncbus_stream::*;
}

/// The workflow crate whole: every layer on its own as a handler and its layer
/// ([`workflow::Dedup`] and [`workflow::DedupLayer`], [`workflow::Retry`] and
/// [`workflow::RetryLayer`], ...), composed with [`workflow::Layer`] and
/// [`workflow::Stack`]; the builders ([`workflow::WorkflowBuilder`],
/// [`workflow::WorkflowSubscribe`]) and chains ([`workflow::Chains`]).
pub mod workflow {
    #[doc(inline)]
    pub use syncbus_workflow::*;
}

/// NATS JetStream (feature `nats`): bus topics published to a stream, its durable pull
/// consumer served by [`Workflow::serve`]; see `syncbus_nats`.
#[cfg(feature = "nats")]
pub mod nats {
    #[doc(inline)]
    pub use syncbus_nats::*;
}

/// Webhooks (feature `webhook`): Standard Webhooks signatures, the durable ingress
/// (`POST /webhooks/{source}` → verify → dedup → durable append → 2xx, then processing
/// from the log) and signed egress on a retry schedule: `syncbus-webhook` whole.
#[cfg(feature = "webhook")]
pub mod webhook {
    #[doc(inline)]
    pub use syncbus_webhook::*;
}

/// Polling (feature `poll`): a [`poll::Poller`] over any [`poll::PollSource`] as a
/// [`Source`] for [`Workflow::serve`] (interval, jitter, backoff, pause / resume, the cursor
/// stored after the page is handled), the HTTP poller [`poll::HttpSource`] (ETag, 304,
/// Retry-After), and [`poll::Hybrid`]: webhook + poll + reconciliation handled once per
/// entity version: `syncbus-poll` whole.
///
/// ```
/// use std::time::Duration;
/// use syncbus::poll::{HttpSource, ItemMapping, PollConfig};
/// use syncbus::{EventType, Topic};
///
/// let mapping = ItemMapping::new(EventType::new("shop.order")?, Topic::new("shop.orders")?)
///     .entity_at("/id")
///     .version_at("/version")
///     .data_at("/data");
/// let source = HttpSource::builder("http://127.0.0.1:9/changes", mapping)?.build()?;
/// let config = PollConfig::new().interval(Duration::from_secs(5)).jitter(0.1);
/// config.check()?;
/// // Poller::open("shop", source, store, config).await? is a Source for Workflow::serve.
/// # drop(source);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "poll")]
pub mod poll {
    #[doc(inline)]
    pub use syncbus_poll::*;
}

/// Change data capture (feature `cdc`): database changes as ordered events, each reader a
/// source for [`Workflow::serve`]: SQLite trigger capture ([`cdc::SqliteCdc`]), the outbox
/// read through CDC, and with the `postgres` feature PostgreSQL logical decoding
/// (`cdc::PgCdc`): `syncbus-cdc` whole.
///
/// ```
/// let config = syncbus::cdc::SqliteCdcConfig::new(["orders"])?;
/// assert_eq!(config.change_table_name(), "syncbus_cdc_changes");
/// # Ok::<(), syncbus::cdc::CdcError>(())
/// ```
#[cfg(feature = "cdc")]
pub mod cdc {
    #[doc(inline)]
    pub use syncbus_cdc::*;
}

/// The names most programs need: `use syncbus::prelude::*;`.
pub mod prelude {
    pub use crate::{
        handler_fn, Bus, Consumer, ConsumerConfig, Context, DedupConfig, EntityId, Envelope, Event,
        EventId, HandlerError, Overflow, Pattern, ResultExt, RetryPolicy, Topic, Workflow,
    };
}

/// The README's examples, compiled and run as doc tests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
