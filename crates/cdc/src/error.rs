//! [`CdcError`]: why setting up or reading a change stream failed, with what to change.

use std::error::Error as StdError;

use syncbus_storage::StoreError;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a CDC reader could not be set up, or stopped reading.
///
/// Each setup error says what to change on the database side.
///
/// # Examples
///
/// ```
/// use syncbus_cdc::CdcError;
///
/// let err = CdcError::WalLevel { found: "replica".into() };
/// assert!(err.to_string().contains("wal_level = logical"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CdcError {
    /// PostgreSQL is not writing logical WAL.
    #[error("wal_level is {found:?}, logical decoding needs wal_level = logical: set it in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart the server")]
    WalLevel {
        /// The server's `wal_level`.
        found: String,
    },
    /// The role may not do what the reader needs.
    #[error("permission denied to {action}: {hint} (server said: {message})")]
    Permission {
        /// What was refused.
        action: String,
        /// What to grant.
        hint: &'static str,
        /// The server's message.
        message: String,
    },
    /// Another connection is reading the replication slot.
    #[error("replication slot {slot:?} is in use by another connection ({message}): stop the other reader, or give this one its own slot (--slot)")]
    SlotInUse {
        /// The slot.
        slot: String,
        /// The server's message.
        message: String,
    },
    /// A setting or a name is not allowed, or the database objects do not match it.
    #[error("invalid cdc setting: {0}")]
    Invalid(String),
    /// The database failed (connection lost, statement refused).
    #[error("database error while {action}")]
    Database {
        /// What the reader was doing.
        action: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A change in the stream did not decode: the reader stops rather than skip it.
    #[error("change at {at} does not decode: {message}")]
    Decode {
        /// Where it is (an LSN, a change table sequence).
        at: String,
        /// What was wrong.
        message: String,
    },
    /// The checkpoint store failed.
    #[error("checkpoint store failed")]
    Checkpoint(#[source] StoreError),
}

impl CdcError {
    pub(crate) fn database(
        action: impl Into<String>,
        e: impl StdError + Send + Sync + 'static,
    ) -> CdcError {
        CdcError::Database {
            action: action.into(),
            source: Box::new(e),
        }
    }
}
