//! [`EventLog`] on SQLite.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use syncbus_envelope::{Bytes, Envelope, Timestamp};

use super::{decode, encode, SqliteError, SqliteStore};
use syncbus_core::NameKind;
use syncbus_storage::check_name;
use syncbus_storage::{Claimed, EventLog, LogRecord, Retention, StoreError, StoreFuture};

fn now_nanos() -> i64 {
    Timestamp::now().as_unix_nanos()
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn seq(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

fn limit(max: usize) -> i64 {
    i64::try_from(max).unwrap_or(i64::MAX)
}

fn insert(conn: &Connection, blob: &[u8], now: i64) -> Result<u64, SqliteError> {
    let mut stmt =
        conn.prepare_cached("INSERT INTO syncbus_log (appended_at, envelope) VALUES (?1, ?2)")?;
    stmt.execute((now, blob))?;
    Ok(conn.last_insert_rowid() as u64)
}

fn committed(conn: &Connection, consumer: &str) -> Result<Option<u64>, SqliteError> {
    let mut stmt =
        conn.prepare_cached("SELECT committed FROM syncbus_consumers WHERE name = ?1")?;
    let found: Option<i64> = stmt.query_row([consumer], |r| r.get(0)).optional()?;
    Ok(found.map(|c| c as u64))
}

fn set_committed(conn: &Connection, consumer: &str, offset: u64) -> Result<(), SqliteError> {
    conn.prepare_cached(
        "INSERT INTO syncbus_consumers (name, committed) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET committed = excluded.committed",
    )?
    .execute((consumer, seq(offset)))?;
    conn.prepare_cached("DELETE FROM syncbus_claims WHERE consumer = ?1 AND seq <= ?2")?
        .execute((consumer, seq(offset)))?;
    Ok(())
}

/// Moves `consumer`'s committed offset over the contiguous acked records after it.
fn advance(conn: &Connection, consumer: &str) -> Result<(), SqliteError> {
    let from = committed(conn, consumer)?.map_or(0, seq);
    let first_open: Option<i64> = conn
        .prepare_cached(
            "SELECT l.seq FROM syncbus_log l
             WHERE l.seq > ?2 AND NOT EXISTS (
                 SELECT 1 FROM syncbus_claims c
                 WHERE c.consumer = ?1 AND c.seq = l.seq AND c.acked = 1)
             ORDER BY l.seq LIMIT 1",
        )?
        .query_row((consumer, from), |r| r.get(0))
        .optional()?;
    let upto: Option<i64> = conn
        .prepare_cached("SELECT MAX(seq) FROM syncbus_log WHERE seq > ?1 AND seq < ?2")?
        .query_row((from, first_open.unwrap_or(i64::MAX)), |r| r.get(0))?;
    if let Some(upto) = upto {
        set_committed(conn, consumer, upto as u64)?;
    }
    Ok(())
}

impl SqliteStore {
    /// Acks records for `consumer` on `conn`, normally the application's open transaction:
    /// the handler's effect and the ack then commit or roll back together, so a crash can
    /// never leave the effect without the ack (no redelivery of an applied event). The
    /// database must be this store's file. Same semantics as [`EventLog::ack`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_storage::{DurableConfig, DurableConsumer, EventLog};
    /// use syncbus_store::SqliteStore;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("app.db");
    /// let store = SqliteStore::open(&path).await?;
    /// let meta = Metadata::new(EventType::new("order.placed").unwrap()).with_topic(syncbus_envelope::Topic::from_static("orders.placed"));
    /// let offset = store.append(Envelope::new(meta, Bytes::from_static(b"7"))).await?;
    /// let consumer = DurableConsumer::open(store.clone(), "totals", DurableConfig::new()).await?;
    /// let batch = consumer.fetch(10, std::time::Duration::ZERO).await?;
    ///
    /// let mut app = rusqlite::Connection::open(&path)?;
    /// app.execute_batch("CREATE TABLE totals (n INTEGER)")?;
    /// let tx = app.transaction()?;
    /// tx.execute("INSERT INTO totals (n) VALUES (7)", [])?;
    /// SqliteStore::ack_in(&tx, "totals", &[batch[0].offset()])?;
    /// tx.commit()?; // the effect and the ack, together
    /// assert_eq!(store.committed("totals").await?, Some(offset));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](syncbus_storage::StoreErrorKind::Invalid) for an empty name, [`StoreErrorKind::Backend`](syncbus_storage::StoreErrorKind::Backend) for SQLite
    /// errors (a missing schema among them).
    pub fn ack_in(conn: &Connection, consumer: &str, offsets: &[u64]) -> Result<(), SqliteError> {
        check_name(NameKind::Consumer, consumer)?;
        let from = committed(conn, consumer)?.map_or(0, seq);
        {
            let mut mark = conn.prepare_cached(
                "INSERT INTO syncbus_claims (consumer, seq, member, expires_at, deliveries, acked)
                 SELECT ?1, seq, NULL, 0, 0, 1 FROM syncbus_log WHERE seq = ?2 AND seq > ?3
                 ON CONFLICT (consumer, seq) DO UPDATE SET acked = 1, member = NULL",
            )?;
            for &offset in offsets {
                mark.execute((consumer, seq(offset), from))?;
            }
        }
        advance(conn, consumer)
    }

    /// Appends `envelope` to the event log on `conn`, normally an open transaction: the
    /// record commits or rolls back with whatever else the transaction writes (a dedup key
    /// recorded with [`record_done`](Self::record_done), say, so an intake's "seen this
    /// request" and "stored its event" are one fact). The database must be this store's
    /// file. Returns the record's offset. Same semantics as [`EventLog::append`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_storage::{DedupKey, EventLog, InboxEntry};
    /// use syncbus_store::{SqliteError, SqliteStore};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = SqliteStore::open(dir.path().join("intake.db")).await?;
    /// let meta = Metadata::new(EventType::new("order.placed").unwrap())
    ///     .with_topic(syncbus_envelope::Topic::from_static("orders.placed"));
    /// let event = Envelope::new(meta, Bytes::from_static(b"{}"));
    /// let seen = InboxEntry::new(DedupKey::new("intake:req-1")?, Duration::from_secs(3600));
    /// let offset = store
    ///     .transaction(move |tx| -> Result<u64, SqliteError> {
    ///         SqliteStore::record_done(tx, &seen)?; // fails for a request seen before
    ///         SqliteStore::append_in(tx, &event)
    ///     })
    ///     .await?;
    /// assert_eq!(store.head().await?, Some(offset));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Corrupt`](syncbus_storage::StoreErrorKind::Corrupt) if the envelope
    /// cannot be encoded, [`StoreErrorKind::Backend`](syncbus_storage::StoreErrorKind::Backend)
    /// for SQLite errors (a missing schema among them).
    pub fn append_in(conn: &Connection, envelope: &Envelope<Bytes>) -> Result<u64, SqliteError> {
        let blob = encode(envelope)?;
        insert(conn, &blob, now_nanos())
    }
}

impl EventLog for SqliteStore {
    fn append(&self, envelope: Envelope<Bytes>) -> StoreFuture<'_, u64> {
        let blob = encode(&envelope);
        self.with_connection(move |conn| insert(conn, &blob?, now_nanos()))
    }

    fn append_batch(&self, envelopes: Vec<Envelope<Bytes>>) -> StoreFuture<'_, Vec<u64>> {
        let blobs: Result<Vec<Vec<u8>>, StoreError> = envelopes.iter().map(encode).collect();
        self.with_connection(move |conn| {
            let blobs = blobs?;
            let now = now_nanos();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let offsets = blobs
                .iter()
                .map(|b| insert(&tx, b, now))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            Ok(offsets)
        })
    }

    fn read(&self, from: u64, max: usize) -> StoreFuture<'_, Vec<LogRecord>> {
        self.with_connection(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, appended_at, envelope FROM syncbus_log
                 WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map((seq(from), limit(max)), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (offset, at, blob) = row?;
                out.push(LogRecord {
                    offset: offset as u64,
                    appended_at: Timestamp::from_unix_nanos(at),
                    envelope: decode(&blob)?,
                });
            }
            Ok(out)
        })
    }

    fn head(&self) -> StoreFuture<'_, Option<u64>> {
        self.with_connection(|conn| {
            let max: Option<i64> =
                conn.query_row("SELECT MAX(seq) FROM syncbus_log", [], |r| r.get(0))?;
            Ok(max.map(|m| m as u64))
        })
    }

    fn commit<'a>(&'a self, consumer: &'a str, offset: u64) -> StoreFuture<'a, ()> {
        let consumer = consumer.to_owned();
        self.with_connection(move |conn| {
            check_name(NameKind::Consumer, &consumer)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            set_committed(&tx, &consumer, offset)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn committed<'a>(&'a self, consumer: &'a str) -> StoreFuture<'a, Option<u64>> {
        let consumer = consumer.to_owned();
        self.with_connection(move |conn| {
            check_name(NameKind::Consumer, &consumer)?;
            committed(conn, &consumer)
        })
    }

    fn claim<'a>(
        &'a self,
        consumer: &'a str,
        member: &'a str,
        max: usize,
        lease: Duration,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        let (consumer, member) = (consumer.to_owned(), member.to_owned());
        self.with_connection(move |conn| {
            check_name(NameKind::Consumer, &consumer)?;
            check_name(NameKind::Member, &member)?;
            // IMMEDIATE takes the write lock before reading, so two processes claiming for
            // one consumer cannot both pick the same free record.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_nanos();
            let from = committed(&tx, &consumer)?.map_or(0, seq);
            let mut picked = Vec::new();
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT l.seq, l.appended_at, l.envelope, COALESCE(c.deliveries, 0)
                     FROM syncbus_log l
                     LEFT JOIN syncbus_claims c ON c.consumer = ?1 AND c.seq = l.seq
                     WHERE l.seq > ?2 AND (c.seq IS NULL OR (c.acked = 0 AND c.expires_at <= ?3))
                     ORDER BY l.seq LIMIT ?4",
                )?;
                let rows = stmt.query_map((&consumer, from, now, limit(max)), |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?;
                for row in rows {
                    picked.push(row?);
                }
            }
            let expires = now.saturating_add(nanos(lease));
            let mut out = Vec::with_capacity(picked.len());
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO syncbus_claims (consumer, seq, member, expires_at, deliveries, acked)
                     VALUES (?1, ?2, ?3, ?4, 1, 0)
                     ON CONFLICT (consumer, seq) DO UPDATE SET
                        member = excluded.member, expires_at = excluded.expires_at,
                        deliveries = deliveries + 1",
                )?;
                for (offset, at, blob, deliveries) in picked {
                    upsert.execute((&consumer, offset, &member, expires))?;
                    out.push(Claimed {
                        record: LogRecord {
                            offset: offset as u64,
                            appended_at: Timestamp::from_unix_nanos(at),
                            envelope: decode(&blob)?,
                        },
                        deliveries: u32::try_from(deliveries + 1).unwrap_or(u32::MAX),
                    });
                }
            }
            tx.commit()?;
            Ok(out)
        })
    }

    fn ack<'a>(&'a self, consumer: &'a str, offsets: &'a [u64]) -> StoreFuture<'a, ()> {
        let consumer = consumer.to_owned();
        let offsets = offsets.to_vec();
        self.with_connection(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            SqliteStore::ack_in(&tx, &consumer, &offsets)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        consumer: &'a str,
        offsets: &'a [u64],
        delay: Duration,
    ) -> StoreFuture<'a, ()> {
        let consumer = consumer.to_owned();
        let offsets = offsets.to_vec();
        self.with_connection(move |conn| {
            check_name(NameKind::Consumer, &consumer)?;
            let until = now_nanos().saturating_add(nanos(delay));
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE syncbus_claims SET member = NULL, expires_at = ?3
                     WHERE consumer = ?1 AND seq = ?2 AND acked = 0",
                )?;
                for offset in offsets {
                    stmt.execute((&consumer, seq(offset), until))?;
                }
            }
            tx.commit()?;
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
        let (consumer, member) = (consumer.to_owned(), member.to_owned());
        let offsets = offsets.to_vec();
        self.with_connection(move |conn| {
            check_name(NameKind::Consumer, &consumer)?;
            check_name(NameKind::Member, &member)?;
            let until = now_nanos().saturating_add(nanos(lease));
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE syncbus_claims SET expires_at = ?4
                     WHERE consumer = ?1 AND member = ?2 AND seq = ?3 AND acked = 0",
                )?;
                for offset in offsets {
                    n += stmt.execute((&consumer, &member, seq(offset), until))? as u64;
                }
            }
            tx.commit()?;
            Ok(n)
        })
    }

    fn release_member<'a>(&'a self, consumer: &'a str, member: &'a str) -> StoreFuture<'a, u64> {
        let (consumer, member) = (consumer.to_owned(), member.to_owned());
        self.with_connection(move |conn| {
            check_name(NameKind::Consumer, &consumer)?;
            check_name(NameKind::Member, &member)?;
            let now = now_nanos();
            let n = conn
                .prepare_cached(
                    "UPDATE syncbus_claims SET member = NULL, expires_at = ?3
                     WHERE consumer = ?1 AND member = ?2 AND acked = 0 AND expires_at > ?3",
                )?
                .execute((&consumer, &member, now))?;
            Ok(n as u64)
        })
    }

    fn retain(&self, retention: Retention) -> StoreFuture<'_, u64> {
        self.with_connection(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut removed = 0;
            if let Some(age) = retention.max_age {
                let cutoff = now_nanos().saturating_sub(nanos(age));
                removed +=
                    tx.execute("DELETE FROM syncbus_log WHERE appended_at < ?1", [cutoff])?;
            }
            if let Some(max) = retention.max_records {
                removed += tx.execute(
                    "DELETE FROM syncbus_log WHERE seq <= (
                         SELECT seq FROM syncbus_log ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
                    [i64::try_from(max).unwrap_or(i64::MAX)],
                )?;
            }
            tx.commit()?;
            Ok(removed as u64)
        })
    }
}
