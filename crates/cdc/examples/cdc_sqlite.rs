//! Captures one table of a SQLite file and prints each change as one CloudEvents JSON line
//! on stdout (logs go to stderr); killed and restarted, it resumes from its checkpoint (kept
//! in the same file, with the dedup keys that keep a change from printing twice).
//!
//! ```text
//! cargo run --example cdc_sqlite -- --db app.db --table orders
//! sqlite3 app.db "INSERT INTO orders (id, status) VALUES (1, 'open')"   # in another shell
//! ```
//!
//! The capture triggers write changes made through any connection; a connection other than
//! this program's that uses `INSERT OR REPLACE` needs `PRAGMA recursive_triggers = ON` for
//! the replaced row's delete to be captured.

use std::io::Write;
use std::time::Duration;

use syncbus_cdc::{Change, SqliteCdc, SqliteCdcConfig};
use syncbus_core::{Bus, Envelope};
use syncbus_envelope::CloudEventsJson;
use syncbus_store::SqliteStore;
use syncbus_workflow::{Context, DedupConfig, HandlerError, Workflow};

fn parse() -> Result<(String, String), String> {
    let (mut db, mut table) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--db" => db = it.next(),
            "--table" => table = it.next(),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match (db, table) {
        (Some(d), Some(t)) => Ok((d, t)),
        _ => Err("usage: cdc_sqlite --db FILE --table TABLE".into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let (db, table) = parse()?;
    let store = SqliteStore::open(&db).await?;
    let config = SqliteCdcConfig::new([table.as_str()])?.name(format!("cdc.sqlite.{table}"));
    let source = SqliteCdc::open(store.clone(), config).await?;
    let bus = Bus::new();
    let served = Workflow::builder(&bus)
        .dead_letters(store.dead_letters())
        .build()
        .serve(source.clone())
        .name(format!("cdc-{table}"))
        .fetch_wait(Duration::from_millis(100))
        .dedup(DedupConfig::new(store.dedup()))
        .handle(|env: Envelope<Change>, _ctx: Context| async move {
            let line = CloudEventsJson::encode(&env.map_payload(|c| c.0))
                .map_err(|e| HandlerError::permanent(e.to_string()))?;
            let mut out = std::io::stdout().lock();
            out.write_all(&line)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .map_err(|e| HandlerError::retryable(e.to_string()))
        })?;
    eprintln!("capturing {table} in {db}; Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    served.stop().await;
    source.flush().await?;
    Ok(())
}
