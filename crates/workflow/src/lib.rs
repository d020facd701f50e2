//! syncbus workflow: the handler contract, reliability layers, chains and sagas.

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
