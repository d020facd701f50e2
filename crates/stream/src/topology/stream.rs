//! The builder: a chain of operators from an input type, read top to bottom.

use std::marker::PhantomData;

use crate::error::StreamError;
use crate::topology::operator::{stateless, Cx, Identity, Operator};

/// A chain of operators over inputs of type `In`, built like an iterator: each method wraps
/// the chain so far in one more stage. Turn it into a [`Topology`](crate::Topology) to push
/// items through it, or run that over a source.
///
/// Stateless stages: [`map`](Self::map), [`filter`](Self::filter),
/// [`flat_map`](Self::flat_map), [`key_by`](Self::key_by), [`inspect`](Self::inspect),
/// [`branch`](Self::branch). Sinks: [`for_each`](Self::for_each), [`to`](Self::to),
/// [`to_table`](Self::to_table). On a keyed stream (items `(K, V)`): [`count`](Self::count),
/// [`reduce`](Self::reduce), [`aggregate`](Self::aggregate), [`window`](Self::window),
/// [`join`](Self::join), [`left_join`](Self::left_join).
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Stream, Topology};
///
/// let words = Stream::<&'static str>::new()
///     .flat_map(|line| line.split(' ').collect::<Vec<_>>())
///     .filter(|w| !w.is_empty())
///     .key_by(|w| w.to_string())
///     .count();
/// let mut t = Topology::new(words);
/// let mut last = std::collections::HashMap::new();
/// t.process_with("a b  a", None, &mut |(word, n), _| { last.insert(word, n); });
/// assert_eq!(last["a"], 2);
/// assert_eq!(last["b"], 1);
/// ```
pub struct Stream<In, Op = Identity<In>> {
    pub(crate) op: Op,
    _in: PhantomData<fn(In)>,
}

impl<In, Op> std::fmt::Debug for Stream<In, Op> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("input", &std::any::type_name::<In>())
            .finish_non_exhaustive()
    }
}

impl<In: 'static> Stream<In> {
    /// A stream of inputs of type `In`, not yet transformed.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::Stream;
    /// let _numbers = Stream::<u64>::new().map(|n| n + 1);
    /// ```
    pub fn new() -> Self {
        Stream::from_op(Identity::new())
    }
}

impl<In: 'static> Default for Stream<In> {
    fn default() -> Self {
        Stream::new()
    }
}

impl<In, Op> Stream<In, Op> {
    pub(crate) fn from_op(op: Op) -> Self {
        Stream {
            op,
            _in: PhantomData,
        }
    }

    /// The chain's operator.
    pub(crate) fn into_op(self) -> Op {
        self.op
    }
}

impl<In, Op: Operator<In>> Stream<In, Op> {
    /// Adds a stage of your own (an [`Operator`] wrapping the chain so far).
    ///
    /// # Examples
    ///
    /// See [`Operator`].
    pub fn then<Next: Operator<In>>(self, stage: impl FnOnce(Op) -> Next) -> Stream<In, Next> {
        Stream::from_op(stage(self.op))
    }

    /// Transforms each item.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    /// let mut t = Topology::new(Stream::<u32>::new().map(|x| x * 10));
    /// let mut out = vec![];
    /// t.process_with(4, None, &mut |x, _| out.push(x));
    /// assert_eq!(out, [40]);
    /// ```
    pub fn map<U, F>(self, f: F) -> Stream<In, Map<Op, F>>
    where
        F: FnMut(Op::Out) -> U + Send + 'static,
    {
        Stream::from_op(Map { prev: self.op, f })
    }

    /// Keeps the items for which `f` is true.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    /// let mut t = Topology::new(Stream::<u32>::new().filter(|x| x % 2 == 0));
    /// let mut out = vec![];
    /// for x in 1..=4 { t.process_with(x, None, &mut |x, _| out.push(x)); }
    /// assert_eq!(out, [2, 4]);
    /// ```
    pub fn filter<F>(self, f: F) -> Stream<In, Filter<Op, F>>
    where
        F: FnMut(&Op::Out) -> bool + Send + 'static,
    {
        Stream::from_op(Filter { prev: self.op, f })
    }

    /// Turns each item into zero or more.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    /// let mut t = Topology::new(Stream::<u32>::new().flat_map(|x| 0..x));
    /// let mut out = vec![];
    /// t.process_with(3, None, &mut |x, _| out.push(x));
    /// assert_eq!(out, [0, 1, 2]);
    /// ```
    pub fn flat_map<I, F>(self, f: F) -> Stream<In, FlatMap<Op, F>>
    where
        I: IntoIterator,
        F: FnMut(Op::Out) -> I + Send + 'static,
    {
        Stream::from_op(FlatMap { prev: self.op, f })
    }

    /// Keys each item: the stream becomes one of `(key, item)`, ready for
    /// [`count`](Self::count), [`aggregate`](Self::aggregate), [`window`](Self::window) and
    /// [`join`](Self::join).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    /// let mut t = Topology::new(Stream::<u32>::new().key_by(|x| x % 3));
    /// let mut out = vec![];
    /// t.process_with(7, None, &mut |kv, _| out.push(kv));
    /// assert_eq!(out, [(1, 7)]);
    /// ```
    pub fn key_by<K, F>(self, f: F) -> Stream<In, KeyBy<Op, F>>
    where
        F: FnMut(&Op::Out) -> K + Send + 'static,
    {
        Stream::from_op(KeyBy { prev: self.op, f })
    }

    /// Looks at each item as it passes.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    /// let mut seen = 0;
    /// let mut t = Topology::new(Stream::<u32>::new().inspect(move |_| seen += 1));
    /// t.process(1, None);
    /// ```
    pub fn inspect<F>(self, f: F) -> Stream<In, Inspect<Op, F>>
    where
        F: FnMut(&Op::Out) + Send + 'static,
    {
        Stream::from_op(Inspect { prev: self.op, f })
    }

    /// Ends the stream in a function called with each item.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use syncbus_stream::{Stream, Topology};
    /// let got = Arc::new(Mutex::new(Vec::new()));
    /// let sink = got.clone();
    /// let mut t = Topology::new(Stream::<u32>::new().for_each(move |x| sink.lock().unwrap().push(x)));
    /// t.process(5, None);
    /// assert_eq!(*got.lock().unwrap(), [5]);
    /// ```
    pub fn for_each<F>(self, f: F) -> Stream<In, ForEach<Op, F>>
    where
        F: FnMut(Op::Out) + Send + 'static,
    {
        Stream::from_op(ForEach { prev: self.op, f })
    }

    /// Ends the stream in a function called with each item and the [`Cx`] (its event time,
    /// the watermark).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    /// let mut t = Topology::new(Stream::<u32>::new().for_each_with(|x, cx| assert_eq!(cx.time(), Some(9))));
    /// t.process(5, Some(9));
    /// ```
    pub fn for_each_with<F>(self, f: F) -> Stream<In, ForEachWith<Op, F>>
    where
        F: FnMut(Op::Out, &Cx) + Send + 'static,
    {
        Stream::from_op(ForEachWith { prev: self.op, f })
    }

    /// Sends the items for which `pred` is true down a side branch built by `side` (which
    /// ends in a sink), and the others on down this stream. Several calls make several
    /// branches, tried in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use syncbus_stream::{Stream, Topology};
    /// let big = Arc::new(Mutex::new(Vec::new()));
    /// let sink = big.clone();
    /// let s = Stream::<u32>::new()
    ///     .branch(|x| *x >= 100, move |b| b.map(|x| x / 100).for_each(move |x| sink.lock().unwrap().push(x)));
    /// let mut t = Topology::new(s);
    /// let mut small = vec![];
    /// for x in [5, 300, 7] { t.process_with(x, None, &mut |x, _| small.push(x)); }
    /// assert_eq!(small, [5, 7]);
    /// assert_eq!(*big.lock().unwrap(), [3]);
    /// ```
    pub fn branch<P, S>(
        self,
        pred: P,
        side: impl FnOnce(Stream<Op::Out>) -> Stream<Op::Out, S>,
    ) -> Stream<In, Branch<Op, P, S>>
    where
        Op::Out: 'static,
        P: FnMut(&Op::Out) -> bool + Send + 'static,
        S: Operator<Op::Out, Out = ()>,
    {
        Stream::from_op(Branch {
            prev: self.op,
            pred,
            side: side(Stream::new()).op,
        })
    }
}

macro_rules! stage_struct {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<P, F> {
            prev: P,
            f: F,
        }

        impl<P, F> std::fmt::Debug for $name<P, F> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    };
}

stage_struct!(
    /// The stage of [`Stream::map`].
    Map
);
stage_struct!(
    /// The stage of [`Stream::filter`].
    Filter
);
stage_struct!(
    /// The stage of [`Stream::flat_map`].
    FlatMap
);
stage_struct!(
    /// The stage of [`Stream::key_by`].
    KeyBy
);
stage_struct!(
    /// The stage of [`Stream::inspect`].
    Inspect
);
stage_struct!(
    /// The sink of [`Stream::for_each`].
    ForEach
);
stage_struct!(
    /// The sink of [`Stream::for_each_with`].
    ForEachWith
);

impl<P, F> Map<P, F> {
    #[inline]
    fn apply<X, U, E: FnMut(U, &mut Cx)>(f: &mut F, x: X, cx: &mut Cx, out: &mut E)
    where
        F: FnMut(X) -> U,
    {
        out(f(x), cx)
    }
}
impl<In, P: Operator<In>, U, F: FnMut(P::Out) -> U + Send + 'static> Operator<In> for Map<P, F> {
    type Out = U;
    #[inline]
    fn push<E: FnMut(U, &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let f = &mut self.f;
        self.prev
            .push(item, cx, &mut |x, cx| Self::apply(f, x, cx, out));
    }
    stateless!(In);
}

impl<P, F> Filter<P, F> {
    #[inline]
    fn apply<X, E: FnMut(X, &mut Cx)>(f: &mut F, x: X, cx: &mut Cx, out: &mut E)
    where
        F: FnMut(&X) -> bool,
    {
        if f(&x) {
            out(x, cx)
        }
    }
}
impl<In, P: Operator<In>, F: FnMut(&P::Out) -> bool + Send + 'static> Operator<In>
    for Filter<P, F>
{
    type Out = P::Out;
    #[inline]
    fn push<E: FnMut(P::Out, &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let f = &mut self.f;
        self.prev
            .push(item, cx, &mut |x, cx| Self::apply(f, x, cx, out));
    }
    stateless!(In);
}

impl<P, F> FlatMap<P, F> {
    #[inline]
    fn apply<X, I: IntoIterator, E: FnMut(I::Item, &mut Cx)>(
        f: &mut F,
        x: X,
        cx: &mut Cx,
        out: &mut E,
    ) where
        F: FnMut(X) -> I,
    {
        for y in f(x) {
            out(y, cx)
        }
    }
}
impl<In, P: Operator<In>, I: IntoIterator, F: FnMut(P::Out) -> I + Send + 'static> Operator<In>
    for FlatMap<P, F>
{
    type Out = I::Item;
    #[inline]
    fn push<E: FnMut(I::Item, &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let f = &mut self.f;
        self.prev
            .push(item, cx, &mut |x, cx| Self::apply(f, x, cx, out));
    }
    stateless!(In);
}

impl<P, F> KeyBy<P, F> {
    #[inline]
    fn apply<X, K, E: FnMut((K, X), &mut Cx)>(f: &mut F, x: X, cx: &mut Cx, out: &mut E)
    where
        F: FnMut(&X) -> K,
    {
        let k = f(&x);
        out((k, x), cx)
    }
}
impl<In, P: Operator<In>, K, F: FnMut(&P::Out) -> K + Send + 'static> Operator<In> for KeyBy<P, F> {
    type Out = (K, P::Out);
    #[inline]
    fn push<E: FnMut((K, P::Out), &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let f = &mut self.f;
        self.prev
            .push(item, cx, &mut |x, cx| Self::apply(f, x, cx, out));
    }
    stateless!(In);
}

impl<P, F> Inspect<P, F> {
    #[inline]
    fn apply<X, E: FnMut(X, &mut Cx)>(f: &mut F, x: X, cx: &mut Cx, out: &mut E)
    where
        F: FnMut(&X),
    {
        f(&x);
        out(x, cx)
    }
}
impl<In, P: Operator<In>, F: FnMut(&P::Out) + Send + 'static> Operator<In> for Inspect<P, F> {
    type Out = P::Out;
    #[inline]
    fn push<E: FnMut(P::Out, &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let f = &mut self.f;
        self.prev
            .push(item, cx, &mut |x, cx| Self::apply(f, x, cx, out));
    }
    stateless!(In);
}

impl<P, F> ForEach<P, F> {
    #[inline]
    fn apply<X, E: FnMut((), &mut Cx)>(f: &mut F, x: X, _cx: &mut Cx, _out: &mut E)
    where
        F: FnMut(X),
    {
        f(x)
    }
}
impl<In, P: Operator<In>, F: FnMut(P::Out) + Send + 'static> Operator<In> for ForEach<P, F> {
    type Out = ();
    #[inline]
    fn push<E: FnMut((), &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let f = &mut self.f;
        self.prev
            .push(item, cx, &mut |x, cx| Self::apply(f, x, cx, out));
    }
    stateless!(In);
}

impl<P, F> ForEachWith<P, F> {
    #[inline]
    fn apply<X, E: FnMut((), &mut Cx)>(f: &mut F, x: X, cx: &mut Cx, _out: &mut E)
    where
        F: FnMut(X, &Cx),
    {
        f(x, cx)
    }
}
impl<In, P: Operator<In>, F: FnMut(P::Out, &Cx) + Send + 'static> Operator<In>
    for ForEachWith<P, F>
{
    type Out = ();
    #[inline]
    fn push<E: FnMut((), &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let f = &mut self.f;
        self.prev
            .push(item, cx, &mut |x, cx| Self::apply(f, x, cx, out));
    }
    stateless!(In);
}

/// The stage of [`Stream::branch`].
pub struct Branch<P, Pred, S> {
    prev: P,
    pred: Pred,
    side: S,
}

impl<P, Pred, S> std::fmt::Debug for Branch<P, Pred, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Branch")
    }
}

impl<In, P, Pred, S> Operator<In> for Branch<P, Pred, S>
where
    P: Operator<In>,
    P::Out: 'static,
    Pred: FnMut(&P::Out) -> bool + Send + 'static,
    S: Operator<P::Out, Out = ()>,
{
    type Out = P::Out;

    fn push<E: FnMut(P::Out, &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let (pred, side) = (&mut self.pred, &mut self.side);
        self.prev.push(item, cx, &mut |x, cx| {
            if pred(&x) {
                side.push(x, cx, &mut |(), _| {});
            } else {
                out(x, cx)
            }
        });
    }

    fn advance<E: FnMut(P::Out, &mut Cx)>(&mut self, cx: &mut Cx, out: &mut E) {
        let (pred, side) = (&mut self.pred, &mut self.side);
        self.prev.advance(cx, &mut |x, cx| {
            if pred(&x) {
                side.push(x, cx, &mut |(), _| {});
            } else {
                out(x, cx)
            }
        });
        self.side.advance(cx, &mut |(), _| {});
    }

    fn shape(&self, shape: &mut Vec<&'static str>) {
        self.prev.shape(shape);
        self.side.shape(shape);
    }

    fn save(&self, parts: &mut Vec<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.save(parts)?;
        self.side.save(parts)
    }

    fn load(&mut self, parts: &mut std::vec::IntoIter<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.load(parts)?;
        self.side.load(parts)
    }
}
