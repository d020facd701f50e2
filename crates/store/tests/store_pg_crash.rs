//! Crash test on PostgreSQL: a publisher child appends events to the durable log and a
//! consumer child applies them with a dedup guard whose effects live in the same database.
//! The parent SIGKILLs both at random points, several times, restarting them each time.
//! Afterwards every event was applied exactly once, none was lost, and every publish that
//! returned `Ok` is in the log. The same harness as the SQLite crash test, on a server.
//!
//! Needs `SYNCBUS_PG_URL` (skipped with one line without it). The children are this test
//! binary run again (`--exact <child> --ignored`), told what to do through environment
//! variables. `SYNCBUS_CRASH_EVENTS` overrides the event count.

mod pg_support;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_support::PgTest;
use syncbus_core::{Bytes, Envelope, EventId, EventType, Metadata};
use syncbus_store::{DurableConfig, DurableConsumer, EventLog, PgStore};

const SCHEMA: &str = "SYNCBUS_PG_CRASH_SCHEMA";
const COUNT: &str = "SYNCBUS_PG_CRASH_COUNT";
const OK_FILE: &str = "SYNCBUS_PG_CRASH_OK_FILE";
const BATCH: u64 = 100;

fn event_count() -> u64 {
    std::env::var("SYNCBUS_CRASH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Event `n` always has the same id, so a re-published event is recognisably the same one.
fn event(n: u64) -> Envelope<Bytes> {
    let meta = Metadata::new(EventType::new("crash.event").unwrap())
        .with_topic("crash.events")
        .with_id(EventId::from_u128(
            0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(n),
        ));
    Envelope::new(meta, Bytes::from(n.to_string()))
}

/// The URL, schema and event count, when run as a child.
fn child_env() -> Option<(String, String, u64)> {
    let url = std::env::var(pg_support::URL_VAR).ok()?;
    let schema = std::env::var(SCHEMA).ok()?;
    let n = std::env::var(COUNT).ok()?.parse().ok()?;
    Some((url, schema, n))
}

async fn open(url: &str, schema: &str) -> PgStore {
    PgStore::builder(url)
        .schema(schema)
        .pool_size(2)
        .connect()
        .await
        .unwrap()
}

/// Child: appends events in batches of 100 from where its record of `Ok`s stops, writing
/// the last number of each batch to the ok-file after `append_batch` returned `Ok`.
#[tokio::test]
#[ignore = "a child process of the PostgreSQL crash test"]
async fn pg_crash_child_publisher() {
    let Some((url, schema, count)) = child_env() else {
        eprintln!("pg_crash_child_publisher runs only as a child of the crash test");
        return;
    };
    let ok_path = std::env::var_os(OK_FILE).unwrap();
    let resume = std::fs::read_to_string(&ok_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max()
        .map_or(0, |last| last + 1);
    let store = open(&url, &schema).await;
    let mut ok = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ok_path)
        .unwrap();
    let mut next = resume;
    while next < count {
        let end = (next + BATCH).min(count);
        store
            .append_batch((next..end).map(event).collect())
            .await
            .unwrap();
        // Publish returned Ok: these are promised to be in the log.
        writeln!(ok, "{}", end - 1).unwrap();
        next = end;
    }
}

/// Applies a batch in one transaction: event ids go into `applied` (ids already there are
/// skipped), side effects into `effects` only for the fresh ones.
const APPLY: &str = "
    WITH input AS (
        SELECT DISTINCT ON (event_id) event_id, n
        FROM unnest($1::text[], $2::bigint[]) AS t(event_id, n)
        ORDER BY event_id
    ), fresh AS (
        INSERT INTO applied (event_id) SELECT event_id FROM input
        ON CONFLICT DO NOTHING
        RETURNING event_id
    )
    INSERT INTO effects (event_id, n) SELECT i.event_id, i.n FROM input i JOIN fresh USING (event_id)";

/// Child: a durable consumer whose handler applies each batch and acks it in one transaction
/// of its own connection (`PgStore::ack_in`). Exits when every event is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the PostgreSQL crash test"]
async fn pg_crash_child_consumer() {
    let Some((url, schema, count)) = child_env() else {
        eprintln!("pg_crash_child_consumer runs only as a child of the crash test");
        return;
    };
    let store = open(&url, &schema).await;
    let mut app = pg_support::client(&url).await;
    app.batch_execute(&format!(
        "SET search_path TO \"{schema}\";
         CREATE TABLE IF NOT EXISTS applied (event_id text PRIMARY KEY);
         CREATE TABLE IF NOT EXISTS effects (id bigserial PRIMARY KEY, event_id text NOT NULL, n bigint NOT NULL);
         CREATE TABLE IF NOT EXISTS redelivered (n bigint NOT NULL);"
    ))
    .await
    .unwrap();
    let log: Arc<dyn EventLog> = Arc::new(store.clone());
    let consumer = DurableConsumer::open(log, "crash-consumer", DurableConfig::new())
        .await
        .unwrap();
    loop {
        let applied: i64 = app
            .query_one("SELECT count(*) FROM applied", &[])
            .await
            .unwrap()
            .get(0);
        if applied >= count as i64 {
            return;
        }
        let batch = consumer
            .fetch_wait(500, Duration::from_millis(200))
            .await
            .unwrap();
        if batch.is_empty() {
            continue;
        }
        let ids: Vec<String> = batch
            .iter()
            .map(|d| d.record.envelope.id().to_string())
            .collect();
        let ns: Vec<i64> = batch
            .iter()
            .map(|d| {
                std::str::from_utf8(d.record.envelope.payload())
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        let redelivered = batch.iter().filter(|d| d.deliveries > 1).count() as i64;
        let offsets: Vec<u64> = batch.iter().map(|d| d.record.offset).collect();
        // The effects, the dedup record and the ack commit together.
        let tx = app.transaction().await.unwrap();
        tx.execute(APPLY, &[&ids, &ns]).await.unwrap();
        tx.execute("INSERT INTO redelivered (n) VALUES ($1)", &[&redelivered])
            .await
            .unwrap();
        store.ack_in(&tx, "crash-consumer", &offsets).await.unwrap();
        tx.commit().await.unwrap();
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn spawn_child(name: &str, url: &str, schema: &str, count: u64, ok_file: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(pg_support::URL_VAR, url)
        .env(SCHEMA, schema)
        .env(COUNT, count.to_string())
        .env(OK_FILE, ok_file)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Kills `child` if it still runs; returns whether the kill interrupted it.
fn kill(child: &mut Child) -> bool {
    if child.try_wait().unwrap().is_some() {
        return false;
    }
    // SIGKILL on Unix: no destructors, no chance to finish a transaction; the server rolls
    // back what the dead connection had open.
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

fn wait_success(child: &mut Child, what: &str, deadline: Instant) {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what} failed: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not finish in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pg_killed_publishers_and_consumers_lose_nothing_and_apply_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(t) = rt.block_on(PgTest::new()) else {
        return;
    };
    let count = event_count();
    let dir = tempfile::tempdir().unwrap();
    let ok_file = dir.path().join("published.ok");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("pg crash test: {count} events, seed {seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let spawn = |name: &str| spawn_child(name, &t.url, &t.schema, count, &ok_file);

    // Kill points are progress thresholds, not times, so every kill lands mid-run however
    // fast the machine: the consumer at 6 random counts of applied events, the publisher at
    // 3 random log sizes, each between 5% and 90% of the run.
    let mut thresholds = |n: usize| {
        let mut t: Vec<u64> = (0..n)
            .map(|_| count / 20 + rng.below(count * 17 / 20))
            .collect();
        t.sort_unstable();
        t.reverse(); // pop() yields the smallest
        t
    };
    let mut consumer_at = thresholds(6);
    let mut publisher_at = thresholds(3);
    let probe = rt.block_on(t.client());
    let progress = |sql: &str| -> u64 {
        // Before the consumer made its tables the query fails: no progress yet.
        rt.block_on(probe.query_one(sql, &[]))
            .ok()
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map_or(0, |v| v as u64)
    };
    let log_size = format!("SELECT max(seq) FROM \"{}\".log", t.schema);
    let applied = format!("SELECT count(*) FROM \"{}\".applied", t.schema);

    let mut publisher = spawn("pg_crash_child_publisher");
    let mut consumer = spawn("pg_crash_child_consumer");
    let (mut publisher_kills, mut consumer_kills) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !(consumer_at.is_empty() && publisher_at.is_empty()) {
        assert!(Instant::now() < deadline, "the run made no progress");
        std::thread::sleep(Duration::from_millis(5));
        if publisher_at
            .last()
            .is_some_and(|&at| progress(&log_size) >= at)
        {
            publisher_at.pop();
            publisher_kills += u32::from(kill(&mut publisher));
            publisher = spawn("pg_crash_child_publisher");
        }
        if consumer_at
            .last()
            .is_some_and(|&at| progress(&applied) >= at)
        {
            consumer_at.pop();
            // A little later, at a random point of the batch under way: between its claim
            // and its commit, or while it fetches.
            std::thread::sleep(Duration::from_millis(rng.below(40)));
            consumer_kills += u32::from(kill(&mut consumer));
            consumer = spawn("pg_crash_child_consumer");
        }
    }
    wait_success(&mut publisher, "the publisher", deadline);
    wait_success(&mut consumer, "the consumer", deadline);
    eprintln!(
        "pg crash test: {publisher_kills} publisher and {consumer_kills} consumer kills mid-run, done in {:.1?}",
        started.elapsed()
    );
    assert_eq!(consumer_kills, 6, "a kill missed the running consumer");
    assert_eq!(publisher_kills, 3, "a kill missed the running publisher");

    // Every publish that returned Ok is in the log; every event is in the log.
    let promised: Vec<u64> = std::fs::read_to_string(&ok_file)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(promised.iter().max(), Some(&(count - 1)));
    let logged: HashSet<u64> = rt.block_on(async {
        let mut seen = HashSet::new();
        let mut from = 0;
        loop {
            let page = t.store.read(from, 10_000).await.unwrap();
            let Some(last) = page.last() else { break };
            from = last.offset + 1;
            for r in &page {
                seen.insert(
                    std::str::from_utf8(r.envelope.payload())
                        .unwrap()
                        .parse()
                        .unwrap(),
                );
            }
        }
        seen
    });
    for &last in &promised {
        let first = last + 1 - (last % BATCH + 1).min(BATCH);
        for n in first..=last {
            assert!(
                logged.contains(&n),
                "event {n} was published Ok but is not in the log"
            );
        }
    }
    assert_eq!(logged.len() as u64, count, "events missing from the log");

    // Every event applied exactly once.
    let (effects, distinct, in_range, twice, redelivered) = rt.block_on(async {
        let c = t.client().await;
        let s = &t.schema;
        let row = c
            .query_one(
                &format!(
                    "SELECT count(*), count(DISTINCT event_id), count(DISTINCT n)
                     FROM \"{s}\".effects WHERE n >= 0 AND n < $1"
                ),
                &[&(count as i64)],
            )
            .await
            .unwrap();
        let twice: i64 = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM (SELECT event_id FROM \"{s}\".effects
                     GROUP BY event_id HAVING count(*) > 1) d"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let redelivered: i64 = c
            .query_one(
                &format!("SELECT coalesce(sum(n), 0)::bigint FROM \"{s}\".redelivered"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            twice,
            redelivered,
        )
    });
    eprintln!(
        "pg crash test: {effects} effects; {redelivered} records were delivered more than once"
    );
    assert_eq!(twice, 0, "events applied more than once");
    let count = count as i64;
    assert_eq!((effects, distinct, in_range), (count, count, count));
    rt.block_on(t.finish());
}
