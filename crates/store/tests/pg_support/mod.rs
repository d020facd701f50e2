//! PostgreSQL test plumbing: the server comes from `SYNCBUS_PG_URL`; each test gets its own
//! schema, dropped when the test ends.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use syncbus_store::tokio_postgres::{self, Client, NoTls};
use syncbus_store::PgStore;

/// The variable that points the tests at a server.
pub const URL_VAR: &str = "SYNCBUS_PG_URL";

/// The server URL, or `None` after printing (once per test binary) that the PostgreSQL
/// tests are skipped.
pub fn url() -> Option<String> {
    static SAID: AtomicBool = AtomicBool::new(false);
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if !SAID.swap(true, Ordering::Relaxed) {
                // Straight to stderr: the test harness would capture println!.
                let _ = writeln!(
                    std::io::stderr(),
                    "{URL_VAR} is not set: PostgreSQL tests skipped"
                );
            }
            None
        }
    }
}

/// A schema name no other test or run uses: `syncbus_test_<unix secs>_<pid>_<n>`.
pub fn unique_schema() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "syncbus_test_{secs}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A plain connection of the test's own (the application's side of an outbox, or a probe).
pub async fn client(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// One test's store in its own schema.
pub struct PgTest {
    pub url: String,
    pub schema: String,
    pub store: PgStore,
}

impl PgTest {
    /// A fresh store, or `None` when no server is configured.
    pub async fn new() -> Option<PgTest> {
        let url = url()?;
        let schema = unique_schema();
        drop_stale_schemas(&url).await;
        let store = PgStore::builder(&url)
            .schema(&schema)
            .connect()
            .await
            .unwrap();
        Some(PgTest { url, schema, store })
    }

    /// Another store on the same schema, as a second process would open it.
    pub async fn reopen(&self) -> PgStore {
        PgStore::builder(&self.url)
            .schema(&self.schema)
            .connect()
            .await
            .unwrap()
    }

    pub async fn client(&self) -> Client {
        client(&self.url).await
    }

    /// Drops the schema. A failed test leaves its schema behind; the next run drops it.
    pub async fn finish(self) {
        self.store.close();
        drop_schema(&self.url, &self.schema).await;
    }
}

pub async fn drop_schema(url: &str, schema: &str) {
    client(url)
        .await
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

/// Drops test schemas older than an hour (left by failed or killed runs), once per binary.
async fn drop_stale_schemas(url: &str) {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::Relaxed) {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let c = client(url).await;
    let rows = c
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'syncbus\\_test\\_%'",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        let secs = name.split('_').nth(2).and_then(|s| s.parse::<u64>().ok());
        if secs.is_some_and(|s| s + 3600 < now) {
            // Another binary may drop it at the same moment: ignore errors.
            let _ = c
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await;
        }
    }
}
