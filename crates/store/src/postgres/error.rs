//! Turning driver errors into [`StoreError`]s.

use syncbus_storage::StoreError;

/// A driver error met while doing `op`.
pub(super) fn pg_error(op: &'static str, e: tokio_postgres::Error) -> StoreError {
    if e.is_closed() {
        return StoreError::backend(op, ClosedConnection(e));
    }
    StoreError::backend(op, e)
}

/// A lost connection, with the driver's error as its source.
#[derive(Debug)]
struct ClosedConnection(tokio_postgres::Error);

impl std::fmt::Display for ClosedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the PostgreSQL connection was lost: {}", self.0)
    }
}

impl std::error::Error for ClosedConnection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

pub(super) fn closed() -> StoreError {
    StoreError::closed()
}
