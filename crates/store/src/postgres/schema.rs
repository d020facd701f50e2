//! The tables, created and migrated when a store opens.
//!
//! Every migration runs in one transaction under an advisory lock keyed by the schema name,
//! so processes opening the same store at once apply each step exactly once. The applied
//! version is kept in `schema_version`; a store whose version is above [`LATEST`] was
//! written by a newer build and is refused untouched.

use syncbus_storage::StoreError;

use super::error::pg_error;
use super::pool::Conn;

/// Migrations in order; migration `i` brings the schema to version `i + 1`. Never edit one
/// that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: log, consumers, checkpoints, outbox, dedup keys, dead letters, sagas.
    "
    -- The event log. seq is taken under the append lock (see log.rs), so seq order is
    -- commit order and a reader never sees seq n before every lower seq has committed.
    CREATE TABLE log (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        appended_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        envelope bytea NOT NULL
    );
    CREATE INDEX log_appended_at ON log (appended_at);

    -- Appends under a transaction-scoped advisory lock, held to commit: offsets are then
    -- handed out in commit order (see log.rs). One statement, one round trip.
    CREATE FUNCTION append_log(lock_key bigint, envelopes bytea[]) RETURNS SETOF bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
    BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        RETURN QUERY
            INSERT INTO log (envelope)
            SELECT e FROM unnest(envelopes) WITH ORDINALITY AS t(e, n) ORDER BY n
            RETURNING seq;
    END
    $fn$;

    -- Acks: marks the offsets acked and moves the committed offset over the contiguous
    -- acked prefix of the log, under the consumer row's lock (acks of one consumer from
    -- several processes take turns, so none computes the prefix from a stale view).
    -- Returns the committed offset, NULL if the consumer never committed.
    CREATE FUNCTION ack_claims(p_consumer text, p_offsets bigint[]) RETURNS bigint
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
    DECLARE
        done_before bigint;
        done_now bigint;
    BEGIN
        SELECT coalesce(committed, 0) INTO done_before
        FROM consumers WHERE name = p_consumer FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO consumers (name) VALUES (p_consumer) ON CONFLICT (name) DO NOTHING;
            SELECT coalesce(committed, 0) INTO done_before
            FROM consumers WHERE name = p_consumer FOR UPDATE;
        END IF;
        INSERT INTO claims (consumer, seq, acked)
        SELECT p_consumer, l.seq, true FROM log l
        WHERE l.seq = ANY(p_offsets) AND l.seq > done_before
        ON CONFLICT (consumer, seq) DO UPDATE SET acked = true, member = NULL;
        SELECT max(l.seq) INTO done_now FROM log l
        WHERE l.seq > done_before
          AND l.seq < coalesce((
              SELECT g.seq FROM log g
              WHERE g.seq > done_before
                AND NOT EXISTS (
                    SELECT 1 FROM claims k
                    WHERE k.consumer = p_consumer AND k.seq = g.seq AND k.acked)
              ORDER BY g.seq
              LIMIT 1), 9223372036854775807);
        IF done_now IS NOT NULL THEN
            UPDATE consumers SET committed = done_now WHERE name = p_consumer;
            -- Claims at or below done_before are gone already: scanning from the start
            -- would walk the index entries of every claim deleted since the last vacuum.
            DELETE FROM claims
            WHERE consumer = p_consumer AND seq > done_before AND seq <= done_now;
            RETURN done_now;
        END IF;
        RETURN (SELECT committed FROM consumers WHERE name = p_consumer);
    END
    $fn$;

    CREATE TABLE consumers (
        name text PRIMARY KEY,
        committed bigint
    );

    -- One row per record a consumer has claimed or acked above its committed offset.
    -- A fresh claim row has no member and an expired lease.
    CREATE TABLE claims (
        consumer text NOT NULL,
        seq bigint NOT NULL,
        member text,
        expires timestamptz NOT NULL DEFAULT '-infinity',
        deliveries integer NOT NULL DEFAULT 0,
        acked boolean NOT NULL DEFAULT false,
        PRIMARY KEY (consumer, seq)
    );
    CREATE INDEX claims_member ON claims (consumer, member) WHERE member IS NOT NULL;

    CREATE TABLE checkpoints (
        name text PRIMARY KEY,
        value bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );

    -- txid: the writing transaction's id; the relay reads only rows of transactions older
    -- than every transaction still running (see outbox.rs).
    CREATE TABLE outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
        enqueued_at timestamptz NOT NULL DEFAULT now(),
        envelope bytea NOT NULL
    );
    CREATE INDEX outbox_order ON outbox (txid, id);

    -- Dedup keys of the idempotent consumer: in_flight (leased), done or failed, each with
    -- an expiry (the lease, or the time-to-live of the outcome).
    CREATE TABLE dedup_keys (
        key text PRIMARY KEY,
        state text NOT NULL CHECK (state IN ('in_flight', 'done', 'failed')),
        expires timestamptz NOT NULL
    );
    CREATE INDEX dedup_keys_expires ON dedup_keys (expires);

    -- Dead letters; times are unix nanoseconds, exact round trips of Timestamp.
    CREATE TABLE dead_letters (
        id text PRIMARY KEY,
        topic text,
        event_type text NOT NULL,
        subscription text NOT NULL,
        handler text NOT NULL,
        error_kind text NOT NULL,
        error_chain text[] NOT NULL,
        attempts integer NOT NULL,
        first_failure bigint NOT NULL,
        last_failure bigint NOT NULL,
        envelope bytea NOT NULL
    );
    CREATE INDEX dead_letters_order ON dead_letters (last_failure, id);

    -- Saga instances: the whole instance as JSON, plus the columns queries need.
    CREATE TABLE sagas (
        saga text NOT NULL,
        id text NOT NULL,
        status text NOT NULL,
        version bigint NOT NULL,
        started bigint NOT NULL,
        instance jsonb NOT NULL,
        PRIMARY KEY (saga, id)
    );
    CREATE INDEX sagas_status ON sagas (saga, status);
    ",
];

/// The schema version this build writes.
pub(crate) const LATEST: u32 = MIGRATIONS.len() as u32;

/// Creates the schema if needed and applies the migrations it lacks.
///
/// # Errors
///
/// [`StoreErrorKind::Incompatible`](syncbus_storage::StoreErrorKind::Incompatible) when the schema is ahead of this build (nothing is changed);
/// [`StoreErrorKind::Backend`](syncbus_storage::StoreErrorKind::Backend) on SQL errors.
pub(crate) async fn migrate(conn: &mut Conn, schema: &str) -> Result<u32, StoreError> {
    let tx = conn
        .client
        .transaction()
        .await
        .map_err(|e| pg_error("begin migration", e))?;
    // hashtext gives an int4; widening keeps the key stable across versions of this code.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('syncbus-store/' || $1::text)::bigint)",
        &[&schema],
    )
    .await
    .map_err(|e| pg_error("lock the schema for migration", e))?;
    // The schema name is validated (lowercase letters, digits, underscores) and quoted.
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS \"{schema}\".schema_version (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(|e| pg_error("create the schema", e))?;
    let row = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM \"{schema}\".schema_version"),
            &[],
        )
        .await
        .map_err(|e| pg_error("read the schema version", e))?;
    let found: i32 = row.get(0);
    let found = u32::try_from(found).map_err(|_| {
        StoreError::backend(
            "read the schema version",
            format!("negative schema version {found}"),
        )
    })?;
    if found > LATEST {
        return Err(StoreError::newer_schema(found, LATEST));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(&format!("SET LOCAL search_path TO \"{schema}\"; {sql}"))
            .await
            .map_err(|e| pg_error("apply a schema migration", e))?;
        let version = i as i32 + 1;
        tx.execute(
            &format!("INSERT INTO \"{schema}\".schema_version (version) VALUES ($1)"),
            &[&version],
        )
        .await
        .map_err(|e| pg_error("record the schema version", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| pg_error("commit migration", e))?;
    Ok(LATEST)
}

/// Checks a schema name: 1 to 63 bytes of lowercase ASCII letters, digits and underscores,
/// not starting with a digit, and not `pg_`-prefixed (reserved by PostgreSQL).
pub(crate) fn check_schema_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with("pg_")
        && !name.as_bytes()[0].is_ascii_digit()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "schema name {name:?}: use 1 to 63 lowercase letters, digits and underscores, not starting with a digit or pg_"
        )))
    }
}
