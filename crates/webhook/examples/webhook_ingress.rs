//! A webhook receiver: verifies, dedups and stores each request durably before its 2xx,
//! then processes the stored events, printing each as one CloudEvents JSON line on stdout
//! (logs go to stderr).
//!
//! ```sh
//! cargo run --example webhook_ingress -- --listen 127.0.0.1:8080 --db /tmp/in.db \
//!     --source shop=whsec_c2VjcmV0 [--source ...] [--fail-first N]
//! ```
//!
//! `--fail-first N` fails each event's first N attempts (retried from the log, 100 ms
//! apart). Restarted on the same `--db`, it processes what was accepted before, and never
//! an event twice: the handler records the event's key in the same transaction as its
//! effect (a row in `webhook_processed`), then prints.

use std::io::Write;
use std::time::Duration;

use syncbus_core::Bus;
use syncbus_envelope::CloudEventsJson;
use syncbus_storage::{DurableConfig, DurableConsumer};
use syncbus_store::SqliteStore;
use syncbus_webhook::{Ingress, IngressConfig, RawEvent, SourceConfig};
use syncbus_workflow::{Context, DedupConfig, HandlerError, ResultExt, RetryPolicy, Workflow};

struct Args {
    listen: String,
    db: String,
    sources: Vec<SourceConfig>,
    fail_first: u32,
}

fn usage(problem: &str) -> ! {
    eprintln!("webhook_ingress: {problem}");
    eprintln!("usage: webhook_ingress --listen ADDR --db FILE --source NAME=SECRET [--source ...] [--fail-first N]");
    std::process::exit(2)
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let (mut listen, mut db, mut sources, mut fail_first) = (None, None, Vec::new(), 0);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--listen" => listen = Some(value()),
            "--db" => db = Some(value()),
            "--source" => match SourceConfig::parse(&value()) {
                Ok(s) => sources.push(s),
                Err(e) => usage(&e.to_string()),
            },
            "--fail-first" => {
                fail_first = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--fail-first needs a number"))
            }
            other => usage(&format!("unknown flag {other}")),
        }
    }
    Args {
        listen: listen.unwrap_or_else(|| usage("--listen is required")),
        db: db.unwrap_or_else(|| usage("--db is required")),
        sources: if sources.is_empty() {
            usage("at least one --source is required")
        } else {
            sources
        },
        fail_first,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args();
    let store = SqliteStore::open(&args.db).await?;
    store
        .with_connection(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS webhook_processed (
                     event_id TEXT PRIMARY KEY, webhook_id TEXT, source TEXT)",
            )?;
            Ok(())
        })
        .await?;

    let bus = Bus::new();
    let wf = Workflow::builder(&bus)
        .dead_letters(store.dead_letters())
        .build();
    let consumer =
        DurableConsumer::open(store.clone(), "webhook-ingress", DurableConfig::new()).await?;
    let fail_first = args.fail_first;
    let s = store.clone();
    let served = wf
        .serve(consumer)
        .name("webhook-ingress")
        .fetch_wait(Duration::from_millis(20))
        .dedup(DedupConfig::new(store.dedup()))
        .retry(
            RetryPolicy::new()
                .initial(Duration::from_millis(100))
                .multiplier(1.0)
                .max_attempts(fail_first.saturating_add(3)),
        )
        .handle(move |env: syncbus_core::Envelope<RawEvent>, ctx: Context| {
            let store = s.clone();
            async move {
                if ctx.attempt() <= fail_first {
                    eprintln!("event {}: failing attempt {}", env.meta().id(), ctx.attempt());
                    return Err(HandlerError::retryable("--fail-first"));
                }
                let entry = ctx.inbox().cloned();
                let meta = env.meta();
                let row = (
                    meta.id().to_string(),
                    meta.headers().get("webhookid").map(|v| v.to_string()),
                    meta.headers().get("webhooksource").map(|v| v.to_string()),
                );
                store
                    .with_connection(move |conn| {
                        let tx = conn.transaction()?;
                        tx.execute(
                            "INSERT INTO webhook_processed (event_id, webhook_id, source) VALUES (?1, ?2, ?3)",
                            row,
                        )?;
                        if let Some(entry) = &entry {
                            SqliteStore::record_done(&tx, entry)?;
                        }
                        tx.commit()?;
                        Ok(())
                    })
                    .await
                    .retryable()?;
                let stored = env.map_payload(|p| p.0);
                let line = CloudEventsJson::encode(&stored)
                    .map_err(|e| HandlerError::permanent(e.to_string()))?;
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&[line.as_slice(), b"\n"].concat());
                let _ = out.flush();
                Ok(())
            }
        })?;

    let ingress = Ingress::new(store, IngressConfig::new(), args.sources)?;
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    eprintln!("webhook_ingress: listening on {}", listener.local_addr()?);
    let stopper = ingress.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("webhook_ingress: shutting down");
        stopper.shutdown();
    });
    ingress.serve(listener).await?;
    served.stop().await;
    Ok(())
}
