//! A small connection pool: at most `size` connections, each with its own cache of prepared
//! statements. Connections that broke are dropped instead of returned.
//!
//! Our own rather than deadpool-postgres: the store needs only checkout with a timeout,
//! statement caching and dropping dead connections, which is this file, with no dependency
//! beyond tokio and tokio-postgres.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, GenericClient, NoTls, Statement};

use super::error::{closed, pg_error};
use syncbus_storage::StoreError;

pub(crate) struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    config: Config,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
}

/// One connection and the statements prepared on it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    /// Prepares `sql` once per connection; later calls reuse the server-side statement.
    pub(crate) async fn prepare(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        cached(&mut self.statements, &self.client, sql).await
    }

    /// A transaction on this connection, with access to the statement cache.
    pub(crate) async fn transaction(&mut self) -> Result<Tx<'_>, StoreError> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| pg_error("begin a transaction", e))?;
        Ok(Tx {
            tx,
            statements: &mut self.statements,
        })
    }
}

/// A transaction plus the connection's statement cache.
pub(crate) struct Tx<'a> {
    pub(crate) tx: tokio_postgres::Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl Tx<'_> {
    pub(crate) async fn prepare(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        cached(self.statements, &self.tx, sql).await
    }

    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(|e| pg_error("commit", e))
    }
}

async fn cached<C: GenericClient>(
    statements: &mut HashMap<&'static str, Statement>,
    client: &C,
    sql: &'static str,
) -> Result<Statement, StoreError> {
    if let Some(s) = statements.get(sql) {
        return Ok(s.clone());
    }
    let s = client
        .prepare(sql)
        .await
        .map_err(|e| pg_error("prepare a statement", e))?;
    statements.insert(sql, s.clone());
    Ok(s)
}

impl Pool {
    pub(crate) fn new(config: Config, size: usize, acquire_timeout: Duration) -> Pool {
        Pool {
            inner: Arc::new(PoolInner {
                config,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(size.max(1))),
                acquire_timeout,
            }),
        }
    }

    /// A connection: an idle one, or a new one while fewer than `size` are out.
    pub(crate) async fn get(&self) -> Result<PooledConn, StoreError> {
        // Timers, sockets and connection tasks are tokio's: another executor gets an error,
        // not a panic.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::backend(
                "get a PostgreSQL connection",
                "the PostgreSQL store runs on tokio: call it inside a tokio runtime",
            ));
        }
        let permit = tokio::time::timeout(
            self.inner.acquire_timeout,
            self.inner.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| {
            StoreError::backend(
                "no PostgreSQL connection free",
                format!(
                    "all pooled connections stayed busy for {:?}",
                    self.inner.acquire_timeout
                ),
            )
        })?
        .map_err(|_| closed())?;
        loop {
            let idle = self.inner.idle.lock().pop();
            match idle {
                Some(conn) if conn.client.is_closed() => continue,
                Some(conn) => {
                    return Ok(PooledConn {
                        conn: Some(conn),
                        pool: self.inner.clone(),
                        _permit: permit,
                    })
                }
                None => break,
            }
        }
        let client = connect(&self.inner.config).await?;
        Ok(PooledConn {
            conn: Some(Conn {
                client,
                statements: HashMap::new(),
            }),
            pool: self.inner.clone(),
            _permit: permit,
        })
    }

    /// Refuses new checkouts and drops the idle connections.
    pub(crate) fn close(&self) {
        self.inner.permits.close();
        self.inner.idle.lock().clear();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.inner.permits.is_closed()
    }
}

/// Opens one connection and drives it on the current tokio runtime.
pub(crate) async fn connect(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| pg_error("connect to PostgreSQL", e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// A checked-out connection; goes back to the pool when dropped, unless it broke.
pub(crate) struct PooledConn {
    conn: Option<Conn>,
    pool: Arc<PoolInner>,
    _permit: OwnedSemaphorePermit,
}

impl Deref for PooledConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("present until drop")
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.client.is_closed() && !self.pool.permits.is_closed() {
                self.pool.idle.lock().push(conn);
            }
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.inner.idle.lock().len())
            .field("available", &self.inner.permits.available_permits())
            .finish()
    }
}
