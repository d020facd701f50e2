//! The seam every operator implements: push one item, react to the watermark, save and
//! restore its state.
//!
//! Operators are chained at compile time (each holds the one before it, as iterator adapters
//! do), so an item goes from the source through every stage as plain function calls, with no
//! queue, allocation or dynamic dispatch between stages.

use std::marker::PhantomData;

use crate::error::StreamError;
use crate::topology::outgoing::Outgoing;

/// What an operator sees besides its item: the item's event time, the watermark, the counters
/// and the outputs waiting to be published.
#[derive(Default)]
pub struct Cx {
    /// The event time of the input being processed, in unix milliseconds (`None`: it had none).
    pub(crate) time: Option<i64>,
    /// The current watermark: no event earlier than this is expected any more.
    pub(crate) watermark: i64,
    pub(crate) late: u64,
    pub(crate) untimed: u64,
    pub(crate) outgoing: Vec<Box<dyn Outgoing>>,
}

impl std::fmt::Debug for Cx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cx")
            .field("time", &self.time)
            .field("watermark", &self.watermark)
            .field("late", &self.late)
            .field("untimed", &self.untimed)
            .field("outgoing", &self.outgoing.len())
            .finish()
    }
}

impl Cx {
    pub(crate) fn new() -> Cx {
        Cx {
            watermark: i64::MIN,
            ..Cx::default()
        }
    }

    /// The event time of the input being processed, in unix milliseconds, or `None` if it had
    /// none.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    ///
    /// let mut seen = Vec::new();
    /// let mut t = Topology::new(Stream::<u32>::new().for_each_with(move |x, cx| seen.push((x, cx.time()))));
    /// t.process(1, Some(1_000));
    /// t.process(2, None);
    /// ```
    pub fn time(&self) -> Option<i64> {
        self.time
    }

    /// The current watermark in unix milliseconds (`i64::MIN` before any event time).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    ///
    /// let mut t = Topology::new(Stream::<u32>::new().for_each_with(|_, cx| assert_eq!(cx.watermark(), 50)));
    /// t.advance(50);
    /// t.process(1, Some(60));
    /// ```
    pub fn watermark(&self) -> i64 {
        self.watermark
    }
}

/// One stage of a topology.
///
/// Implemented by the operators of [`Stream`](crate::Stream); a custom stage implements it
/// too. `push` hands each output to `out`, with the context back, so outputs flow on through
/// the next stages before `push` returns.
///
/// # Examples
///
/// A stage that doubles numbers, on top of the identity stage:
///
/// ```
/// use syncbus_stream::{Cx, Identity, Operator, StreamError};
///
/// struct Double<P>(P);
///
/// impl<P: Operator<u32, Out = u32>> Operator<u32> for Double<P> {
///     type Out = u32;
///     fn push<E: FnMut(u32, &mut Cx)>(&mut self, item: u32, cx: &mut Cx, out: &mut E) {
///         self.0.push(item, cx, &mut |x, cx| out(x * 2, cx));
///     }
///     fn advance<E: FnMut(u32, &mut Cx)>(&mut self, cx: &mut Cx, out: &mut E) {
///         self.0.advance(cx, &mut |x, cx| out(x * 2, cx));
///     }
///     fn shape(&self, shape: &mut Vec<&'static str>) { self.0.shape(shape); shape.push("double") }
///     fn save(&self, parts: &mut Vec<Vec<u8>>) -> Result<(), StreamError> { self.0.save(parts) }
///     fn load(&mut self, parts: &mut std::vec::IntoIter<Vec<u8>>) -> Result<(), StreamError> { self.0.load(parts) }
/// }
///
/// let stream = syncbus_stream::Stream::<u32>::new().then(|prev| Double(prev));
/// let mut got = Vec::new();
/// let mut t = syncbus_stream::Topology::new(stream);
/// t.process_with(21, None, &mut |x, _| got.push(x));
/// assert_eq!(got, [42]);
/// # let _ = Identity::<u32>::new();
/// ```
pub trait Operator<In>: Send + 'static {
    /// What it hands on.
    type Out;

    /// Processes one item, handing each output to `out`.
    fn push<E: FnMut(Self::Out, &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E);

    /// The watermark moved to `cx.watermark()`: hand on what that completes (closed windows).
    /// Stages without timers forward the call to the stage before them.
    fn advance<E: FnMut(Self::Out, &mut Cx)>(&mut self, cx: &mut Cx, out: &mut E);

    /// Appends the names of the stateful stages, in order: a checkpoint records them, and
    /// restores only into the same shape.
    fn shape(&self, shape: &mut Vec<&'static str>);

    /// Appends the encoded state of each stateful stage, in order.
    ///
    /// # Errors
    ///
    /// [`StreamError::Encode`] if a key or value does not serialize.
    fn save(&self, parts: &mut Vec<Vec<u8>>) -> Result<(), StreamError>;

    /// Restores each stateful stage from its part, in order.
    ///
    /// # Errors
    ///
    /// [`StreamError::Checkpoint`] if a part is missing or does not decode.
    fn load(&mut self, parts: &mut std::vec::IntoIter<Vec<u8>>) -> Result<(), StreamError>;
}

/// The first stage: hands each input on as it is.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Identity, Stream};
/// let _s: Stream<u32, Identity<u32>> = Stream::new();
/// let _i = Identity::<u32>::new();
/// ```
pub struct Identity<T>(PhantomData<fn(T) -> T>);

impl<T> Identity<T> {
    /// The identity stage.
    ///
    /// # Examples
    ///
    /// ```
    /// let _ = syncbus_stream::Identity::<String>::new();
    /// ```
    pub fn new() -> Self {
        Identity(PhantomData)
    }
}

impl<T> Default for Identity<T> {
    fn default() -> Self {
        Identity::new()
    }
}

impl<T> std::fmt::Debug for Identity<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}

impl<T: 'static> Operator<T> for Identity<T> {
    type Out = T;

    #[inline]
    fn push<E: FnMut(T, &mut Cx)>(&mut self, item: T, cx: &mut Cx, out: &mut E) {
        out(item, cx);
    }

    fn advance<E: FnMut(T, &mut Cx)>(&mut self, _cx: &mut Cx, _out: &mut E) {}

    fn shape(&self, _shape: &mut Vec<&'static str>) {}

    fn save(&self, _parts: &mut Vec<Vec<u8>>) -> Result<(), StreamError> {
        Ok(())
    }

    fn load(&mut self, _parts: &mut std::vec::IntoIter<Vec<u8>>) -> Result<(), StreamError> {
        Ok(())
    }
}

/// Forwards `advance`, `shape`, `save` and `load` to the field `prev` for a stateless stage.
macro_rules! stateless {
    ($In:ty) => {
        fn advance<E: FnMut(Self::Out, &mut $crate::topology::operator::Cx)>(
            &mut self,
            cx: &mut $crate::topology::operator::Cx,
            out: &mut E,
        ) {
            let f = &mut self.f;
            self.prev
                .advance(cx, &mut |x, cx| Self::apply(f, x, cx, out));
        }

        fn shape(&self, shape: &mut Vec<&'static str>) {
            self.prev.shape(shape);
        }

        fn save(&self, parts: &mut Vec<Vec<u8>>) -> Result<(), $crate::error::StreamError> {
            self.prev.save(parts)
        }

        fn load(
            &mut self,
            parts: &mut std::vec::IntoIter<Vec<u8>>,
        ) -> Result<(), $crate::error::StreamError> {
            self.prev.load(parts)
        }
    };
}
pub(crate) use stateless;
