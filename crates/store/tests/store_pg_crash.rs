//! Crash test on PostgreSQL: a publisher child appends events to the durable log and a
//! consumer child applies them with a dedup guard whose effects live in the same database.
//! The parent SIGKILLs both at random points, several times, restarting them each time.
//! Afterwards every event was applied exactly once, none was lost, and every publish that
//! returned `Ok` is in the log. The same harness as the SQLite crash test, on a server.
//!
//! Needs `SYNCBUS_PG_URL` (skipped with one line without it). The children are this test
//! binary run again (`--exact <child> --ignored`), told what to do through environment
//! variables. `SYNCBUS_CRASH_EVENTS` overrides the event count.

mod crash_support;
mod pg_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crash_support::{check_log, event_count, kill_and_restart, publish, spawn_child, Rng, Run};
use pg_support::PgTest;
use syncbus_storage::{DurableConfig, DurableConsumer, EventLog};
use syncbus_store::PgStore;

const SCHEMA: &str = "SYNCBUS_PG_CRASH_SCHEMA";
const COUNT: &str = "SYNCBUS_PG_CRASH_COUNT";
const OK_FILE: &str = "SYNCBUS_PG_CRASH_OK_FILE";
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
    let store = open(&url, &schema).await;
    publish(&store, count, Path::new(&ok_path)).await;
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
            .fetch(500, Duration::from_millis(200))
            .await
            .unwrap();
        if batch.is_empty() {
            continue;
        }
        let ids: Vec<String> = batch
            .iter()
            .map(|d| d.envelope().id().to_string())
            .collect();
        let ns: Vec<i64> = batch
            .iter()
            .map(|d| {
                std::str::from_utf8(d.envelope().payload())
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        let redelivered = batch.iter().filter(|d| d.deliveries() > 1).count() as i64;
        let offsets: Vec<u64> = batch.iter().map(|d| d.offset()).collect();
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

#[test]
fn pg_killed_publishers_and_consumers_lose_nothing_and_apply_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(t) = rt.block_on(PgTest::new()) else {
        return;
    };
    let count = event_count();
    let dir = tempfile::tempdir().unwrap();
    let ok_file = dir.path().join("published.ok");
    let mut rng = Rng::from_clock(&format!("pg crash test, {count} events"));
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
    let count_s = count.to_string();
    let spawn = |publisher: bool| {
        let name = if publisher {
            "pg_crash_child_publisher"
        } else {
            "pg_crash_child_consumer"
        };
        spawn_child(
            name,
            &[
                (pg_support::URL_VAR, t.url.as_ref()),
                (SCHEMA, t.schema.as_ref()),
                (COUNT, count_s.as_ref()),
                (OK_FILE, ok_file.as_os_str()),
            ],
        )
    };
    kill_and_restart(
        &Run {
            spawn: &spawn,
            logged: &|| progress(&log_size),
            applied: &|| progress(&applied),
        },
        count,
        &mut rng,
    );

    // Every publish that returned Ok is in the log; every event is in the log.
    rt.block_on(check_log(&t.store, count, &ok_file));

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
