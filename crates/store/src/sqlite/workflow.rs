//! The workflow crate's store traits on SQLite: dedup keys, dead letters, saga instances.

use std::time::Duration;

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use syncbus_core::Pattern;
use syncbus_envelope::Timestamp;
use syncbus_storage::ErrorKind;
use syncbus_storage::{
    Claim, DeadLetterFilter, DeadLetterId, DeadLetterRecord, DeadLetterStore, DedupKey, DedupStore,
    InboxEntry, KeyState, Outcome, SagaInstance, SagaStatus, SagaStore, StoreErrorKind,
};

use super::{decode, encode, SqliteError, SqliteStore};
use syncbus_storage::{dead_letter_not_found, StoreError, StoreFuture};

const IN_FLIGHT: i64 = 0;
const DONE: i64 = 1;
const FAILED: i64 = 2;

fn now() -> i64 {
    Timestamp::now().as_unix_nanos()
}

fn after(d: Duration) -> i64 {
    now().saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn corrupt(what: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::codec(format!("{what}: {}", e.into()))
}

/// Registers `syncbus_topic_matches(pattern, topic)`, so dead-letter topic filters with
/// wildcards run inside SQL (and `LIMIT` stays exact).
pub(super) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "syncbus_topic_matches",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let pattern: String = ctx.get(0)?;
            let topic: Option<String> = ctx.get(1)?;
            Ok(match (Pattern::new(pattern), topic) {
                (Ok(p), Some(t)) => p.matches_str(&t),
                _ => false,
            })
        },
    )
}

/// [`DedupStore`] in the store's SQLite file: keys survive restarts, and several processes
/// sharing the file see each other's claims. Made by [`SqliteStore::dedup`].
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use syncbus_store::SqliteStore;
/// use syncbus_storage::{Claim, DedupKey, DedupStore, Outcome};
///
/// let dir = tempfile::tempdir().unwrap();
/// let dedup = SqliteStore::open(dir.path().join("s.db")).await?.dedup();
/// let key = DedupKey::new("payment-81")?;
/// let minute = Duration::from_secs(60);
/// assert_eq!(dedup.claim(&key, minute).await?, Claim::Acquired);
/// assert_eq!(dedup.claim(&key, minute).await?, Claim::InFlight);
/// dedup.finish(&key, Outcome::Done, minute).await?;
/// assert_eq!(dedup.claim(&key, minute).await?, Claim::Duplicate);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SqliteDedupStore {
    store: SqliteStore,
}

/// [`DeadLetterStore`] in the store's SQLite file; filters run in SQL. Made by
/// [`SqliteStore::dead_letters`].
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use syncbus_store::SqliteStore;
/// use syncbus_storage::{DeadLetterFilter, DeadLetterStore};
///
/// let dir = tempfile::tempdir().unwrap();
/// let letters = SqliteStore::open(dir.path().join("s.db")).await?.dead_letters();
/// assert!(letters.list(&DeadLetterFilter::new()).await?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SqliteDeadLetterStore {
    store: SqliteStore,
}

/// [`SagaStore`] in the store's SQLite file, with the optimistic version check done in the
/// `UPDATE`. Made by [`SqliteStore::sagas`].
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use syncbus_store::SqliteStore;
/// use syncbus_storage::SagaStore;
///
/// let dir = tempfile::tempdir().unwrap();
/// let sagas = SqliteStore::open(dir.path().join("s.db")).await?.sagas();
/// assert!(sagas.load("checkout", "order-1").await?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SqliteSagaStore {
    store: SqliteStore,
}

impl SqliteStore {
    /// This store as the workflow crate's [`DedupStore`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_storage::DedupStore;
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = syncbus_store::SqliteStore::open(dir.path().join("s.db")).await?;
    /// let shared: Arc<dyn DedupStore> = Arc::new(store.dedup());
    /// # let _ = shared;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn dedup(&self) -> SqliteDedupStore {
        SqliteDedupStore {
            store: self.clone(),
        }
    }

    /// This store as the workflow crate's [`DeadLetterStore`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_storage::DeadLetterStore;
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = syncbus_store::SqliteStore::open(dir.path().join("s.db")).await?;
    /// let shared: Arc<dyn DeadLetterStore> = Arc::new(store.dead_letters());
    /// # let _ = shared;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn dead_letters(&self) -> SqliteDeadLetterStore {
        SqliteDeadLetterStore {
            store: self.clone(),
        }
    }

    /// This store as the workflow crate's [`SagaStore`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use syncbus_storage::SagaStore;
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = syncbus_store::SqliteStore::open(dir.path().join("s.db")).await?;
    /// let shared: Arc<dyn SagaStore> = Arc::new(store.sagas());
    /// # let _ = shared;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn sagas(&self) -> SqliteSagaStore {
        SqliteSagaStore {
            store: self.clone(),
        }
    }
}

impl SqliteStore {
    /// Marks a delivery's dedup key done on `conn`, which must be the application's open
    /// transaction on this store's database (a `rusqlite::Transaction` derefs to a
    /// `Connection`; [`with_connection`](SqliteStore::with_connection) hands out the
    /// store's own): the transactional inbox. The handler's effect and its key then commit
    /// together, so a crash after the commit finds the key done and never runs the handler
    /// again, and a crash before it leaves neither. The entry comes from the workflow
    /// context (`Context::inbox`), where the dedup layer put the key it claimed.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use syncbus_storage::{Claim, DedupKey, DedupStore, InboxEntry, StoreErrorKind};
    /// use syncbus_store::SqliteStore;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = SqliteStore::open(dir.path().join("shop.db")).await?;
    /// let entry = InboxEntry::new(DedupKey::new("billing:payment-81")?, Duration::from_secs(3600));
    /// let e = entry.clone();
    /// store
    ///     .with_connection(move |conn| {
    ///         conn.execute_batch("CREATE TABLE IF NOT EXISTS ledger (cents INTEGER)")?;
    ///         let tx = conn.transaction()?;
    ///         tx.execute("INSERT INTO ledger (cents) VALUES (?1)", [1250])?;
    ///         SqliteStore::record_done(&tx, &e)?; // the effect and the key, together
    ///         tx.commit()?;
    ///         Ok(())
    ///     })
    ///     .await?;
    /// let minute = Duration::from_secs(60);
    /// assert_eq!(store.dedup().claim(entry.key(), minute).await?, Claim::Duplicate);
    ///
    /// // Recording a done key again fails, and marks the delivery a duplicate.
    /// let again = entry.clone();
    /// let err = store
    ///     .with_connection(move |conn| {
    ///         let tx = conn.transaction()?;
    ///         SqliteStore::record_done(&tx, &again)?;
    ///         tx.commit()?;
    ///         Ok(())
    ///     })
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), StoreErrorKind::Duplicate);
    /// assert!(entry.is_duplicate());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Duplicate`] if the key is done already (another delivery committed
    /// first: roll back; the entry is marked, so the dedup layer acknowledges the delivery
    /// as a duplicate), [`StoreErrorKind::Invalid`] outside a transaction (the key would not
    /// commit with the effect), [`StoreErrorKind::Backend`] for SQLite errors.
    pub fn record_done(conn: &Connection, entry: &InboxEntry) -> Result<(), SqliteError> {
        if conn.is_autocommit() {
            return Err(StoreError::new(
                StoreErrorKind::Invalid,
                "record_done needs an open transaction: the key must commit with the effect",
            )
            .into());
        }
        let at = now();
        let ttl = i64::try_from(entry.ttl().as_nanos()).unwrap_or(i64::MAX);
        let n = conn
            .prepare_cached(
                "INSERT INTO syncbus_dedup (key, state, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET state = ?2, expires_at = ?3
                 WHERE syncbus_dedup.state <> ?2 OR syncbus_dedup.expires_at <= ?4",
            )?
            .execute((entry.key().to_string(), DONE, at.saturating_add(ttl), at))?;
        if n == 0 {
            return Err(entry.duplicate_error().into());
        }
        Ok(())
    }
}

fn key_state(conn: &Connection, key: &str, at: i64) -> Result<Option<i64>, SqliteError> {
    Ok(conn
        .prepare_cached("SELECT state FROM syncbus_dedup WHERE key = ?1 AND expires_at > ?2")?
        .query_row((key, at), |r| r.get(0))
        .optional()?)
}

impl DedupStore for SqliteDedupStore {
    fn claim<'a>(&'a self, key: &'a DedupKey, lease: Duration) -> StoreFuture<'a, Claim> {
        let key = key.to_string();
        // The common duplicate needs no write lock and no trip to the connection thread: a
        // live Done key stays done until it expires, whatever another writer does meanwhile.
        if self.store.try_read(|conn| key_state(conn, &key, now())) == Some(Some(DONE)) {
            return Box::pin(std::future::ready(Ok(Claim::Duplicate)));
        }
        self.store.with_connection(move |conn| {
            if key_state(conn, &key, now())? == Some(DONE) {
                return Ok(Claim::Duplicate);
            }
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let at = now();
            // Free means: unknown, expired, or failed last time.
            let taken = tx
                .prepare_cached(
                    "INSERT INTO syncbus_dedup (key, state, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET state = ?2, expires_at = ?3
                     WHERE syncbus_dedup.expires_at <= ?4 OR syncbus_dedup.state = ?5",
                )?
                .execute((&key, IN_FLIGHT, after(lease), at, FAILED))?;
            let claim = if taken == 1 {
                Claim::Acquired
            } else if key_state(&tx, &key, at)? == Some(DONE) {
                Claim::Duplicate
            } else {
                Claim::InFlight
            };
            tx.commit()?;
            Ok(claim)
        })
    }

    fn finish<'a>(
        &'a self,
        key: &'a DedupKey,
        outcome: Outcome,
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        let key = key.to_string();
        let state = match outcome {
            Outcome::Done => DONE,
            Outcome::Failed => FAILED,
        };
        self.store.with_connection(move |conn| {
            // A live done key stays done (see the trait): only `Done` refreshes it.
            conn.prepare_cached(
                "INSERT INTO syncbus_dedup (key, state, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET state = ?2, expires_at = ?3
                 WHERE ?2 = ?4 OR syncbus_dedup.state <> ?4 OR syncbus_dedup.expires_at <= ?5",
            )?
            .execute((&key, state, after(ttl), DONE, now()))?;
            Ok(())
        })
    }

    fn renew<'a>(&'a self, key: &'a DedupKey, lease: Duration) -> StoreFuture<'a, bool> {
        let key = key.to_string();
        self.store.with_connection(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE syncbus_dedup SET expires_at = ?2
                     WHERE key = ?1 AND state = ?3 AND expires_at > ?4",
                )?
                .execute((&key, after(lease), IN_FLIGHT, now()))?;
            Ok(n == 1)
        })
    }

    fn state<'a>(&'a self, key: &'a DedupKey) -> StoreFuture<'a, Option<KeyState>> {
        let key = key.to_string();
        self.store.with_connection(move |conn| {
            Ok(match key_state(conn, &key, now())? {
                None => None,
                Some(IN_FLIGHT) => Some(KeyState::InFlight),
                Some(DONE) => Some(KeyState::Done),
                Some(_) => Some(KeyState::Failed),
            })
        })
    }

    fn purge_expired(&self) -> StoreFuture<'_, u64> {
        self.store.with_connection(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM syncbus_dedup WHERE expires_at <= ?1")?
                .execute([now()])?;
            Ok(n as u64)
        })
    }
}

type DeadLetterRow = (
    String,
    Vec<u8>,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
);

fn dead_letter_from_row(row: DeadLetterRow) -> Result<DeadLetterRecord, StoreError> {
    let (id, blob, subscription, handler, kind, chain, attempts, first, last) = row;
    Ok(DeadLetterRecord {
        id: DeadLetterId::parse(&id).map_err(|e| corrupt("dead letter id", e))?,
        envelope: decode(&blob)?,
        subscription,
        handler,
        error_kind: ErrorKind::parse(&kind)
            .ok_or_else(|| corrupt("dead letter error kind", kind.clone()))?,
        error_chain: serde_json::from_str(&chain)
            .map_err(|e| corrupt("dead letter error chain", e))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        first_failure: Timestamp::from_unix_nanos(first),
        last_failure: Timestamp::from_unix_nanos(last),
    })
}

const DEAD_LETTER_COLUMNS: &str = "id, envelope, subscription, handler, error_kind, error_chain, \
     attempts, first_failure, last_failure";

fn read_dead_letters(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<DeadLetterRecord>, SqliteError> {
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(dead_letter_from_row(row?)?);
    }
    Ok(out)
}

impl DeadLetterStore for SqliteDeadLetterStore {
    fn put(&self, record: DeadLetterRecord) -> StoreFuture<'_, ()> {
        let encoded = encode(&record.envelope);
        let chain = serde_json::to_string(&record.error_chain);
        self.store.with_connection(move |conn| {
            let chain = chain.map_err(StoreError::codec)?;
            let meta = record.envelope.meta();
            conn.prepare_cached(
                "INSERT OR REPLACE INTO syncbus_dead_letters
                 (id, envelope, topic, event_type, subscription, handler, error_kind,
                  error_chain, attempts, first_failure, last_failure)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(rusqlite::params![
                record.id.to_string(),
                encoded?,
                meta.topic().map(syncbus_envelope::Topic::as_str),
                meta.event_type().as_str(),
                record.subscription,
                record.handler,
                record.error_kind.as_str(),
                chain,
                record.attempts,
                record.first_failure.as_unix_nanos(),
                record.last_failure.as_unix_nanos(),
            ])?;
            Ok(())
        })
    }

    fn list<'a>(&'a self, filter: &'a DeadLetterFilter) -> StoreFuture<'a, Vec<DeadLetterRecord>> {
        let topic = filter.topic.as_ref().map(|p| p.as_str().to_owned());
        let event_type = filter.event_type.clone();
        let subscription = filter.subscription.clone();
        let error = filter.error_contains.clone();
        let since = filter.since.map(Timestamp::as_unix_nanos);
        let until = filter.until.map(Timestamp::as_unix_nanos);
        let limit = filter
            .limit
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        self.store.with_connection(move |conn| {
            let sql = format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM syncbus_dead_letters
                 WHERE (?1 IS NULL OR syncbus_topic_matches(?1, topic))
                   AND (?2 IS NULL OR event_type = ?2)
                   AND (?3 IS NULL OR subscription = ?3)
                   AND (?4 IS NULL OR EXISTS (
                        SELECT 1 FROM json_each(error_chain) WHERE instr(value, ?4) > 0))
                   AND (?5 IS NULL OR last_failure >= ?5)
                   AND (?6 IS NULL OR last_failure < ?6)
                 ORDER BY last_failure, id LIMIT ?7"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            read_dead_letters(
                &mut stmt,
                (topic, event_type, subscription, error, since, until, limit),
            )
        })
    }

    fn get<'a>(&'a self, id: &'a DeadLetterId) -> StoreFuture<'a, DeadLetterRecord> {
        let id = id.clone();
        self.store.with_connection(move |conn| {
            let sql =
                format!("SELECT {DEAD_LETTER_COLUMNS} FROM syncbus_dead_letters WHERE id = ?1");
            let mut stmt = conn.prepare_cached(&sql)?;
            read_dead_letters(&mut stmt, [id.to_string()])?
                .pop()
                .ok_or_else(|| dead_letter_not_found(&id).into())
        })
    }

    fn delete<'a>(&'a self, id: &'a DeadLetterId) -> StoreFuture<'a, ()> {
        let id = id.clone();
        self.store.with_connection(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM syncbus_dead_letters WHERE id = ?1")?
                .execute([id.to_string()])?;
            if n > 0 {
                Ok(())
            } else {
                Err(dead_letter_not_found(&id).into())
            }
        })
    }
}

fn saga_from_body(body: &str) -> Result<SagaInstance, StoreError> {
    serde_json::from_str(body).map_err(|e| corrupt("saga instance", e))
}

impl SagaStore for SqliteSagaStore {
    fn create<'a>(&'a self, instance: &'a SagaInstance) -> StoreFuture<'a, bool> {
        let instance = instance.clone();
        self.store.with_connection(move |conn| {
            let body = serde_json::to_string(&instance).map_err(StoreError::codec)?;
            let n = conn
                .prepare_cached(
                    "INSERT INTO syncbus_sagas (saga, id, status, version, started, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (saga, id) DO NOTHING",
                )?
                .execute(rusqlite::params![
                    instance.saga,
                    instance.id,
                    instance.status.as_str(),
                    i64::try_from(instance.version).unwrap_or(i64::MAX),
                    instance.started.as_unix_nanos(),
                    body,
                ])?;
            Ok(n == 1)
        })
    }

    fn save<'a>(&'a self, instance: &'a SagaInstance) -> StoreFuture<'a, ()> {
        let instance = instance.clone();
        Box::pin(async move {
            let outcome = self
                .store
                .with_connection(move |conn| {
                    let body = serde_json::to_string(&instance).map_err(StoreError::codec)?;
                    let version = i64::try_from(instance.version).unwrap_or(i64::MAX);
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let n = tx
                        .prepare_cached(
                            "UPDATE syncbus_sagas SET status = ?3, version = ?4, body = ?5
                             WHERE saga = ?1 AND id = ?2 AND version = ?4 - 1",
                        )?
                        .execute(rusqlite::params![
                            instance.saga,
                            instance.id,
                            instance.status.as_str(),
                            version,
                            body
                        ])?;
                    let stored: Option<i64> = if n == 1 {
                        None
                    } else {
                        tx.prepare_cached(
                            "SELECT version FROM syncbus_sagas WHERE saga = ?1 AND id = ?2",
                        )?
                        .query_row((&instance.saga, &instance.id), |r| r.get(0))
                        .optional()?
                        .or(Some(-1))
                    };
                    tx.commit()?;
                    Ok((n, stored, instance))
                })
                .await?;
            match outcome {
                (1, _, _) => Ok(()),
                (_, Some(-1), i) => Err(StoreError::new(
                    StoreErrorKind::Invalid,
                    format!("saga {} instance {} does not exist", i.saga, i.id),
                )),
                (_, stored, i) => Err(StoreError::conflict(format!(
                    "saga {} instance {} is at version {}, the save expected {}",
                    i.saga,
                    i.id,
                    stored.unwrap_or_default(),
                    i.version.saturating_sub(1)
                ))),
            }
        })
    }

    fn load<'a>(&'a self, saga: &'a str, id: &'a str) -> StoreFuture<'a, Option<SagaInstance>> {
        let (saga, id) = (saga.to_owned(), id.to_owned());
        self.store.with_connection(move |conn| {
            let body: Option<String> = conn
                .prepare_cached("SELECT body FROM syncbus_sagas WHERE saga = ?1 AND id = ?2")?
                .query_row((&saga, &id), |r| r.get(0))
                .optional()?;
            Ok(body.as_deref().map(saga_from_body).transpose()?)
        })
    }

    fn list<'a>(
        &'a self,
        saga: &'a str,
        status: Option<SagaStatus>,
    ) -> StoreFuture<'a, Vec<SagaInstance>> {
        let saga = saga.to_owned();
        let status = status.map(SagaStatus::as_str);
        self.store.with_connection(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT body FROM syncbus_sagas
                 WHERE saga = ?1 AND (?2 IS NULL OR status = ?2)
                 ORDER BY started, id",
            )?;
            let rows = stmt.query_map((&saga, status), |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for body in rows {
                out.push(saga_from_body(&body?)?);
            }
            Ok(out)
        })
    }
}
