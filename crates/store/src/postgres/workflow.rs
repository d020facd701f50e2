//! The workflow layers' stores on PostgreSQL: [`DedupStore`], [`DeadLetterStore`] and
//! [`SagaStore`].

use std::time::Duration;

use syncbus_core::Pattern;
use syncbus_envelope::Timestamp;
use syncbus_storage::ErrorKind;
use syncbus_storage::{
    Claim, DeadLetterFilter, DeadLetterId, DeadLetterRecord, DeadLetterStore, DedupKey, DedupStore,
    InboxEntry, KeyState, Outcome, SagaInstance, SagaStatus, SagaStore, StoreErrorKind,
    StoreFuture,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

use super::error::pg_error;
use super::{decode, encode, millis, PgStore};
use syncbus_storage::StoreError;

/// A live done or in-flight key answers from a plain read (no row lock, no write, no wait
/// for the disk); otherwise one atomic upsert takes the key if it is new, failed or expired.
const DEDUP_CLAIM: &str = "
    WITH held AS (
        SELECT state FROM dedup_keys
        WHERE key = $1 AND expires > now() AND state <> 'failed'
    ), taken AS (
        INSERT INTO dedup_keys (key, state, expires)
        SELECT $1, 'in_flight', now() + $2::bigint * interval '1 millisecond'
        WHERE NOT EXISTS (SELECT 1 FROM held)
        ON CONFLICT (key) DO UPDATE SET state = 'in_flight', expires = excluded.expires
        WHERE dedup_keys.state = 'failed' OR dedup_keys.expires <= now()
        RETURNING 'acquired'::text AS state
    )
    SELECT state FROM taken
    UNION ALL
    SELECT state FROM held";
/// A live done key stays done (see the trait): only `done` refreshes it.
const DEDUP_FINISH: &str = "
    INSERT INTO dedup_keys (key, state, expires)
    VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
    ON CONFLICT (key) DO UPDATE SET state = excluded.state, expires = excluded.expires
    WHERE excluded.state = 'done' OR dedup_keys.state <> 'done' OR dedup_keys.expires <= now()";
const DEDUP_RENEW: &str = "
    UPDATE dedup_keys SET expires = now() + $2::bigint * interval '1 millisecond'
    WHERE key = $1 AND state = 'in_flight' AND expires > now()";

/// The transactional inbox's write: a key not done (or expired) becomes done; a live done
/// key changes nothing (0 rows: a duplicate). Under READ COMMITTED a concurrent recorder
/// waits for the first one's row lock and then sees its commit.
pub(super) fn record_done_sql(schema: &str) -> String {
    format!(
        "INSERT INTO \"{schema}\".dedup_keys AS k (key, state, expires)
         VALUES ($1, 'done', clock_timestamp() + $2::bigint * interval '1 millisecond')
         ON CONFLICT (key) DO UPDATE SET state = 'done', expires = excluded.expires
         WHERE k.state <> 'done' OR k.expires <= clock_timestamp()"
    )
}
const DEDUP_STATE: &str = "SELECT state FROM dedup_keys WHERE key = $1 AND expires > now()";
const DEDUP_PURGE: &str = "DELETE FROM dedup_keys WHERE expires <= now()";

/// [`DedupStore`] in the store's PostgreSQL schema: processes sharing the schema see each
/// other's claims, and a claim is one atomic `INSERT .. ON CONFLICT .. DO UPDATE .. WHERE`
/// (a free, failed or expired key is taken; of two racing claims exactly one wins). Made by
/// [`PgStore::dedup`]; purge expired keys in the background with
/// [`DedupPurger`](syncbus_storage::DedupPurger).
///
/// # Examples
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use syncbus_store::PgStore;
/// use syncbus_storage::{Claim, DedupKey, DedupStore, Outcome};
///
/// let store = PgStore::connect("postgres://postgres@127.0.0.1/app").await?;
/// let dedup = store.dedup();
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
pub struct PgDedupStore {
    store: PgStore,
}

/// [`DeadLetterStore`] in the store's PostgreSQL schema; every filter, the topic pattern
/// and the limit included, runs in SQL. Made by [`PgStore::dead_letters`].
///
/// # Examples
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use syncbus_core::Pattern;
/// use syncbus_store::PgStore;
/// use syncbus_storage::{DeadLetterFilter, DeadLetterStore};
///
/// let store = PgStore::connect("postgres://postgres@127.0.0.1/app").await?;
/// let filter = DeadLetterFilter::new().topic(Pattern::new("orders.>")?).limit(50);
/// for letter in store.dead_letters().list(&filter).await? {
///     println!("{} failed {} times: {}", letter.id, letter.attempts, letter.error());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct PgDeadLetterStore {
    store: PgStore,
}

/// [`SagaStore`] in the store's PostgreSQL schema, with the optimistic version check done in
/// the `UPDATE`, so two processes saving the same instance cannot both win. Made by
/// [`PgStore::sagas`].
///
/// # Examples
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use syncbus_store::PgStore;
/// use syncbus_storage::SagaStore;
///
/// let store = PgStore::connect("postgres://postgres@127.0.0.1/app").await?;
/// assert!(store.sagas().load("checkout", "order-1").await?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct PgSagaStore {
    store: PgStore,
}

impl PgStore {
    /// This store as the workflow crate's [`DedupStore`].
    ///
    /// # Examples
    ///
    /// See [`PgDedupStore`].
    pub fn dedup(&self) -> PgDedupStore {
        PgDedupStore {
            store: self.clone(),
        }
    }

    /// This store as the workflow crate's [`DeadLetterStore`].
    ///
    /// # Examples
    ///
    /// See [`PgDeadLetterStore`].
    pub fn dead_letters(&self) -> PgDeadLetterStore {
        PgDeadLetterStore {
            store: self.clone(),
        }
    }

    /// This store as the workflow crate's [`SagaStore`].
    ///
    /// # Examples
    ///
    /// See [`PgSagaStore`].
    pub fn sagas(&self) -> PgSagaStore {
        PgSagaStore {
            store: self.clone(),
        }
    }

    /// Marks a delivery's dedup key done through `client`, normally the application's open
    /// transaction on this store's database: the transactional inbox. The handler's effect
    /// and its key then commit together, so a crash after the commit finds the key done and
    /// never runs the handler again, and a crash before it leaves neither. The entry comes
    /// from the workflow context (`Context::inbox`), where the dedup layer put the key it
    /// claimed. Any connection to the database works (this does not use the store's pool);
    /// use the `tokio_postgres` this crate re-exports, so the types match.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use syncbus_storage::{DedupKey, InboxEntry};
    /// use syncbus_store::{tokio_postgres, PgStore};
    ///
    /// let url = "postgres://postgres@127.0.0.1:5432/app";
    /// let store = PgStore::connect(url).await?;
    /// let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    /// tokio::spawn(connection);
    /// let entry = InboxEntry::new(DedupKey::new("billing:payment-81")?, Duration::from_secs(3600));
    /// let tx = client.transaction().await?;
    /// tx.execute("UPDATE accounts SET cents = cents - 1250 WHERE id = 7", &[]).await?;
    /// store.record_done(&tx, &entry).await?;
    /// tx.commit().await?; // the effect and the key, together
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Duplicate`] if the key is done already (another delivery committed
    /// first: roll back; the entry is marked, so the dedup layer acknowledges the delivery
    /// as a duplicate), [`StoreErrorKind::Backend`] if the statement fails (the caller's
    /// transaction is then aborted, as with any failed statement).
    ///
    /// # Cancel safety
    ///
    /// The key commits or rolls back with the caller's transaction.
    pub async fn record_done<C: GenericClient>(
        &self,
        client: &C,
        entry: &InboxEntry,
    ) -> Result<(), StoreError> {
        let n = client
            .execute(
                self.inner.record_done_sql.as_str(),
                &[&entry.key().to_string(), &millis(entry.ttl())],
            )
            .await
            .map_err(|e| pg_error("record a dedup key done", e))?;
        if n == 0 {
            return Err(entry.duplicate_error());
        }
        Ok(())
    }

    async fn run(
        &self,
        op: &'static str,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let mut conn = self.inner.pool.get().await?;
        let stmt = conn.prepare(sql).await?;
        conn.client
            .query(&stmt, params)
            .await
            .map_err(|e| pg_error(op, e))
    }

    async fn exec(
        &self,
        op: &'static str,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let mut conn = self.inner.pool.get().await?;
        let stmt = conn.prepare(sql).await?;
        conn.client
            .execute(&stmt, params)
            .await
            .map_err(|e| pg_error(op, e))
    }
}

fn key_state(s: &str) -> Option<KeyState> {
    match s {
        "in_flight" => Some(KeyState::InFlight),
        "done" => Some(KeyState::Done),
        "failed" => Some(KeyState::Failed),
        _ => None,
    }
}

impl DedupStore for PgDedupStore {
    fn claim<'a>(&'a self, key: &'a DedupKey, lease: Duration) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            let key = key.to_string();
            let rows = self
                .store
                .run("claim a dedup key", DEDUP_CLAIM, &[&key, &millis(lease)])
                .await?;
            let state = rows.first().map(|r| r.get::<_, String>(0));
            Ok(match state.as_deref() {
                Some("acquired") => Claim::Acquired,
                Some("done") => Claim::Duplicate,
                // In flight elsewhere, or claimed by a transaction that committed after this
                // statement's snapshot: someone else holds it.
                _ => Claim::InFlight,
            })
        })
    }

    fn finish<'a>(
        &'a self,
        key: &'a DedupKey,
        outcome: Outcome,
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let key = key.to_string();
            let state = match outcome {
                Outcome::Done => "done",
                Outcome::Failed => "failed",
            };
            self.store
                .exec(
                    "finish a dedup key",
                    DEDUP_FINISH,
                    &[&key, &state, &millis(ttl)],
                )
                .await?;
            Ok(())
        })
    }

    fn renew<'a>(&'a self, key: &'a DedupKey, lease: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let key = key.to_string();
            let n = self
                .store
                .exec("renew a dedup key", DEDUP_RENEW, &[&key, &millis(lease)])
                .await?;
            Ok(n == 1)
        })
    }

    fn state<'a>(&'a self, key: &'a DedupKey) -> StoreFuture<'a, Option<KeyState>> {
        Box::pin(async move {
            let key = key.to_string();
            let rows = self
                .store
                .run("read a dedup key", DEDUP_STATE, &[&key])
                .await?;
            match rows.first() {
                None => Ok(None),
                Some(r) => {
                    let s: String = r.get(0);
                    key_state(&s)
                        .map(Some)
                        .ok_or_else(|| StoreError::corrupt(format!("dedup key state {s:?}")))
                }
            }
        })
    }

    fn purge_expired(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.store
                .exec("purge expired dedup keys", DEDUP_PURGE, &[])
                .await
        })
    }
}

const DL_PUT: &str = "
    INSERT INTO dead_letters (id, topic, event_type, subscription, handler, error_kind,
                              error_chain, attempts, first_failure, last_failure, envelope)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (id) DO UPDATE SET
        topic = excluded.topic, event_type = excluded.event_type,
        subscription = excluded.subscription, handler = excluded.handler,
        error_kind = excluded.error_kind, error_chain = excluded.error_chain,
        attempts = excluded.attempts, first_failure = excluded.first_failure,
        last_failure = excluded.last_failure, envelope = excluded.envelope";
const DL_COLUMNS: &str = "id, subscription, handler, error_kind, error_chain, attempts, \
                          first_failure, last_failure, envelope";
const DL_GET: &str = "
    SELECT id, subscription, handler, error_kind, error_chain, attempts,
           first_failure, last_failure, envelope
    FROM dead_letters WHERE id = $1";
const DL_DELETE: &str = "DELETE FROM dead_letters WHERE id = $1";

fn dead_letter(row: &tokio_postgres::Row) -> Result<DeadLetterRecord, StoreError> {
    let id: String = row.get(0);
    let kind: String = row.get(3);
    let attempts: i32 = row.get(5);
    Ok(DeadLetterRecord {
        id: DeadLetterId::parse(&id)
            .map_err(|e| StoreError::corrupt(format!("dead letter id {id:?}")).with_source(e))?,
        subscription: row.get(1),
        handler: row.get(2),
        error_kind: ErrorKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt(format!("dead letter error kind {kind:?}")))?,
        error_chain: row.get(4),
        attempts: u32::try_from(attempts).unwrap_or(0),
        first_failure: Timestamp::from_unix_nanos(row.get(6)),
        last_failure: Timestamp::from_unix_nanos(row.get(7)),
        envelope: decode(row.get(8))?,
    })
}

/// A POSIX regular expression matching exactly the topics `pattern` matches: `*` is one
/// token, `>` one or more trailing tokens, everything else literal.
fn pattern_regex(pattern: &Pattern) -> String {
    let mut re = String::from("^");
    for (i, token) in pattern.tokens().enumerate() {
        if i > 0 {
            re.push_str("\\.");
        }
        match token {
            "*" => re.push_str("[^.]+"),
            ">" => re.push_str(".+"),
            literal => {
                for c in literal.chars() {
                    if !c.is_ascii_alphanumeric() {
                        re.push('\\');
                    }
                    re.push(c);
                }
            }
        }
    }
    re.push('$');
    re
}

impl DeadLetterStore for PgDeadLetterStore {
    fn put(&self, record: DeadLetterRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let meta = record.envelope.meta();
            let envelope = encode(&record.envelope)?;
            let attempts = i32::try_from(record.attempts).unwrap_or(i32::MAX);
            self.store
                .exec(
                    "store a dead letter",
                    DL_PUT,
                    &[
                        &record.id.to_string(),
                        &meta.topic().map(syncbus_envelope::Topic::as_str),
                        &meta.event_type().as_str(),
                        &record.subscription,
                        &record.handler,
                        &record.error_kind.as_str(),
                        &record.error_chain,
                        &attempts,
                        &record.first_failure.as_unix_nanos(),
                        &record.last_failure.as_unix_nanos(),
                        &envelope,
                    ],
                )
                .await?;
            Ok(())
        })
    }

    fn list<'a>(&'a self, filter: &'a DeadLetterFilter) -> StoreFuture<'a, Vec<DeadLetterRecord>> {
        Box::pin(async move {
            // Every filter runs in SQL, the limit included.
            let mut sql = format!("SELECT {DL_COLUMNS} FROM dead_letters WHERE true");
            let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
            let mut and = |cond: &str, p: Box<dyn ToSql + Sync + Send>| {
                params.push(p);
                let n = params.len();
                sql.push_str(" AND ");
                sql.push_str(&cond.replace('?', &format!("${n}")));
            };
            if let Some(pattern) = &filter.topic {
                and("topic ~ ?", Box::new(pattern_regex(pattern)));
            }
            if let Some(t) = &filter.event_type {
                and("event_type = ?", Box::new(t.clone()));
            }
            if let Some(s) = &filter.subscription {
                and("subscription = ?", Box::new(s.clone()));
            }
            if let Some(text) = &filter.error_contains {
                and(
                    "EXISTS (SELECT 1 FROM unnest(error_chain) e WHERE strpos(e, ?) > 0)",
                    Box::new(text.clone()),
                );
            }
            if let Some(since) = filter.since {
                and("last_failure >= ?", Box::new(since.as_unix_nanos()));
            }
            if let Some(until) = filter.until {
                and("last_failure < ?", Box::new(until.as_unix_nanos()));
            }
            sql.push_str(" ORDER BY last_failure, id COLLATE \"C\"");
            if let Some(n) = filter.limit {
                params.push(Box::new(i64::try_from(n).unwrap_or(i64::MAX)));
                sql.push_str(&format!(" LIMIT ${}", params.len()));
            }
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            let conn = self.store.inner.pool.get().await?;
            let rows = conn
                .client
                .query(sql.as_str(), &refs)
                .await
                .map_err(|e| pg_error("list dead letters", e))?;
            rows.iter().map(dead_letter).collect()
        })
    }

    fn get<'a>(&'a self, id: &'a DeadLetterId) -> StoreFuture<'a, DeadLetterRecord> {
        Box::pin(async move {
            let rows = self
                .store
                .run("read a dead letter", DL_GET, &[&id.to_string()])
                .await?;
            match rows.first() {
                Some(row) => dead_letter(row),
                None => Err(syncbus_storage::dead_letter_not_found(id)),
            }
        })
    }

    fn delete<'a>(&'a self, id: &'a DeadLetterId) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let n = self
                .store
                .exec("delete a dead letter", DL_DELETE, &[&id.to_string()])
                .await?;
            if n > 0 {
                Ok(())
            } else {
                Err(syncbus_storage::dead_letter_not_found(id))
            }
        })
    }
}

const SAGA_CREATE: &str = "
    INSERT INTO sagas (saga, id, status, version, started, instance)
    VALUES ($1, $2, $3, $4, $5, ($6::text)::jsonb)
    ON CONFLICT (saga, id) DO NOTHING";
/// Saves only over the version before this one (optimistic concurrency).
const SAGA_SAVE: &str = "
    UPDATE sagas SET status = $3, version = $4::bigint, started = $5, instance = ($6::text)::jsonb
    WHERE saga = $1 AND id = $2 AND version = $4::bigint - 1";
const SAGA_VERSION: &str = "SELECT version FROM sagas WHERE saga = $1 AND id = $2";
const SAGA_LOAD: &str = "SELECT instance::text FROM sagas WHERE saga = $1 AND id = $2";
const SAGA_LIST: &str = "
    SELECT instance::text FROM sagas
    WHERE saga = $1 AND ($2::text IS NULL OR status = $2)
    ORDER BY started, id COLLATE \"C\"";

fn saga_params(i: &SagaInstance) -> Result<(i64, String), StoreError> {
    let version = i64::try_from(i.version).map_err(|_| {
        StoreError::new(
            StoreErrorKind::Invalid,
            format!(
                "saga {} instance {}: version {} is too large",
                i.saga, i.id, i.version
            ),
        )
    })?;
    let json = serde_json::to_string(i).map_err(|e| {
        StoreError::new(
            StoreErrorKind::Invalid,
            format!("saga {} instance {}", i.saga, i.id),
        )
        .with_source(e)
    })?;
    Ok((version, json))
}

fn saga(row: &tokio_postgres::Row) -> Result<SagaInstance, StoreError> {
    let json: String = row.get(0);
    serde_json::from_str(&json)
        .map_err(|e| StoreError::corrupt("a stored saga instance does not decode").with_source(e))
}

impl PgSagaStore {
    /// Runs `sql` (create or save) with the instance's columns as parameters.
    async fn write(
        &self,
        instance: &SagaInstance,
        op: &'static str,
        sql: &'static str,
    ) -> Result<u64, StoreError> {
        let (version, json) = saga_params(instance)?;
        self.store
            .exec(
                op,
                sql,
                &[
                    &instance.saga,
                    &instance.id,
                    &instance.status.as_str(),
                    &version,
                    &instance.started.as_unix_nanos(),
                    &json,
                ],
            )
            .await
    }
}

impl SagaStore for PgSagaStore {
    fn create<'a>(&'a self, instance: &'a SagaInstance) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let n = self
                .write(instance, "create a saga instance", SAGA_CREATE)
                .await?;
            Ok(n == 1)
        })
    }

    fn save<'a>(&'a self, instance: &'a SagaInstance) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let n = self
                .write(instance, "save a saga instance", SAGA_SAVE)
                .await?;
            if n == 1 {
                return Ok(());
            }
            let rows = self
                .store
                .run(
                    "save a saga instance",
                    SAGA_VERSION,
                    &[&instance.saga, &instance.id],
                )
                .await?;
            Err(match rows.first() {
                None => StoreError::new(
                    StoreErrorKind::Invalid,
                    format!(
                        "saga {} instance {} does not exist",
                        instance.saga, instance.id
                    ),
                ),
                Some(r) => StoreError::conflict(format!(
                    "saga {} instance {} is at version {}, the save expected {}",
                    instance.saga,
                    instance.id,
                    r.get::<_, i64>(0),
                    instance.version.saturating_sub(1)
                )),
            })
        })
    }

    fn load<'a>(
        &'a self,
        saga_name: &'a str,
        id: &'a str,
    ) -> StoreFuture<'a, Option<SagaInstance>> {
        Box::pin(async move {
            let rows = self
                .store
                .run("load a saga instance", SAGA_LOAD, &[&saga_name, &id])
                .await?;
            rows.first().map(saga).transpose()
        })
    }

    fn list<'a>(
        &'a self,
        saga_name: &'a str,
        status: Option<SagaStatus>,
    ) -> StoreFuture<'a, Vec<SagaInstance>> {
        Box::pin(async move {
            let status = status.map(SagaStatus::as_str);
            let rows = self
                .store
                .run("list saga instances", SAGA_LIST, &[&saga_name, &status])
                .await?;
            rows.iter().map(saga).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_regex_follows_nats_rules() {
        let re = |p: &str| pattern_regex(&Pattern::new(p).unwrap());
        assert_eq!(re("orders.created"), "^orders\\.created$");
        assert_eq!(re("orders.*.created"), "^orders\\.[^.]+\\.created$");
        assert_eq!(re("orders.>"), "^orders\\..+$");
        assert_eq!(re("a-b_c"), "^a\\-b\\_c$");
    }
}
