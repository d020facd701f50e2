//! When an entity is the same on both sides.

/// Decides whether an entity is the same upstream and locally; when not, it is
/// [`Drift::Divergent`](crate::Drift::Divergent).
///
/// Three ready-made comparisons: [`Equal`] (the default: full equality), [`ByDigest`]
/// (a version, an `updated_at` or a hash computed on each side), and any closure
/// `Fn(&U, &L) -> bool`.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{ByDigest, Compare, Equal};
///
/// struct Upstream { version: u64, name: String }
/// struct Local { version: u64 }
///
/// let by_version = ByDigest::new(|u: &Upstream| u.version, |l: &Local| l.version);
/// assert!(by_version.same(&Upstream { version: 3, name: "a".into() }, &Local { version: 3 }));
/// assert!(!by_version.same(&Upstream { version: 4, name: "a".into() }, &Local { version: 3 }));
///
/// assert!(Equal.same(&"a".to_string(), &"a"));
///
/// let newer_or_same = |u: &u64, l: &u64| l >= u;
/// assert!(newer_or_same.same(&3, &4));
/// ```
pub trait Compare<U, L>: Send + Sync {
    /// Whether `upstream` and `local` are the same entity state.
    fn same(&self, upstream: &U, local: &L) -> bool;
}

impl<U, L, F> Compare<U, L> for F
where
    F: Fn(&U, &L) -> bool + Send + Sync,
{
    fn same(&self, upstream: &U, local: &L) -> bool {
        self(upstream, local)
    }
}

/// Full equality: `upstream == local` (`U: PartialEq<L>`).
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Compare, Equal};
///
/// assert!(Equal.same(&3u32, &3u32));
/// assert!(!Equal.same(&3u32, &4u32));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Equal;

impl<U: PartialEq<L>, L> Compare<U, L> for Equal {
    fn same(&self, upstream: &U, local: &L) -> bool {
        upstream == local
    }
}

/// Compares a digest of each side (a version, a timestamp, a hash): the same when the two
/// digests are equal. The cheap comparison when the values are large or of different types.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{ByDigest, Compare};
///
/// let by_len = ByDigest::new(|u: &String| u.len(), |l: &Vec<u8>| l.len());
/// assert!(by_len.same(&"abc".to_string(), &vec![1, 2, 3]));
/// ```
#[derive(Clone, Copy)]
pub struct ByDigest<F, G> {
    upstream: F,
    local: G,
}

impl<F, G> ByDigest<F, G> {
    /// The digest of an upstream value by `upstream`, of a local one by `local`.
    ///
    /// # Examples
    ///
    /// See [`ByDigest`].
    pub fn new(upstream: F, local: G) -> Self {
        ByDigest { upstream, local }
    }
}

impl<F, G> std::fmt::Debug for ByDigest<F, G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByDigest").finish_non_exhaustive()
    }
}

impl<U, L, D, F, G> Compare<U, L> for ByDigest<F, G>
where
    D: PartialEq,
    F: Fn(&U) -> D + Send + Sync,
    G: Fn(&L) -> D + Send + Sync,
{
    fn same(&self, upstream: &U, local: &L) -> bool {
        (self.upstream)(upstream) == (self.local)(local)
    }
}
