//! syncbus workflow: the handler contract, reliability layers, chains and sagas.
//!
//! A [`Workflow`] makes bus subscriptions whose handler runs inside a stack of layers that
//! make delivery reliable: dedup, resequencing by version, retry with backoff, a circuit
//! breaker, a rate limit, a per-attempt timeout, a concurrency limit, and dead letters for
//! what still fails.
//!
//! ```
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use syncbus_core::{Bus, Envelope, Event};
//! use syncbus_workflow::{handler_fn, DedupConfig, HandlerError, ResultExt, RetryPolicy, Workflow};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! struct StockChanged { sku: String, qty: i64 }
//! impl Event for StockChanged { const TYPE: &'static str = "stock.changed"; }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = Bus::new();
//! let wf = Workflow::new(&bus);
//! let sub = wf
//!     .subscribe::<StockChanged>("stock.changed")?
//!     .name("search-index")
//!     .dedup(DedupConfig::memory(100_000))
//!     .retry(RetryPolicy::default().max_attempts(5))
//!     .timeout(Duration::from_secs(2))
//!     .handle(|env, _ctx| async move {
//!         let qty = u32::try_from(env.payload().qty).permanent()?; // bad data: no retry
//!         println!("index {} = {qty}", env.payload().sku);
//!         Ok::<(), HandlerError>(())
//!     })?;
//! bus.publish(StockChanged { sku: "A-1".into(), qty: 3 }).await?;
//! bus.publish(StockChanged { sku: "A-2".into(), qty: -1 }).await?;
//! bus.shutdown(Duration::from_secs(1)).await;
//! assert_eq!((sub.metrics().succeeded, sub.metrics().dead_lettered), (1, 1));
//! # Ok(()) }
//! ```
//!
//! | piece | what it does |
//! | --- | --- |
//! | [`Handler`], [`handler_fn`], [`sync_handler_fn`], [`Context`] | the contract: an envelope and a context in, `Ok` or a [`HandlerError`] out; follow-up events through the context |
//! | [`Layer`], [`Stack`] | wrap a handler in layers, in an order of your own |
//! | [`DeadLetters`], [`Workflow::redrive`] | record final failures, list them, replay them |
//! | [`Dedup`] | the idempotent consumer: one run per key, concurrent deliveries wait for the outcome |
//! | [`Resequence`] | per entity, versions in order; stale dropped, gaps held, then released or dead-lettered |
//! | [`Retry`] | exponential backoff with jitter ([`RetryPolicy`]), only for retryable errors |
//! | [`CircuitBreaker`], [`RateLimit`], [`Timeout`], [`ConcurrencyLimit`] | protect a downstream |
//! | [`Emit`] | publishes the follow-ups of a successful attempt |
//! | [`WorkflowMetrics`] | what the layers counted, per subscription |
//! | [`Chains`], [`Workflow::chain`] | the tree of events an event caused |
//! | [`Saga`] | steps with compensations, keyed by correlation id |
//! | [`store`] | the storage traits behind dedup, dead letters and sagas, with memory stores |
//!
//! # The stack
//!
//! A workflow subscription wraps its handler, outermost first, in: dead letters → dedup →
//! resequence → retry → circuit breaker → rate limit → per-attempt timeout → concurrency
//! limit → emit → handler. Each is a layer of its own, named as in tower: the handler
//! `Foo<H>`, its [`Layer`] `FooLayer`, its settings `FooConfig` (the retry layer's are
//! [`RetryPolicy`]); a [`Stack`] composes them in another order. Put [`EmitLayer`]
//! innermost in a stack of your own, or follow-up events are never published.
//!
//! # Guarantees
//!
//! Delivery is at-least-once; the dedup layer makes a handler effectively-once for as long
//! as its store remembers a key. A handler's failure is retried if it is retryable and
//! recorded as a dead letter when it is not or retries run out; a panic is a permanent
//! failure. Nothing is dropped silently: duplicates, stale versions, expired holds and
//! dead letters are counted in [`WorkflowMetrics`], and a failing dead-letter store is
//! logged and counted too.

mod chain;
mod context;
mod error;
mod handler;
mod layer;
mod layers;
mod metrics;
mod pending;
mod raw;
mod saga;
mod serve;
mod storable;
mod workflow;

// The storage seams live in `syncbus-storage`; the layers reach them as `crate::store`.
use syncbus_storage as store;

/// A boxed, sendable future: one per delivery, so a stack's type stays out of the bus's.
pub(crate) type BoxFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub use crate::chain::{ChainNode, Chains, Handling};
pub use crate::context::Context;
pub use crate::error::{ErrorKind, HandlerError, ResultExt};
pub use crate::handler::{handler_fn, sync_handler_fn, Handler};
pub use crate::layer::{Either, Identity, Layer, Pair, Stack};
pub use crate::layers::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, ConcurrencyLimit,
    ConcurrencyLimitLayer, DeadLetters, DeadLettersLayer, Dedup, DedupConfig, DedupLayer, Emit,
    EmitLayer, Jitter, OnExpiry, RateLimit, RateLimitConfig, RateLimitLayer, Resequence,
    ResequenceConfig, ResequenceLayer, Retry, RetryLayer, RetryPolicy, StartAt, Timeout,
    TimeoutLayer, WhenOpen, REDRIVE_HEADER,
};
pub use crate::metrics::WorkflowMetrics;
pub use crate::raw::RawEvent;
pub use crate::saga::{RunningSaga, Saga};
pub use crate::serve::{OtherTypes, ServeError, ServeMetrics, Served, WorkflowServe};
pub use crate::storable::Storable;
pub use crate::workflow::{
    Redrive, RedriveError, RedriveReport, SkipReason, Skipped, Workflow, WorkflowBuilder,
    WorkflowSubscribe, WorkflowSubscription,
};
