//! [`Outbox`] on PostgreSQL.
//!
//! # Why the relay reads below the transaction horizon
//!
//! Row ids come from a sequence, and sequence order is not commit order: transaction A may
//! take id 7, transaction B id 8, and B commit first. A relay that read "everything after the
//! last id I sent" would send 8 and never see 7 (the outbox gap bug). Marking rows sent
//! instead of keeping a cursor is not enough either when several relays or cursors look at
//! the table, and it would publish B before A's event that was enqueued earlier.
//!
//! So each row records the id of the transaction that wrote it (`pg_current_xact_id()`, an
//! `xid8` that never wraps), and [`Outbox::pending`] returns only rows whose transaction is
//! older than the oldest transaction still running (`pg_snapshot_xmin` of the current
//! snapshot), ordered by (transaction id, row id). Every transaction below that horizon has
//! finished, and every transaction that could still add rows has a larger id than any row
//! returned. So the order the relay publishes in never goes back and nothing can later
//! appear before what was already published; a transaction's events stay together, in
//! enqueue order. The alternative, a lock that serializes every writer from its enqueue to
//! its commit, would make the callers' transactions wait for each other.
//!
//! The cost: between transactions that overlap in time, the order is the order in which they
//! first wrote (took a transaction id), not the order they committed; and a transaction left
//! open anywhere on the server holds the relay back (it delays events, it never loses them).
//! For two transactions changing the same row, the one that writes it first also commits
//! first (the row lock), so their events follow the row's history as long as each writes its
//! business rows before it enqueues: do that, and put an entity version on events whose
//! consumers need per-entity order (the workflow resequence layer then restores it anyway).

use serde::Serialize;
use syncbus_envelope::{Bytes, Envelope, Event};
use tokio_postgres::GenericClient;

use syncbus_storage::{Outbox, OutboxRecord, StoreError, StoreFuture};

use super::error::pg_error;
use super::{decode, encode, from_db, PgStore};

const PENDING: &str = "
    SELECT id, envelope FROM outbox
    WHERE txid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY txid, id
    LIMIT $1";
const MARK_SENT: &str = "DELETE FROM outbox WHERE id = ANY($1)";
/// The log's append lock first, so movers and appends take turns and the rows read next are
/// moved in the order read.
const LOCK_LOG: &str = "SELECT pg_advisory_xact_lock($1)";
const MOVE_PENDING: &str = "
    SELECT id, envelope FROM outbox
    WHERE txid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY txid, id
    LIMIT $1
    FOR UPDATE";
const APPEND: &str = "SELECT append_log($1, $2)";

impl PgStore {
    /// Enqueues `envelope` in the outbox inside the caller's own transaction: it becomes
    /// visible to the relay if and when that transaction commits, and vanishes with it on
    /// rollback. Returns the row id.
    ///
    /// `client` is usually a [`tokio_postgres::Transaction`] on the application's own
    /// connection to the same database (any connection works: this does not use the store's
    /// pool). Use the `tokio_postgres` this crate re-exports, so the types match.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_store::{tokio_postgres, PgStore};
    ///
    /// let url = "postgres://postgres@127.0.0.1:5432/app";
    /// let store = PgStore::connect(url).await?;
    ///
    /// let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    /// tokio::spawn(connection);
    /// let tx = client.transaction().await?;
    /// tx.execute("UPDATE orders SET status = 'paid' WHERE id = 42", &[]).await?;
    /// let meta = Metadata::new(EventType::new("order.paid")?).with_topic(syncbus_envelope::Topic::from_static("orders.paid"));
    /// store.enqueue(&tx, &Envelope::new(meta, Bytes::from_static(b"{\"id\":42}"))).await?;
    /// tx.commit().await?; // the order update and its event commit together
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](syncbus_storage::StoreErrorKind::Invalid) if the envelope has no valid topic (the relay could never
    /// publish it), [`StoreErrorKind::Corrupt`](syncbus_storage::StoreErrorKind::Corrupt) if it cannot be encoded, [`StoreErrorKind::Backend`](syncbus_storage::StoreErrorKind::Backend) if
    /// the insert fails (the caller's transaction is then aborted, as with any failed
    /// statement).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if dropped the row may or may not be inserted, and it commits or
    /// rolls back with the caller's transaction.
    pub async fn enqueue<C: GenericClient>(
        &self,
        client: &C,
        envelope: &Envelope<Bytes>,
    ) -> Result<u64, StoreError> {
        syncbus_storage::check_outbox_topic(envelope)?;
        let bytes = encode(envelope)?;
        let row = client
            .query_one(self.inner.enqueue_sql.as_str(), &[&bytes])
            .await
            .map_err(|e| pg_error("enqueue into the outbox", e))?;
        from_db(row.get(0))
    }

    /// Enqueues the typed `event` through `client` (normally the application's open
    /// transaction): [`enqueue`](Self::enqueue) of its envelope, its payload as JSON, on
    /// the event's topic.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use serde::Serialize;
    /// use syncbus_core::Event;
    /// use syncbus_store::{tokio_postgres, PgStore};
    ///
    /// #[derive(Clone, Debug, Serialize)]
    /// struct Paid { order: u64 }
    /// impl Event for Paid { const TYPE: &'static str = "order.paid"; }
    ///
    /// let url = "postgres://postgres@127.0.0.1:5432/app";
    /// let store = PgStore::connect(url).await?;
    /// let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    /// tokio::spawn(connection);
    /// let tx = client.transaction().await?;
    /// tx.execute("UPDATE orders SET status = 'paid' WHERE id = 42", &[]).await?;
    /// store.enqueue_event(&tx, Paid { order: 42 }).await?;
    /// tx.commit().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Corrupt`](syncbus_storage::StoreErrorKind::Corrupt) if the event does
    /// not serialize, and as [`enqueue`](Self::enqueue).
    pub async fn enqueue_event<C: GenericClient, E: Event + Serialize>(
        &self,
        client: &C,
        event: E,
    ) -> Result<u64, StoreError> {
        let envelope = Envelope::from_event(event)
            .to_bytes_payload()
            .map_err(StoreError::codec)?;
        self.enqueue(client, &envelope).await
    }

    /// Moves up to `max` outbox events into this database's event log, in the order
    /// [`Outbox::pending`] returns them, in one transaction: each event is appended to the
    /// log and deleted from the outbox together, or neither happens. Returns how many moved;
    /// call it until it returns 0 to empty the outbox. Several movers at once take turns.
    ///
    /// This is the durable alternative to [`Relay`](syncbus_storage::Relay): nothing depends
    /// on a subscription being there, and durable consumers of the log get every event,
    /// even those that start later.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_store::PgStore;
    ///
    /// let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
    /// while store.move_outbox_to_log(256).await? > 0 {}
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Backend`](syncbus_storage::StoreErrorKind::Backend) if a statement
    /// fails; the transaction is rolled back, so every event stays in the outbox.
    ///
    /// # Cancel safety
    ///
    /// If dropped before the commit, the transaction rolls back and nothing moves.
    pub async fn move_outbox_to_log(&self, max: usize) -> Result<usize, StoreError> {
        if max == 0 {
            return Ok(0);
        }
        let mut conn = self.inner.pool.get().await?;
        let mut tx = conn.transaction().await?;
        let lock = tx.prepare(LOCK_LOG).await?;
        tx.tx
            .execute(&lock, &[&self.inner.append_lock])
            .await
            .map_err(|e| pg_error("lock the log", e))?;
        let pending = tx.prepare(MOVE_PENDING).await?;
        let rows = tx
            .tx
            .query(&pending, &[&i64::try_from(max).unwrap_or(i64::MAX)])
            .await
            .map_err(|e| pg_error("read the outbox", e))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        // Both tables hold the same binary encoding: the bytes move as they are.
        let blobs: Vec<&[u8]> = rows.iter().map(|r| r.get(1)).collect();
        let append = tx.prepare(APPEND).await?;
        tx.tx
            .query(&append, &[&self.inner.append_lock, &blobs])
            .await
            .map_err(|e| pg_error("append to the log", e))?;
        let delete = tx.prepare(MARK_SENT).await?;
        tx.tx
            .execute(&delete, &[&ids])
            .await
            .map_err(|e| pg_error("delete moved outbox events", e))?;
        tx.commit().await?;
        Ok(ids.len())
    }
}

impl Outbox for PgStore {
    fn pending(&self, max: usize) -> StoreFuture<'_, Vec<OutboxRecord>> {
        Box::pin(async move {
            if max == 0 {
                return Ok(Vec::new());
            }
            let mut conn = self.inner.pool.get().await?;
            let stmt = conn.prepare(PENDING).await?;
            let rows = conn
                .client
                .query(&stmt, &[&i64::try_from(max).unwrap_or(i64::MAX)])
                .await
                .map_err(|e| pg_error("read the outbox", e))?;
            rows.iter()
                .map(|r| {
                    Ok(OutboxRecord {
                        id: from_db(r.get(0))?,
                        envelope: decode(r.get(1))?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
    }

    fn mark_sent<'a>(&'a self, ids: &'a [u64]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let ids: Vec<i64> = ids.iter().filter_map(|&i| i64::try_from(i).ok()).collect();
            if ids.is_empty() {
                return Ok(());
            }
            let mut conn = self.inner.pool.get().await?;
            let stmt = conn.prepare(MARK_SENT).await?;
            conn.client
                .execute(&stmt, &[&ids])
                .await
                .map_err(|e| pg_error("mark outbox events sent", e))?;
            Ok(())
        })
    }
}
