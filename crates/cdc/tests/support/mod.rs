//! Test plumbing: the PostgreSQL server comes from `SYNCBUS_PG_URL` (tests skip with one
//! line without it); every slot and publication a test makes is dropped by its guard.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use syncbus_cdc::{PgCdc, PgTransport};
use syncbus_core::{Settle, Source};
use tokio_postgres::{Client, NoTls};

pub fn url() -> Option<String> {
    static SAID: AtomicBool = AtomicBool::new(false);
    match std::env::var("SYNCBUS_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if !SAID.swap(true, Ordering::Relaxed) {
                let _ = writeln!(
                    std::io::stderr(),
                    "SYNCBUS_PG_URL is not set: PostgreSQL CDC tests skipped"
                );
            }
            None
        }
    }
}

/// The transport the PostgreSQL tests read with: `SYNCBUS_CDC_TRANSPORT` (`replication`
/// or `slot-functions`), else the default. `.ci/run` runs them with each.
pub fn transport() -> PgTransport {
    match std::env::var("SYNCBUS_CDC_TRANSPORT") {
        Ok(t) if !t.is_empty() => t.parse().expect("SYNCBUS_CDC_TRANSPORT"),
        _ => PgTransport::default(),
    }
}

/// `cdc_t_<secs>_<pid>_<n>`: a slot, publication and schema name no other run uses.
pub fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "cdc_t_{secs}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn client(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// A test's own schema (named like its slot and publication), a client, and the guard that
/// drops them all when the test ends.
pub struct Scratch {
    pub url: String,
    pub name: String,
    pub app: Client,
    _guard: Guard,
}

impl Scratch {
    /// Creates the schema and runs `ddl` in it (`{s}` stands for the schema's name); `None`,
    /// with one line, without `SYNCBUS_PG_URL`.
    pub async fn new(ddl: &str) -> Option<Scratch> {
        let url = url()?;
        let name = unique();
        let guard = Guard {
            url: url.clone(),
            name: name.clone(),
        };
        let app = client(&url).await;
        app.batch_execute(&format!(
            "CREATE SCHEMA {name}; {}",
            ddl.replace("{s}", &name)
        ))
        .await
        .unwrap();
        Some(Scratch {
            url,
            name,
            app,
            _guard: guard,
        })
    }
}

/// Drops the slot, the publication and the schema named `name` when the test ends.
pub struct Guard {
    pub url: String,
    pub name: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for _ in 0..50 {
                    match PgCdc::drop_slot(&url, &name, &name).await {
                        Ok(()) => break,
                        // a child killed a moment ago may still hold the slot
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                let c = client(&url).await;
                for schema in [name.clone(), format!("{name}_store")] {
                    for _ in 0..50 {
                        let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                        if c.batch_execute(&sql).await.is_ok() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            });
        })
        .join();
    }
}

/// Fetches and acks until `n` changes came (or 30 s passed), flushing at the end.
pub async fn take_pg(
    source: &PgCdc,
    n: usize,
) -> Vec<syncbus_envelope::Envelope<syncbus_cdc::Change>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        for d in source
            .fetch(1000, Duration::from_millis(200))
            .await
            .unwrap()
        {
            out.push(d.envelope().clone());
            d.ack().await.unwrap();
        }
    }
    source.flush().await.unwrap();
    out
}
