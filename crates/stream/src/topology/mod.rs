//! A topology: a built [`Stream`] with its context, to push items through by hand or to run
//! over a source ([`Topology::spawn`]).

pub(crate) mod keyed;
pub(crate) mod operator;
pub(crate) mod outgoing;
pub(crate) mod output;
pub(crate) mod run;
pub(crate) mod stream;

use serde::{Deserialize, Serialize};

use crate::error::StreamError;
use crate::state::{decode, encode};
use operator::{Cx, Operator};
use stream::Stream;

/// Counters of a topology.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Stream, Topology};
/// let mut t = Topology::new(Stream::<u8>::new());
/// t.process(1, None);
/// assert_eq!(t.metrics().processed, 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopologyMetrics {
    /// Inputs processed.
    pub processed: u64,
    /// Events set aside by a window because every window they belong to had closed.
    pub late: u64,
    /// Events set aside by a window because they had no event time.
    pub untimed: u64,
    /// Redelivered inputs skipped because the restored state already counts them.
    pub skipped: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Outputs published to the bus.
    pub published: u64,
}

/// The state of a topology as a checkpoint stores it.
#[derive(Serialize, Deserialize)]
pub(crate) struct SavedTopology {
    pub(crate) shape: Vec<String>,
    pub(crate) watermark: i64,
    pub(crate) parts: Vec<Vec<u8>>,
}

/// A built stream, ready for items: push them with [`process`](Self::process), move the
/// watermark with [`advance`](Self::advance), save and restore the state with
/// [`snapshot`](Self::snapshot) / [`restore`](Self::restore), or run it over a source with
/// [`spawn`](Self::spawn).
///
/// Outputs of the last stage that are not handed to `process_with` / `advance_with` are
/// dropped: end a stream in a sink ([`Stream::for_each`], [`Stream::to`],
/// [`Stream::to_table`]) to keep them.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Stream, Table, Topology};
/// let counts = Table::new();
/// let mut t = Topology::new(Stream::<&str>::new().key_by(|s| s.to_string()).count().to_table(&counts));
/// t.process("a", None);
/// t.process("a", None);
/// let saved = t.snapshot()?;
///
/// let again = Table::new();
/// let mut t2 = Topology::new(Stream::<&str>::new().key_by(|s| s.to_string()).count().to_table(&again));
/// t2.restore(&saved)?;
/// t2.process("a", None);
/// assert_eq!(again.get(&"a".to_string()), Some(3));
/// # Ok::<(), syncbus_stream::StreamError>(())
/// ```
pub struct Topology<In, Op> {
    op: Op,
    cx: Cx,
    metrics: TopologyMetrics,
    _in: std::marker::PhantomData<fn(In)>,
}

impl<In, Op> std::fmt::Debug for Topology<In, Op> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("watermark", &self.cx.watermark)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl<In, Op: Operator<In>> Topology<In, Op> {
    /// The topology of `stream`, watermark at `i64::MIN`.
    ///
    /// # Examples
    ///
    /// See [`Topology`].
    pub fn new(stream: Stream<In, Op>) -> Self {
        Topology {
            op: stream.into_op(),
            cx: Cx::new(),
            metrics: TopologyMetrics::default(),
            _in: std::marker::PhantomData,
        }
    }

    /// Pushes one input with its event time (unix milliseconds; `None`: it has none).
    ///
    /// # Examples
    ///
    /// See [`Topology`].
    #[inline]
    pub fn process(&mut self, item: In, time: Option<i64>) {
        self.process_with(item, time, &mut |_, _| {});
    }

    /// Pushes one input, handing the last stage's outputs to `out`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    /// let mut t = Topology::new(Stream::<u8>::new().map(|x| x + 1));
    /// let mut got = 0;
    /// t.process_with(1, None, &mut |x, _| got = x);
    /// assert_eq!(got, 2);
    /// ```
    #[inline]
    pub fn process_with(
        &mut self,
        item: In,
        time: Option<i64>,
        out: &mut impl FnMut(Op::Out, &mut Cx),
    ) {
        self.cx.time = time;
        self.op.push(item, &mut self.cx, out);
        self.metrics.processed += 1;
    }

    /// Moves the watermark to `watermark` (unix milliseconds), closing what it completes. A
    /// watermark lower than the current one is ignored: it never goes back.
    ///
    /// # Examples
    ///
    /// See [`Stream::window`].
    pub fn advance(&mut self, watermark: i64) {
        self.advance_with(watermark, &mut |_, _| {});
    }

    /// Moves the watermark, handing what it completes to `out`.
    ///
    /// # Examples
    ///
    /// See [`Stream::window`].
    pub fn advance_with(&mut self, watermark: i64, out: &mut impl FnMut(Op::Out, &mut Cx)) {
        if watermark <= self.cx.watermark {
            return;
        }
        self.cx.watermark = watermark;
        let time = self.cx.time.take();
        self.op.advance(&mut self.cx, out);
        self.cx.time = time;
    }

    /// The current watermark.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    /// let mut t = Topology::new(Stream::<u8>::new());
    /// t.advance(10);
    /// t.advance(5);
    /// assert_eq!(t.watermark(), 10);
    /// ```
    pub fn watermark(&self) -> i64 {
        self.cx.watermark
    }

    /// The counters so far.
    ///
    /// # Examples
    ///
    /// See [`TopologyMetrics`].
    pub fn metrics(&self) -> TopologyMetrics {
        TopologyMetrics {
            late: self.cx.late,
            untimed: self.cx.untimed,
            ..self.metrics
        }
    }

    pub(crate) fn metrics_mut(&mut self) -> &mut TopologyMetrics {
        &mut self.metrics
    }

    /// The names of the stateful stages, in order (what a checkpoint must match).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    /// let t = Topology::new(Stream::<u8>::new().key_by(|x| *x).count());
    /// assert_eq!(t.shape(), ["count"]);
    /// ```
    pub fn shape(&self) -> Vec<&'static str> {
        let mut shape = Vec::new();
        self.op.shape(&mut shape);
        shape
    }

    pub(crate) fn save(&self) -> Result<SavedTopology, StreamError> {
        let mut parts = Vec::new();
        self.op.save(&mut parts)?;
        Ok(SavedTopology {
            shape: self.shape().into_iter().map(str::to_owned).collect(),
            watermark: self.cx.watermark,
            parts,
        })
    }

    pub(crate) fn load(&mut self, saved: SavedTopology) -> Result<(), StreamError> {
        let shape = self.shape();
        if saved.shape != shape {
            return Err(StreamError::Checkpoint(format!(
                "it was written by a topology with stateful stages {:?}, this one has {shape:?}",
                saved.shape
            )));
        }
        let mut parts = saved.parts.into_iter();
        self.op.load(&mut parts)?;
        if parts.next().is_some() {
            return Err(StreamError::Checkpoint(
                "it holds more state than the topology's stages".into(),
            ));
        }
        self.cx.watermark = saved.watermark;
        Ok(())
    }

    /// The state of every stateful stage and the watermark, encoded.
    ///
    /// # Examples
    ///
    /// See [`Topology`].
    ///
    /// # Errors
    ///
    /// [`StreamError::Encode`] if a key or value does not serialize.
    pub fn snapshot(&self) -> Result<Vec<u8>, StreamError> {
        encode(&self.save()?)
    }

    /// Replaces the state with a [`snapshot`](Self::snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, StreamError, Topology};
    /// let mut t = Topology::new(Stream::<u8>::new().key_by(|x| *x).count());
    /// assert!(matches!(t.restore(b"nonsense"), Err(StreamError::Checkpoint(_))));
    /// let other = Topology::new(Stream::<u8>::new()).snapshot()?;
    /// assert!(matches!(t.restore(&other), Err(StreamError::Checkpoint(_)))); // another shape
    /// # Ok::<(), StreamError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`StreamError::Checkpoint`] if the bytes do not decode or come from a topology of
    /// another shape; the state is then unspecified (build the topology again).
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        let saved: SavedTopology = decode(bytes, "the topology")?;
        self.load(saved)
    }

    /// Publishes the outputs of [`Stream::to`] waiting since the last call, in order,
    /// awaiting room in full subscriptions; returns how many. The runner calls it after each
    /// batch.
    ///
    /// # Examples
    ///
    /// See [`Stream::to`].
    ///
    /// # Errors
    ///
    /// [`StreamError::Publish`] if the bus refused one (closed); the ones after it stay
    /// waiting.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: an output being published when the future is dropped may be lost.
    pub async fn publish(&mut self) -> Result<usize, StreamError> {
        let waiting = std::mem::take(&mut self.cx.outgoing);
        let total = waiting.len();
        let mut waiting = waiting.into_iter();
        let mut done = 0;
        while let Some(out) = waiting.next() {
            if let Err(e) = out.publish().await {
                self.cx.outgoing = waiting.collect();
                self.metrics.published += done as u64;
                return Err(StreamError::Publish(e));
            }
            done += 1;
        }
        self.metrics.published += total as u64;
        Ok(total)
    }
}
