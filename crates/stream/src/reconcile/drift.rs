//! What a reconciliation finds: one drifted entity at a time, and the counts.

use std::fmt;

use syncbus_envelope::EventType;

/// One entity that differs between the upstream and the local side.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Drift, DriftKind};
///
/// let d: Drift<u32, &str, &str> = Drift::Divergent { key: 7, upstream: "new", local: "old" };
/// assert_eq!(d.kind(), DriftKind::Divergent);
/// assert_eq!(*d.key(), 7);
/// assert_eq!(d.upstream(), Some(&"new"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift<K, U, L> {
    /// Upstream has it, the local side does not: create it.
    Missing {
        /// The entity's key.
        key: K,
        /// Its upstream value.
        upstream: U,
    },
    /// Both have it but the comparison says they differ: update it.
    Divergent {
        /// The entity's key.
        key: K,
        /// Its upstream value.
        upstream: U,
        /// Its local value.
        local: L,
    },
    /// The local side has it, upstream does not: delete it (or look into why).
    Extra {
        /// The entity's key.
        key: K,
        /// Its local value.
        local: L,
    },
}

impl<K, U, L> Drift<K, U, L> {
    /// Which kind of drift.
    ///
    /// # Examples
    ///
    /// See [`Drift`].
    pub fn kind(&self) -> DriftKind {
        match self {
            Drift::Missing { .. } => DriftKind::Missing,
            Drift::Divergent { .. } => DriftKind::Divergent,
            Drift::Extra { .. } => DriftKind::Extra,
        }
    }

    /// The entity's key.
    ///
    /// # Examples
    ///
    /// See [`Drift`].
    pub fn key(&self) -> &K {
        match self {
            Drift::Missing { key, .. }
            | Drift::Divergent { key, .. }
            | Drift::Extra { key, .. } => key,
        }
    }

    /// The upstream value, if upstream has the entity.
    ///
    /// # Examples
    ///
    /// See [`Drift`].
    pub fn upstream(&self) -> Option<&U> {
        match self {
            Drift::Missing { upstream, .. } | Drift::Divergent { upstream, .. } => Some(upstream),
            Drift::Extra { .. } => None,
        }
    }

    /// The local value, if the local side has the entity.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_stream::Drift;
    ///
    /// let d: Drift<u32, (), &str> = Drift::Extra { key: 1, local: "stale" };
    /// assert_eq!(d.local(), Some(&"stale"));
    /// assert_eq!(d.upstream(), None);
    /// ```
    pub fn local(&self) -> Option<&L> {
        match self {
            Drift::Divergent { local, .. } | Drift::Extra { local, .. } => Some(local),
            Drift::Missing { .. } => None,
        }
    }
}

/// The kind of a [`Drift`], with the event type a repair event of that kind carries by
/// default.
///
/// # Examples
///
/// ```
/// use syncbus_stream::DriftKind;
///
/// assert_eq!(DriftKind::Missing.as_str(), "missing");
/// assert_eq!(DriftKind::Extra.event_type().as_str(), "syncbus.reconcile.extra");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DriftKind {
    /// See [`Drift::Missing`].
    Missing,
    /// See [`Drift::Divergent`].
    Divergent,
    /// See [`Drift::Extra`].
    Extra,
}

impl DriftKind {
    /// `missing`, `divergent` or `extra`.
    ///
    /// # Examples
    ///
    /// See [`DriftKind`].
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Missing => "missing",
            DriftKind::Divergent => "divergent",
            DriftKind::Extra => "extra",
        }
    }

    /// `syncbus.reconcile.missing`, `syncbus.reconcile.divergent` or
    /// `syncbus.reconcile.extra`.
    ///
    /// # Examples
    ///
    /// See [`DriftKind`].
    pub fn event_type(self) -> EventType {
        EventType::from_static(match self {
            DriftKind::Missing => "syncbus.reconcile.missing",
            DriftKind::Divergent => "syncbus.reconcile.divergent",
            DriftKind::Extra => "syncbus.reconcile.extra",
        })
    }
}

impl fmt::Display for DriftKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a reconciliation has read and found so far.
///
/// # Examples
///
/// ```
/// use syncbus_stream::ReconcileReport;
///
/// let r = ReconcileReport::default();
/// assert_eq!(r.drifted(), 0);
/// assert!(r.is_clean());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconcileReport {
    /// Entries read from upstream.
    pub upstream: u64,
    /// Entries read from the local side.
    pub local: u64,
    /// Entities the same on both sides.
    pub same: u64,
    /// Upstream only.
    pub missing: u64,
    /// On both sides, different.
    pub divergent: u64,
    /// Local only.
    pub extra: u64,
    /// Pages read from upstream (the last, empty one included).
    pub upstream_pages: u64,
    /// Pages read from the local side (the last, empty one included).
    pub local_pages: u64,
}

impl ReconcileReport {
    /// Missing + divergent + extra.
    ///
    /// # Examples
    ///
    /// See [`ReconcileReport`].
    pub fn drifted(&self) -> u64 {
        self.missing + self.divergent + self.extra
    }

    /// No drift found.
    ///
    /// # Examples
    ///
    /// See [`ReconcileReport`].
    pub fn is_clean(&self) -> bool {
        self.drifted() == 0
    }

    pub(crate) fn count(&mut self, kind: DriftKind) {
        match kind {
            DriftKind::Missing => self.missing += 1,
            DriftKind::Divergent => self.divergent += 1,
            DriftKind::Extra => self.extra += 1,
        }
    }
}
