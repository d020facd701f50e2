//! The one error type of the storage traits, and the one future they return.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use syncbus_envelope::NameKind;

/// What every storage trait method returns: a boxed, sendable future, so the traits stay
/// object-safe (`Arc<dyn EventLog>`, `Arc<dyn DedupStore>`...) and the backend is picked at
/// run time.
///
/// # Examples
///
/// ```
/// use syncbus_storage::{StoreError, StoreFuture};
///
/// fn answer() -> StoreFuture<'static, u64> {
///     Box::pin(async { Ok::<u64, StoreError>(42) })
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(answer().await.unwrap(), 42);
/// # });
/// ```
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed.
///
/// # Examples
///
/// ```
/// use syncbus_storage::{StoreError, StoreErrorKind};
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
    /// The record asked for by id does not exist (a dead letter's `get` or `delete`).
    NotFound,
    /// A dedup key recorded in a transaction was done already: the delivery is a duplicate
    /// and the transaction must roll back (see [`InboxEntry`](crate::InboxEntry)).
    Duplicate,
}

impl StoreError {
    /// A new error of `kind` with a message.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_storage::{StoreError, StoreErrorKind};
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

    /// A backend failure during `op` (I/O, a lost connection, a SQL error), caused by
    /// `source`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_storage::{StoreError, StoreErrorKind};
    /// let io = std::io::Error::other("disk full");
    /// let e = StoreError::backend("append", io);
    /// assert_eq!(e.kind(), StoreErrorKind::Backend);
    /// assert_eq!(e.to_string(), "store backend failed: during append: disk full");
    /// assert!(std::error::Error::source(&e).is_some());
    /// ```
    pub fn backend(op: &str, source: impl Into<Box<dyn StdError + Send + Sync>>) -> StoreError {
        let source = source.into();
        StoreError::new(StoreErrorKind::Backend, format!("during {op}: {source}"))
            .with_source(source)
    }

    /// Input refused before it reached the backend ([`StoreErrorKind::Invalid`]): an empty
    /// or too long name, a bad setting.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::{StoreError, StoreErrorKind};
    /// let e = StoreError::invalid("empty consumer name");
    /// assert_eq!(e.kind(), StoreErrorKind::Invalid);
    /// assert_eq!(e.to_string(), "invalid input: empty consumer name");
    /// ```
    pub fn invalid(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreErrorKind::Invalid, message)
    }

    /// A stored envelope that does not decode ([`StoreErrorKind::Corrupt`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::{StoreError, StoreErrorKind};
    /// let e = StoreError::codec(std::io::Error::other("truncated"));
    /// assert_eq!(e.kind(), StoreErrorKind::Corrupt);
    /// assert_eq!(e.to_string(), "corrupt data: stored envelope codec error: truncated");
    /// ```
    pub fn codec(source: impl Into<Box<dyn StdError + Send + Sync>>) -> StoreError {
        let source = source.into();
        StoreError::corrupt(format!("stored envelope codec error: {source}")).with_source(source)
    }

    /// A store file that cannot be read: not a database, or corrupt
    /// ([`StoreErrorKind::Corrupt`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::{StoreError, StoreErrorKind};
    /// let e = StoreError::unreadable("/tmp/x.db".as_ref(), std::io::Error::other("not a database"));
    /// assert_eq!(e.kind(), StoreErrorKind::Corrupt);
    /// assert!(e.to_string().contains("/tmp/x.db"));
    /// ```
    pub fn unreadable(
        path: &Path,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> StoreError {
        StoreError::corrupt(format!(
            "{} is not an SQLite database, or it is corrupt",
            path.display()
        ))
        .with_source(source)
    }

    /// A store written by a newer syncbus ([`StoreErrorKind::Incompatible`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::{StoreError, StoreErrorKind};
    /// let e = StoreError::newer_schema(9, 1);
    /// assert_eq!(e.kind(), StoreErrorKind::Incompatible);
    /// assert!(e.to_string().contains("schema version 9"));
    /// ```
    pub fn newer_schema(found: u32, supported: u32) -> StoreError {
        StoreError::new(
            StoreErrorKind::Incompatible,
            format!(
                "the store was written by a newer syncbus (schema version {found}, this build knows up to {supported})"
            ),
        )
    }

    /// The store (or its connection pool) was closed ([`StoreErrorKind::Closed`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::{StoreError, StoreErrorKind};
    /// assert_eq!(StoreError::closed().kind(), StoreErrorKind::Closed);
    /// ```
    pub fn closed() -> StoreError {
        StoreError::new(StoreErrorKind::Closed, "the store is closed")
    }

    /// A [`StoreErrorKind::NotFound`] error: no record `what` exists.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::{StoreError, StoreErrorKind};
    /// let e = StoreError::not_found("dead letter 0192");
    /// assert_eq!(e.kind(), StoreErrorKind::NotFound);
    /// assert_eq!(e.to_string(), "not found: dead letter 0192");
    /// ```
    pub fn not_found(what: impl fmt::Display) -> StoreError {
        StoreError::new(StoreErrorKind::NotFound, what.to_string())
    }

    /// A [`StoreErrorKind::Conflict`] error.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::{StoreError, StoreErrorKind};
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
    /// # use syncbus_storage::{StoreError, StoreErrorKind};
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
    /// # use syncbus_storage::StoreError;
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
    /// # use syncbus_storage::{StoreError, StoreErrorKind};
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
    /// # use syncbus_storage::StoreError;
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
            StoreErrorKind::NotFound => "not found",
            StoreErrorKind::Duplicate => "duplicate",
        })
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            // The message says it all ("the store is closed").
            StoreErrorKind::Closed => f.write_str(&self.message),
            _ => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

/// Checks a consumer, member or checkpoint name the way every backend does: not empty, at
/// most 256 bytes (the envelope crate's rule for plain names, so the message has the shape
/// of every bad name's).
///
/// # Errors
///
/// [`StoreErrorKind::Invalid`], saying which name and why; its source is the
/// [`NameError`](syncbus_envelope::NameError).
///
/// # Examples
///
/// ```
/// use syncbus_core::NameKind;
/// use syncbus_storage::check_name;
/// assert!(check_name(NameKind::Consumer, "billing").is_ok());
/// let err = check_name(NameKind::Consumer, "").unwrap_err();
/// assert_eq!(err.to_string(), "invalid input: consumer name is empty");
/// ```
pub fn check_name(kind: NameKind, name: &str) -> Result<(), StoreError> {
    syncbus_envelope::check_plain_name(kind, name)
        .map_err(|e| StoreError::invalid(e.to_string()).with_source(e))
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
