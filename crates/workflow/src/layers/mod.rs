//! The reliability layers, one module each, in the order a workflow subscription stacks
//! them (outermost first): dead letters, dedup, resequence, retry, circuit breaker, rate
//! limit, timeout, concurrency limit, emit.
//!
//! Each module holds one middleware named as in tower: the handler `Foo<H>`, its layer
//! `FooLayer` and, where it has settings, `FooConfig` (retry's are `RetryPolicy`). The
//! `Layer` trait and `Stack` stay in `crate::layer`: user code implements them as much as
//! these modules do, and they know nothing of any one middleware.

mod circuit_breaker;
mod concurrency_limit;
mod dead_letters;
mod dedup;
mod emit;
mod rate_limit;
mod resequence;
mod retry;
mod timeout;

pub use self::circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, WhenOpen,
};
pub use self::concurrency_limit::{ConcurrencyLimit, ConcurrencyLimitLayer};
pub(crate) use self::dead_letters::{record, record_stored};
pub use self::dead_letters::{DeadLetters, DeadLettersLayer};
pub use self::dedup::{Dedup, DedupConfig, DedupLayer};
pub use self::emit::{Emit, EmitLayer};
pub(crate) use self::rate_limit::Bucket;
pub use self::rate_limit::{RateLimit, RateLimitConfig, RateLimitLayer};
pub use self::resequence::{
    OnExpiry, Resequence, ResequenceConfig, ResequenceLayer, StartAt, REDRIVE_HEADER,
};
pub use self::retry::{Jitter, Retry, RetryLayer, RetryPolicy};
pub use self::timeout::{Timeout, TimeoutLayer};
