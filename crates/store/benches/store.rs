//! SQLite store benches, each group with a raw rusqlite peer doing the same work at the same
//! durability (WAL, `synchronous=FULL`) in the same run.
//!
//! - `sqlite_append`: one envelope per commit, and 100 per commit (`append_batch`), against
//!   an insert loop of the same encoded bytes into a plain table.
//! - `sqlite_fetch_ack`: claim 100 records for a durable consumer and ack them, against
//!   reading 100 rows after a cursor and updating the cursor in one transaction.
//! - `sqlite_dedup`: a dedup claim that hits (a done key: duplicate) and one that misses (a
//!   new key: acquired), against a primary-key lookup and an `INSERT OR IGNORE`.

mod common;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common::{configure, envelope, runtime, BATCH};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rusqlite::Connection;
use syncbus_envelope::Binary;
use syncbus_storage::{DurableConfig, DurableConsumer, EventLog};
use syncbus_store::{SqliteConfig, SqliteStore};
use tokio::runtime::Runtime;

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

fn sqlite_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let log = store(&rt, dir.path(), "append.db");
    let conn = raw(dir.path(), "raw.db");
    let body = Binary::encode(&envelope(1)).expect("encode");
    let mut group = c.benchmark_group("sqlite_append");
    configure(&mut group);

    group.throughput(Throughput::Elements(1));
    common::append_1(&mut group, &rt, &log);
    group.bench_function("rusqlite_insert_1", |b| {
        let mut stmt = conn
            .prepare("INSERT INTO events (at, body) VALUES (?1, ?2)")
            .expect("prepare");
        b.iter(|| stmt.execute((1_i64, &body)).expect("insert"))
    });

    group.throughput(Throughput::Elements(BATCH as u64));
    common::append_batch(&mut group, &rt, &log);
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

    common::fetch_ack(&mut group, &rt, &store, &consumer);

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
    common::prepare_dedup(&rt, &dedup);
    conn.execute("INSERT OR IGNORE INTO keys VALUES ('already-done')", [])
        .expect("key");
    let mut group = c.benchmark_group("sqlite_dedup");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));

    common::claim_hit(&mut group, &rt, &dedup);
    group.bench_function("rusqlite_lookup_hit", |b| {
        let mut stmt = conn
            .prepare("SELECT 1 FROM keys WHERE key = ?1")
            .expect("prepare");
        b.iter(|| {
            let hit: i64 = stmt.query_row(["already-done"], |r| r.get(0)).expect("hit");
            black_box(hit);
        })
    });
    common::claim_miss(&mut group, &rt, &dedup);
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
