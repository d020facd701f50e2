//! The transactional inbox across a real crash: a durable consumer served by
//! `Workflow::serve` with dedup on the same SQLite file, SIGKILLed right after its handler's
//! transaction committed and before the dedup layer marked the key or the delivery was acked
//! (the window a crash can always hit).
//!
//! - With the key recorded in the handler's transaction (`SqliteStore::record_done`), the
//!   restarted consumer finds it done: the effect happened once, and nothing waits.
//! - Without it (the control), the restarted consumer waits for the dead holder's claim to
//!   lapse, one lease and no more, counted in `dedup_waits`, and then runs the handler again:
//!   the at-least-once window the inbox closes, bounded and visible.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use syncbus::store::{DurableConfig, DurableConsumer, EventLog, SqliteStore};
use syncbus::{Bus, Context, DedupConfig, Envelope, Event, ResultExt, Workflow};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Payment {
    n: u64,
}

impl Event for Payment {
    const TYPE: &'static str = "shop.payment.taken";
    const TOPIC: &'static str = "payments.taken";
}

const EVENTS: u64 = 20;
const CRASH_AT: u64 = 7;
const CONSUMER: &str = "payments";

const DB: &str = "SYNCBUS_INBOX_DB";
const MODE: &str = "SYNCBUS_INBOX_MODE";
const CRASH: &str = "SYNCBUS_INBOX_CRASH_AT";
const MARKER: &str = "SYNCBUS_INBOX_MARKER";
const LEASE_MS: &str = "SYNCBUS_INBOX_LEASE_MS";
const WAITS: &str = "SYNCBUS_INBOX_WAITS";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Child: serves the log with dedup on the same file; the handler writes its effect in a
/// transaction of the store's connection (with the key, in mode `inbox`), and at `CRASH_AT`
/// says so in the marker file after the commit and stops there, to be killed. Exits once
/// every event is acked, writing the `dedup_waits` it counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the inbox crash tests"]
async fn inbox_crash_child() {
    let Some(db) = var(DB) else {
        eprintln!("inbox_crash_child runs only as a child of the inbox crash tests");
        return;
    };
    let inbox = var(MODE).as_deref() == Some("inbox");
    let crash_at: Option<u64> = var(CRASH).and_then(|v| v.parse().ok());
    let lease = Duration::from_millis(var(LEASE_MS).unwrap().parse().unwrap());
    let store = SqliteStore::open(&db).await.unwrap();
    let consumer = DurableConsumer::open(store.clone(), CONSUMER, DurableConfig::new())
        .await
        .unwrap();
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let marker = PathBuf::from(var(MARKER).unwrap());
    let s = store.clone();
    let served = wf
        .serve(consumer)
        .name(CONSUMER)
        .fetch_wait(Duration::from_millis(20))
        .dedup(DedupConfig::new(store.dedup()).lease(lease))
        .handle(move |env: Envelope<Payment>, ctx: Context| {
            let (store, marker) = (s.clone(), marker.clone());
            let n = env.payload().n;
            let entry = ctx.inbox().cloned().expect("the dedup layer claimed a key");
            async move {
                store
                    .with_connection(move |conn| {
                        let tx = conn.transaction()?;
                        tx.execute("INSERT INTO effects (n) VALUES (?1)", [n as i64])?;
                        if inbox {
                            SqliteStore::record_done(&tx, &entry)?;
                        }
                        tx.commit()?;
                        Ok(())
                    })
                    .await
                    .retryable()?;
                if crash_at == Some(n) {
                    // Committed; the dedup layer has not marked the key, nothing is acked.
                    std::fs::write(&marker, b"committed").unwrap();
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        })
        .unwrap();
    // Done when the last record of the log is acked (offsets are the log's, not 0..EVENTS).
    let last = store
        .head()
        .await
        .unwrap()
        .expect("the log holds the events");
    loop {
        let committed = store.committed(CONSUMER).await.unwrap();
        if committed.is_some_and(|c| c >= last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waits = served.metrics().dedup_waits;
    let _ = served.stop().await;
    std::fs::write(var(WAITS).unwrap(), waits.to_string()).unwrap();
}

fn child(db: &Path, dir: &Path, inbox: bool, crash: bool, lease: Duration) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "inbox_crash_child",
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(DB, db)
    .env(MODE, if inbox { "inbox" } else { "plain" })
    .env(MARKER, dir.join("marker"))
    .env(WAITS, dir.join("waits"))
    .env(LEASE_MS, lease.as_millis().to_string())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    if crash {
        cmd.env(CRASH, CRASH_AT.to_string());
    }
    cmd.spawn().unwrap()
}

fn wait_exit(mut c: Child, deadline: Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = c.try_wait().unwrap() {
            assert!(status.success(), "the restarted consumer failed: {status}");
            return;
        }
        if start.elapsed() > deadline {
            let _ = c.kill();
            panic!("the restarted consumer did not finish in {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs one crash: events in the log, a consumer SIGKILLed just after event `CRASH_AT`'s
/// commit, a restart that runs to the end. Returns the effects per event, how long the
/// restart took, and the waits it counted.
fn crash_and_restart(inbox: bool, lease: Duration) -> (Vec<i64>, Duration, u64) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        store
            .with_connection(|conn| {
                conn.execute_batch("CREATE TABLE effects (n INTEGER NOT NULL)")?;
                Ok(())
            })
            .await
            .unwrap();
        let events = (0..EVENTS)
            .map(|n| {
                Envelope::from_event(Payment { n })
                    .to_bytes_payload()
                    .unwrap()
            })
            .collect();
        store.append_batch(events).await.unwrap();
    });

    let mut first = child(&db, dir.path(), inbox, true, lease);
    let marker = dir.path().join("marker");
    let start = Instant::now();
    while !marker.exists() {
        if let Some(status) = first.try_wait().unwrap() {
            panic!("the consumer exited before the crash point: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the consumer never reached the crash point"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGKILL: no destructors, no finish of the key, no ack.
    first.kill().unwrap();
    first.wait().unwrap();

    let restarted = Instant::now();
    wait_exit(
        child(&db, dir.path(), inbox, false, lease),
        Duration::from_secs(120),
    );
    let took = restarted.elapsed();
    let waits: u64 = std::fs::read_to_string(dir.path().join("waits"))
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("inbox crash (inbox: {inbox}): restart took {took:?}, {waits} dedup waits");
    (effects_per_event(&db, &rt), took, waits)
}

/// Effects per event number, read through the store.
fn effects_per_event(db: &Path, rt: &tokio::runtime::Runtime) -> Vec<i64> {
    rt.block_on(async {
        let store = SqliteStore::open(db).await.unwrap();
        store
            .with_connection(|conn| {
                let mut per = vec![0i64; EVENTS as usize];
                let mut stmt = conn.prepare("SELECT n, COUNT(*) FROM effects GROUP BY n")?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
                for row in rows {
                    let (n, c) = row?;
                    per[n as usize] = c;
                }
                Ok(per)
            })
            .await
            .unwrap()
    })
}

#[test]
fn with_the_key_in_the_handlers_transaction_a_crash_after_commit_applies_once() {
    let lease = Duration::from_secs(30);
    let (effects, took, waits) = crash_and_restart(true, lease);
    assert_eq!(
        effects,
        vec![1; EVENTS as usize],
        "effects per event after a crash right after event {CRASH_AT}'s commit"
    );
    assert_eq!(waits, 0, "the restart waited for a claim");
    assert!(
        took < lease / 2,
        "the restart took {took:?}: it waited for the dead holder's claim"
    );
}

#[test]
fn without_it_the_restart_waits_one_lease_visibly_and_runs_the_handler_again() {
    let lease = Duration::from_secs(2);
    let (effects, took, waits) = crash_and_restart(false, lease);
    assert!(
        took >= lease / 2,
        "the restart took {took:?}: it ran before the dead holder's claim lapsed"
    );
    let mut expected = vec![1; EVENTS as usize];
    expected[CRASH_AT as usize] = 2;
    assert_eq!(
        effects, expected,
        "the control did not hit the crash window"
    );
    assert_eq!(
        waits, 1,
        "the wait for the dead holder's claim was not counted"
    );
    assert!(
        took < lease + Duration::from_secs(15),
        "the restart took {took:?}: longer than the lease ({lease:?}) allows"
    );
}
