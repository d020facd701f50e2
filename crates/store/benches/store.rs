//! SQLite store benches, each group with a raw rusqlite peer doing the same work at the same
//! durability (WAL, `synchronous=FULL`) in the same run.
//!
//! - `sqlite_append`: one envelope per commit, and 100 per commit (`append_batch`), against
//!   an insert loop of the same encoded bytes into a plain table.
//! - `sqlite_fetch_ack`: claim 100 records for a durable consumer and ack them, against
//!   reading 100 rows after a cursor and updating the cursor in one transaction.
//! - `sqlite_dedup`: a dedup claim that hits (a done key: duplicate) and one that misses (a
//!   new key: acquired), against a primary-key lookup and an `INSERT OR IGNORE`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rusqlite::Connection;
use syncbus_core::{Bytes, Envelope, EventType, Metadata};
use syncbus_envelope::Binary;
use syncbus_store::{DurableConfig, DurableConsumer, EventLog, SqliteConfig, SqliteStore};
use syncbus_workflow::store::{Claim, DedupKey, DedupStore, Outcome};
use tokio::runtime::Runtime;

const BATCH: usize = 100;

fn envelope(n: u64) -> Envelope<Bytes> {
    let meta = Metadata::new(EventType::from_static("bench.event")).with_topic("bench.events");
    Envelope::new(
        meta,
        Bytes::from(format!("{{\"order\":{n},\"total_cents\":1999}}")),
    )
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn store(rt: &Runtime, dir: &Path, name: &str) -> SqliteStore {
    rt.block_on(SqliteStore::open_with(dir.join(name), SqliteConfig::new()))
        .expect("open")
}

/// A plain connection with the store's durability settings.
fn raw(dir: &Path, name: &str) -> Connection {
    let conn = Connection::open(dir.join(name)).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("wal");
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, body BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, pos INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY) WITHOUT ROWID;",
    )
    .expect("schema");
    conn
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
}

fn sqlite_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let log = store(&rt, dir.path(), "append.db");
    let conn = raw(dir.path(), "raw.db");
    let body = Binary::encode(&envelope(1)).expect("encode");
    let mut group = c.benchmark_group("sqlite_append");
    configure(&mut group);

    group.throughput(Throughput::Elements(1));
    group.bench_function("syncbus_append_1", |b| {
        b.iter(|| rt.block_on(log.append(envelope(1))).expect("append"))
    });
    group.bench_function("rusqlite_insert_1", |b| {
        let mut stmt = conn
            .prepare("INSERT INTO events (at, body) VALUES (?1, ?2)")
            .expect("prepare");
        b.iter(|| stmt.execute((1_i64, &body)).expect("insert"))
    });

    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("syncbus_append_batch_100", |b| {
        b.iter(|| {
            let batch = (0..BATCH as u64).map(envelope).collect();
            rt.block_on(log.append_batch(batch)).expect("append")
        })
    });
    group.bench_function("rusqlite_insert_100_in_tx", |b| {
        b.iter(|| {
            conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
            {
                let mut stmt = conn
                    .prepare_cached("INSERT INTO events (at, body) VALUES (?1, ?2)")
                    .expect("prepare");
                for _ in 0..BATCH {
                    stmt.execute((1_i64, &body)).expect("insert");
                }
            }
            conn.execute_batch("COMMIT").expect("commit");
        })
    });
    group.finish();
}

fn sqlite_fetch_ack(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let store = store(&rt, dir.path(), "fetch.db");
    let log: Arc<dyn EventLog> = Arc::new(store.clone());
    let consumer = rt
        .block_on(DurableConsumer::open(log, "bench", DurableConfig::new()))
        .expect("consumer");
    let conn = raw(dir.path(), "raw.db");
    let body = Binary::encode(&envelope(1)).expect("encode");
    let mut group = c.benchmark_group("sqlite_fetch_ack");
    configure(&mut group);
    group.throughput(Throughput::Elements(BATCH as u64));

    group.bench_function("syncbus_fetch_100_ack", |b| {
        b.iter_custom(|iters| {
            for _ in 0..iters {
                let batch = (0..BATCH as u64).map(envelope).collect();
                rt.block_on(store.append_batch(batch)).expect("fill");
            }
            let start = Instant::now();
            for _ in 0..iters {
                let got = rt.block_on(consumer.fetch(BATCH)).expect("fetch");
                assert_eq!(got.len(), BATCH);
                rt.block_on(consumer.ack_all(&got)).expect("ack");
            }
            start.elapsed()
        })
    });

    conn.execute("INSERT OR IGNORE INTO cursor VALUES ('bench', 0)", [])
        .expect("cursor");
    group.bench_function("rusqlite_read_100_move_cursor", |b| {
        b.iter_custom(|iters| {
            conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
            for _ in 0..iters * BATCH as u64 {
                conn.prepare_cached("INSERT INTO events (at, body) VALUES (?1, ?2)")
                    .expect("prepare")
                    .execute((1_i64, &body))
                    .expect("fill");
            }
            conn.execute_batch("COMMIT").expect("commit");
            let start = Instant::now();
            for _ in 0..iters {
                conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
                let pos: i64 = conn
                    .query_row("SELECT pos FROM cursor WHERE name = 'bench'", [], |r| {
                        r.get(0)
                    })
                    .expect("pos");
                let mut last = pos;
                {
                    let mut stmt = conn
                        .prepare_cached(
                            "SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                        )
                        .expect("prepare");
                    let rows = stmt
                        .query_map((pos, BATCH as i64), |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                        })
                        .expect("query");
                    for row in rows {
                        let (seq, body) = row.expect("row");
                        black_box(body);
                        last = seq;
                    }
                }
                conn.execute("UPDATE cursor SET pos = ?1 WHERE name = 'bench'", [last])
                    .expect("cursor");
                conn.execute_batch("COMMIT").expect("commit");
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn sqlite_dedup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let dedup = store(&rt, dir.path(), "dedup.db").dedup();
    let conn = raw(dir.path(), "raw.db");
    let hour = Duration::from_secs(3600);
    let seen = DedupKey::new("already-done").expect("key");
    rt.block_on(dedup.finish(&seen, Outcome::Done, hour))
        .expect("finish");
    conn.execute("INSERT OR IGNORE INTO keys VALUES ('already-done')", [])
        .expect("key");
    let mut group = c.benchmark_group("sqlite_dedup");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));

    group.bench_function("syncbus_claim_hit", |b| {
        b.iter(|| {
            let claim = rt.block_on(dedup.claim(&seen, hour)).expect("claim");
            assert_eq!(claim, Claim::Duplicate);
        })
    });
    group.bench_function("rusqlite_lookup_hit", |b| {
        let mut stmt = conn
            .prepare("SELECT 1 FROM keys WHERE key = ?1")
            .expect("prepare");
        b.iter(|| {
            let hit: i64 = stmt.query_row(["already-done"], |r| r.get(0)).expect("hit");
            black_box(hit);
        })
    });
    let mut n = 0u64;
    group.bench_function("syncbus_claim_miss", |b| {
        b.iter(|| {
            n += 1;
            let key = DedupKey::new(&format!("new-{n}")).expect("key");
            let claim = rt.block_on(dedup.claim(&key, hour)).expect("claim");
            assert_eq!(claim, Claim::Acquired);
        })
    });
    let mut m = 0u64;
    group.bench_function("rusqlite_insert_or_ignore_miss", |b| {
        let mut stmt = conn
            .prepare("INSERT OR IGNORE INTO keys VALUES (?1)")
            .expect("prepare");
        b.iter(|| {
            m += 1;
            assert_eq!(stmt.execute([format!("new-{m}")]).expect("insert"), 1);
        })
    });
    group.finish();
}

criterion_group!(benches, sqlite_append, sqlite_fetch_ack, sqlite_dedup);
criterion_main!(benches);
