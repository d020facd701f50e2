//! Polling for syncbus: "what changed since this cursor", on a schedule, as a `Source`.
//!
//! - **[`PollSource`]**: one call, one [`Page`]: the items changed since a [`Cursor`], the
//!   cursor to continue from, and whether more is waiting.
//! - **[`Poller`]**: runs a source on an interval with jitter, drains while more is
//!   waiting, backs off when idle or failing ([`PollConfig`]: multipliers and caps, reset on
//!   success), pauses and resumes, and is a [`Source`](syncbus_core::Source): served by
//!   `Workflow::serve`, each item goes through the workflow stack, and the page's cursor is
//!   stored in [`Checkpoints`](syncbus_storage::Checkpoints) only once every item of the
//!   page was acked (handled, published or appended by the handler) or termed (dead-lettered).
//!   A crash before that polls the page again: items are delivered at least once, never
//!   skipped.
//! - **[`HttpSource`]**: a JSON API over HTTP (reqwest): the cursor as a query parameter or
//!   a `next` link, `ETag` / `Last-Modified` sent back (a 304 moves nothing), 429 / 503
//!   `Retry-After` honoured, a timeout and a body limit, items mapped to envelopes (type,
//!   topic, entity id, version) by JSON pointer or a closure ([`ItemMapping`]).
//! - **Handled once by version** ([`AppliedVersions`], [`VersionGate`]): the last applied
//!   version per entity in SQLite; only a newer version reaches the handler, whichever
//!   transport brought it. [`Hybrid`] declares one upstream by webhook (its durable log
//!   consumer), a fallback poller and a scheduled reconciliation, all behind one gate.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use syncbus_poll::PollConfig;
//! let cfg = PollConfig::new()
//!     .interval(Duration::from_secs(15))
//!     .jitter(0.1)
//!     .idle_multiplier(2.0)
//!     .idle_max(Duration::from_secs(120));
//! assert!(cfg.check().is_ok());
//! ```
//!
//! A whole program: `examples/poll_http.rs`
//! (`cargo run --example poll_http -- --url URL --db FILE [--interval-ms N]`).
#![forbid(unsafe_code)]

mod config;
mod error;
mod http;
mod hybrid;
mod poller;
mod source;
mod versions;

pub use crate::config::{ConfigError, PollConfig};
pub use crate::error::PollError;
pub use crate::http::{
    CursorIn, HttpConfigError, HttpSource, HttpSourceBuilder, ItemMapping, DEFAULT_MAX_BODY,
    DEFAULT_TIMEOUT,
};
pub use crate::hybrid::{Hybrid, HybridMetrics};
pub use crate::poller::{OpenError, PollDelivery, PollMetrics, Poller};
pub use crate::source::{Cursor, Page, PollSource};
pub use crate::versions::{AppliedVersions, GateMetrics, VersionGate};
/// Any event with its payload as the bytes it came with (the workflow crate's, re-exported).
pub use syncbus_workflow::RawEvent;
