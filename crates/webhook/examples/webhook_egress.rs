//! Delivers N events to an endpoint, signed, with retries, and exits when every one is
//! delivered or dead-lettered, printing a one-line summary.
//!
//! ```sh
//! cargo run --example webhook_egress -- --to http://127.0.0.1:8080/webhooks/shop \
//!     --secret whsec_c2VjcmV0 --count 10 --db /tmp/out.db [--retry-schedule 0,1,2]
//! ```
//!
//! `--retry-schedule` lists the wait in seconds before each attempt (default Svix's:
//! 0, 5, 300, 1800, 7200, 18000, 36000, 36000).

use std::time::{Duration, Instant};

use syncbus_core::{Bus, Bytes, Envelope, EventType, Metadata, Pattern, Topic};
use syncbus_storage::{DeadLetterFilter, DeadLetterStore, EventLog};
use syncbus_store::SqliteStore;
use syncbus_webhook::{Egress, EndpointConfig, Secret};
use syncbus_workflow::Workflow;

fn usage(problem: &str) -> ! {
    eprintln!("webhook_egress: {problem}");
    eprintln!("usage: webhook_egress --to URL --secret SECRET --count N --db FILE [--retry-schedule 0,1,2]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut it = std::env::args().skip(1);
    let (mut to, mut secret, mut count, mut db, mut schedule) = (None, None, None, None, None);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--to" => to = Some(value()),
            "--secret" => {
                secret = Some(Secret::new(&value()).unwrap_or_else(|e| usage(&e.to_string())))
            }
            "--count" => {
                count = Some(
                    value()
                        .parse::<u64>()
                        .unwrap_or_else(|_| usage("--count needs a number")),
                )
            }
            "--db" => db = Some(value()),
            "--retry-schedule" => {
                let list: Result<Vec<Duration>, _> = value()
                    .split(',')
                    .map(|s| s.trim().parse::<f64>().map(Duration::from_secs_f64))
                    .collect();
                schedule = Some(list.unwrap_or_else(|_| {
                    usage("--retry-schedule needs seconds separated by commas")
                }));
            }
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let to = to.unwrap_or_else(|| usage("--to is required"));
    let secret = secret.unwrap_or_else(|| usage("--secret is required"));
    let count = count.unwrap_or_else(|| usage("--count is required"));
    let db = db.unwrap_or_else(|| usage("--db is required"));

    let store = SqliteStore::open(&db).await?;
    let bus = Bus::new();
    let wf = Workflow::builder(&bus)
        .dead_letters(store.dead_letters())
        .build();
    let egress = Egress::new(&wf, store.clone(), store.clone())?;
    let mut config = EndpointConfig::new("egress-demo", to, secret)?
        .subscribe(Pattern::new("demo.>")?)
        .poll_interval(Duration::from_millis(10));
    if let Some(s) = schedule {
        config = config.schedule(s);
    }
    let started = Instant::now();
    let events: Vec<Envelope<Bytes>> = (0..count)
        .map(|n| {
            let meta = Metadata::new(EventType::from_static("demo.event"))
                .with_topic(Topic::from_static("demo.events"));
            Envelope::new(meta, Bytes::from(format!("{{\"n\":{n}}}")))
        })
        .collect();
    for chunk in events.chunks(500) {
        store.append_batch(chunk.to_vec()).await?;
    }
    let endpoint = egress.endpoint(config).await?;
    let dead = store.dead_letters();
    let filter = DeadLetterFilter::new().subscription(endpoint.subscription());
    let dead_before = dead.list(&filter).await?.len();
    // Done when the endpoint's consumer has settled (acked or dead-lettered) the whole log.
    loop {
        let head = store.head().await?;
        if head.is_none() || store.committed(endpoint.subscription()).await? >= head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead_letters = dead.list(&filter).await?.len().saturating_sub(dead_before);
    println!(
        "delivered {} of {count}, dead-lettered {dead_letters}, {} attempts, {:.2}s{}",
        endpoint.delivered(),
        endpoint.attempts(),
        started.elapsed().as_secs_f64(),
        if endpoint.state().disabled {
            ", endpoint disabled"
        } else {
            ""
        },
    );
    endpoint.stop().await;
    Ok(())
}
