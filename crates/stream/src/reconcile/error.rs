//! What stops a reconciliation.

use std::fmt;

use crate::error::BoxError;

/// The side of a reconciliation.
///
/// # Examples
///
/// ```
/// use syncbus_stream::Side;
///
/// assert_eq!(Side::Upstream.to_string(), "upstream");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The system of record.
    Upstream,
    /// The copy being repaired.
    Local,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Upstream => "upstream",
            Side::Local => "local",
        })
    }
}

/// Why a reconciliation stopped. Drift found before it stays valid; a new run starts over.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{ReconcileError, Side};
///
/// let e = ReconcileError::PageTooLong { side: Side::Local, limit: 10, got: 11 };
/// assert_eq!(e.to_string(), "the local reader handed out a page of 11 entries, more than the 10 asked for");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// A reader failed.
    #[error("the {side} reader failed")]
    Read {
        /// Which reader.
        side: Side,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// A reader handed out a key not strictly after the one before it (within a page or
    /// across pages): its order is not the key's `Ord`, or it repeats a key. Going on would
    /// report wrong drift.
    #[error("the {side} reader is not sorted by key: {key} came after {previous}")]
    Unsorted {
        /// Which reader.
        side: Side,
        /// The key before (`Debug`).
        previous: String,
        /// The key out of order (`Debug`).
        key: String,
    },
    /// A reader handed out more entries than asked for, which would break the memory bound.
    #[error(
        "the {side} reader handed out a page of {got} entries, more than the {limit} asked for"
    )]
    PageTooLong {
        /// Which reader.
        side: Side,
        /// The page size asked for.
        limit: usize,
        /// How many came.
        got: usize,
    },
}
