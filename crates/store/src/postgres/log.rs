//! [`EventLog`] on PostgreSQL.
//!
//! # Offsets are commit order
//!
//! A sequence hands out numbers in the order transactions ask, not the order they commit, so
//! a reader could see offset 8 while 7 is still uncommitted and, reading on from 8, miss 7
//! forever. Appends therefore take a transaction-scoped advisory lock before drawing
//! offsets and hold it to commit (the `append_log` function does both in one statement).
//! PostgreSQL makes a commit visible before it releases the transaction's locks, so once
//! offset n is visible every lower offset is visible or rolled back. Appends are short and
//! owned by the store, so serializing them costs one lock hand-off per batch.
//!
//! # Claims
//!
//! A claim is one transaction of two statements. The first enrolls the next unclaimed
//! records as claim rows (`ON CONFLICT DO NOTHING`, so two members enrolling at once agree).
//! The second leases claimable rows with `FOR UPDATE SKIP LOCKED`: a member skips rows
//! another member is leasing at that moment, and a row leased and committed meanwhile is
//! re-checked against `expires <= now()` before it is taken. So a record is leased to one
//! member at a time, across processes.
//!
//! # Acks
//!
//! The `ack_claims` function marks the offsets and advances the committed offset in one
//! statement, under the consumer row's lock.

use std::time::{Duration, SystemTime};

use syncbus_envelope::{Bytes, Envelope};
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

use syncbus_core::NameKind;
use syncbus_storage::check_name;
use syncbus_storage::{Claimed, EventLog, LogRecord, Retention, StoreError, StoreFuture};

use super::error::pg_error;
use super::{decode, encode, from_db, millis, timestamp, to_db, PgStore};

const APPEND: &str = "SELECT append_log($1, $2)";
const READ: &str =
    "SELECT seq, appended_at, envelope FROM log WHERE seq >= $1 ORDER BY seq LIMIT $2";
const HEAD: &str = "SELECT max(seq) FROM log";
const COMMIT: &str = "
    WITH c AS (
        INSERT INTO consumers (name, committed) VALUES ($1, $2)
        ON CONFLICT (name) DO UPDATE SET committed = excluded.committed
    )
    DELETE FROM claims WHERE consumer = $1 AND seq <= $2";
const COMMITTED: &str = "SELECT committed FROM consumers WHERE name = $1";
/// Enrolls up to $2 unclaimed records as fresh claim rows; returns how many it found (a
/// member enrolling the same ones at that moment makes the insert skip them).
const ENROLL: &str = "
    WITH done AS (
        SELECT coalesce((SELECT committed FROM consumers WHERE name = $1), 0) AS seq
    ), candidates AS (
        -- Both scans start above the committed offset: below it lie only the index entries
        -- of deleted claims, which vacuum has perhaps not removed yet.
        SELECT l.seq FROM log l, done
        WHERE l.seq > done.seq
          AND NOT EXISTS (
              SELECT 1 FROM claims k
              WHERE k.consumer = $1 AND k.seq > done.seq AND k.seq = l.seq)
        ORDER BY l.seq
        LIMIT $2
    ), enrolled AS (
        INSERT INTO claims (consumer, seq) SELECT $1, seq FROM candidates
        ON CONFLICT DO NOTHING
    )
    SELECT count(*) FROM candidates";
const CLAIM: &str = "
    WITH picked AS (
        SELECT k.seq FROM claims k
        WHERE k.consumer = $1 AND NOT k.acked AND k.expires <= now()
          AND k.seq > coalesce((SELECT committed FROM consumers WHERE name = $1), 0)
        ORDER BY k.seq
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ), leased AS (
        UPDATE claims k
        SET member = $3, expires = now() + $4::bigint * interval '1 millisecond',
            deliveries = k.deliveries + 1
        FROM picked
        WHERE k.consumer = $1 AND k.seq = picked.seq
        RETURNING k.seq, k.deliveries
    )
    SELECT l.seq, l.appended_at, l.envelope, leased.deliveries
    FROM leased JOIN log l ON l.seq = leased.seq
    ORDER BY l.seq";
const ACK: &str = "SELECT ack_claims($1, $2)";
const RELEASE: &str = "
    UPDATE claims SET member = NULL, expires = now() + $3::bigint * interval '1 millisecond'
    WHERE consumer = $1 AND seq = ANY($2) AND NOT acked";
const EXTEND: &str = "
    UPDATE claims SET expires = now() + $4::bigint * interval '1 millisecond'
    WHERE consumer = $1 AND member = $2 AND seq = ANY($3) AND NOT acked";
const RELEASE_MEMBER: &str = "
    UPDATE claims SET member = NULL, expires = now()
    WHERE consumer = $1 AND member = $2 AND NOT acked AND expires > now()";
const RETAIN_AGE: &str =
    "DELETE FROM log WHERE appended_at < now() - $1::bigint * interval '1 millisecond'";
const RETAIN_COUNT: &str = "
    DELETE FROM log WHERE seq <= (SELECT seq FROM log ORDER BY seq DESC OFFSET $1 LIMIT 1)";
const RETAIN_CLAIMS: &str =
    "DELETE FROM claims k WHERE NOT EXISTS (SELECT 1 FROM log l WHERE l.seq = k.seq)";

/// How many enroll-and-lease rounds one claim makes at most.
const ENROLL_ROUNDS: usize = 8;

fn limit(max: usize) -> i64 {
    i64::try_from(max).unwrap_or(i64::MAX)
}

fn offsets_to_db(offsets: &[u64]) -> Vec<i64> {
    offsets
        .iter()
        .filter_map(|&o| i64::try_from(o).ok())
        .collect()
}

fn record(row: &tokio_postgres::Row) -> Result<LogRecord, StoreError> {
    let seq: i64 = row.get(0);
    let at: SystemTime = row.get(1);
    let bytes: &[u8] = row.get(2);
    Ok(LogRecord {
        offset: from_db(seq)?,
        appended_at: timestamp(at),
        envelope: decode(bytes)?,
    })
}

impl PgStore {
    async fn append_all(&self, envelopes: &[Envelope<Bytes>]) -> Result<Vec<u64>, StoreError> {
        if envelopes.is_empty() {
            return Ok(Vec::new());
        }
        let blobs = envelopes
            .iter()
            .map(encode)
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.inner.pool.get().await?;
        let stmt = conn.prepare(APPEND).await?;
        let rows = conn
            .client
            .query(&stmt, &[&self.inner.append_lock, &blobs])
            .await
            .map_err(|e| pg_error("append", e))?;
        let mut offsets = rows
            .iter()
            .map(|r| from_db(r.get(0)))
            .collect::<Result<Vec<_>, _>>()?;
        // Offsets were drawn in input order; sorting undoes any reordering of RETURNING.
        offsets.sort_unstable();
        Ok(offsets)
    }

    async fn ack_offsets(&self, consumer: &str, offsets: &[u64]) -> Result<(), StoreError> {
        check_name(NameKind::Consumer, consumer)?;
        let offsets = offsets_to_db(offsets);
        let mut conn = self.inner.pool.get().await?;
        let stmt = conn.prepare(ACK).await?;
        conn.client
            .execute(&stmt, &[&consumer, &offsets])
            .await
            .map_err(|e| pg_error("ack", e))?;
        Ok(())
    }
}

impl PgStore {
    /// Acks records for `consumer` on `client`, normally the application's open transaction
    /// on the same database: the handler's effect and the ack then commit or roll back
    /// together, so a crash can never leave the effect without the ack (no redelivery of an
    /// applied event). Same semantics as [`EventLog::ack`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_storage::{DurableConfig, DurableConsumer};
    /// use syncbus_store::{tokio_postgres, PgStore};
    ///
    /// let url = "postgres://postgres@127.0.0.1:5432/app";
    /// let store = PgStore::connect(url).await?;
    /// let consumer = DurableConsumer::open(store.clone(), "totals", DurableConfig::new()).await?;
    /// let (mut app, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    /// tokio::spawn(connection);
    ///
    /// for delivery in consumer.fetch(10, std::time::Duration::ZERO).await? {
    ///     let tx = app.transaction().await?;
    ///     tx.execute("UPDATE totals SET n = n + 1", &[]).await?;
    ///     store.ack_in(&tx, "totals", &[delivery.offset()]).await?;
    ///     tx.commit().await?; // the effect and the ack, together
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](syncbus_storage::StoreErrorKind::Invalid) for an empty name, [`StoreErrorKind::Backend`](syncbus_storage::StoreErrorKind::Backend) for SQL
    /// errors (the caller's transaction is then aborted, as with any failed statement).
    ///
    /// # Cancel safety
    ///
    /// The ack commits or rolls back with the caller's transaction.
    pub async fn ack_in<C: GenericClient>(
        &self,
        client: &C,
        consumer: &str,
        offsets: &[u64],
    ) -> Result<(), StoreError> {
        check_name(NameKind::Consumer, consumer)?;
        let offsets = offsets_to_db(offsets);
        client
            .execute(self.inner.ack_sql.as_str(), &[&consumer, &offsets])
            .await
            .map_err(|e| pg_error("ack", e))?;
        Ok(())
    }
}

impl EventLog for PgStore {
    fn append(&self, envelope: Envelope<Bytes>) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let offsets = self.append_all(std::slice::from_ref(&envelope)).await?;
            offsets
                .first()
                .copied()
                .ok_or_else(|| StoreError::backend("append", "the database returned no offset"))
        })
    }

    fn append_batch(&self, envelopes: Vec<Envelope<Bytes>>) -> StoreFuture<'_, Vec<u64>> {
        Box::pin(async move { self.append_all(&envelopes).await })
    }

    fn read(&self, from: u64, max: usize) -> StoreFuture<'_, Vec<LogRecord>> {
        Box::pin(async move {
            if max == 0 {
                return Ok(Vec::new());
            }
            let mut conn = self.inner.pool.get().await?;
            let stmt = conn.prepare(READ).await?;
            let rows = conn
                .client
                .query(&stmt, &[&to_db(from), &limit(max)])
                .await
                .map_err(|e| pg_error("read", e))?;
            rows.iter().map(record).collect()
        })
    }

    fn head(&self) -> StoreFuture<'_, Option<u64>> {
        Box::pin(async move {
            let mut conn = self.inner.pool.get().await?;
            let stmt = conn.prepare(HEAD).await?;
            let row = conn
                .client
                .query_one(&stmt, &[])
                .await
                .map_err(|e| pg_error("head", e))?;
            row.get::<_, Option<i64>>(0).map(from_db).transpose()
        })
    }

    fn commit<'a>(&'a self, consumer: &'a str, offset: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            check_name(NameKind::Consumer, consumer)?;
            let mut conn = self.inner.pool.get().await?;
            let stmt = conn.prepare(COMMIT).await?;
            conn.client
                .execute(&stmt, &[&consumer, &to_db(offset)])
                .await
                .map_err(|e| pg_error("commit", e))?;
            Ok(())
        })
    }

    fn committed<'a>(&'a self, consumer: &'a str) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            check_name(NameKind::Consumer, consumer)?;
            let mut conn = self.inner.pool.get().await?;
            let stmt = conn.prepare(COMMITTED).await?;
            let row = conn
                .client
                .query_opt(&stmt, &[&consumer])
                .await
                .map_err(|e| pg_error("committed", e))?;
            row.and_then(|r| r.get::<_, Option<i64>>(0))
                .map(from_db)
                .transpose()
        })
    }

    fn claim<'a>(
        &'a self,
        consumer: &'a str,
        member: &'a str,
        max: usize,
        lease: Duration,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        Box::pin(async move {
            check_name(NameKind::Consumer, consumer)?;
            check_name(NameKind::Member, member)?;
            if max == 0 {
                return Ok(Vec::new());
            }
            let mut conn = self.inner.pool.get().await?;
            let enroll = conn.prepare(ENROLL).await?;
            let claim = conn.prepare(CLAIM).await?;
            let mut out = Vec::new();
            // Members claiming at the same moment enroll the same records, and may lease
            // each other's: whoever comes back short goes round again, past them, instead of
            // returning empty-handed while records wait.
            for _ in 0..ENROLL_ROUNDS {
                let need = limit(max - out.len());
                let lease = millis(lease);
                let client = &conn.client;
                let enroll_params: [&(dyn ToSql + Sync); 2] = [&consumer, &need];
                let claim_params: [&(dyn ToSql + Sync); 4] = [&consumer, &need, &member, &lease];
                // One round trip: begin, enroll, lease, commit, sent back to back. A lease
                // lost to a server crash only means an earlier redelivery (at-least-once), so
                // this transaction does not wait for its commit to reach the disk.
                let (_, found, rows, _) = tokio::try_join!(
                    client.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
                    client.query_one(&enroll, &enroll_params),
                    client.query(&claim, &claim_params),
                    client.batch_execute("COMMIT"),
                )
                .map_err(|e| pg_error("claim", e))?;
                let found: i64 = found.get(0);
                for row in &rows {
                    let deliveries: i32 = row.get(3);
                    out.push(Claimed {
                        record: record(row)?,
                        deliveries: u32::try_from(deliveries).unwrap_or(0),
                    });
                }
                // Nothing left to enroll: what is claimable was just leased.
                if out.len() >= max || found == 0 {
                    break;
                }
            }
            out.sort_by_key(|c| c.record.offset);
            Ok(out)
        })
    }

    fn ack<'a>(&'a self, consumer: &'a str, offsets: &'a [u64]) -> StoreFuture<'a, ()> {
        Box::pin(self.ack_offsets(consumer, offsets))
    }

    fn release<'a>(
        &'a self,
        consumer: &'a str,
        offsets: &'a [u64],
        delay: Duration,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            check_name(NameKind::Consumer, consumer)?;
            let mut conn = self.inner.pool.get().await?;
            let stmt = conn.prepare(RELEASE).await?;
            conn.client
                .execute(&stmt, &[&consumer, &offsets_to_db(offsets), &millis(delay)])
                .await
                .map_err(|e| pg_error("release", e))?;
            Ok(())
        })
    }

    fn extend<'a>(
        &'a self,
        consumer: &'a str,
        member: &'a str,
        offsets: &'a [u64],
        lease: Duration,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            check_name(NameKind::Consumer, consumer)?;
            check_name(NameKind::Member, member)?;
            let mut conn = self.inner.pool.get().await?;
            let stmt = conn.prepare(EXTEND).await?;
            conn.client
                .execute(
                    &stmt,
                    &[&consumer, &member, &offsets_to_db(offsets), &millis(lease)],
                )
                .await
                .map_err(|e| pg_error("extend", e))
        })
    }

    fn release_member<'a>(&'a self, consumer: &'a str, member: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            check_name(NameKind::Consumer, consumer)?;
            check_name(NameKind::Member, member)?;
            let mut conn = self.inner.pool.get().await?;
            let stmt = conn.prepare(RELEASE_MEMBER).await?;
            conn.client
                .execute(&stmt, &[&consumer, &member])
                .await
                .map_err(|e| pg_error("release_member", e))
        })
    }

    fn retain(&self, retention: Retention) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut conn = self.inner.pool.get().await?;
            let mut tx = conn.transaction().await?;
            let mut removed = 0;
            if let Some(age) = retention.max_age {
                let stmt = tx.prepare(RETAIN_AGE).await?;
                removed += tx
                    .tx
                    .execute(&stmt, &[&millis(age)])
                    .await
                    .map_err(|e| pg_error("retain", e))?;
            }
            if let Some(max) = retention.max_records {
                let stmt = tx.prepare(RETAIN_COUNT).await?;
                removed += tx
                    .tx
                    .execute(&stmt, &[&to_db(max)])
                    .await
                    .map_err(|e| pg_error("retain", e))?;
            }
            if removed > 0 {
                let stmt = tx.prepare(RETAIN_CLAIMS).await?;
                tx.tx
                    .execute(&stmt, &[])
                    .await
                    .map_err(|e| pg_error("retain", e))?;
            }
            tx.commit().await?;
            Ok(removed)
        })
    }
}
