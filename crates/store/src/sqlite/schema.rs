//! Versioned schema migrations, applied in one transaction when a store opens.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use syncbus_storage::StoreError;

/// Every migration, in order; the schema version is the number applied. Append only: a
/// released migration is never edited, so every file converges to the same schema.
///
/// Tables are prefixed `syncbus_` so the store can live inside an application's own
/// database, which the outbox needs (its rows must commit with the business write).
const MIGRATIONS: &[&str] = &[
    // 1: event log, consumer positions and claims, checkpoints, outbox.
    "
    CREATE TABLE syncbus_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        appended_at INTEGER NOT NULL,
        envelope BLOB NOT NULL
    );
    CREATE TABLE syncbus_consumers (
        name TEXT PRIMARY KEY,
        committed INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE syncbus_claims (
        consumer TEXT NOT NULL,
        seq INTEGER NOT NULL,
        member TEXT,
        expires_at INTEGER NOT NULL,
        deliveries INTEGER NOT NULL,
        acked INTEGER NOT NULL,
        PRIMARY KEY (consumer, seq)
    ) WITHOUT ROWID;
    CREATE INDEX syncbus_claims_member ON syncbus_claims (consumer, member);
    CREATE TABLE syncbus_checkpoints (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE syncbus_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        enqueued_at INTEGER NOT NULL,
        envelope BLOB NOT NULL
    );
    ",
    // 2: the workflow stores: dedup keys, dead letters, saga instances.
    "
    CREATE TABLE syncbus_dedup (
        key TEXT PRIMARY KEY,
        state INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX syncbus_dedup_expiry ON syncbus_dedup (expires_at);
    CREATE TABLE syncbus_dead_letters (
        id TEXT PRIMARY KEY,
        envelope BLOB NOT NULL,
        topic TEXT,
        event_type TEXT NOT NULL,
        subscription TEXT NOT NULL,
        handler TEXT NOT NULL,
        error_kind TEXT NOT NULL,
        error_chain TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        first_failure INTEGER NOT NULL,
        last_failure INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX syncbus_dead_letters_time ON syncbus_dead_letters (last_failure, id);
    CREATE INDEX syncbus_dead_letters_subscription ON syncbus_dead_letters (subscription, last_failure);
    CREATE TABLE syncbus_sagas (
        saga TEXT NOT NULL,
        id TEXT NOT NULL,
        status TEXT NOT NULL,
        version INTEGER NOT NULL,
        started INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (saga, id)
    ) WITHOUT ROWID;
    CREATE INDEX syncbus_sagas_status ON syncbus_sagas (saga, status, started);
    ",
];

/// The newest schema version this build knows.
pub(crate) const LATEST: u32 = MIGRATIONS.len() as u32;

/// Brings the schema up to [`LATEST`], or refuses a store written by a newer build.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS syncbus_schema (version INTEGER NOT NULL)")?;
    let found: u32 = tx
        .query_row("SELECT version FROM syncbus_schema", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    if found > LATEST {
        return Ok(found);
    }
    for sql in &MIGRATIONS[found as usize..] {
        tx.execute_batch(sql)?;
    }
    if found == 0 {
        tx.execute("INSERT INTO syncbus_schema (version) VALUES (?1)", [LATEST])?;
    } else if found < LATEST {
        tx.execute("UPDATE syncbus_schema SET version = ?1", [LATEST])?;
    }
    tx.commit()?;
    Ok(found)
}

/// Maps the outcome of [`migrate`] to the store's error.
pub(crate) fn check(found: u32) -> Result<(), StoreError> {
    if found > LATEST {
        return Err(StoreError::newer_schema(found, LATEST));
    }
    Ok(())
}
