//! The PostgreSQL backend: one database shared by several processes.
//!
//! Files: `pool` (connections), `schema` (migrations), `log` (event log and consumer
//! claims), `outbox`, `checkpoint`, `workflow` (dedup keys, dead letters, sagas).

mod checkpoint;
mod error;
mod log;
mod outbox;
mod pool;
mod schema;
mod workflow;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use syncbus_envelope::{Binary, Bytes, Envelope, Limits, Timestamp};
use tokio_postgres::Config;

use syncbus_storage::StoreError;

use self::pool::Pool;
pub use self::workflow::{PgDeadLetterStore, PgDedupStore, PgSagaStore};

/// A store in a PostgreSQL database, shared by every process that opens the same schema.
///
/// It implements [`EventLog`](syncbus_storage::EventLog), [`Checkpoints`](syncbus_storage::Checkpoints) and
/// [`Outbox`](syncbus_storage::Outbox); [`dedup`](Self::dedup), [`dead_letters`](Self::dead_letters)
/// and [`sagas`](Self::sagas) give the workflow layers' stores on the same schema. Clones
/// share one connection pool. Needs PostgreSQL 13 or newer.
///
/// # Opening and schema versions
///
/// All tables live in one schema ([`PgStore::DEFAULT_SCHEMA`] unless
/// [`PgStoreBuilder::schema`] says otherwise), created if missing. Opening applies the
/// migrations this build lacks, in one transaction under an advisory lock, so processes
/// opening at once migrate once. A schema written by a newer build is refused untouched with
/// [`StoreErrorKind::Incompatible`](syncbus_storage::StoreErrorKind::Incompatible).
///
/// # Log offsets and consumer groups
///
/// Appends draw offsets under a transaction-scoped advisory lock, so offset order is commit
/// order: once a reader sees offset n, every lower offset is visible or was rolled back, and
/// reading on from an offset never skips a late commit. Consumers claim records with
/// `FOR UPDATE SKIP LOCKED` under a lease: members of one consumer in any number of
/// processes never hold the same record at once, a killed member's records come back when
/// its lease expires (or at once when it restarts with the same member name), and the
/// committed offset advances over the contiguous acked prefix.
///
/// # Outbox
///
/// [`enqueue`](Self::enqueue) joins the caller's own transaction. The relay's
/// [`pending`](syncbus_storage::Outbox::pending) returns only events of transactions older than every
/// transaction still running, ordered by transaction id then row id, so it never hands out an
/// event while an older transaction could still add one before it (the outbox gap). Events
/// of one transaction stay together; a transaction left open on the server delays the relay,
/// it never loses events. Run one relay per outbox: two relays would both publish each
/// event (at-least-once, never lost).
///
/// # Connections
///
/// At most [`pool_size`](PgStoreBuilder::pool_size) connections, opened on demand, each with
/// its statements prepared once. A connection that broke is dropped and replaced on the
/// next call; the call that met the failure returns [`StoreErrorKind::Backend`](syncbus_storage::StoreErrorKind::Backend). Statements rely
/// on prepared statements and a per-connection `search_path`: a pooler in front of the
/// server must run in session mode. Connections are plain TCP or a Unix socket: TLS is not
/// supported yet (a URL with `sslmode=require` fails to connect). The store's futures run on
/// tokio; elsewhere they return an error.
///
/// # Examples
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use syncbus_storage::Checkpoints;
/// use syncbus_store::PgStore;
///
/// let store = PgStore::builder("postgres://postgres@127.0.0.1:5432/app")
///     .schema("billing_events")
///     .pool_size(8)
///     .connect()
///     .await?;
/// store.put("poller", b"etag-7".to_vec()).await?;
/// assert_eq!(store.get("poller").await?, Some(b"etag-7".to_vec()));
/// # Ok::<(), syncbus_storage::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    schema: String,
    /// The advisory lock that orders appends to the log of this schema.
    append_lock: i64,
    /// `INSERT INTO "<schema>".outbox ...`, for the caller's own connection.
    enqueue_sql: String,
    /// `SELECT "<schema>".ack_claims(...)`, for the caller's own connection.
    ack_sql: String,
    /// Marks a dedup key done in `"<schema>".dedup_keys`, for the caller's own connection.
    record_done_sql: String,
}

/// Options for [`PgStore`]; made by [`PgStore::builder`].
///
/// # Examples
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use syncbus_store::PgStore;
///
/// let store = PgStore::builder("postgres://postgres@127.0.0.1:5432/app")
///     .schema("orders")
///     .pool_size(4)
///     .acquire_timeout(Duration::from_secs(5))
///     .connect()
///     .await?;
/// # let _ = store;
/// # Ok::<(), syncbus_storage::StoreError>(())
/// # }).unwrap();
/// ```
pub struct PgStoreBuilder {
    config: Result<Config, StoreError>,
    schema: String,
    pool_size: usize,
    acquire_timeout: Duration,
}

impl PgStore {
    /// The schema a store uses unless told otherwise.
    pub const DEFAULT_SCHEMA: &'static str = "syncbus";

    /// Connects with the default options: schema [`PgStore::DEFAULT_SCHEMA`], 8 connections.
    ///
    /// The URL is a libpq connection URL or key=value string, for example
    /// `postgres://user@host:5432/db`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::EventLog;
    /// use syncbus_store::PgStore;
    ///
    /// let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
    /// println!("newest offset: {:?}", store.head().await?);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](syncbus_storage::StoreErrorKind::Invalid) for a malformed URL, [`StoreErrorKind::Backend`](syncbus_storage::StoreErrorKind::Backend) when the
    /// server cannot be reached or a migration fails, [`StoreErrorKind::Incompatible`](syncbus_storage::StoreErrorKind::Incompatible) when the
    /// schema was written by a newer build.
    ///
    /// # Cancel safety
    ///
    /// Migrations run in one transaction: dropping the future leaves the schema as it was or
    /// fully migrated.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        PgStore::builder(url).connect().await
    }

    /// A builder, to choose the schema, pool size and checkout timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = syncbus_store::PgStore::builder("host=127.0.0.1 user=postgres dbname=app")
    ///     .schema("events")
    ///     .connect()
    ///     .await?;
    /// assert_eq!(store.schema(), "events");
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn builder(url: &str) -> PgStoreBuilder {
        PgStoreBuilder {
            config: url
                .parse::<Config>()
                .map_err(|e| StoreError::invalid(format!("PostgreSQL connection string: {e}"))),
            schema: PgStore::DEFAULT_SCHEMA.to_owned(),
            pool_size: 8,
            acquire_timeout: Duration::from_secs(30),
        }
    }

    /// The schema holding this store's tables.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = syncbus_store::PgStore::connect("postgres://postgres@127.0.0.1/app").await?;
    /// assert_eq!(store.schema(), syncbus_store::PgStore::DEFAULT_SCHEMA);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Closes the pool: idle connections are dropped, and later calls fail with
    /// [`StoreErrorKind::Closed`](syncbus_storage::StoreErrorKind::Closed). Connections in use close when their call finishes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::{EventLog, StoreErrorKind};
    /// use syncbus_store::PgStore;
    /// let store = PgStore::connect("postgres://postgres@127.0.0.1/app").await?;
    /// store.close();
    /// assert!(matches!(store.head().await, Err(e) if e.kind() == StoreErrorKind::Closed));
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn close(&self) {
        self.inner.pool.close();
    }

    /// Whether [`close`](Self::close) was called.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = syncbus_store::PgStore::connect("postgres://postgres@127.0.0.1/app").await?;
    /// assert!(!store.is_closed());
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.pool.is_closed()
    }
}

impl PgStoreBuilder {
    /// The schema for the tables (default [`PgStore::DEFAULT_SCHEMA`]): 1 to 63 lowercase letters,
    /// digits and underscores. It is created if missing. Processes that name the same schema
    /// share one store; different schemas are independent stores in one database.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = syncbus_store::PgStore::builder("postgres://localhost/app").schema("tenant_7");
    /// # let _ = builder;
    /// ```
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections open at once (default 8; at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = syncbus_store::PgStore::builder("postgres://localhost/app").pool_size(2);
    /// # let _ = builder;
    /// ```
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long a call waits for a free connection before failing (default 30 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = syncbus_store::PgStore::builder("postgres://localhost/app")
    ///     .acquire_timeout(Duration::from_secs(2));
    /// # let _ = builder;
    /// ```
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Connects, creates the schema if needed and applies pending migrations.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = syncbus_store::PgStore::builder("postgres://postgres@127.0.0.1/app")
    ///     .connect()
    ///     .await?;
    /// # let _ = store;
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PgStore::connect`], plus [`StoreErrorKind::Invalid`](syncbus_storage::StoreErrorKind::Invalid) for a bad schema name.
    ///
    /// # Cancel safety
    ///
    /// As [`PgStore::connect`].
    pub async fn connect(self) -> Result<PgStore, StoreError> {
        let mut config = self.config?;
        schema::check_schema_name(&self.schema)?;
        let schema = self.schema;
        // Store statements name tables unqualified; the pool's connections resolve them in
        // the store's schema (pg_catalog stays implicitly first).
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} -c search_path={schema}"),
            _ => format!("-c search_path={schema}"),
        };
        config.options(options);
        if config.get_application_name().is_none() {
            // Names the store's connections in pg_stat_activity.
            config.application_name(format!("syncbus-store:{schema}"));
        }
        let pool = Pool::new(config, self.pool_size, self.acquire_timeout);
        {
            let mut conn = pool.get().await?;
            schema::migrate(&mut conn, &schema).await?;
        }
        Ok(PgStore {
            inner: Arc::new(Inner {
                append_lock: lock_key("log", &schema),
                ack_sql: format!("SELECT \"{schema}\".ack_claims($1, $2)"),
                record_done_sql: workflow::record_done_sql(&schema),
                enqueue_sql: format!(
                    "INSERT INTO \"{schema}\".outbox (envelope) VALUES ($1) RETURNING id"
                ),
                pool,
                schema,
            }),
        })
    }
}

/// A stable advisory-lock key for `what` in `schema` (FNV-1a, so it does not change between
/// builds or processes, as std's hasher may).
fn lock_key(what: &str, schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "syncbus-store/"
        .bytes()
        .chain(what.bytes())
        .chain(b"/".iter().copied())
        .chain(schema.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.schema)
            .field("pool", &self.inner.pool)
            .finish()
    }
}

impl fmt::Debug for PgStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The config may hold a password: show only where it points.
        f.debug_struct("PgStoreBuilder")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish_non_exhaustive()
    }
}

/// Limits for reading back envelopes this store wrote: what was accepted on append must
/// read back, so only the codec's own caps apply.
fn stored_limits() -> Limits {
    Limits {
        max_payload_bytes: usize::MAX / 2,
        max_headers: usize::MAX,
        max_header_value_bytes: usize::MAX,
    }
}

fn encode(envelope: &Envelope<Bytes>) -> Result<Vec<u8>, StoreError> {
    Binary::encode(envelope).map_err(StoreError::codec)
}

fn decode(bytes: &[u8]) -> Result<Envelope<Bytes>, StoreError> {
    Binary::decode(bytes, &stored_limits()).map_err(StoreError::codec)
}

fn timestamp(t: SystemTime) -> Timestamp {
    let nanos = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    };
    Timestamp::from_unix_nanos(nanos)
}

/// An offset or id from the caller as a PostgreSQL bigint (beyond the range: clamped, which
/// matches nothing stored).
fn to_db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored bigint offset or id; stored ones are positive.
fn from_db(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::backend("read a row", format!("negative id {n}")))
}

/// Milliseconds of a lease or delay as a bigint.
/// Milliseconds of a lease, delay or age as a bigint, capped at 100 years so that adding it
/// to a timestamp stays in PostgreSQL's range.
fn millis(d: Duration) -> i64 {
    const CAP: u128 = 100 * 366 * 86_400 * 1000;
    d.as_millis().min(CAP) as i64
}
