//! Polls a JSON upstream and prints each handled change as one CloudEvents JSON line on
//! stdout (logs go to stderr).
//!
//! ```sh
//! cargo run --example poll_http -- --url URL --db FILE [--interval-ms N]
//! ```
//!
//! The upstream answers `GET URL?after=CURSOR` (no `after` on the first call) with
//! `{"items":[{"id":"...","version":N,"data":{...}}],"next":"CURSOR"|null}`. Each item is an
//! event with entity id = `id`, version = `version`, payload = `data`. The poller sends back
//! the last `ETag` / `Last-Modified` (a 304 changes nothing), waits out 429 / 503
//! `Retry-After`, and stores its cursor in `--db` only once every item of the page was
//! printed; restarted on the same `--db` it resumes from that cursor. An entity version is
//! printed once: the last version printed per entity is kept in `--db` too, and only a
//! newer one passes (a page polled again after a crash prints what it had not printed).

use std::io::Write;
use std::time::Duration;

use syncbus_core::{Bus, Envelope};
use syncbus_envelope::{CloudEventsJson, EventType, Topic};
use syncbus_poll::{AppliedVersions, HttpSource, ItemMapping, PollConfig, Poller, RawEvent};
use syncbus_store::SqliteStore;
use syncbus_workflow::{handler_fn, Context, HandlerError, RetryPolicy, Workflow};

struct Args {
    url: String,
    db: String,
    interval: Duration,
}

fn usage(problem: &str) -> ! {
    eprintln!("poll_http: {problem}");
    eprintln!("usage: poll_http --url URL --db FILE [--interval-ms N]");
    std::process::exit(2)
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let (mut url, mut db, mut interval) = (None, None, Duration::from_millis(1000));
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--url" => url = Some(value()),
            "--db" => db = Some(value()),
            "--interval-ms" => {
                let ms: u64 = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--interval-ms needs a number"));
                if ms == 0 {
                    usage("--interval-ms must be more than zero");
                }
                interval = Duration::from_millis(ms);
            }
            other => usage(&format!("unknown flag {other}")),
        }
    }
    Args {
        url: url.unwrap_or_else(|| usage("--url is required")),
        db: db.unwrap_or_else(|| usage("--db is required")),
        interval,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args();
    let store = SqliteStore::open(&args.db).await?;
    let mapping = ItemMapping::new(EventType::new("poll.change")?, Topic::new("poll.changes")?)
        .entity_at("/id")
        .version_at("/version")
        .data_at("/data");
    let source = HttpSource::builder(&args.url, mapping)?
        .source_name("poll_http")
        .timeout(Duration::from_secs(10))
        .build()?;
    let config = PollConfig::new()
        .interval(args.interval)
        .jitter(0.1)
        .idle_multiplier(1.5)
        .idle_max(args.interval * 2)
        .error_initial(args.interval)
        .error_multiplier(2.0)
        .error_max(args.interval * 10);
    let poller = Poller::open("poll_http", source, store.clone(), config).await?;
    if let Some(c) = poller.metrics().cursor {
        eprintln!("poll_http: resuming after {c:?}");
    }
    let versions = AppliedVersions::open(store.clone(), "poll_http").await?;
    let gate = versions.gate(handler_fn(
        |env: Envelope<RawEvent>, _ctx: Context| async move {
            let line = CloudEventsJson::encode(&env.map_payload(|p| p.0))
                .map_err(|e| HandlerError::permanent(e.to_string()))?;
            let mut out = std::io::stdout().lock();
            out.write_all(&[line.as_slice(), b"\n"].concat())
                .and_then(|()| out.flush())
                .map_err(|e| HandlerError::retryable(format!("stdout: {e}")))?;
            Ok(())
        },
    ));

    let bus = Bus::new();
    let wf = Workflow::builder(&bus)
        .dead_letters(store.dead_letters())
        .build();
    let served = wf
        .serve(poller.clone())
        .name("poll_http")
        .fetch_wait(Duration::from_millis(100))
        .retry(
            RetryPolicy::new()
                .initial(Duration::from_millis(100))
                .max_attempts(5),
        )
        .handle_with(gate)?;
    eprintln!("poll_http: polling {} every {:?}", args.url, args.interval);

    let mut report = tokio::time::interval(Duration::from_secs(10));
    report.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = report.tick() => {
                let m = poller.metrics();
                eprintln!(
                    "poll_http: {} polls, {} items, {} not modified, {} errors ({} throttled), lag {:?}",
                    m.polls, m.items, m.not_modified, m.errors, m.throttled, m.lag
                );
            }
        }
    }
    eprintln!("poll_http: shutting down");
    let settled = served.stop().await;
    eprintln!("poll_http: {settled}");
    Ok(())
}
