//! Crash test: a publisher child appends events to a durable log and a consumer child applies
//! them with a dedup-guarded handler whose effects and acks commit in one transaction of the
//! same SQLite file. The parent
//! SIGKILLs both at random points, several times, restarting them each time. Afterwards every
//! event was applied exactly once, none was lost, and every publish that returned `Ok` is in
//! the log.
//!
//! The children are this test binary run again (`--exact <child> --ignored`), told what to
//! do through environment variables. `SYNCBUS_CRASH_EVENTS` overrides the event count.

mod crash_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crash_support::{check_log, event_count, kill_and_restart, publish, spawn_child, Rng, Run};
use syncbus_storage::{DurableConfig, DurableConsumer, EventLog};
use syncbus_store::{SqliteConfig, SqliteStore, Synchronous};

const DB: &str = "SYNCBUS_CRASH_DB";
const COUNT: &str = "SYNCBUS_CRASH_COUNT";
const OK_FILE: &str = "SYNCBUS_CRASH_OK_FILE";
fn config() -> SqliteConfig {
    SqliteConfig::new()
        .synchronous(Synchronous::Full)
        .busy_timeout(Duration::from_secs(60))
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
    let store = SqliteStore::open_with(&db, config()).await.unwrap();
    publish(&store, count, &ok_path).await;
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
            .fetch(500, Duration::from_millis(200))
            .await
            .unwrap();
        if batch.is_empty() {
            continue;
        }
        let tx = app.transaction().unwrap();
        for d in &batch {
            let env = &d.envelope();
            let id = env.id().to_string();
            let n = crash_support::number(env);
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
        let offsets: Vec<u64> = batch.iter().map(|d| d.offset()).collect();
        if offsets[0].is_multiple_of(2) {
            SqliteStore::ack_in(&tx, consumer.name(), &offsets).unwrap();
            tx.commit().unwrap();
        } else {
            tx.commit().unwrap();
            consumer.ack_all(batch).await.unwrap();
        }
    }
}

#[test]
fn killed_publishers_and_consumers_lose_nothing_and_apply_once() {
    let count = event_count();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let ok_file = dir.path().join("published.ok");
    let mut rng = Rng::from_clock(&format!("crash test, {count} events"));
    let progress = |sql: &str| -> u64 {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .ok()
            .flatten()
            .map_or(0, |v| v as u64)
    };
    let count_s = count.to_string();
    let spawn = |publisher: bool| {
        let name = if publisher {
            "crash_child_publisher"
        } else {
            "crash_child_consumer"
        };
        spawn_child(
            name,
            &[
                (DB, db.as_os_str()),
                (COUNT, count_s.as_ref()),
                (OK_FILE, ok_file.as_os_str()),
            ],
        )
    };
    kill_and_restart(
        &Run {
            spawn: &spawn,
            logged: &|| progress("SELECT MAX(seq) FROM syncbus_log"),
            applied: &|| progress("SELECT COUNT(*) FROM applied"),
        },
        count,
        &mut rng,
    );

    // Every publish that returned Ok is in the log; every event is in the log.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        check_log(&store, count, &ok_file).await;
    });
    let conn = rusqlite::Connection::open(&db).unwrap();

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
