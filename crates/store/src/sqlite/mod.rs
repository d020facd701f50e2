//! The SQLite backend: one file, WAL mode, no server.

mod log;
mod schema;
mod workflow;

pub use workflow::{SqliteDeadLetterStore, SqliteDedupStore, SqliteSagaStore};

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use serde::Serialize;
use syncbus_envelope::{Binary, Bytes, Envelope, Event, Limits, Timestamp};
use tokio::sync::oneshot;

use syncbus_core::NameKind;
use syncbus_storage::check_name;
use syncbus_storage::{Checkpoints, Outbox, OutboxRecord, StoreError, StoreErrorKind, StoreFuture};

/// When SQLite considers a commit done.
///
/// # Examples
///
/// ```
/// use syncbus_store::{SqliteConfig, Synchronous};
///
/// let config = SqliteConfig::new().synchronous(Synchronous::Normal);
/// assert_eq!(config.get_synchronous(), Synchronous::Normal);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// `synchronous=FULL`: a commit is on disk when it returns; survives power loss. The
    /// default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: in WAL mode a commit survives a process crash but the last
    /// commits may be lost on power loss or an OS crash. Much faster.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// How an [`SqliteStore`] opens its file.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_store::SqliteConfig;
///
/// let config = SqliteConfig::new().busy_timeout(Duration::from_secs(10));
/// assert_eq!(config.get_busy_timeout(), Duration::from_secs(10));
/// ```
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    synchronous: Synchronous,
    busy_timeout: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl SqliteConfig {
    /// The defaults: `synchronous=FULL`, 5 s busy timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_store::{SqliteConfig, Synchronous};
    /// assert_eq!(SqliteConfig::new().get_synchronous(), Synchronous::Full);
    /// ```
    pub fn new() -> SqliteConfig {
        SqliteConfig::default()
    }

    /// Sets the durability of a commit.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_store::{SqliteConfig, Synchronous};
    /// let config = SqliteConfig::new().synchronous(Synchronous::Normal);
    /// # let _ = config;
    /// ```
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long a write waits for another process's write lock before failing.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = syncbus_store::SqliteConfig::new().busy_timeout(Duration::from_secs(1));
    /// # let _ = config;
    /// ```
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The durability setting.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_store::{SqliteConfig, Synchronous};
    /// assert_eq!(SqliteConfig::default().get_synchronous(), Synchronous::Full);
    /// ```
    pub fn get_synchronous(&self) -> Synchronous {
        self.synchronous
    }

    /// The busy timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(syncbus_store::SqliteConfig::default().get_busy_timeout(), Duration::from_secs(5));
    /// ```
    pub fn get_busy_timeout(&self) -> Duration {
        self.busy_timeout
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A store in one SQLite file, in WAL mode: the embedded default.
///
/// It implements [`EventLog`](syncbus_storage::EventLog), [`Checkpoints`] and [`Outbox`]; clones share
/// one connection. The connection lives on a dedicated thread, so no call blocks an async
/// runtime, and the futures work on any executor. Other processes may open the same file:
/// SQLite serializes writers (waiting up to the busy timeout).
///
/// Opening creates the file if needed and applies the schema migrations. Tables are named
/// `syncbus_*`, so the store may share the application's own database file; that is what
/// lets [`enqueue`](Self::enqueue) join the application's transactions.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use syncbus_core::{Bytes, Envelope, EventType, Metadata};
/// use syncbus_storage::EventLog;
/// use syncbus_store::SqliteStore;
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("events.db");
/// let meta = Metadata::new(EventType::new("order.placed").unwrap()).with_topic(syncbus_envelope::Topic::from_static("orders.placed"));
/// {
///     let store = SqliteStore::open(&path).await?;
///     store.append(Envelope::new(meta, Bytes::from_static(b"{}"))).await?;
/// }
/// let reopened = SqliteStore::open(&path).await?;
/// assert_eq!(reopened.read(0, 10).await?.len(), 1);
/// # Ok::<(), syncbus_storage::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
    /// A read-only connection for short reads on the caller's thread (a dedup hit), opened
    /// on first use. In WAL mode a reader never waits for the writer.
    reader: parking_lot::Mutex<Option<Connection>>,
}

/// Stored envelopes were written by this crate, so decoding them needs no size limits.
pub(crate) const STORED: Limits = Limits {
    max_payload_bytes: usize::MAX,
    max_headers: usize::MAX,
    max_header_value_bytes: usize::MAX,
};

impl SqliteStore {
    /// Opens (or creates) the store at `path` with the default [`SqliteConfig`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = syncbus_store::SqliteStore::open(dir.path().join("s.db")).await?;
    /// assert!(store.path().ends_with("s.db"));
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Corrupt`](syncbus_storage::StoreErrorKind::Corrupt) for a file that is not an SQLite database or is corrupt,
    /// [`StoreErrorKind::Incompatible`](syncbus_storage::StoreErrorKind::Incompatible) for a store written by a newer syncbus,
    /// [`StoreErrorKind::Invalid`](syncbus_storage::StoreErrorKind::Invalid) if the file's folder does not exist (named in the message),
    /// [`StoreErrorKind::Backend`](syncbus_storage::StoreErrorKind::Backend) if the file cannot be opened or migrated.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_storage::StoreErrorKind;
    /// use syncbus_store::SqliteStore;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("garbage.db");
    /// std::fs::write(&path, vec![0xAB; 8192]).unwrap();
    /// assert!(matches!(SqliteStore::open(&path).await, Err(e) if e.kind() == StoreErrorKind::Corrupt));
    /// # });
    /// ```
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped the store may still be created and migrated on disk.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteConfig::default()).await
    }

    /// Opens (or creates) the store at `path` with `config`.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_store::{SqliteConfig, SqliteStore, Synchronous};
    /// let dir = tempfile::tempdir().unwrap();
    /// let config = SqliteConfig::new().synchronous(Synchronous::Normal);
    /// let store = SqliteStore::open_with(dir.path().join("s.db"), config).await?;
    /// # let _ = store;
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    ///
    /// # Cancel safety
    ///
    /// As [`open`](Self::open).
    pub async fn open_with(
        path: impl AsRef<Path>,
        config: SqliteConfig,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("syncbus-sqlite".into())
            .spawn(move || match open_connection(&thread_path, &config) {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(()));
                    serve(conn, queue);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| StoreError::backend("open", e))?;
        ready_rx.await.map_err(|_| StoreError::closed())??;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                jobs,
                path,
                reader: parking_lot::Mutex::new(None),
            }),
        })
    }

    /// Runs a short read on the read-only connection, on the calling thread, skipping the
    /// hop to the connection thread. `None` when that connection is in use by another caller,
    /// cannot be opened, or the read fails (busy, say): then take the usual way.
    pub(crate) fn try_read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, SqliteError>,
    ) -> Option<T> {
        let mut reader = self.inner.reader.try_lock()?;
        if reader.is_none() {
            let conn = Connection::open_with_flags(
                &self.inner.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ok()?;
            conn.busy_timeout(Duration::ZERO).ok()?;
            *reader = Some(conn);
        }
        f(reader.as_ref()?).ok()
    }

    /// The file this store was opened on.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = syncbus_store::SqliteStore::open(dir.path().join("a.db")).await?;
    /// assert_eq!(store.path(), dir.path().join("a.db"));
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The newest schema version this build writes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_store::SqliteStore::SCHEMA_VERSION >= 1);
    /// ```
    pub const SCHEMA_VERSION: u32 = schema::LATEST;

    /// Runs `f` on the store's connection thread, with exclusive use of the connection: for
    /// application transactions that [`enqueue`](Self::enqueue) outbox events, or for
    /// reading the store's tables with SQL.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_storage::Outbox;
    /// use syncbus_store::SqliteStore;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = SqliteStore::open(dir.path().join("shop.db")).await?;
    /// store.with_connection(|conn| {
    ///     conn.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")?;
    ///     Ok(())
    /// }).await?;
    ///
    /// let meta = Metadata::new(EventType::new("order.placed").unwrap()).with_topic(syncbus_envelope::Topic::from_static("orders.placed"));
    /// let event = Envelope::new(meta, Bytes::from_static(br#"{"id":1}"#));
    /// store.with_connection(move |conn| {
    ///     let tx = conn.transaction()?;
    ///     tx.execute("INSERT INTO orders (id, total) VALUES (1, 1999)", [])?;
    ///     SqliteStore::enqueue(&tx, &event)?;
    ///     tx.commit()?; // the order and its event commit together
    ///     Ok(())
    /// }).await?;
    /// assert_eq!(store.pending(10).await?.len(), 1);
    /// # Ok::<(), syncbus_storage::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// `f` runs on the store's only connection thread: it must not wait for this store's
    /// own futures (that would wait forever).
    ///
    /// # Errors
    ///
    /// What `f` returns; [`StoreErrorKind::Closed`](syncbus_storage::StoreErrorKind::Closed) if the connection thread is gone (or `f`
    /// panicked: the panic is caught, logged, and any open transaction rolled back).
    ///
    /// # Cancel safety
    ///
    /// `f` runs to completion even if the future is dropped.
    pub fn with_connection<T, F>(&self, f: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, SqliteError> + Send + 'static,
    {
        let job = self.run_job(move |conn| f(conn).map_err(StoreError::from));
        Box::pin(async move { job.await.map_err(|_| StoreError::closed())? })
    }

    /// Runs `f` on the connection thread and hands back what it returned; `Err(Gone)` when
    /// the thread is gone (the store closed, or `f` panicked and was rolled back). The one
    /// way jobs reach the connection, for [`with_connection`](Self::with_connection) and
    /// [`transaction`](Self::transaction).
    fn run_job<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> R + Send + 'static,
    ) -> impl std::future::Future<Output = Result<R, Gone>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self.inner.jobs.send(Box::new(move |conn: &mut Connection| {
            let _ = tx.send(f(conn));
        }));
        async move {
            sent.map_err(|_| Gone)?;
            rx.await.map_err(|_| Gone)
        }
    }

    /// Runs `f` in one transaction on the store's connection thread: committed when `f`
    /// returns `Ok`, rolled back when it returns `Err` (or panics). The error is the
    /// application's own type `E`, which only has to take in a [`SqliteError`] (so `?` works
    /// on SQLite and store calls inside `f` through a `From<rusqlite::Error>` too), so an
    /// application error comes back as itself, not wrapped in a store error. The
    /// transaction is `IMMEDIATE`: it takes the write lock first, so it never fails half way
    /// for a lock another writer took.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use serde::Serialize;
    /// use syncbus_core::Event;
    /// use syncbus_store::{rusqlite, SqliteError, SqliteStore};
    ///
    /// #[derive(Clone, Debug, Serialize)]
    /// struct Reserved { sku: String }
    /// impl Event for Reserved { const TYPE: &'static str = "stock.reserved"; }
    ///
    /// #[derive(Debug)]
    /// enum ShopError { OutOfStock(String), Db(SqliteError) }
    /// impl From<SqliteError> for ShopError {
    ///     fn from(e: SqliteError) -> Self { ShopError::Db(e) }
    /// }
    /// impl From<rusqlite::Error> for ShopError {
    ///     fn from(e: rusqlite::Error) -> Self { ShopError::Db(e.into()) }
    /// }
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = SqliteStore::open(dir.path().join("shop.db")).await?;
    /// store.with_connection(|conn| {
    ///     conn.execute_batch("CREATE TABLE stock (sku TEXT PRIMARY KEY, qty INTEGER);
    ///                         INSERT INTO stock VALUES ('A-1', 1)")?;
    ///     Ok(())
    /// }).await?;
    /// let reserve = |sku: &'static str| {
    ///     store.transaction(move |tx| -> Result<(), ShopError> {
    ///         let n = tx.execute("UPDATE stock SET qty = qty - 1 WHERE sku = ?1 AND qty > 0", [sku])?;
    ///         if n == 0 {
    ///             return Err(ShopError::OutOfStock(sku.into())); // rolled back
    ///         }
    ///         SqliteStore::enqueue_event(tx, Reserved { sku: sku.into() })?;
    ///         Ok(())
    ///     })
    /// };
    /// reserve("A-1").await.unwrap();
    /// assert!(matches!(reserve("A-1").await, Err(ShopError::OutOfStock(s)) if s == "A-1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// What `f` returns; a [`SqliteError`] converted into `E` when the transaction cannot
    /// begin or commit, or when the connection thread is gone (`f` panicked, or the store
    /// closed).
    ///
    /// # Cancel safety
    ///
    /// `f` runs to completion, and commits or rolls back, even if the future is dropped.
    pub fn transaction<T, E, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, E>> + Send + 'static
    where
        T: Send + 'static,
        E: From<SqliteError> + Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        let job = self.run_job(move |conn| -> Result<T, E> {
            let t = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| E::from(e.into()))?;
            let value = f(&t)?;
            t.commit().map_err(|e| E::from(e.into()))?;
            Ok(value)
        });
        async move {
            job.await
                .map_err(|_| E::from(SqliteError::Store(StoreError::closed())))?
        }
    }

    /// Enqueues an outbox event on `conn`, which is normally the application's open
    /// transaction (a `rusqlite::Transaction` derefs to a `Connection`): the event commits or
    /// rolls back with the business write. The database must have been opened once as an
    /// [`SqliteStore`] (for the schema). Returns the row id. On an application's own
    /// connection, its `synchronous` setting decides how durable the commit is.
    ///
    /// # Examples
    ///
    /// See [`with_connection`](Self::with_connection); it works the same on a connection the
    /// application opened itself:
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_core::{Bytes, Envelope, EventType, Metadata};
    /// use syncbus_storage::Outbox;
    /// use syncbus_store::SqliteStore;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("app.db");
    /// let store = SqliteStore::open(&path).await?;
    ///
    /// let mut conn = rusqlite::Connection::open(&path)?;
    /// let meta = Metadata::new(EventType::new("user.renamed").unwrap()).with_topic(syncbus_envelope::Topic::from_static("users.renamed"));
    /// let tx = conn.transaction()?;
    /// SqliteStore::enqueue(&tx, &Envelope::new(meta, Bytes::new()))?;
    /// tx.rollback()?; // rolled back: no event
    /// assert!(store.pending(10).await?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Invalid`](syncbus_storage::StoreErrorKind::Invalid) if the envelope has no valid topic (the relay could never
    /// publish it), [`StoreErrorKind::Corrupt`](syncbus_storage::StoreErrorKind::Corrupt) if it cannot be encoded, [`StoreErrorKind::Backend`](syncbus_storage::StoreErrorKind::Backend) for
    /// SQLite errors (a missing schema among them).
    pub fn enqueue(conn: &Connection, envelope: &Envelope<Bytes>) -> Result<u64, SqliteError> {
        enqueue_bytes(conn, envelope)
    }

    /// Enqueues the typed `event` on `conn` (normally the application's open transaction):
    /// [`enqueue`](Self::enqueue) of its envelope, its payload as JSON, on the event's topic.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use serde::Serialize;
    /// use syncbus_core::Event;
    /// use syncbus_storage::Outbox;
    /// use syncbus_store::SqliteStore;
    ///
    /// #[derive(Clone, Debug, Serialize)]
    /// struct Renamed { user: u64 }
    /// impl Event for Renamed { const TYPE: &'static str = "user.renamed"; }
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = SqliteStore::open(dir.path().join("app.db")).await?;
    /// store
    ///     .with_connection(|conn| {
    ///         let tx = conn.transaction()?;
    ///         SqliteStore::enqueue_event(&tx, Renamed { user: 7 })?;
    ///         tx.commit()?;
    ///         Ok(())
    ///     })
    ///     .await?;
    /// assert_eq!(store.pending(10).await?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Corrupt`](syncbus_storage::StoreErrorKind::Corrupt) if the event does
    /// not serialize, and as [`enqueue`](Self::enqueue).
    pub fn enqueue_event<E: Event + Serialize>(
        conn: &Connection,
        event: E,
    ) -> Result<u64, SqliteError> {
        let envelope = Envelope::from_event(event)
            .to_bytes_payload()
            .map_err(StoreError::codec)?;
        enqueue_bytes(conn, &envelope)
    }
}

impl SqliteStore {
    /// Moves up to `max` outbox events into this database's event log, in commit order, in
    /// one transaction: each event is appended to the log and deleted from the outbox
    /// together, or neither happens. Returns how many moved; call it until it returns 0 to
    /// empty the outbox.
    ///
    /// This is the durable alternative to [`Relay`](syncbus_storage::Relay): nothing depends
    /// on a subscription being there, and durable consumers of the log get every event,
    /// even those that start later.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use syncbus_core::{Bytes, Envelope, EventType, Metadata, Topic};
    /// use syncbus_storage::{EventLog, Outbox};
    /// use syncbus_store::SqliteStore;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = SqliteStore::open(dir.path().join("shop.db")).await?;
    /// let meta = Metadata::new(EventType::new("order.placed")?).with_topic(Topic::from_static("orders.placed"));
    /// let event = Envelope::new(meta, Bytes::from_static(b"{}"));
    /// let sent = event.clone();
    /// store.with_connection(move |conn| Ok(SqliteStore::enqueue(conn, &sent)?)).await?;
    ///
    /// assert_eq!(store.move_outbox_to_log(100).await?, 1);
    /// assert!(store.pending(10).await?.is_empty());
    /// assert_eq!(store.read(0, 10).await?[0].envelope, event);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Backend`](syncbus_storage::StoreErrorKind::Backend) for SQLite
    /// errors; the transaction is rolled back, so every event stays in the outbox.
    ///
    /// # Cancel safety
    ///
    /// The move runs to completion even if the future is dropped.
    pub fn move_outbox_to_log(&self, max: usize) -> StoreFuture<'static, usize> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.with_connection(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let rows: Vec<(i64, Vec<u8>)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, envelope FROM syncbus_outbox ORDER BY id LIMIT ?1",
                )?;
                let rows = stmt.query_map([max], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            {
                // Both tables hold the same binary encoding: the blob moves as it is.
                let now = Timestamp::now().as_unix_nanos();
                let mut append = tx.prepare_cached(
                    "INSERT INTO syncbus_log (appended_at, envelope) VALUES (?1, ?2)",
                )?;
                let mut delete = tx.prepare_cached("DELETE FROM syncbus_outbox WHERE id = ?1")?;
                for (id, blob) in &rows {
                    append.execute((now, blob))?;
                    delete.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(rows.len())
        })
    }
}

/// What a closure run on the store's connection fails with
/// ([`SqliteStore::with_connection`]): SQLite's own error, or a store error, so `?` works on
/// both. It becomes a [`StoreError`] when the closure's result is handed back (an SQLite
/// error as [`StoreErrorKind::Backend`](syncbus_storage::StoreErrorKind::Backend)).
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use syncbus_store::{SqliteError, SqliteStore};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(dir.path().join("app.db")).await?;
/// let n: i64 = store
///     .with_connection(|conn| -> Result<i64, SqliteError> {
///         Ok(conn.query_row("SELECT 40 + 2", [], |r| r.get(0))?)
///     })
///     .await?;
/// assert_eq!(n, 42);
/// let err = store.with_connection(|conn| Ok(conn.execute("NOT SQL", [])?)).await.unwrap_err();
/// assert_eq!(err.kind(), syncbus_storage::StoreErrorKind::Backend);
/// # Ok::<(), syncbus_storage::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SqliteError {
    /// SQLite refused the statement or the transaction.
    Sql(rusqlite::Error),
    /// A store rule was broken (a bad name, an undecodable row).
    Store(StoreError),
}

impl std::fmt::Display for SqliteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqliteError::Sql(e) => write!(f, "sqlite: {e}"),
            SqliteError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SqliteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SqliteError::Sql(e) => Some(e),
            SqliteError::Store(e) => e.source(),
        }
    }
}

impl From<rusqlite::Error> for SqliteError {
    fn from(e: rusqlite::Error) -> Self {
        SqliteError::Sql(e)
    }
}

impl From<StoreError> for SqliteError {
    fn from(e: StoreError) -> Self {
        SqliteError::Store(e)
    }
}

impl From<SqliteError> for StoreError {
    fn from(e: SqliteError) -> Self {
        match e {
            SqliteError::Sql(e) => StoreError::backend("sqlite", e),
            SqliteError::Store(e) => e,
        }
    }
}

fn unreadable(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::unreadable(path, e)
        }
        _ => StoreError::backend("open", e),
    }
}

/// Runs `f` again while SQLite answers busy, until `deadline`.
fn retry_busy<T>(
    deadline: Instant,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    loop {
        match f() {
            Err(e)
                if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

fn open_connection(path: &Path, config: &SqliteConfig) -> Result<Connection, StoreError> {
    // SQLite would say "unable to open database file": say which folder is missing.
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !folder.is_dir() {
            return Err(StoreError::new(
                StoreErrorKind::Invalid,
                format!(
                    "cannot create store file {}: the folder {} does not exist",
                    path.display(),
                    folder.display()
                ),
            ));
        }
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| unreadable(path, e))?;
    conn.busy_timeout(config.busy_timeout)
        .map_err(|e| unreadable(path, e))?;
    // The first statement reads the header: a file that is not SQLite fails here.
    // Switching to WAL and migrating can meet SQLITE_BUSY without the busy handler being
    // asked (another process recovering the WAL after a crash, say): retry until the busy
    // timeout instead of failing the open.
    let deadline = Instant::now() + config.busy_timeout;
    let mode: String = retry_busy(deadline, || {
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
    })
    .map_err(|e| unreadable(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::backend(
            "open",
            format!("the file refused WAL mode (journal_mode is {mode})"),
        ));
    }
    conn.pragma_update(None, "synchronous", config.synchronous.pragma())
        .map_err(|e| unreadable(path, e))?;
    conn.set_prepared_statement_cache_capacity(64);
    workflow::register_functions(&conn).map_err(|e| StoreError::backend("open", e))?;
    let found =
        retry_busy(deadline, || schema::migrate(&mut conn)).map_err(|e| unreadable(path, e))?;
    schema::check(found)?;
    Ok(conn)
}

fn serve(mut conn: Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        if catch_unwind(AssertUnwindSafe(|| job(&mut conn))).is_err() {
            tracing::error!("a job on the SQLite store's connection panicked; it was rolled back");
        }
    }
}

pub(crate) fn encode(envelope: &Envelope<Bytes>) -> Result<Vec<u8>, StoreError> {
    Binary::encode(envelope).map_err(StoreError::codec)
}

pub(crate) fn decode(blob: &[u8]) -> Result<Envelope<Bytes>, StoreError> {
    Binary::decode(blob, &STORED).map_err(StoreError::codec)
}

impl Checkpoints for SqliteStore {
    fn get<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let name = name.to_owned();
        self.with_connection(move |conn| {
            check_name(NameKind::Checkpoint, &name)?;
            let mut stmt =
                conn.prepare_cached("SELECT value FROM syncbus_checkpoints WHERE name = ?1")?;
            Ok(stmt.query_row([&name], |r| r.get(0)).optional()?)
        })
    }

    fn put<'a>(&'a self, name: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
        let name = name.to_owned();
        self.with_connection(move |conn| {
            check_name(NameKind::Checkpoint, &name)?;
            let mut stmt = conn.prepare_cached(
                "INSERT INTO syncbus_checkpoints (name, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )?;
            stmt.execute((&name, value, Timestamp::now().as_unix_nanos()))?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool> {
        let name = name.to_owned();
        self.with_connection(move |conn| {
            check_name(NameKind::Checkpoint, &name)?;
            let mut stmt =
                conn.prepare_cached("DELETE FROM syncbus_checkpoints WHERE name = ?1")?;
            Ok(stmt.execute([&name])? > 0)
        })
    }
}

// Commit order: SQLite allows one writer at a time per database file (the write lock is
// held from a transaction's first write to its commit), so of two transactions that both
// enqueue, the one that got the lock first also commits first, and an AUTOINCREMENT id
// taken later is never visible before an earlier one. Ordering by id is therefore commit
// order, and a committed row can never appear "behind" a row the relay already sent. The
// relay still works on unsent rows rather than an id cursor, so even a future backend or
// manual insert that broke this could not make it skip a row.
impl Outbox for SqliteStore {
    fn pending(&self, max: usize) -> StoreFuture<'_, Vec<OutboxRecord>> {
        self.with_connection(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id, envelope FROM syncbus_outbox ORDER BY id LIMIT ?1")?;
            let rows = stmt.query_map([max as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, blob) = row?;
                out.push(OutboxRecord {
                    id: id as u64,
                    envelope: decode(&blob)?,
                });
            }
            Ok(out)
        })
    }

    fn mark_sent<'a>(&'a self, ids: &'a [u64]) -> StoreFuture<'a, ()> {
        let ids = ids.to_vec();
        self.with_connection(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached("DELETE FROM syncbus_outbox WHERE id = ?1")?;
                for id in ids {
                    stmt.execute([id as i64])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }
}

/// The connection thread is gone: the store was closed, or the job panicked.
struct Gone;

fn enqueue_bytes(conn: &Connection, envelope: &Envelope<Bytes>) -> Result<u64, SqliteError> {
    syncbus_storage::check_outbox_topic(envelope)?;
    let blob = Binary::encode(envelope).map_err(StoreError::codec)?;
    let mut stmt =
        conn.prepare_cached("INSERT INTO syncbus_outbox (enqueued_at, envelope) VALUES (?1, ?2)")?;
    stmt.execute((Timestamp::now().as_unix_nanos(), blob))?;
    Ok(conn.last_insert_rowid() as u64)
}
