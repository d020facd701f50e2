//! Stream processing for syncbus: operators over bus topics or any
//! [`Source`](syncbus_core::Source), keyed state checkpointed with the input offsets,
//! event-time windows with watermarks, and stream-table joins. What people reach for Kafka
//! Streams or Flink for, inside the monolith, with no cluster to run. Beside them, the
//! batch side of data sync: batch subscriptions, scheduled (cron) jobs and the
//! reconciliation of a local copy against its upstream.
//!
//! ```
//! use std::time::Duration;
//! use syncbus_stream::{Stream, Topology, Window, Windowed, Windows};
//!
//! // Orders per region per minute, counted by event time.
//! let per_minute = Stream::<(&str, u64)>::new()
//!     .key_by(|(region, _)| region.to_string())
//!     .window(Windows::tumbling(Duration::from_secs(60))?)
//!     .count();
//! let mut t = Topology::new(per_minute);
//! t.process(("eu", 1), Some(1_000));
//! t.process(("eu", 2), Some(59_999));
//! t.process(("us", 3), Some(60_000));
//! let mut closed = vec![];
//! t.advance_with(60_000, &mut |r, _| closed.push(r));
//! assert_eq!(closed, [Windowed { key: "eu".to_string(), window: Window::new(0, 60_000), value: 2 }]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is here
//!
//! | area | items |
//! | --- | --- |
//! | operators | [`Stream`]: `map`, `filter`, `flat_map`, `key_by`, `inspect`, `branch`; sinks `for_each`, `to(bus, topic)`, `to_table`; your own stage with [`Operator`] |
//! | keyed state | `count`, `reduce`, `aggregate` on a keyed stream: a running value per key, handed on after each change |
//! | windows | [`Windows`] (tumbling, hopping, session), grace, [`Emit`] on close or as updates, too-late events to a counted side output ([`Late`]) |
//! | watermarks | [`Watermarks`], [`WatermarkConfig`]: out-of-orderness bound, minimum over partitions, idle timeout |
//! | joins | [`Table`] (latest value per key) and `join` / `left_join` |
//! | running | [`Topology`] (push by hand, snapshot, restore) and [`Topology::spawn`] over a [`StreamSource`] with [`RunConfig`]: checkpoints to any [`Checkpoints`](syncbus_storage::Checkpoints) store |
//! | batch subscriptions | [`BatchRunner`] over any [`Source`](syncbus_core::Source) with [`BatchConfig`]: a `Vec` of envelopes at a size or a max wait, flushed at stop; retried whole, then redelivered or split to dead-letter the poison event alone ([`OnBatchFailure`]) |
//! | scheduled jobs | [`Job`] on a cron [`Schedule`] (croner 4) in UTC or a named zone, [`Missed`] runs after downtime from the last run in [`Checkpoints`](syncbus_storage::Checkpoints), no overlap, [`JobStatus`] (last and next run) and metrics; [`Clock`], [`TestClock`] on tokio's clock |
//! | reconciliation | [`Reconcile`]: a streaming merge of two key-sorted paged [`SnapshotReader`]s (upstream, local) handing out [`Drift`] (missing, divergent, extra) or repair envelopes, a page per side in memory, comparison by [`Compare`] ([`Equal`], [`ByDigest`], a closure) |
//!
//! # Running
//!
//! [`Topology::spawn`] runs a loop on a tokio task: fetch a batch, push each envelope through
//! with its event time (`Metadata::time`), move the watermark, publish outputs (awaiting room:
//! backpressure), checkpoint, then ack. A slow operator slows the loop, which then fetches
//! less: the source keeps what is not taken, nothing is dropped.
//!
//! A checkpoint is one record, written with one `Checkpoints::put`: every stateful stage's
//! state, the watermarks, and the offsets of the inputs the state counts whose acks may not
//! have reached the source. Inputs are acked only after it is written. After a crash the
//! topology restores it and skips redelivered inputs it already counts, so over the durable
//! consumer (offsets) state is exactly-once over an at-least-once input. Outputs sent with
//! `to` are at-least-once. Why a snapshot and not a changelog: `crates/stream/README.md`.
//!
//! # Event time
//!
//! Windows and watermarks count unix milliseconds from the envelope's `time` attribute. An
//! envelope without one is processed by stateless and keyed stages but cannot be placed in
//! a window: it goes to the window's side output, counted as untimed, and does not move the
//! watermark. Idle timeouts use tokio's clock, so tests on a paused clock are exact.

mod batch;
mod error;
mod join;
mod reconcile;
#[cfg(feature = "schedule")]
mod schedule;
mod source;
mod state;
mod time;
mod topology;
mod watermark;
mod window;

pub use crate::batch::{BatchConfig, BatchHandler, BatchMetrics, BatchRunner, OnBatchFailure};
pub use crate::error::{BoxError, ConfigError, StreamError};
pub use crate::join::{Join, LeftJoin, Table, TableChange, ToTable};
pub use crate::reconcile::{
    ByDigest, Compare, Drift, DriftKind, Entry, Equal, Page, Reconcile, ReconcileError,
    ReconcileReport, Repairs, Side, SnapshotReader, DEFAULT_PAGE_SIZE,
};
#[cfg(feature = "schedule")]
pub use crate::schedule::{
    Clock, Job, JobRun, JobStatus, Missed, RunningJob, Schedule, ScheduleError, SystemClock,
    TestClock,
};
pub use crate::source::{AnySource, StreamSource};
pub use crate::topology::keyed::{Aggregate, Reduce, StateKey, StateValue};
pub use crate::topology::operator::{Cx, Identity, Operator};
pub use crate::topology::output::To;
pub use crate::topology::run::{RunConfig, Running};
pub use crate::topology::stream::{
    Branch, Filter, FlatMap, ForEach, ForEachWith, Inspect, KeyBy, Map, Stream,
};
pub use crate::topology::{Topology, TopologyMetrics};
pub use crate::watermark::{WatermarkConfig, Watermarks};
pub use crate::window::{
    Aggregator, Count, Emit, Fold, Late, LateReason, Sum, Window, WindowAggregate, Windowed,
    WindowedStream, Windows,
};
#[cfg(feature = "schedule")]
/// The date-time crate schedules are read with (`DateTime<Utc>` in [`JobRun`], [`JobStatus`]).
pub use chrono;
#[cfg(feature = "schedule")]
/// The IANA time zones a [`Schedule`] can be read in (`chrono_tz::Europe::Paris`).
pub use chrono_tz;
