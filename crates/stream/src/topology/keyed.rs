//! Keyed aggregations without windows: a running value per key, each change handed on as
//! `(key, value)` (a table's changelog, as Kafka Streams' `KTable`).

use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StreamError;
use crate::state::{decode, encode, next_part, KeyMap};
use crate::topology::operator::{Cx, Operator};
use crate::topology::stream::Stream;

/// What a key must be to hold state: hashable, cloneable, and encodable for checkpoints.
pub trait StateKey: Eq + Hash + Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Eq + Hash + Clone + Send + Serialize + DeserializeOwned + 'static> StateKey for T {}

/// What a value must be to be held as state: cloneable and encodable for checkpoints.
pub trait StateValue: Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> StateValue for T {}

impl<In, Op, K, V: 'static> Stream<In, Op>
where
    Op: Operator<In, Out = (K, V)>,
    K: StateKey,
{
    /// Counts the items per key; hands on `(key, count so far)` after each.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    /// let mut t = Topology::new(Stream::<&str>::new().key_by(|s| s.len()).count());
    /// let mut out = vec![];
    /// for s in ["a", "bb", "c"] { t.process_with(s, None, &mut |kv, _| out.push(kv)); }
    /// assert_eq!(out, [(1, 1), (2, 1), (1, 2)]);
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn count(self) -> Stream<In, Aggregate<Op, K, u64, fn() -> u64, fn(&mut u64, V)>> {
        fn add<V>(n: &mut u64, _: V) {
            *n += 1;
        }
        self.aggregate_named("count", (|| 0) as fn() -> u64, add::<V> as fn(&mut u64, V))
    }

    /// Folds the items per key into an accumulator made by `init`; hands on `(key,
    /// accumulator)` after each.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    /// let s = Stream::<(char, u32)>::new()
    ///     .key_by(|(k, _)| *k)
    ///     .aggregate(Vec::new, |acc: &mut Vec<u32>, (_, v)| acc.push(v));
    /// let mut t = Topology::new(s);
    /// let mut last = None;
    /// for x in [('a', 1), ('a', 2)] { t.process_with(x, None, &mut |kv, _| last = Some(kv)); }
    /// assert_eq!(last, Some(('a', vec![1, 2])));
    /// ```
    pub fn aggregate<A, I, F>(self, init: I, add: F) -> Stream<In, Aggregate<Op, K, A, I, F>>
    where
        A: StateValue,
        I: Fn() -> A + Send + 'static,
        F: FnMut(&mut A, V) + Send + 'static,
    {
        self.aggregate_named("aggregate", init, add)
    }

    fn aggregate_named<A, I, F>(
        self,
        name: &'static str,
        init: I,
        add: F,
    ) -> Stream<In, Aggregate<Op, K, A, I, F>>
    where
        A: StateValue,
        I: Fn() -> A + Send + 'static,
        F: FnMut(&mut A, V) + Send + 'static,
    {
        Stream::from_op(Aggregate {
            prev: self.into_op(),
            state: KeyMap::default(),
            init,
            add,
            name,
        })
    }

    /// Combines the items per key with `f` (the first one as it is); hands on `(key, value
    /// so far)` after each.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Topology};
    /// let s = Stream::<u32>::new().key_by(|x| x % 2).reduce(|a, b| a.max(b));
    /// let mut t = Topology::new(s);
    /// let mut out = vec![];
    /// for x in [3, 1, 9, 5] { t.process_with(x, None, &mut |kv, _| out.push(kv)); }
    /// assert_eq!(out, [(1, 3), (1, 3), (1, 9), (1, 9)]);
    /// ```
    pub fn reduce<F>(self, f: F) -> Stream<In, Reduce<Op, K, V, F>>
    where
        V: StateValue,
        F: FnMut(V, V) -> V + Send + 'static,
    {
        Stream::from_op(Reduce {
            prev: self.into_op(),
            state: KeyMap::default(),
            f,
        })
    }
}

/// The stage of [`Stream::aggregate`] and [`Stream::count`].
pub struct Aggregate<P, K, A, I, F> {
    prev: P,
    state: KeyMap<K, A>,
    init: I,
    add: F,
    name: &'static str,
}

impl<P, K, A, I, F> std::fmt::Debug for Aggregate<P, K, A, I, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregate")
            .field("name", &self.name)
            .field("keys", &self.state.len())
            .finish()
    }
}

impl<P, K: StateKey, A: StateValue, I: Fn() -> A, F> Aggregate<P, K, A, I, F> {
    #[inline]
    fn apply<V, E: FnMut((K, A), &mut Cx)>(
        state: &mut KeyMap<K, A>,
        init: &I,
        add: &mut F,
        (k, v): (K, V),
        cx: &mut Cx,
        out: &mut E,
    ) where
        F: FnMut(&mut A, V),
    {
        if let Some(acc) = state.get_mut(&k) {
            add(acc, v);
            let acc = acc.clone();
            return out((k, acc), cx);
        }
        let mut acc = init();
        add(&mut acc, v);
        state.insert(k.clone(), acc.clone());
        out((k, acc), cx)
    }
}

impl<In, P, K, V, A, I, F> Operator<In> for Aggregate<P, K, A, I, F>
where
    P: Operator<In, Out = (K, V)>,
    K: StateKey,
    A: StateValue,
    I: Fn() -> A + Send + 'static,
    F: FnMut(&mut A, V) + Send + 'static,
{
    type Out = (K, A);

    #[inline]
    fn push<E: FnMut((K, A), &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let (state, init, add) = (&mut self.state, &self.init, &mut self.add);
        self.prev.push(item, cx, &mut |kv, cx| {
            Self::apply(state, init, add, kv, cx, out)
        });
    }

    fn advance<E: FnMut((K, A), &mut Cx)>(&mut self, cx: &mut Cx, out: &mut E) {
        let (state, init, add) = (&mut self.state, &self.init, &mut self.add);
        self.prev
            .advance(cx, &mut |kv, cx| Self::apply(state, init, add, kv, cx, out));
    }

    fn shape(&self, shape: &mut Vec<&'static str>) {
        self.prev.shape(shape);
        shape.push(self.name);
    }

    fn save(&self, parts: &mut Vec<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.save(parts)?;
        parts.push(encode(&self.state)?);
        Ok(())
    }

    fn load(&mut self, parts: &mut std::vec::IntoIter<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.load(parts)?;
        self.state = decode(&next_part(parts, self.name)?, self.name)?;
        Ok(())
    }
}

/// The stage of [`Stream::reduce`].
pub struct Reduce<P, K, V, F> {
    prev: P,
    state: KeyMap<K, V>,
    f: F,
}

impl<P, K, V, F> std::fmt::Debug for Reduce<P, K, V, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reduce")
            .field("keys", &self.state.len())
            .finish()
    }
}

impl<P, K: StateKey, V: StateValue, F: FnMut(V, V) -> V> Reduce<P, K, V, F> {
    fn apply<E: FnMut((K, V), &mut Cx)>(
        state: &mut KeyMap<K, V>,
        f: &mut F,
        (k, v): (K, V),
        cx: &mut Cx,
        out: &mut E,
    ) {
        let next = match state.remove(&k) {
            Some(acc) => f(acc, v),
            None => v,
        };
        state.insert(k.clone(), next.clone());
        out((k, next), cx)
    }
}

impl<In, P, K, V, F> Operator<In> for Reduce<P, K, V, F>
where
    P: Operator<In, Out = (K, V)>,
    K: StateKey,
    V: StateValue,
    F: FnMut(V, V) -> V + Send + 'static,
{
    type Out = (K, V);

    fn push<E: FnMut((K, V), &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let (state, f) = (&mut self.state, &mut self.f);
        self.prev
            .push(item, cx, &mut |kv, cx| Self::apply(state, f, kv, cx, out));
    }

    fn advance<E: FnMut((K, V), &mut Cx)>(&mut self, cx: &mut Cx, out: &mut E) {
        let (state, f) = (&mut self.state, &mut self.f);
        self.prev
            .advance(cx, &mut |kv, cx| Self::apply(state, f, kv, cx, out));
    }

    fn shape(&self, shape: &mut Vec<&'static str>) {
        self.prev.shape(shape);
        shape.push("reduce");
    }

    fn save(&self, parts: &mut Vec<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.save(parts)?;
        parts.push(encode(&self.state)?);
        Ok(())
    }

    fn load(&mut self, parts: &mut std::vec::IntoIter<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.load(parts)?;
        self.state = decode(&next_part(parts, "reduce")?, "reduce")?;
        Ok(())
    }
}
