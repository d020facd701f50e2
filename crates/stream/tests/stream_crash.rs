//! A topology counting per key over a durable consumer on SQLite, SIGKILLed at random points
//! and restarted: the final counts equal an uninterrupted run's.
//!
//! `SYNCBUS_STREAM_CRASH_EVENTS` sets the number of events (default 100,000).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use syncbus_core::{Bytes, Envelope, EventType, Metadata, Timestamp, Topic};
use syncbus_storage::{DurableConfig, DurableConsumer, EventLog};
use syncbus_store::SqliteStore;
use syncbus_stream::{RunConfig, Stream, Table, Topology};

const KEYS: u64 = 97;
const NAME: &str = "counts";

fn events() -> u64 {
    std::env::var("SYNCBUS_STREAM_CRASH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn event(n: u64) -> Envelope<Bytes> {
    let meta = Metadata::new(EventType::from_static("crash.counted"))
        .with_topic(Topic::from_static("crash.counted"))
        .with_time(Timestamp::from_unix_millis(n));
    Envelope::new(meta, Bytes::from((n % KEYS).to_string()))
}

fn key(env: &Envelope<Bytes>) -> u64 {
    std::str::from_utf8(env.payload())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

fn topology(
    table: &Table<u64, u64>,
) -> Topology<Envelope<Bytes>, impl syncbus_stream::Operator<Envelope<Bytes>, Out = ()>> {
    Topology::new(
        Stream::<Envelope<Bytes>>::new()
            .key_by(key)
            .count()
            .to_table(table),
    )
}

/// The child: runs the topology until it has caught up, then writes the counts to `OUT`.
#[test]
#[ignore = "run by stream_crash_restart as a child process"]
fn stream_crash_child() {
    let db = PathBuf::from(std::env::var("SYNCBUS_STREAM_DB").unwrap());
    let out = PathBuf::from(std::env::var("SYNCBUS_STREAM_OUT").unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        let consumer = DurableConsumer::open(store.clone(), NAME, DurableConfig::new())
            .await
            .unwrap();
        let table = Table::new();
        let config = RunConfig::new(NAME)
            .checkpoints(store.clone())
            .checkpoint_every(1_000)
            .unwrap();
        let running = topology(&table).spawn(consumer, config);
        running.caught_up().await;
        running.stop().await.unwrap();
        let counts: BTreeMap<u64, u64> = table.entries().into_iter().collect();
        std::fs::write(&out, serde_json::to_vec(&counts).unwrap()).unwrap();
    });
}

fn spawn(db: &Path, out: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "stream_crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SYNCBUS_STREAM_DB", db)
        .env("SYNCBUS_STREAM_OUT", out)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn seed() -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("stream crash test: seed {seed}");
    seed
}

fn below(state: &mut u64, n: u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state % n
}

#[test]
fn stream_crash_restart() {
    let count = events();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stream.db");
    let out = dir.path().join("counts.json");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        let mut n = 0;
        while n < count {
            let end = (n + 1_000).min(count);
            store
                .append_batch((n..end).map(event).collect())
                .await
                .unwrap();
            n = end;
        }
        store
    });

    // The uninterrupted run: the same topology over the same events, in one go.
    let expected: BTreeMap<u64, u64> = {
        let table = Table::new();
        let mut t = topology(&table);
        for n in 0..count {
            t.process(event(n), None);
        }
        table.entries().into_iter().collect()
    };

    let mut rng = seed();
    let mut thresholds: Vec<u64> = (0..6)
        .map(|_| count / 20 + below(&mut rng, count * 17 / 20))
        .collect();
    thresholds.sort_unstable();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut kills = 0;
    let mut child = spawn(&db, &out);
    let committed = || rt.block_on(store.committed(NAME)).unwrap().unwrap_or(0);
    for threshold in thresholds {
        while committed() < threshold {
            assert!(Instant::now() < deadline, "no progress");
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the child exited on its own ({status}) before {threshold}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(below(&mut rng, 30)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        child = spawn(&db, &out);
    }
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the last run failed: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the last run did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "stream crash test: {count} events, {kills} kills mid-run, {:.1?}",
        started.elapsed()
    );
    assert!(kills >= 5, "only {kills} kills landed in a running child");
    let got: BTreeMap<u64, u64> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(got.values().sum::<u64>(), count, "every event counted once");
    assert_eq!(got, expected);
}
