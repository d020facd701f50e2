//! Two processes, one stream: the publisher forwards bus events to JetStream, each consumer
//! serves the shared durable consumer into its SQLite file, applying every event once and
//! one entity's events in version order.
//!
//! ```text
//! cargo run -p syncbus-nats --example nats_bridge -- --url nats://127.0.0.1:4222 --stream DEMO --role publish --count 1000
//! cargo run -p syncbus-nats --example nats_bridge -- --url nats://127.0.0.1:4222 --stream DEMO --role consume --db demo.db [--fail-every 10]
//! ```
//!
//! The consumer prints each event it applied as one CloudEvents JSON line on stdout (logs go
//! to stderr) and runs until Ctrl-C, or until `--expect N` events are applied. Consumers
//! started with the same `--stream` share the durable consumer. `--fail-every K` fails every
//! K-th event's first attempt (a retryable error: nak with the retry delay, then applied).
//!
//! Each event is applied in one SQLite transaction with its dedup key
//! (`SqliteStore::record_done`), so a consumer killed at any point and started again applies
//! nothing twice. The transaction also checks the entity's version: an event that arrives
//! before its predecessor (a redelivery overtook it, or another process holds it) fails
//! retryably and comes back, so each entity's events apply in order across processes.

use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncbus_core::{Bus, Bytes, EntityId, Envelope, Event, EventId, EventType, Metadata, Topic};
use syncbus_envelope::CloudEventsJson;
use syncbus_nats::{NatsBridge, NatsConfig};
use syncbus_store::SqliteStore;
use syncbus_workflow::{Context, DedupConfig, HandlerError, ResultExt, RetryPolicy, Workflow};

/// Entities the publisher spreads its events over.
const ENTITIES: u64 = 16;
/// How soon an event that arrived before its predecessor comes back.
const OUT_OF_ORDER_RETRY: Duration = Duration::from_millis(20);

/// The event both roles agree on; it travels as JSON in the envelope's payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BridgeEvent {
    n: u64,
    entity: u64,
}

impl Event for BridgeEvent {
    const TYPE: &'static str = "bridge.event";
    const TOPIC: &'static str = "bridge.events";
    fn entity_id(&self) -> Option<EntityId> {
        Some(EntityId::from(self.entity))
    }
    fn version(&self) -> Option<u64> {
        Some(self.n / ENTITIES + 1)
    }
}

struct Args {
    url: String,
    stream: String,
    role: String,
    count: u64,
    db: Option<String>,
    fail_every: Option<u64>,
    expect: Option<u64>,
    ack_wait: Duration,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        url: "nats://127.0.0.1:4222".into(),
        stream: String::new(),
        role: String::new(),
        count: 1_000,
        db: None,
        fail_every: None,
        expect: None,
        ack_wait: Duration::from_secs(5),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--stream" => args.stream = value()?,
            "--role" => args.role = value()?,
            "--count" => args.count = number(value()?)?,
            "--db" => args.db = Some(value()?),
            "--fail-every" => args.fail_every = Some(number(value()?)?).filter(|k| *k > 0),
            "--expect" => args.expect = Some(number(value()?)?),
            "--ack-wait-ms" => args.ack_wait = Duration::from_millis(number(value()?)?.max(100)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.stream.is_empty() {
        return Err("--stream NAME is required".into());
    }
    Ok(args)
}

/// Event `n` of a stream always has the same id, so publishing it again is recognisably a
/// retry (and dropped by the stream's duplicate window).
fn event(stream: &str, n: u64) -> Envelope<Bytes> {
    let salt = stream.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let id = EventId::from_u128(
        (0x0190_0000_0000_7000_8000_u128 << 48) ^ (u128::from(salt) << 64) | u128::from(n),
    );
    let event = BridgeEvent {
        n,
        entity: n % ENTITIES,
    };
    let meta = Metadata::new(EventType::from_static(BridgeEvent::TYPE))
        .with_topic(Topic::from_static(BridgeEvent::TOPIC))
        .with_id(id)
        .with_entity_id(event.entity_id())
        .with_version(event.version());
    let json = serde_json::to_vec(&event).unwrap_or_default();
    Envelope::new(meta, Bytes::from(json))
}

fn retry() -> RetryPolicy {
    // Out-of-order deliveries are retried until their predecessor is applied (after a
    // consumer died, that is its ack wait), so attempts are many and short: the delay does
    // not grow past 100 ms, and the out-of-order error asks for 20 ms.
    RetryPolicy::new()
        .max_attempts(1_000)
        .initial(Duration::from_millis(20))
        .max_delay(Duration::from_millis(100))
}

async fn publish(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::new();
    let bridge =
        NatsBridge::connect(NatsConfig::new(&args.url, &args.stream).retry(&retry())).await?;
    let outbound = bridge.forward(&bus, "bridge.>")?;
    for n in 0..args.count {
        bus.publish_envelope(event(&args.stream, n)).await?;
    }
    loop {
        let (new, dup, failed) = (
            outbound.published(),
            outbound.duplicates(),
            outbound.failed(),
        );
        if failed > 0 {
            return Err(format!("{failed} publishes failed").into());
        }
        if new + dup >= args.count {
            eprintln!("published {new} new, {dup} already in the stream");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS applied (id TEXT NOT NULL, n INTEGER NOT NULL, entity TEXT NOT NULL, version INTEGER NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT);
CREATE TABLE IF NOT EXISTS entity_version (entity TEXT PRIMARY KEY, version INTEGER NOT NULL);";

async fn consume(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let db = args.db.as_deref().ok_or("--role consume needs --db FILE")?;
    let store = SqliteStore::open(db).await?;
    store
        .with_connection(|conn| Ok(conn.execute_batch(SCHEMA)?))
        .await?;
    let bus = Bus::new();
    let config = NatsConfig::new(&args.url, &args.stream)
        .retry(&retry())
        .ack_wait(args.ack_wait);
    let bridge = NatsBridge::connect(config).await?;
    let source = bridge.source_with(store.dead_letters()).await?;
    let fail_every = args.fail_every;
    let s = store.clone();
    let served = Workflow::new(&bus)
        .serve(source)
        .name(format!("{}-consumer", args.stream))
        .keyed(8)
        .batch(64)
        .retry(retry())
        .fetch_wait(Duration::from_millis(200))
        .in_progress_every(Some(args.ack_wait / 3))
        .dead_letters(store.dead_letters())
        .dedup(DedupConfig::new(store.dedup()).lease(args.ack_wait))
        .handle(move |env: Envelope<BridgeEvent>, ctx: Context| {
            let store = s.clone();
            async move {
                let n = env.payload().n;
                if fail_every.is_some_and(|k| n % k == k - 1) && ctx.attempt() == 1 {
                    return Err(HandlerError::retryable(format!("event {n}: failing its first attempt (--fail-every)")));
                }
                let entry = ctx.inbox().cloned().ok_or_else(|| HandlerError::permanent("no dedup key"))?;
                let id = env.id().to_string();
                let entity = env.meta().entity_id().map(|e| e.as_str().to_owned()).unwrap_or_default();
                let version = env.meta().version().unwrap_or(0);
                store
                    .with_connection(move |conn| {
                        let tx = conn.transaction()?;
                        let have: i64 = tx
                            .query_row("SELECT COALESCE(MAX(version), 0) FROM entity_version WHERE entity = ?1", [&entity], |r| r.get(0))?;
                        if version as i64 != have + 1 {
                            return Ok(Some(have));
                        }
                        tx.execute("INSERT INTO applied (id, n, entity, version) VALUES (?1, ?2, ?3, ?4)", (&id, n as i64, &entity, version as i64))?;
                        tx.execute("INSERT INTO entity_version (entity, version) VALUES (?1, ?2) ON CONFLICT (entity) DO UPDATE SET version = ?2", (&entity, version as i64))?;
                        SqliteStore::record_done(&tx, &entry)?;
                        tx.commit()?;
                        Ok(None)
                    })
                    .await
                    .retryable()?
                    .map_or(Ok(()), |have| {
                        Err(HandlerError::retryable(format!("event {n}: version {version} arrived while entity is at {have}"))
                            .retry_after(OUT_OF_ORDER_RETRY))
                    })?;
                let bytes = env.to_bytes_payload().map_err(|e| HandlerError::permanent(e.to_string()))?;
                let line = CloudEventsJson::encode(&bytes).map_err(|e| HandlerError::permanent(e.to_string()))?;
                println!("{}", String::from_utf8_lossy(&line));
                Ok(())
            }
        })?;
    let expect = args.expect;
    let applied = || async {
        store
            .with_connection(|conn| {
                Ok(
                    conn.query_row("SELECT COUNT(DISTINCT id) FROM applied", [], |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            })
            .await
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if let Some(want) = expect {
                    if applied().await? as u64 >= want {
                        break;
                    }
                }
            }
        }
    }
    let settles = served.stop().await;
    eprintln!("consumer stopped: {settles}; {} applied", applied().await?);
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\nusage: nats_bridge --url URL --stream NAME --role publish --count N\n       nats_bridge --url URL --stream NAME --role consume --db FILE [--fail-every K] [--expect N] [--ack-wait-ms MS]");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.role.as_str() {
            "publish" => publish(&args).await,
            "consume" => consume(&args).await,
            other => Err(format!("--role must be publish or consume, not {other:?}").into()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
