//! Captures one PostgreSQL table through a logical replication slot (pgoutput) and prints
//! each change as one CloudEvents JSON line on stdout (logs go to stderr). The checkpoint
//! and the dedup keys live in the same database (the store's tables); killed and restarted,
//! it resumes where the checkpoint says, and a change is printed once.
//!
//! ```text
//! cargo run --example cdc_postgres -- --url postgres://postgres@127.0.0.1/app --table public.orders [--slot NAME] [--snapshot] [--transport replication|slot-functions]
//! ```
//!
//! `--snapshot` prints the table's existing rows first (`<schema>.<table>.read`), consistent
//! with the slot. The slot (default `syncbus_cdc`) and a publication of its name are created
//! if absent; drop them when the reader is retired (`PgCdc::drop_slot`), since a slot keeps
//! WAL on the server. `--transport` picks how the slot is read (`PgTransport`): a
//! replication connection (the default) or the slot's SQL functions.

use std::io::Write;
use std::time::Duration;

use syncbus_cdc::{Change, PgCdc, PgCdcConfig, PgTransport};
use syncbus_core::{Bus, Envelope};
use syncbus_envelope::CloudEventsJson;
use syncbus_store::PgStore;
use syncbus_workflow::{Context, DedupConfig, HandlerError, Workflow};

struct Args {
    url: String,
    table: String,
    slot: Option<String>,
    snapshot: bool,
    transport: PgTransport,
}

fn parse() -> Result<Args, String> {
    let (mut url, mut table, mut slot, mut snapshot) = (None, None, None, false);
    let mut transport = PgTransport::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--url" => url = it.next(),
            "--table" => table = it.next(),
            "--slot" => slot = it.next(),
            "--snapshot" => snapshot = true,
            "--transport" => {
                transport = it
                    .next()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e: syncbus_cdc::CdcError| e.to_string())?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match (url, table) {
        (Some(url), Some(table)) => Ok(Args {
            url,
            table,
            slot,
            snapshot,
            transport,
        }),
        _ => Err(
            "usage: cdc_postgres --url URL --table SCHEMA.TABLE [--slot NAME] [--snapshot] [--transport replication|slot-functions]".into(),
        ),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = parse()?;
    let store = PgStore::connect(&args.url).await?;
    let mut config = PgCdcConfig::new(&args.url, [args.table.as_str()])?
        .snapshot(args.snapshot)
        .transport(args.transport);
    if let Some(slot) = &args.slot {
        config = config.slot(slot)?;
    }
    let slot = config.slot_name().to_owned();
    let source = PgCdc::connect(config, store.clone()).await?;
    let bus = Bus::new();
    let served = Workflow::builder(&bus)
        .dead_letters(store.dead_letters())
        .build()
        .serve(source.clone())
        .name(format!("cdc-{slot}"))
        .fetch_wait(Duration::from_millis(200))
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
    eprintln!(
        "capturing {} through slot {slot}; Ctrl-C to stop",
        args.table
    );
    tokio::signal::ctrl_c().await?;
    served.stop().await;
    source.flush().await?;
    Ok(())
}
