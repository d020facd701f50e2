//! The crash-test harness shared by the SQLite and PostgreSQL crash tests: the events, the
//! publisher child's loop, spawning and SIGKILLing children at progress thresholds, and the
//! checks that every `Ok` publish is in the log.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use syncbus_core::{Bytes, Envelope, EventId, EventType, Metadata};
use syncbus_storage::EventLog;

/// Events per `append_batch` of the publisher child.
pub const BATCH: u64 = 100;

/// How many events a run publishes (`SYNCBUS_CRASH_EVENTS`, default 100,000).
pub fn event_count() -> u64 {
    std::env::var("SYNCBUS_CRASH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Event `n` always has the same id, so a re-published event is recognisably the same one.
pub fn event(n: u64) -> Envelope<Bytes> {
    let meta = Metadata::new(EventType::new("crash.event").unwrap())
        .with_topic(syncbus_envelope::Topic::from_static("crash.events"))
        .with_id(EventId::from_u128(
            0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(n),
        ));
    Envelope::new(meta, Bytes::from(n.to_string()))
}

/// The number an event carries.
pub fn number(env: &Envelope<Bytes>) -> u64 {
    std::str::from_utf8(env.payload()).unwrap().parse().unwrap()
}

/// The publisher child's work: appends events in batches from where its record of `Ok`s
/// stops, writing the last number of each batch to `ok_path` after `append_batch` returned
/// `Ok` (a promise that those events are in the log).
pub async fn publish(log: &dyn EventLog, count: u64, ok_path: &Path) {
    let resume = std::fs::read_to_string(ok_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max()
        .map_or(0, |last| last + 1);
    let mut ok = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ok_path)
        .unwrap();
    let mut next = resume;
    while next < count {
        let end = (next + BATCH).min(count);
        log.append_batch((next..end).map(event).collect())
            .await
            .unwrap();
        // One write call per line: `writeln!` on a file may split the number and the newline
        // into two writes, and a kill between them glues this line to the next run's.
        ok.write_all(format!("{}\n", end - 1).as_bytes()).unwrap();
        next = end;
    }
}

/// xorshift, seeded from the clock (printed, so a failing run can be looked into).
pub struct Rng(pub u64);

impl Rng {
    pub fn from_clock(what: &str) -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("{what}: seed {seed}");
        Rng(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// `n` random thresholds between 5 % and 90 % of `count`, smallest last (for `pop`).
    fn thresholds(&mut self, n: usize, count: u64) -> Vec<u64> {
        let mut t: Vec<u64> = (0..n)
            .map(|_| count / 20 + self.below(count * 17 / 20))
            .collect();
        t.sort_unstable();
        t.reverse();
        t
    }
}

/// Runs this test binary again as the child test `name`, with `envs`.
pub fn spawn_child(name: &str, envs: &[(&str, &std::ffi::OsStr)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null())
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

/// The children of one run and how to watch their progress.
pub struct Run<'a> {
    /// Spawns the publisher (`true`) or the consumer (`false`).
    pub spawn: &'a dyn Fn(bool) -> Child,
    /// The log's size (highest offset) now.
    pub logged: &'a dyn Fn() -> u64,
    /// How many events the consumer has applied now.
    pub applied: &'a dyn Fn() -> u64,
}

/// Starts both children and SIGKILLs (then restarts) the consumer 6 times and the publisher
/// 3 times, at random progress thresholds, so every kill lands mid-run however fast the
/// machine; the consumer a random 0-40 ms past its threshold, anywhere in a batch. Then
/// waits for both to finish and asserts every kill interrupted a running child.
pub fn kill_and_restart(run: &Run<'_>, count: u64, rng: &mut Rng) {
    let started = Instant::now();
    let mut consumer_at = rng.thresholds(6, count);
    let mut publisher_at = rng.thresholds(3, count);
    let mut publisher = (run.spawn)(true);
    let mut consumer = (run.spawn)(false);
    let (mut publisher_kills, mut consumer_kills) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !(consumer_at.is_empty() && publisher_at.is_empty()) {
        assert!(Instant::now() < deadline, "the run made no progress");
        // A child that failed on its own (not killed) would stall the run until the deadline:
        // say so at once.
        for (child, what) in [
            (&mut publisher, "the publisher"),
            (&mut consumer, "the consumer"),
        ] {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{what} failed on its own: {status}");
            }
        }
        std::thread::sleep(Duration::from_millis(5));
        if publisher_at.last().is_some_and(|&t| (run.logged)() >= t) {
            publisher_at.pop();
            publisher_kills += u32::from(kill(&mut publisher));
            publisher = (run.spawn)(true);
        }
        if consumer_at.last().is_some_and(|&t| (run.applied)() >= t) {
            consumer_at.pop();
            std::thread::sleep(Duration::from_millis(rng.below(40)));
            consumer_kills += u32::from(kill(&mut consumer));
            consumer = (run.spawn)(false);
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
}

/// Every publish that returned `Ok` (per `ok_path`) is in `log`, and all `count` events are.
pub async fn check_log(log: &dyn EventLog, count: u64, ok_path: &Path) {
    let promised: Vec<u64> = std::fs::read_to_string(ok_path)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(promised.iter().max(), Some(&(count - 1)));
    let mut logged = HashSet::new();
    let mut from = 0;
    loop {
        let page = log.read(from, 10_000).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.offset + 1;
        logged.extend(page.iter().map(|r| number(&r.envelope)));
    }
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
}
