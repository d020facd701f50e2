//! Reconciliation: compare the upstream's keyed snapshot with the local side's, as a
//! streaming merge of two key-sorted paged readers, and hand out one [`Drift`] (or repair
//! envelope) at a time.
//!
//! Memory is bounded by the page size: each side holds at most one page, plus the last key
//! it read (to ask for the next page). A million keys on each side never load at once; no
//! hash of everything is built. The price is that both sides must be sorted by the same key
//! order, which the reconciler checks (a reader that breaks it fails the run with a typed
//! error rather than reporting wrong drift).

mod compare;
mod drift;
mod error;
mod reader;

use std::vec;

pub use compare::{ByDigest, Compare, Equal};
pub use drift::{Drift, DriftKind, ReconcileReport};
pub use error::{ReconcileError, Side};
pub use reader::{Entry, Page, SnapshotReader};

use crate::error::ConfigError;

/// The page size readers are asked for unless set.
pub const DEFAULT_PAGE_SIZE: usize = 1_000;

/// One side being read: its reader, the page in hand, the last key read.
struct Cursor<R: SnapshotReader> {
    reader: R,
    side: Side,
    limit: usize,
    page: vec::IntoIter<Entry<R::Key, R::Value>>,
    last: Option<R::Key>,
    done: bool,
}

impl<R: SnapshotReader> Cursor<R> {
    fn new(reader: R, side: Side) -> Self {
        Cursor {
            reader,
            side,
            limit: DEFAULT_PAGE_SIZE,
            page: Vec::new().into_iter(),
            last: None,
            done: false,
        }
    }

    fn needs_page(&self) -> bool {
        !self.done && self.page.as_slice().is_empty()
    }

    /// Reads the next page if the one in hand is used up; checks its order and size.
    async fn fill(&mut self, pages: &mut u64) -> Result<(), ReconcileError> {
        if !self.needs_page() {
            return Ok(());
        }
        let page = self
            .reader
            .page(self.last.as_ref(), self.limit)
            .await
            .map_err(|e| ReconcileError::Read {
                side: self.side,
                source: Box::new(e),
            })?;
        *pages += 1;
        if page.len() > self.limit {
            return Err(ReconcileError::PageTooLong {
                side: self.side,
                limit: self.limit,
                got: page.len(),
            });
        }
        let mut previous = self.last.as_ref();
        for e in &page {
            if let Some(p) = previous {
                if e.key <= *p {
                    return Err(ReconcileError::Unsorted {
                        side: self.side,
                        previous: format!("{p:?}"),
                        key: format!("{:?}", e.key),
                    });
                }
            }
            previous = Some(&e.key);
        }
        match page.last() {
            None => self.done = true,
            Some(e) => self.last = Some(e.key.clone()),
        }
        self.page = page.into_iter();
        Ok(())
    }

    fn head(&self) -> Option<&R::Key> {
        self.page.as_slice().first().map(|e| &e.key)
    }

    fn take(&mut self) -> Option<Entry<R::Key, R::Value>> {
        self.page.next()
    }
}

/// A reconciliation of an upstream snapshot against the local one: a streaming merge of
/// two [`SnapshotReader`]s sorted by the same key, handing out each [`Drift`] found, in key
/// order, with [`next`](Self::next) (or as repair envelopes with
/// [`repairs`](Self::repairs), or to a closure with [`for_each`](Self::for_each)).
///
/// Entities are compared with [`Equal`] unless another [`Compare`] is set with
/// [`compare`](Self::compare) (a version or a digest: [`ByDigest`]).
///
/// # Memory
///
/// Bounded by the page size: each side holds at most one page, plus the last key it read
/// (to ask for the next page). A million keys on each side never load at once; no hash of
/// everything is built. Both sides must be sorted by the same key order, which is checked:
/// a reader that breaks it fails the run with a typed error rather than reporting wrong
/// drift.
///
/// # Consistency
///
/// The two sides are read while they may change. A change that lands during a run may be
/// seen on one side only and show up as drift; the repair it causes is then a no-op for an
/// idempotent, versioned apply (only a newer version passes), and the next run sees the
/// sides agree. Snapshot isolation on each reader (a repeatable-read transaction) removes
/// this for one side.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use syncbus_stream::{ByDigest, Drift, Reconcile};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // id -> (version, name)
/// let upstream = BTreeMap::from([(1, (2, "apple")), (2, (1, "pear")), (3, (1, "plum"))]);
/// let local = BTreeMap::from([(1, (1, "apple")), (2, (1, "pear")), (4, (1, "fig"))]);
///
/// let mut run = Reconcile::new(&upstream, &local)
///     .compare(ByDigest::new(|u: &(u32, &str)| u.0, |l: &(u32, &str)| l.0))
///     .page_size(2)?;
/// let mut found = vec![];
/// while let Some(drift) = run.next().await? {
///     found.push(drift);
/// }
/// assert_eq!(found, [
///     Drift::Divergent { key: 1, upstream: (2, "apple"), local: (1, "apple") },
///     Drift::Missing { key: 3, upstream: (1, "plum") },
///     Drift::Extra { key: 4, local: (1, "fig") },
/// ]);
/// assert_eq!(run.report().same, 1);
/// # Ok(()) }
/// ```
pub struct Reconcile<A: SnapshotReader, B: SnapshotReader, C = Equal> {
    upstream: Cursor<A>,
    local: Cursor<B>,
    compare: C,
    report: ReconcileReport,
}

impl<A: SnapshotReader, B: SnapshotReader, C> std::fmt::Debug for Reconcile<A, B, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconcile")
            .field("upstream_page_size", &self.upstream.limit)
            .field("local_page_size", &self.local.limit)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl<A, B> Reconcile<A, B, Equal>
where
    A: SnapshotReader,
    B: SnapshotReader<Key = A::Key>,
{
    /// A reconciliation of `upstream` against `local`, pages of [`DEFAULT_PAGE_SIZE`],
    /// compared with [`Equal`].
    ///
    /// # Examples
    ///
    /// See [`Reconcile`].
    pub fn new(upstream: A, local: B) -> Self {
        Reconcile {
            upstream: Cursor::new(upstream, Side::Upstream),
            local: Cursor::new(local, Side::Local),
            compare: Equal,
            report: ReconcileReport::default(),
        }
    }
}

impl<A, B, C> Reconcile<A, B, C>
where
    A: SnapshotReader,
    B: SnapshotReader<Key = A::Key>,
{
    /// Compares entities with `compare` instead.
    ///
    /// # Examples
    ///
    /// See [`Reconcile`].
    pub fn compare<C2: Compare<A::Value, B::Value>>(self, compare: C2) -> Reconcile<A, B, C2> {
        Reconcile {
            upstream: self.upstream,
            local: self.local,
            compare,
            report: self.report,
        }
    }

    /// Asks both readers for pages of `n` entries (the memory bound: at most `n` entries
    /// per side in hand).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use syncbus_stream::Reconcile;
    ///
    /// let side = BTreeMap::<u32, u32>::new();
    /// assert!(Reconcile::new(&side, &side).page_size(0).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroCount`] if `n` is zero.
    pub fn page_size(self, n: usize) -> Result<Self, ConfigError> {
        self.page_sizes(n, n)
    }

    /// Asks the upstream reader for pages of `upstream` entries and the local one for
    /// pages of `local` (an HTTP API may cap its pages lower than a database).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use syncbus_stream::Reconcile;
    ///
    /// let side = BTreeMap::<u32, u32>::new();
    /// let run = Reconcile::new(&side, &side).page_sizes(100, 5_000)?;
    /// # Ok::<(), syncbus_stream::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroCount`] if either is zero.
    pub fn page_sizes(mut self, upstream: usize, local: usize) -> Result<Self, ConfigError> {
        if upstream == 0 || local == 0 {
            return Err(ConfigError::ZeroCount { what: "page size" });
        }
        self.upstream.limit = upstream;
        self.local.limit = local;
        Ok(self)
    }

    /// What has been read and found so far (all of it once [`next`](Self::next) returned
    /// `None`).
    ///
    /// # Examples
    ///
    /// See [`Reconcile`].
    pub fn report(&self) -> &ReconcileReport {
        &self.report
    }
}

impl<A, B, C> Reconcile<A, B, C>
where
    A: SnapshotReader,
    B: SnapshotReader<Key = A::Key>,
    C: Compare<A::Value, B::Value>,
{
    /// The next drifted entity in key order, or `None` when both sides are read to the end.
    /// Reads a page from a side only when the one in hand is used up.
    ///
    /// # Errors
    ///
    /// [`ReconcileError::Read`] when a reader fails, [`ReconcileError::Unsorted`] or
    /// [`ReconcileError::PageTooLong`] when one breaks the reader contract. Calling again
    /// after an error retries the read that failed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a page read that is cancelled is read again by the next call, and no
    /// entry is taken before the drift it makes is returned.
    ///
    /// # Examples
    ///
    /// See [`Reconcile`].
    #[allow(clippy::type_complexity)]
    pub async fn next(
        &mut self,
    ) -> Result<Option<Drift<A::Key, A::Value, B::Value>>, ReconcileError> {
        loop {
            if self.upstream.needs_page() && self.local.needs_page() {
                let (u, l) = tokio::join!(
                    self.upstream.fill(&mut self.report.upstream_pages),
                    self.local.fill(&mut self.report.local_pages)
                );
                u?;
                l?;
            } else {
                self.upstream.fill(&mut self.report.upstream_pages).await?;
                self.local.fill(&mut self.report.local_pages).await?;
            }
            let order = match (self.upstream.head(), self.local.head()) {
                (None, None) => return Ok(None),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(u), Some(l)) => u.cmp(l),
            };
            let drift = match order {
                std::cmp::Ordering::Less => {
                    let Some(u) = self.upstream.take() else {
                        continue;
                    };
                    self.report.upstream += 1;
                    Drift::Missing {
                        key: u.key,
                        upstream: u.value,
                    }
                }
                std::cmp::Ordering::Greater => {
                    let Some(l) = self.local.take() else { continue };
                    self.report.local += 1;
                    Drift::Extra {
                        key: l.key,
                        local: l.value,
                    }
                }
                std::cmp::Ordering::Equal => {
                    let (Some(u), Some(l)) = (self.upstream.take(), self.local.take()) else {
                        continue;
                    };
                    self.report.upstream += 1;
                    self.report.local += 1;
                    if self.compare.same(&u.value, &l.value) {
                        self.report.same += 1;
                        continue;
                    }
                    Drift::Divergent {
                        key: u.key,
                        upstream: u.value,
                        local: l.value,
                    }
                }
            };
            self.report.count(drift.kind());
            return Ok(Some(drift));
        }
    }

    /// Runs to the end, handing each drift to `f` (awaited before the next is read), and
    /// returns the report.
    ///
    /// # Errors
    ///
    /// As [`next`](Self::next); drift handed to `f` before the error stays handed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use syncbus_stream::Reconcile;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let upstream = BTreeMap::from([("a", 1), ("b", 2)]);
    /// let local = BTreeMap::from([("a", 1)]);
    /// let mut keys = vec![];
    /// let report = Reconcile::new(&upstream, &local)
    ///     .for_each(|d| {
    ///         keys.push(*d.key());
    ///         async {}
    ///     })
    ///     .await?;
    /// assert_eq!((keys, report.missing, report.same), (vec!["b"], 1, 1));
    /// # Ok(()) }
    /// ```
    pub async fn for_each<F, Fut>(mut self, mut f: F) -> Result<ReconcileReport, ReconcileError>
    where
        F: FnMut(Drift<A::Key, A::Value, B::Value>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        while let Some(d) = self.next().await? {
            f(d).await;
        }
        Ok(self.report)
    }

    /// The drift as repair events: each one mapped to an envelope by `to_envelope` (set the
    /// entity id from the key and the version from the upstream value, so an ordering
    /// layer lets only a newer version pass). [`DriftKind::event_type`] is a default type.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use syncbus_envelope::{EntityId, Envelope, Metadata};
    /// use syncbus_stream::{Drift, Reconcile};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let upstream = BTreeMap::from([(1u64, 5u64)]); // id -> version
    /// let local = BTreeMap::from([(2u64, 1u64)]);
    /// let mut repairs = Reconcile::new(&upstream, &local).repairs(|d: Drift<u64, u64, u64>| {
    ///     let meta = Metadata::new(d.kind().event_type())
    ///         .with_entity_id(Some(EntityId::from(*d.key())))
    ///         .with_version(d.upstream().copied());
    ///     Envelope::new(meta, d)
    /// });
    /// let first = repairs.next().await?.unwrap();
    /// assert_eq!(first.meta().event_type().as_str(), "syncbus.reconcile.missing");
    /// assert_eq!(first.meta().version(), Some(5));
    /// let second = repairs.next().await?.unwrap();
    /// assert_eq!(second.meta().event_type().as_str(), "syncbus.reconcile.extra");
    /// assert!(repairs.next().await?.is_none());
    /// assert_eq!(repairs.report().drifted(), 2);
    /// # Ok(()) }
    /// ```
    pub fn repairs<P, F>(self, to_envelope: F) -> Repairs<A, B, C, F>
    where
        F: FnMut(Drift<A::Key, A::Value, B::Value>) -> syncbus_envelope::Envelope<P>,
    {
        Repairs {
            run: self,
            to_envelope,
        }
    }
}

/// The drift of a [`Reconcile`] as repair envelopes: see [`Reconcile::repairs`].
pub struct Repairs<A: SnapshotReader, B: SnapshotReader, C, F> {
    run: Reconcile<A, B, C>,
    to_envelope: F,
}

impl<A: SnapshotReader, B: SnapshotReader, C, F> std::fmt::Debug for Repairs<A, B, C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repairs")
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

impl<A, B, C, F, P> Repairs<A, B, C, F>
where
    A: SnapshotReader,
    B: SnapshotReader<Key = A::Key>,
    C: Compare<A::Value, B::Value>,
    F: FnMut(Drift<A::Key, A::Value, B::Value>) -> syncbus_envelope::Envelope<P>,
{
    /// The next repair event, or `None` at the end.
    ///
    /// # Errors
    ///
    /// As [`Reconcile::next`].
    ///
    /// # Cancel safety
    ///
    /// As [`Reconcile::next`].
    ///
    /// # Examples
    ///
    /// See [`Reconcile::repairs`].
    pub async fn next(&mut self) -> Result<Option<syncbus_envelope::Envelope<P>>, ReconcileError> {
        Ok(self.run.next().await?.map(&mut self.to_envelope))
    }

    /// What has been read and found so far.
    ///
    /// # Examples
    ///
    /// See [`Reconcile::repairs`].
    pub fn report(&self) -> &ReconcileReport {
        self.run.report()
    }
}
