//! Crash test: a publisher child appends events to a durable log and a consumer child applies
//! them with a dedup-guarded handler whose effects and acks commit in one transaction of the
//! same SQLite file. The parent
//! SIGKILLs both at random points, several times, restarting them each time. Afterwards every
//! event was applied exactly once, none was lost, and every publish that returned `Ok` is in
//! the log.
//!
//! The children are this test binary run again (`--exact <child> --ignored`), told what to
//! do through environment variables. `SYNCBUS_CRASH_EVENTS` overrides the event count.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncbus_core::{Bytes, Envelope, EventId, EventType, Metadata};
use syncbus_store::{
    DurableConfig, DurableConsumer, EventLog, SqliteConfig, SqliteStore, Synchronous,
};

const DB: &str = "SYNCBUS_CRASH_DB";
const COUNT: &str = "SYNCBUS_CRASH_COUNT";
const OK_FILE: &str = "SYNCBUS_CRASH_OK_FILE";
const BATCH: u64 = 100;

fn event_count() -> u64 {
    std::env::var("SYNCBUS_CRASH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn config() -> SqliteConfig {
    SqliteConfig::new()
        .synchronous(Synchronous::Full)
        .busy_timeout(Duration::from_secs(60))
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

fn child_env() -> Option<(PathBuf, u64)> {
    let db = std::env::var_os(DB)?;
    let n = std::env::var(COUNT).ok()?.parse().ok()?;
    Some((PathBuf::from(db), n))
}

/// Child: appends events in batches of 100 from where its record of `Ok`s stops, writing
/// the last number of each batch to the ok-file after `append_batch` returned `Ok`.
#[tokio::test]
#[ignore = "a child process of the crash test"]
async fn crash_child_publisher() {
    let Some((db, count)) = child_env() else {
        eprintln!("crash_child_publisher runs only as a child of the crash test");
        return;
    };
    let ok_path = PathBuf::from(std::env::var_os(OK_FILE).unwrap());
    let resume = std::fs::read_to_string(&ok_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max()
        .map_or(0, |last| last + 1);
    let store = SqliteStore::open_with(&db, config()).await.unwrap();
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

/// Child: a durable consumer whose handler, in ONE transaction of its own connection,
/// records the event id in `applied` (skipping ids already there: redeliveries, and events a
/// publisher killed between its commit and noting the `Ok` published again), records the
/// side effect in `effects`, and acks, in the transaction or right after it. Exits when
/// every event is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the crash test"]
async fn crash_child_consumer() {
    let Some((db, count)) = child_env() else {
        eprintln!("crash_child_consumer runs only as a child of the crash test");
        return;
    };
    let store = SqliteStore::open_with(&db, config()).await.unwrap();
    let mut app = rusqlite::Connection::open(&db).unwrap();
    app.busy_timeout(Duration::from_secs(60)).unwrap();
    app.pragma_update(None, "synchronous", "FULL").unwrap();
    app.execute_batch(
        "CREATE TABLE IF NOT EXISTS applied (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS effects (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, n INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS duplicates_skipped (n INTEGER NOT NULL);",
    )
    .unwrap();
    let log: Arc<dyn EventLog> = Arc::new(store);
    let consumer = DurableConsumer::open(log, "crash-consumer", DurableConfig::new())
        .await
        .unwrap();
    loop {
        let applied: i64 = app
            .query_row("SELECT COUNT(*) FROM applied", [], |r| r.get(0))
            .unwrap();
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
        let tx = app.transaction().unwrap();
        for d in &batch {
            let env = &d.record.envelope;
            let id = env.id().to_string();
            let n: u64 = std::str::from_utf8(env.payload()).unwrap().parse().unwrap();
            let fresh = tx
                .execute(
                    "INSERT OR IGNORE INTO applied (event_id) VALUES (?1)",
                    [&id],
                )
                .unwrap();
            if fresh == 1 {
                tx.execute(
                    "INSERT INTO effects (event_id, n) VALUES (?1, ?2)",
                    (&id, n as i64),
                )
                .unwrap();
            } else {
                tx.execute("INSERT INTO duplicates_skipped (n) VALUES (?1)", [n as i64])
                    .unwrap();
            }
        }
        // Both ways a handler may ack: inside its transaction (effect and ack commit
        // together), or after it commits (a kill in between redelivers applied events, which
        // the applied table then skips).
        let offsets: Vec<u64> = batch.iter().map(|d| d.record.offset).collect();
        if offsets[0] % 2 == 0 {
            SqliteStore::ack_in(&tx, consumer.name(), &offsets).unwrap();
            tx.commit().unwrap();
        } else {
            tx.commit().unwrap();
            consumer.ack_all(&batch).await.unwrap();
        }
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

fn spawn_child(name: &str, db: &Path, count: u64, ok_file: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(DB, db)
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
    // SIGKILL on Unix: no destructors, no flush, no chance to finish a transaction.
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
fn killed_publishers_and_consumers_lose_nothing_and_apply_once() {
    let count = event_count();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let ok_file = dir.path().join("published.ok");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test: {count} events, seed {seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();

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
    let progress = |sql: &str| -> u64 {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .ok()
            .flatten()
            .map_or(0, |v| v as u64)
    };

    let mut publisher = spawn_child("crash_child_publisher", &db, count, &ok_file);
    let mut consumer = spawn_child("crash_child_consumer", &db, count, &ok_file);
    let (mut publisher_kills, mut consumer_kills) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !(consumer_at.is_empty() && publisher_at.is_empty()) {
        assert!(Instant::now() < deadline, "the run made no progress");
        std::thread::sleep(Duration::from_millis(5));
        if publisher_at
            .last()
            .is_some_and(|&t| progress("SELECT MAX(seq) FROM syncbus_log") >= t)
        {
            publisher_at.pop();
            publisher_kills += u32::from(kill(&mut publisher));
            publisher = spawn_child("crash_child_publisher", &db, count, &ok_file);
        }
        if consumer_at
            .last()
            .is_some_and(|&t| progress("SELECT COUNT(*) FROM applied") >= t)
        {
            consumer_at.pop();
            consumer_kills += u32::from(kill(&mut consumer));
            consumer = spawn_child("crash_child_consumer", &db, count, &ok_file);
        }
    }
    wait_success(&mut publisher, "the publisher", deadline);
    wait_success(&mut consumer, "the consumer", deadline);
    eprintln!(
        "crash test: {publisher_kills} publisher and {consumer_kills} consumer kills mid-run, done in {:.1?}",
        started.elapsed()
    );
    assert_eq!(consumer_kills, 6, "a kill missed the running consumer");
    assert_eq!(publisher_kills, 3, "a kill missed the running publisher");

    // Every publish that returned Ok is in the log; every event is in the log.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let promised: Vec<u64> = std::fs::read_to_string(&ok_file)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(promised.iter().max(), Some(&(count - 1)));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let logged: HashSet<u64> = rt.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        let mut seen = HashSet::new();
        let mut from = 0;
        loop {
            let page = store.read(from, 10_000).await.unwrap();
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
    let (effects, distinct, in_range): (i64, i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT event_id), COUNT(DISTINCT n) FROM effects WHERE n >= 0 AND n < ?1",
            [count as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let duplicates: i64 = conn
        .query_row("SELECT COUNT(*) FROM duplicates_skipped", [], |r| r.get(0))
        .unwrap();
    let twice: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM (SELECT event_id FROM effects GROUP BY event_id HAVING COUNT(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    eprintln!("crash test: {effects} effects, {duplicates} duplicates skipped by the dedup guard");
    assert_eq!(twice, 0, "events applied more than once");
    let count = count as i64;
    assert_eq!((effects, distinct, in_range), (count, count, count));
}
