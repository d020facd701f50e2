//! syncbus workflow: the handler contract, reliability layers, chains and sagas.
//!
//! A [`Workflow`] makes bus subscriptions whose handler runs inside a stack of layers that
//! make delivery reliable: dedup, ordering by version, retry with backoff, a circuit
//! breaker, a rate limit, a per-attempt timeout, a concurrency limit, and dead letters for
//! what still fails.
//!
//! ```
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use syncbus_core::{Bus, Envelope, Event};
//! use syncbus_workflow::{handler_fn, Dedup, HandlerError, ResultExt, RetryPolicy, Workflow};
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
//!     .dedup(Dedup::memory(100_000))
//!     .retry(RetryPolicy::default().max_attempts(5))
//!     .timeout(Duration::from_secs(2))
//!     .handle(handler_fn(|env: Envelope<StockChanged>, _ctx| async move {
//!         let qty = u32::try_from(env.payload().qty).permanent()?; // bad data: no retry
//!         println!("index {} = {qty}", env.payload().sku);
//!         Ok::<(), HandlerError>(())
//!     }))?;
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
//! | [`Dedup`] | the idempotent consumer: one run per key, concurrent deliveries wait for the outcome |
//! | [`Ordering`] | per entity, versions in order; stale dropped, gaps held, then released or dead-lettered |
//! | [`RetryPolicy`] | exponential backoff with jitter, only for retryable errors |
//! | [`CircuitBreaker`], [`RateLimit`], [`TimeoutLayer`], [`ConcurrencyLimitLayer`] | protect a downstream |
//! | [`DeadLetterLayer`], [`Workflow::redrive`] | record final failures, list them, replay them |
//! | [`Chains`], [`Workflow::chain`] | the tree of events an event caused |
//! | [`Saga`] | steps with compensations, keyed by correlation id |
//! | [`store`] | the storage traits behind dedup, dead letters and sagas, with memory stores |
//!
//! # The stack
//!
//! A workflow subscription wraps its handler, outermost first, in: dead letters → dedup →
//! ordering → retry → circuit breaker → rate limit → per-attempt timeout → concurrency limit
//! → handler (and, innermost, [`EmitLayer`], which publishes follow-up events). Every layer
//! is also a [`Layer`] of its own, to compose in another order with [`Stack`].
//!
//! # Guarantees
//!
//! Delivery is at-least-once; the dedup layer makes a handler effectively-once for as long
//! as its store remembers a key. A handler's failure is retried if it is retryable and
//! recorded as a dead letter when it is not or retries run out; a panic is a permanent
//! failure. Nothing is dropped silently: duplicates, stale versions, expired holds and
//! dead letters are counted in [`WorkflowMetrics`], and a failing dead-letter store is
//! logged and counted too.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod breaker;
mod chain;
mod context;
mod dead_letter;
mod dedup;
mod emit;
mod error;
mod handler;
mod layer;
mod limit;
mod metrics;
mod ordering;
mod retry;
mod saga;
pub mod store;
mod workflow;

pub use crate::breaker::{
    CircuitBreaker, CircuitBreakerLayer, CircuitBreaking, CircuitState, WhenOpen,
};
pub use crate::chain::{ChainNode, Chains, Handling};
pub use crate::context::Context;
pub use crate::dead_letter::{DeadLetterLayer, DeadLettering, Storable};
pub use crate::dedup::{Dedup, DedupLayer, Deduped};
pub use crate::emit::{Emit, EmitLayer};
pub use crate::error::{ErrorKind, HandlerError, ResultExt};
pub use crate::handler::{handler_fn, sync_handler_fn, Handler, HandlerFn, SyncHandlerFn};
pub use crate::layer::{Either, Identity, Layer, Pair, Stack};
pub use crate::limit::{
    ConcurrencyLimit, ConcurrencyLimitLayer, RateLimit, RateLimitLayer, RateLimited, Timeout,
    TimeoutLayer,
};
pub use crate::metrics::WorkflowMetrics;
pub use crate::ordering::{OnExpiry, Ordered, Ordering, OrderingLayer, StartAt, REDRIVE_HEADER};
pub use crate::retry::{Jitter, Retry, RetryLayer, RetryPolicy};
pub use crate::saga::{RunningSaga, Saga};
pub use crate::workflow::{
    Redrive, RedriveReport, Workflow, WorkflowBuilder, WorkflowSubscribe, WorkflowSubscription,
};
