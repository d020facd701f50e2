//! Stream-table joins: a [`Table`] holds the latest value per key of a changelog (CDC events,
//! a keyed aggregation), and a stream looks each of its items up in it.
//!
//! The table is shared: one topology (or the application) writes it with
//! [`Stream::to_table`] / [`Stream::to_table_changelog`] or [`Table::upsert`], another reads
//! it in [`Stream::join`]. Each stream item sees the table as it is when the item is
//! processed (Kafka Streams' stream-table join: no re-emission when the table changes later).

use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::StreamError;
use crate::state::{decode, encode, next_part, KeyMap};
use crate::topology::keyed::{StateKey, StateValue};
use crate::topology::operator::{Cx, Operator};
use crate::topology::stream::Stream;

/// The latest value per key, shared between the topology that writes it and those that join
/// against it. Cloning shares it.
///
/// # Examples
///
/// ```
/// use syncbus_stream::Table;
/// let regions: Table<u64, String> = Table::new();
/// regions.upsert(7, "eu".to_string());
/// assert_eq!(regions.get(&7).as_deref(), Some("eu"));
/// assert_eq!(regions.remove(&7).as_deref(), Some("eu"));
/// assert!(regions.is_empty());
/// ```
pub struct Table<K, V> {
    inner: Arc<RwLock<KeyMap<K, V>>>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Table {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.inner.read().len())
            .finish()
    }
}

impl<K: StateKey, V: StateValue> Default for Table<K, V> {
    fn default() -> Self {
        Table::new()
    }
}

impl<K: StateKey, V: StateValue> Table<K, V> {
    /// An empty table.
    ///
    /// # Examples
    ///
    /// See [`Table`].
    pub fn new() -> Self {
        Table {
            inner: Arc::new(RwLock::new(KeyMap::default())),
        }
    }

    /// Sets the value of `key`; returns the one it replaced.
    ///
    /// # Examples
    ///
    /// See [`Table`].
    pub fn upsert(&self, key: K, value: V) -> Option<V> {
        self.inner.write().insert(key, value)
    }

    /// Removes `key` (a tombstone); returns its value.
    ///
    /// # Examples
    ///
    /// See [`Table`].
    pub fn remove(&self, key: &K) -> Option<V> {
        self.inner.write().remove(key)
    }

    /// The value of `key`, cloned.
    ///
    /// # Examples
    ///
    /// See [`Table`].
    pub fn get(&self, key: &K) -> Option<V> {
        self.inner.read().get(key).cloned()
    }

    /// How many keys it holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = syncbus_stream::Table::<u8, u8>::new();
    /// t.upsert(1, 1);
    /// assert_eq!(t.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.read().len()
    }

    /// Whether it holds no key.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_stream::Table::<u8, u8>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.inner.read().is_empty()
    }

    /// A copy of every entry, in no particular order.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = syncbus_stream::Table::<u8, u8>::new();
    /// t.upsert(1, 2);
    /// assert_eq!(t.entries(), [(1, 2)]);
    /// ```
    pub fn entries(&self) -> Vec<(K, V)> {
        self.inner
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl<In, Op, K, V> Stream<In, Op>
where
    Op: Operator<In, Out = (K, V)>,
    K: StateKey,
    V: StateValue,
{
    /// Ends the keyed stream in `table`: each item sets its key's value. The table's contents
    /// are this topology's state, checkpointed with it.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Table, Topology};
    /// let counts = Table::new();
    /// let mut t = Topology::new(Stream::<char>::new().key_by(|c| *c).count().to_table(&counts));
    /// for c in "abca".chars() { t.process(c, None); }
    /// assert_eq!(counts.get(&'a'), Some(2));
    /// ```
    pub fn to_table(self, table: &Table<K, V>) -> Stream<In, ToTable<Op, K, V>> {
        Stream::from_op(ToTable {
            prev: self.into_op(),
            table: table.clone(),
        })
    }

    /// Inner stream-table join: each item whose key has a value in `table` becomes
    /// `f(&key, item, &value)`; the others are dropped (use [`left_join`](Self::left_join)
    /// to keep them).
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Table, Topology};
    /// let names = Table::new();
    /// names.upsert(1u32, "ada".to_string());
    /// let s = Stream::<(u32, u64)>::new()
    ///     .key_by(|(user, _)| *user)
    ///     .join(&names, |_, (_, cents), name| format!("{name}: {cents}"));
    /// let mut t = Topology::new(s);
    /// let mut out = vec![];
    /// t.process_with((1, 250), None, &mut |x, _| out.push(x));
    /// t.process_with((2, 100), None, &mut |x, _| out.push(x));
    /// assert_eq!(out, ["ada: 250"]);
    /// ```
    pub fn join<T, U, F>(self, table: &Table<K, T>, f: F) -> Stream<In, Join<Op, K, T, F>>
    where
        T: StateValue,
        F: FnMut(&K, V, &T) -> U + Send + 'static,
    {
        Stream::from_op(Join {
            prev: self.into_op(),
            table: table.clone(),
            f,
        })
    }

    /// Left stream-table join: each item becomes `f(&key, item, value or None)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Table, Topology};
    /// let names: Table<u32, String> = Table::new();
    /// let s = Stream::<u32>::new()
    ///     .key_by(|u| *u)
    ///     .left_join(&names, |_, u, name| (u, name.cloned()));
    /// let mut t = Topology::new(s);
    /// let mut out = vec![];
    /// t.process_with(1, None, &mut |x, _| out.push(x));
    /// names.upsert(1, "ada".into());
    /// t.process_with(1, None, &mut |x, _| out.push(x));
    /// assert_eq!(out, [(1, None), (1, Some("ada".to_string()))]);
    /// ```
    pub fn left_join<T, U, F>(self, table: &Table<K, T>, f: F) -> Stream<In, LeftJoin<Op, K, T, F>>
    where
        T: StateValue,
        F: FnMut(&K, V, Option<&T>) -> U + Send + 'static,
    {
        Stream::from_op(LeftJoin {
            prev: self.into_op(),
            table: table.clone(),
            f,
        })
    }
}

impl<In, Op, K, V> Stream<In, Op>
where
    Op: Operator<In, Out = (K, Option<V>)>,
    K: StateKey,
    V: StateValue,
{
    /// Ends a changelog in `table`: `(key, Some(value))` sets the key, `(key, None)` (a
    /// tombstone, a deleted row) removes it.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::{Stream, Table, Topology};
    /// let t: Table<u8, String> = Table::new();
    /// let mut topo = Topology::new(Stream::<(u8, Option<String>)>::new().to_table_changelog(&t));
    /// topo.process((1, Some("a".to_string())), None);
    /// assert_eq!(t.get(&1).as_deref(), Some("a"));
    /// topo.process((1, None), None);
    /// assert!(t.is_empty());
    /// ```
    pub fn to_table_changelog(self, table: &Table<K, V>) -> Stream<In, ToTable<Op, K, V>> {
        Stream::from_op(ToTable {
            prev: self.into_op(),
            table: table.clone(),
        })
    }
}

/// The sink of [`Stream::to_table`] and [`Stream::to_table_changelog`].
pub struct ToTable<P, K, V> {
    prev: P,
    table: Table<K, V>,
}

impl<P, K, V> std::fmt::Debug for ToTable<P, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToTable")
    }
}

/// An item a table takes: an upsert `(K, V)` or a changelog entry `(K, Option<V>)`.
///
/// # Examples
///
/// ```
/// use syncbus_stream::TableChange;
/// assert_eq!(TableChange::<u8, u8>::into_change((1u8, 2u8)), (1, Some(2)));
/// assert_eq!(TableChange::<u8, u8>::into_change((1u8, None::<u8>)), (1, None));
/// ```
pub trait TableChange<K, V> {
    /// The key, and its new value (`None`: removed).
    fn into_change(self) -> (K, Option<V>);
}

impl<K: StateKey, V> TableChange<K, V> for (K, V) {
    fn into_change(self) -> (K, Option<V>) {
        (self.0, Some(self.1))
    }
}

impl<K: StateKey, V> TableChange<K, V> for (K, Option<V>) {
    fn into_change(self) -> (K, Option<V>) {
        self
    }
}

fn apply_change<K: StateKey, V>(table: &Table<K, V>, change: impl TableChange<K, V>) {
    let (k, v) = change.into_change();
    let mut map = table.inner.write();
    match v {
        Some(v) => map.insert(k, v),
        None => map.remove(&k),
    };
}

impl<In, P, K, V> Operator<In> for ToTable<P, K, V>
where
    P: Operator<In>,
    P::Out: TableChange<K, V>,
    K: StateKey,
    V: StateValue + Sync,
    K: Sync,
{
    type Out = ();

    fn push<E: FnMut((), &mut Cx)>(&mut self, item: In, cx: &mut Cx, _out: &mut E) {
        let table = &self.table;
        self.prev.push(item, cx, &mut |x, _| apply_change(table, x));
    }

    fn advance<E: FnMut((), &mut Cx)>(&mut self, cx: &mut Cx, _out: &mut E) {
        let table = &self.table;
        self.prev.advance(cx, &mut |x, _| apply_change(table, x));
    }

    fn shape(&self, shape: &mut Vec<&'static str>) {
        self.prev.shape(shape);
        shape.push("table");
    }

    fn save(&self, parts: &mut Vec<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.save(parts)?;
        parts.push(encode(&*self.table.inner.read())?);
        Ok(())
    }

    fn load(&mut self, parts: &mut std::vec::IntoIter<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.load(parts)?;
        *self.table.inner.write() = decode(&next_part(parts, "table")?, "table")?;
        Ok(())
    }
}

/// The stage of [`Stream::join`].
pub struct Join<P, K, T, F> {
    prev: P,
    table: Table<K, T>,
    f: F,
}

/// The stage of [`Stream::left_join`].
pub struct LeftJoin<P, K, T, F> {
    prev: P,
    table: Table<K, T>,
    f: F,
}

impl<P, K, T, F> std::fmt::Debug for Join<P, K, T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Join")
    }
}

impl<P, K, T, F> std::fmt::Debug for LeftJoin<P, K, T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeftJoin")
    }
}

impl<P, K: StateKey + Sync, T: StateValue + Sync, F> Join<P, K, T, F> {
    fn apply<V, U, E: FnMut(U, &mut Cx)>(
        table: &Table<K, T>,
        f: &mut F,
        (k, v): (K, V),
        cx: &mut Cx,
        out: &mut E,
    ) where
        F: FnMut(&K, V, &T) -> U,
    {
        let joined = table.inner.read().get(&k).map(|t| f(&k, v, t));
        if let Some(u) = joined {
            out(u, cx)
        }
    }
}

impl<In, P, K, V, T, U, F> Operator<In> for Join<P, K, T, F>
where
    P: Operator<In, Out = (K, V)>,
    K: StateKey + Sync,
    T: StateValue + Sync,
    F: FnMut(&K, V, &T) -> U + Send + 'static,
{
    type Out = U;

    fn push<E: FnMut(U, &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let (table, f) = (&self.table, &mut self.f);
        self.prev
            .push(item, cx, &mut |kv, cx| Self::apply(table, f, kv, cx, out));
    }

    fn advance<E: FnMut(U, &mut Cx)>(&mut self, cx: &mut Cx, out: &mut E) {
        let (table, f) = (&self.table, &mut self.f);
        self.prev
            .advance(cx, &mut |kv, cx| Self::apply(table, f, kv, cx, out));
    }

    fn shape(&self, shape: &mut Vec<&'static str>) {
        self.prev.shape(shape);
    }

    fn save(&self, parts: &mut Vec<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.save(parts)
    }

    fn load(&mut self, parts: &mut std::vec::IntoIter<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.load(parts)
    }
}

impl<P, K: StateKey + Sync, T: StateValue + Sync, F> LeftJoin<P, K, T, F> {
    fn apply<V, U, E: FnMut(U, &mut Cx)>(
        table: &Table<K, T>,
        f: &mut F,
        (k, v): (K, V),
        cx: &mut Cx,
        out: &mut E,
    ) where
        F: FnMut(&K, V, Option<&T>) -> U,
    {
        let joined = f(&k, v, table.inner.read().get(&k));
        out(joined, cx)
    }
}

impl<In, P, K, V, T, U, F> Operator<In> for LeftJoin<P, K, T, F>
where
    P: Operator<In, Out = (K, V)>,
    K: StateKey + Sync,
    T: StateValue + Sync,
    F: FnMut(&K, V, Option<&T>) -> U + Send + 'static,
{
    type Out = U;

    fn push<E: FnMut(U, &mut Cx)>(&mut self, item: In, cx: &mut Cx, out: &mut E) {
        let (table, f) = (&self.table, &mut self.f);
        self.prev
            .push(item, cx, &mut |kv, cx| Self::apply(table, f, kv, cx, out));
    }

    fn advance<E: FnMut(U, &mut Cx)>(&mut self, cx: &mut Cx, out: &mut E) {
        let (table, f) = (&self.table, &mut self.f);
        self.prev
            .advance(cx, &mut |kv, cx| Self::apply(table, f, kv, cx, out));
    }

    fn shape(&self, shape: &mut Vec<&'static str>) {
        self.prev.shape(shape);
    }

    fn save(&self, parts: &mut Vec<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.save(parts)
    }

    fn load(&mut self, parts: &mut std::vec::IntoIter<Vec<u8>>) -> Result<(), StreamError> {
        self.prev.load(parts)
    }
}
