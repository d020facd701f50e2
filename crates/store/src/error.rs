//! The one error type of the storage traits.

use std::error::Error;
use std::fmt;
use std::path::PathBuf;

/// Why a storage operation failed.
///
/// Every backend reports through this type, so code holding an `Arc<dyn EventLog>` handles
/// memory, SQLite and PostgreSQL failures alike.
///
/// # Examples
///
/// ```
/// use syncbus_store::StoreError;
///
/// let e = StoreError::NewerSchema { found: 9, supported: 1 };
/// assert_eq!(
///     e.to_string(),
///     "the store was written by a newer syncbus (schema version 9, this build knows up to 1)"
/// );
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The file exists but is not a database this backend can read (not SQLite, or corrupt).
    Unreadable {
        /// The file that was opened.
        path: PathBuf,
        /// What the backend said.
        source: Box<dyn Error + Send + Sync>,
    },
    /// The store was written by a newer version of syncbus; this build will not touch it.
    NewerSchema {
        /// The schema version found in the store.
        found: u32,
        /// The newest schema version this build knows.
        supported: u32,
    },
    /// A stored envelope could not be encoded or decoded.
    Codec(Box<dyn Error + Send + Sync>),
    /// An argument was rejected before reaching the backend (an empty consumer name...).
    InvalidInput(String),
    /// The backend failed: I/O, locking, a constraint, a lost connection.
    Backend {
        /// What the store was doing.
        op: &'static str,
        /// The backend's error.
        source: Box<dyn Error + Send + Sync>,
    },
    /// The store has been closed (its connection thread is gone).
    Closed,
}

impl StoreError {
    /// A backend error raised while doing `op`.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_store::StoreError;
    ///
    /// let io = std::io::Error::other("disk full");
    /// let e = StoreError::backend("append", io);
    /// assert_eq!(e.to_string(), "store backend failed during append: disk full");
    /// ```
    pub fn backend(op: &'static str, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        StoreError::Backend {
            op,
            source: source.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unreadable { path, source } => write!(
                f,
                "cannot read store file {}: {source} (not a database, or corrupt)",
                path.display()
            ),
            StoreError::NewerSchema { found, supported } => write!(
                f,
                "the store was written by a newer syncbus (schema version {found}, this build knows up to {supported})"
            ),
            StoreError::Codec(e) => write!(f, "stored envelope codec error: {e}"),
            StoreError::InvalidInput(what) => write!(f, "invalid input: {what}"),
            StoreError::Backend { op, source } => {
                write!(f, "store backend failed during {op}: {source}")
            }
            StoreError::Closed => f.write_str("the store is closed"),
        }
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            StoreError::Unreadable { source, .. }
            | StoreError::Codec(source)
            | StoreError::Backend { source, .. } => Some(&**source),
            StoreError::NewerSchema { .. } | StoreError::InvalidInput(_) | StoreError::Closed => {
                None
            }
        }
    }
}

impl From<StoreError> for syncbus_workflow::store::StoreError {
    /// The workflow layers' view of a storage failure: same message, same source, the
    /// closest kind.
    fn from(e: StoreError) -> Self {
        use syncbus_workflow::store::{StoreError as W, StoreErrorKind as K};
        let kind = match &e {
            StoreError::Unreadable { .. } | StoreError::Codec(_) => K::Corrupt,
            StoreError::NewerSchema { .. } => K::Incompatible,
            StoreError::InvalidInput(_) => K::Invalid,
            StoreError::Closed => K::Closed,
            _ => K::Backend,
        };
        W::new(kind, e.to_string()).with_source(e)
    }
}

/// Checks a consumer, member or checkpoint name: not empty, at most 256 bytes (the
/// envelope crate's plain-name rule, so the message has the shape of every bad name's).
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), StoreError> {
    use syncbus_envelope::NameKind;
    let kind = match kind {
        "member" => NameKind::Member,
        "checkpoint" => NameKind::Checkpoint,
        _ => NameKind::Consumer,
    };
    syncbus_envelope::check_plain_name(kind, name)
        .map_err(|e| StoreError::InvalidInput(e.to_string()))
}
