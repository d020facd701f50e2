//! The reader of one side of a reconciliation: a keyed snapshot, read page by page in key
//! order.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;

/// One entity of a snapshot: its key and its value (the whole entity, a digest or a
/// version: whatever the comparison needs).
///
/// # Examples
///
/// ```
/// use syncbus_stream::Entry;
///
/// let e = Entry::new("sku-1", 3u64);
/// assert_eq!((e.key, e.value), ("sku-1", 3));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<K, V> {
    /// The entity's key: the order pages are sorted in.
    pub key: K,
    /// What is compared.
    pub value: V,
}

impl<K, V> Entry<K, V> {
    /// An entry.
    ///
    /// # Examples
    ///
    /// See [`Entry`].
    pub fn new(key: K, value: V) -> Self {
        Entry { key, value }
    }
}

/// One page of a [`SnapshotReader`]: entries sorted by key.
pub type Page<K, V> = Vec<Entry<K, V>>;

/// A keyed snapshot read in pages sorted by key: one side of a
/// [`Reconcile`](crate::Reconcile) (the upstream or the local store).
///
/// [`page`](Self::page) hands out the entries whose key is strictly after `after` (all of
/// them from the start when `after` is `None`), in ascending key order, at most `limit`.
/// An empty page means there are no more. A SQL table is read with
/// `WHERE key > $after ORDER BY key LIMIT $limit`; an HTTP API with its cursor.
///
/// The reconciler checks what a reader hands out: keys strictly ascending within and
/// across pages, and no page longer than `limit`. A reader that breaks either fails the
/// run with [`ReconcileError::Unsorted`](crate::ReconcileError::Unsorted) or
/// [`ReconcileError::PageTooLong`](crate::ReconcileError::PageTooLong) instead of
/// reporting wrong drift. The key order must be the same on both sides (`Ord` of the key
/// type; for SQL, a byte-wise collation such as `COLLATE "C"` or SQLite's default).
///
/// Implemented for `BTreeMap` (the snapshot in memory, values cloned), and for `&R` and
/// `Arc<R>` of any reader.
///
/// # Examples
///
/// A reader over a sorted `Vec`, as one over a database table would page:
///
/// ```
/// use std::convert::Infallible;
/// use syncbus_stream::{Entry, SnapshotReader};
///
/// struct Rows(Vec<(u64, String)>); // sorted by id
///
/// impl SnapshotReader for Rows {
///     type Key = u64;
///     type Value = String;
///     type Error = Infallible;
///
///     async fn page(&self, after: Option<&u64>, limit: usize) -> Result<Vec<Entry<u64, String>>, Infallible> {
///         let start = match after {
///             None => 0,
///             Some(k) => self.0.partition_point(|(id, _)| id <= k),
///         };
///         Ok(self.0[start..].iter().take(limit).map(|(k, v)| Entry::new(*k, v.clone())).collect())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let rows = Rows(vec![(1, "a".into()), (2, "b".into()), (5, "c".into())]);
/// let first = rows.page(None, 2).await.unwrap();
/// assert_eq!(first.iter().map(|e| e.key).collect::<Vec<_>>(), [1, 2]);
/// let rest = rows.page(Some(&2), 2).await.unwrap();
/// assert_eq!(rest, [Entry::new(5, "c".to_string())]);
/// assert!(rows.page(Some(&5), 2).await.unwrap().is_empty());
/// # }
/// ```
pub trait SnapshotReader: Send + Sync {
    /// The key entities are sorted and matched by.
    type Key: Ord + Clone + Debug + Send + Sync;
    /// What is compared for an entity on this side.
    type Value: Send;
    /// What a failed read reports.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Up to `limit` entries with keys strictly after `after`, sorted by key; empty when
    /// there are no more.
    fn page(
        &self,
        after: Option<&Self::Key>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<Self::Key, Self::Value>, Self::Error>> + Send;
}

impl<K, V> SnapshotReader for BTreeMap<K, V>
where
    K: Ord + Clone + Debug + Send + Sync,
    V: Clone + Send + Sync,
{
    type Key = K;
    type Value = V;
    type Error = Infallible;

    async fn page(&self, after: Option<&K>, limit: usize) -> Result<Vec<Entry<K, V>>, Infallible> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .range::<K, _>((lower, Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| Entry::new(k.clone(), v.clone()))
            .collect())
    }
}

impl<R: SnapshotReader + ?Sized> SnapshotReader for &R {
    type Key = R::Key;
    type Value = R::Value;
    type Error = R::Error;

    fn page(
        &self,
        after: Option<&Self::Key>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<Self::Key, Self::Value>, Self::Error>> + Send {
        (**self).page(after, limit)
    }
}

impl<R: SnapshotReader + ?Sized> SnapshotReader for Arc<R> {
    type Key = R::Key;
    type Value = R::Value;
    type Error = R::Error;

    fn page(
        &self,
        after: Option<&Self::Key>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<Self::Key, Self::Value>, Self::Error>> + Send {
        (**self).page(after, limit)
    }
}
