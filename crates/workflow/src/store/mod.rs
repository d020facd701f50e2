//! The storage seams of the workflow layers: dedup keys, dead letters and saga instances.
//!
//! Each is an object-safe trait (futures are boxed), so a subscription can hold an
//! `Arc<dyn DedupStore>` and the backend is picked at run time. This crate ships the memory
//! implementations; `syncbus-store` adds SQLite and PostgreSQL ones that pass the same tests.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

mod dead_letter;
mod dedup;
mod saga;

pub use dead_letter::{
    DeadLetterFilter, DeadLetterId, DeadLetterRecord, DeadLetterStore, MemoryDeadLetterStore,
};
pub(crate) use dedup::deadline;
pub use dedup::{Claim, DedupKey, DedupStore, KeyState, MemoryDedupStore, Outcome};
pub use saga::{MemorySagaStore, SagaInstance, SagaStatus, SagaStepRecord, SagaStore, StepAction};

/// A boxed, sendable future: what the store traits return, so they stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a store operation failed.
///
/// # Examples
///
/// ```
/// use syncbus_workflow::store::{StoreError, StoreErrorKind};
///
/// let e = StoreError::conflict("saga order-1 was saved by someone else");
/// assert_eq!(e.kind(), StoreErrorKind::Conflict);
/// assert_eq!(e.to_string(), "conflict: saga order-1 was saved by someone else");
/// ```
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// The kind of a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend failed: I/O, a lost connection, a SQL error. Retrying may help.
    Backend,
    /// A concurrent writer changed the record first (optimistic version check).
    Conflict,
    /// Stored data could not be read back: a corrupt row or file, or an undecodable record.
    Corrupt,
    /// The store was written by a newer schema version than this build knows.
    Incompatible,
    /// The input was refused before it reached the backend (too large, malformed).
    Invalid,
    /// The store was closed.
    Closed,
}

impl StoreError {
    /// A new error of `kind` with a message.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::store::{StoreError, StoreErrorKind};
    /// let e = StoreError::new(StoreErrorKind::Invalid, "key longer than 512 bytes");
    /// assert_eq!(e.kind(), StoreErrorKind::Invalid);
    /// ```
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A backend failure caused by `source`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_workflow::store::{StoreError, StoreErrorKind};
    /// let io = std::io::Error::other("disk full");
    /// let e = StoreError::backend("append failed", io);
    /// assert_eq!(e.kind(), StoreErrorKind::Backend);
    /// assert!(std::error::Error::source(&e).is_some());
    /// ```
    pub fn backend(
        message: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> StoreError {
        StoreError::new(StoreErrorKind::Backend, message).with_source(source)
    }

    /// A [`StoreErrorKind::Conflict`] error.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::store::{StoreError, StoreErrorKind};
    /// assert_eq!(StoreError::conflict("stale").kind(), StoreErrorKind::Conflict);
    /// ```
    pub fn conflict(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreErrorKind::Conflict, message)
    }

    /// A [`StoreErrorKind::Corrupt`] error.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::store::{StoreError, StoreErrorKind};
    /// assert_eq!(StoreError::corrupt("bad row").kind(), StoreErrorKind::Corrupt);
    /// ```
    pub fn corrupt(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreErrorKind::Corrupt, message)
    }

    /// Attaches the underlying cause.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::store::StoreError;
    /// let e = StoreError::corrupt("row 7").with_source(std::io::Error::other("checksum"));
    /// assert!(std::error::Error::source(&e).is_some());
    /// ```
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::store::{StoreError, StoreErrorKind};
    /// assert_eq!(StoreError::corrupt("x").kind(), StoreErrorKind::Corrupt);
    /// ```
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The message, without the kind or source.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_workflow::store::StoreError;
    /// assert_eq!(StoreError::corrupt("row 7").message(), "row 7");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreErrorKind::Backend => "store backend failed",
            StoreErrorKind::Conflict => "conflict",
            StoreErrorKind::Corrupt => "corrupt data",
            StoreErrorKind::Incompatible => "incompatible store",
            StoreErrorKind::Invalid => "invalid input",
            StoreErrorKind::Closed => "store closed",
        })
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
