//! Running a topology over a source.
//!
//! # The loop
//!
//! Fetch a batch; push each delivery's envelope through the topology with its event time;
//! move the watermark (and so close windows); publish the outputs of [`Stream::to`]
//! (awaiting room: a slow reader slows the loop, and the loop fetches nothing more until
//! then, so the source holds the rest: nothing is dropped); then, every
//! [`checkpoint_every`](RunConfig::checkpoint_every) inputs, after
//! [`checkpoint_interval`](RunConfig::checkpoint_interval), whenever the source runs dry and
//! on stop, write a checkpoint and ack what it holds.
//!
//! # Exactly-once state
//!
//! A delivery is acked only after the checkpoint counting it is written, and the checkpoint
//! names the offsets it counts. A crash before the checkpoint redelivers the inputs and the
//! state from the checkpoint before does not count them: they are counted once. A crash
//! after it but before the acks redelivers inputs the restored state already counts: the
//! runner skips them by offset (counted in [`TopologyMetrics::skipped`]). So, over a
//! source with offsets (the durable consumer), state is exactly-once over an at-least-once
//! input. Outputs published with [`Stream::to`] are at-least-once: those since the last
//! checkpoint are published again after a crash. A source without offsets
//! ([`AnySource`](crate::AnySource), the bus's in-memory consumer) gets at-least-once state.
//!
//! # Event time
//!
//! An envelope's event time is its `time` attribute (`Metadata::time`). An envelope without
//! one is processed (maps, counts, joins see it) but leaves the watermark alone and goes to
//! a window's side output as untimed.
//!
//! [`Stream::to`]: crate::Stream::to

use std::sync::Arc;
use std::time::Duration;

use syncbus_core::{Envelope, Metadata, Settle};
use syncbus_storage::{Checkpoints, IntoArc};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{ConfigError, StreamError};
use crate::source::StreamSource;
use crate::state::checkpoint::Checkpoint;
use crate::state::offsets::OffsetSet;
use crate::time::millis;
use crate::topology::operator::Operator;
use crate::topology::{Topology, TopologyMetrics};
use crate::watermark::{WatermarkConfig, Watermarks};

type PartitionBy = Arc<dyn Fn(&Metadata) -> String + Send + Sync>;

/// How a topology runs: its name (the checkpoint's), batch size, watermarks, partitions and
/// checkpoints.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_storage::MemoryStore;
/// use syncbus_stream::{RunConfig, WatermarkConfig};
///
/// let config = RunConfig::new("orders-per-minute")
///     .batch(256)?
///     .watermarks(WatermarkConfig::new().out_of_orderness(Duration::from_secs(5))?)
///     .partition_by(|meta| meta.topic().map(|t| t.to_string()).unwrap_or_default())
///     .checkpoints(MemoryStore::new())
///     .checkpoint_every(10_000)?
///     .checkpoint_interval(Duration::from_secs(1));
/// assert_eq!(config.name(), "orders-per-minute");
/// # Ok::<(), syncbus_stream::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RunConfig {
    name: String,
    batch: usize,
    fetch_wait: Duration,
    watermarks: WatermarkConfig,
    partition_by: Option<PartitionBy>,
    checkpoints: Option<Arc<dyn Checkpoints>>,
    every: u64,
    interval: Duration,
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("name", &self.name)
            .field("batch", &self.batch)
            .field("fetch_wait", &self.fetch_wait)
            .field("watermarks", &self.watermarks)
            .field("partitioned", &self.partition_by.is_some())
            .field("checkpoints", &self.checkpoints)
            .field("checkpoint_every", &self.every)
            .field("checkpoint_interval", &self.interval)
            .finish()
    }
}

impl RunConfig {
    /// The settings of the topology `name` (the key of its checkpoint): batches of 512,
    /// fetches waiting up to 100 ms, no out-of-orderness, one partition, no checkpoints
    /// (each batch acked once handled); with a store, a checkpoint every 10,000 inputs or
    /// 5 s.
    ///
    /// # Examples
    ///
    /// See [`RunConfig`].
    pub fn new(name: impl Into<String>) -> Self {
        RunConfig {
            name: name.into(),
            batch: 512,
            fetch_wait: Duration::from_millis(100),
            watermarks: WatermarkConfig::new(),
            partition_by: None,
            checkpoints: None,
            every: 10_000,
            interval: Duration::from_secs(5),
        }
    }

    /// The name.
    ///
    /// # Examples
    ///
    /// See [`RunConfig`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many deliveries one fetch takes at most.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_stream::RunConfig::new("x").batch(0).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroCount`] for zero.
    pub fn batch(mut self, batch: usize) -> Result<Self, ConfigError> {
        if batch == 0 {
            return Err(ConfigError::ZeroCount { what: "batch" });
        }
        self.batch = batch;
        Ok(self)
    }

    /// How long one fetch waits for a delivery; the watermark's idle timeout is checked at
    /// least this often.
    ///
    /// # Examples
    ///
    /// ```
    /// let _ = syncbus_stream::RunConfig::new("x").fetch_wait(std::time::Duration::from_millis(20));
    /// ```
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.fetch_wait = wait;
        self
    }

    /// The watermark settings.
    ///
    /// # Examples
    ///
    /// See [`RunConfig`].
    pub fn watermarks(mut self, config: WatermarkConfig) -> Self {
        self.watermarks = config;
        self
    }

    /// Which input partition an envelope is on, for the watermark (the minimum over
    /// partitions). Default: one partition.
    ///
    /// # Examples
    ///
    /// See [`RunConfig`].
    pub fn partition_by(mut self, f: impl Fn(&Metadata) -> String + Send + Sync + 'static) -> Self {
        self.partition_by = Some(Arc::new(f));
        self
    }

    /// Where checkpoints go (under the topology's name): any [`Checkpoints`] store.
    ///
    /// # Examples
    ///
    /// See [`RunConfig`].
    pub fn checkpoints(mut self, store: impl IntoArc<dyn Checkpoints>) -> Self {
        self.checkpoints = Some(store.into_arc());
        self
    }

    /// A checkpoint after this many inputs (at the end of the batch reaching it).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_stream::RunConfig::new("x").checkpoint_every(0).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroCount`] for zero.
    pub fn checkpoint_every(mut self, inputs: u64) -> Result<Self, ConfigError> {
        if inputs == 0 {
            return Err(ConfigError::ZeroCount {
                what: "checkpoint_every",
            });
        }
        self.every = inputs;
        Ok(self)
    }

    /// A checkpoint at least this often while inputs come. Keep it below the source's ack
    /// timeout, or deliveries waiting for it are handed out again (then skipped by offset).
    ///
    /// # Examples
    ///
    /// See [`RunConfig`].
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

/// How far a running topology has got.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    metrics: TopologyMetrics,
    /// Fetches that came back empty with everything before them checkpointed and acked.
    idle_rounds: u64,
}

/// A topology running on a tokio task. From [`Topology::spawn`].
pub struct Running<In, Op> {
    stop: watch::Sender<bool>,
    progress: watch::Receiver<Progress>,
    task: JoinHandle<Result<Topology<In, Op>, StreamError>>,
}

impl<In, Op> std::fmt::Debug for Running<In, Op> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("metrics", &self.progress.borrow().metrics)
            .finish_non_exhaustive()
    }
}

impl<In: Send + 'static, Op: Operator<In>> Running<In, Op> {
    /// The counters as of the last batch.
    ///
    /// # Examples
    ///
    /// See [`Topology::spawn`].
    pub fn metrics(&self) -> TopologyMetrics {
        self.progress.borrow().metrics
    }

    /// Waits until the source has run dry after this call, with everything before
    /// processed, published, checkpointed and acked. Returns early if the runner stopped.
    ///
    /// # Examples
    ///
    /// See [`Topology::spawn`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn caught_up(&self) {
        let mut rx = self.progress.clone();
        let start = rx.borrow_and_update().idle_rounds;
        // Two rounds: the first may have begun before the call.
        while rx.borrow_and_update().idle_rounds < start + 2 {
            if rx.changed().await.is_err() || self.task.is_finished() {
                return;
            }
        }
    }

    /// Stops at the end of the current batch, writes the last checkpoint, acks, and hands
    /// the topology back.
    ///
    /// # Examples
    ///
    /// See [`Topology::spawn`].
    ///
    /// # Errors
    ///
    /// What stopped the runner: [`StreamError::Source`], [`StreamError::Store`],
    /// [`StreamError::Publish`], [`StreamError::Settle`], [`StreamError::Checkpoint`] (the
    /// stored checkpoint is not this topology's).
    pub async fn stop(self) -> Result<Topology<In, Op>, StreamError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(StreamError::Source(Box::new(e))),
        }
    }
}

impl<P, Op> Topology<Envelope<P>, Op>
where
    P: syncbus_core::Payload,
    Op: Operator<Envelope<P>>,
{
    /// Runs the topology over `source` on a tokio task until [`Running::stop`] (or the
    /// source closes, or fails). First restores the checkpoint stored under the config's
    /// name, if any. See [the module docs](crate#running) for the loop and its guarantees.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_core::{Bus, ConsumerConfig, Envelope};
    /// use syncbus_storage::MemoryStore;
    /// use syncbus_stream::{RunConfig, Stream, Table, Topology};
    /// # #[derive(Clone, Debug)] struct Click { page: &'static str }
    /// # impl syncbus_core::Event for Click { const TYPE: &'static str = "web.click"; }
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::new();
    /// let clicks = bus.consumer::<Click>("web.click", ConsumerConfig::default())?;
    /// let per_page = Table::new();
    /// let stream = Stream::<Envelope<Click>>::new()
    ///     .key_by(|env| env.payload().page.to_string())
    ///     .count()
    ///     .to_table(&per_page);
    /// let store = MemoryStore::new();
    /// let running = Topology::new(stream).spawn(clicks, RunConfig::new("clicks").checkpoints(store.clone()));
    /// for page in ["/", "/a", "/"] {
    ///     bus.publish_to("web.click", Click { page }).await?;
    /// }
    /// running.caught_up().await;
    /// assert_eq!(per_page.get(&"/".to_string()), Some(2));
    /// assert_eq!(running.metrics().processed, 3);
    /// running.stop().await?;
    /// # Ok(()) }
    /// ```
    pub fn spawn<S>(self, source: S, config: RunConfig) -> Running<Envelope<P>, Op>
    where
        S: StreamSource<Payload = P> + 'static,
    {
        let (stop, stop_rx) = watch::channel(false);
        let (progress_tx, progress) = watch::channel(Progress::default());
        let task = tokio::spawn(run(self, source, config, stop_rx, progress_tx));
        Running {
            stop,
            progress,
            task,
        }
    }
}

struct Loop<S: StreamSource> {
    source: S,
    config: RunConfig,
    watermarks: Watermarks,
    /// Offsets the restored checkpoint counts that have not come back yet.
    restored: OffsetSet,
    /// Deliveries processed since the last checkpoint, and their offsets.
    pending: Vec<S::Delivery>,
    pending_offsets: OffsetSet,
    since: u64,
    last: Instant,
}

async fn run<P, Op, S>(
    mut topology: Topology<Envelope<P>, Op>,
    source: S,
    config: RunConfig,
    mut stop: watch::Receiver<bool>,
    progress: watch::Sender<Progress>,
) -> Result<Topology<Envelope<P>, Op>, StreamError>
where
    P: syncbus_core::Payload,
    Op: Operator<Envelope<P>>,
    S: StreamSource<Payload = P>,
{
    let mut l = Loop {
        watermarks: Watermarks::new(config.watermarks),
        source,
        config,
        restored: OffsetSet::new(),
        pending: Vec::new(),
        pending_offsets: OffsetSet::new(),
        since: 0,
        last: Instant::now(),
    };
    l.restore(&mut topology).await?;
    let mut idle_rounds = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        let batch = tokio::select! {
            batch = l.source.fetch(l.config.batch, l.config.fetch_wait) => {
                batch.map_err(|e| StreamError::Source(Box::new(e)))?
            }
            _ = stop.changed() => break,
        };
        let empty = batch.is_empty();
        l.process(&mut topology, batch).await?;
        let due = l.since >= l.config.every
            || (l.since > 0 && (empty || l.last.elapsed() >= l.config.interval));
        if due {
            l.checkpoint(&mut topology).await?;
        }
        if empty {
            idle_rounds += 1;
        }
        progress.send_replace(Progress {
            metrics: topology.metrics(),
            idle_rounds,
        });
        if empty && l.source.is_closed() {
            break;
        }
    }
    if l.since > 0 {
        l.checkpoint(&mut topology).await?;
    }
    progress.send_replace(Progress {
        metrics: topology.metrics(),
        idle_rounds: idle_rounds + 2,
    });
    Ok(topology)
}

impl<S: StreamSource> Loop<S> {
    async fn restore<Op: Operator<Envelope<S::Payload>>>(
        &mut self,
        topology: &mut Topology<Envelope<S::Payload>, Op>,
    ) -> Result<(), StreamError> {
        let Some(store) = &self.config.checkpoints else {
            return Ok(());
        };
        let Some(bytes) = store.get(&self.config.name).await? else {
            return Ok(());
        };
        let checkpoint = Checkpoint::from_bytes(&bytes)?;
        topology.load(checkpoint.topology)?;
        self.watermarks.load(checkpoint.watermarks, Instant::now());
        self.restored = checkpoint.offsets;
        tracing::debug!(topology = %self.config.name, "restored from its checkpoint");
        Ok(())
    }

    async fn process<Op: Operator<Envelope<S::Payload>>>(
        &mut self,
        topology: &mut Topology<Envelope<S::Payload>, Op>,
        batch: Vec<S::Delivery>,
    ) -> Result<(), StreamError> {
        let mut skipped = Vec::new();
        for delivery in batch {
            let offset = S::offset(&delivery);
            if let Some(o) = offset {
                if self.restored.contains(o) || self.pending_offsets.contains(o) {
                    self.restored.remove(o);
                    skipped.push(delivery);
                    continue;
                }
            }
            let envelope = delivery.envelope().clone();
            let time = envelope.meta().time().map(millis);
            if let Some(t) = time {
                let partition = match &self.config.partition_by {
                    Some(f) => f(envelope.meta()),
                    None => String::new(),
                };
                self.watermarks.observe(&partition, t, Instant::now());
            }
            topology.process(envelope, time);
            if let Some(o) = offset {
                self.pending_offsets.insert(o);
            }
            self.pending.push(delivery);
            self.since += 1;
        }
        if !skipped.is_empty() {
            topology.metrics_mut().skipped += skipped.len() as u64;
            self.source
                .ack_all(skipped)
                .await
                .map_err(StreamError::Settle)?;
        }
        topology.advance(self.watermarks.current(Instant::now()));
        topology.publish().await?;
        if self.config.checkpoints.is_none() && !self.pending.is_empty() {
            self.ack_pending().await?;
        }
        Ok(())
    }

    async fn ack_pending(&mut self) -> Result<(), StreamError> {
        let pending = std::mem::take(&mut self.pending);
        self.pending_offsets = OffsetSet::new();
        self.since = 0;
        self.source
            .ack_all(pending)
            .await
            .map_err(StreamError::Settle)
    }

    async fn checkpoint<Op: Operator<Envelope<S::Payload>>>(
        &mut self,
        topology: &mut Topology<Envelope<S::Payload>, Op>,
    ) -> Result<(), StreamError> {
        self.last = Instant::now();
        let Some(store) = self.config.checkpoints.clone() else {
            return self.ack_pending().await;
        };
        let mut offsets = self.pending_offsets.clone();
        offsets.union(&self.restored);
        let record = Checkpoint::new(offsets, self.watermarks.save(), topology.save()?);
        store.put(&self.config.name, record.to_bytes()?).await?;
        topology.metrics_mut().checkpoints += 1;
        self.ack_pending().await?;
        if !self.restored.is_empty() {
            if let Some(committed) = self.source.committed().await.map_err(StreamError::Settle)? {
                self.restored.forget_through(committed);
            }
        }
        Ok(())
    }
}
