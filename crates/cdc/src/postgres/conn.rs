//! The connection plumbing both the reader and the snapshot use: connecting, LSN text, and
//! the server's errors as [`CdcError`]s that say what to change.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::error::CdcError;

/// `X/Y` as PostgreSQL prints an LSN.
pub(crate) fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

pub(crate) fn parse_lsn(s: &str) -> Option<u64> {
    let (a, b) = s.split_once('/')?;
    Some((u64::from_str_radix(a, 16).ok()? << 32) | u64::from_str_radix(b, 16).ok()?)
}

pub(super) fn pg_error(action: &str, slot: &str, e: tokio_postgres::Error) -> CdcError {
    let message = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string());
    match e.code() {
        Some(c) if *c == SqlState::OBJECT_IN_USE => CdcError::SlotInUse {
            slot: slot.to_owned(),
            message,
        },
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => CdcError::Permission {
            action: action.to_owned(),
            hint: "logical decoding needs a role with the REPLICATION attribute (ALTER ROLE <role> REPLICATION) or a superuser; a publication needs the tables' owner",
            message,
        },
        Some(c) if *c == SqlState::UNDEFINED_TABLE => CdcError::Invalid(format!("{action}: {message}")),
        _ => CdcError::database(action, e),
    }
}

pub(super) async fn connect(url: &str) -> Result<Client, CdcError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| CdcError::database("connecting", e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "cdc: postgres connection closed");
        }
    });
    Ok(client)
}
