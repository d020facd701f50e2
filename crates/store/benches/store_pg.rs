//! PostgreSQL store benches, each group with a raw tokio-postgres peer doing the same work
//! on the same server in the same run. Skipped (one line) without `SYNCBUS_PG_URL`.
//!
//! - `pg_append`: one envelope per commit, and 100 per commit (`append_batch`), against a
//!   prepared `INSERT` of the same encoded bytes into a plain table (one row per commit, and
//!   100 rows in one `INSERT .. SELECT unnest`).
//! - `pg_fetch_ack`: claim 100 records for a durable consumer and ack them, against reading
//!   100 rows after a cursor and moving the cursor in one transaction.
//! - `pg_dedup`: a dedup claim that hits (a done key: duplicate) and one that misses (a new
//!   key: acquired), against a primary-key lookup and an `INSERT .. ON CONFLICT DO NOTHING`.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::{configure, envelope, runtime, BATCH};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syncbus_envelope::Binary;
use syncbus_storage::{DurableConfig, DurableConsumer, EventLog};
use syncbus_store::tokio_postgres::{self, Client, NoTls};
use syncbus_store::PgStore;
use tokio::runtime::Runtime;

fn url() -> Option<String> {
    static SAID: AtomicU64 = AtomicU64::new(0);
    match std::env::var("SYNCBUS_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if SAID.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("SYNCBUS_PG_URL is not set: PostgreSQL benches skipped");
            }
            None
        }
    }
}

/// A store in a fresh schema, and a raw client whose `search_path` is that schema with the
/// peer's plain tables.
fn setup(rt: &Runtime, url: &str, what: &str) -> (PgStore, Client, String) {
    let schema = format!("syncbus_bench_{what}_{}", std::process::id());
    rt.block_on(async {
        let store = PgStore::builder(url)
            .schema(&schema)
            .pool_size(2)
            .connect()
            .await
            .expect("open");
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "SET search_path TO {schema};
                 CREATE TABLE events (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                      at timestamptz NOT NULL DEFAULT now(), body bytea NOT NULL);
                 CREATE TABLE cursor (name text PRIMARY KEY, pos bigint NOT NULL);
                 CREATE TABLE keys (key text PRIMARY KEY);"
            ))
            .await
            .expect("schema");
        (store, client, schema)
    })
}

fn teardown(rt: &Runtime, store: PgStore, client: Client, schema: &str) {
    store.close();
    rt.block_on(client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")))
        .expect("drop");
}

fn pg_append(c: &mut Criterion) {
    let Some(url) = url() else { return };
    let rt = runtime();
    let (log, client, schema) = setup(&rt, &url, "append");
    let body = Binary::encode(&envelope(1)).expect("encode");
    let mut group = c.benchmark_group("pg_append");
    configure(&mut group);

    group.throughput(Throughput::Elements(1));
    common::append_1(&mut group, &rt, &log);
    let insert = rt
        .block_on(client.prepare("INSERT INTO events (body) VALUES ($1)"))
        .expect("prepare");
    group.bench_function("tokio_postgres_insert_1", |b| {
        b.iter(|| {
            rt.block_on(client.execute(&insert, &[&body]))
                .expect("insert")
        })
    });

    group.throughput(Throughput::Elements(BATCH as u64));
    common::append_batch(&mut group, &rt, &log);
    let insert_many = rt
        .block_on(client.prepare("INSERT INTO events (body) SELECT unnest($1::bytea[])"))
        .expect("prepare");
    group.bench_function("tokio_postgres_insert_100", |b| {
        b.iter(|| {
            // Encoding is part of the work on both sides.
            let bodies: Vec<Vec<u8>> = (0..BATCH as u64)
                .map(|n| Binary::encode(&envelope(n)).expect("encode"))
                .collect();
            rt.block_on(client.execute(&insert_many, &[&bodies]))
                .expect("insert")
        })
    });
    group.finish();
    teardown(&rt, log, client, &schema);
}

fn pg_fetch_ack(c: &mut Criterion) {
    let Some(url) = url() else { return };
    let rt = runtime();
    let (store, mut client, schema) = setup(&rt, &url, "fetch");
    let log: Arc<dyn EventLog> = Arc::new(store.clone());
    let consumer = rt
        .block_on(DurableConsumer::open(log, "bench", DurableConfig::new()))
        .expect("consumer");
    let mut group = c.benchmark_group("pg_fetch_ack");
    configure(&mut group);
    group.throughput(Throughput::Elements(BATCH as u64));

    common::fetch_ack(&mut group, &rt, &store, &consumer);

    rt.block_on(client.batch_execute("INSERT INTO cursor VALUES ('bench', 0)"))
        .expect("cursor");
    group.bench_function("tokio_postgres_read_100_move_cursor", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let bodies: Vec<Vec<u8>> = (0..iters * BATCH as u64)
                    .map(|n| Binary::encode(&envelope(n)).expect("encode"))
                    .collect();
                client
                    .execute(
                        "INSERT INTO events (body) SELECT unnest($1::bytea[])",
                        &[&bodies],
                    )
                    .await
                    .expect("fill");
                let start = Instant::now();
                for _ in 0..iters {
                    let tx = client.transaction().await.expect("begin");
                    let pos: i64 = tx
                        .query_one(
                            "SELECT pos FROM cursor WHERE name = 'bench' FOR UPDATE",
                            &[],
                        )
                        .await
                        .expect("pos")
                        .get(0);
                    let rows = tx
                        .query(
                            "SELECT seq, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
                            &[&pos, &(BATCH as i64)],
                        )
                        .await
                        .expect("read");
                    let mut last = pos;
                    for row in &rows {
                        last = row.get(0);
                        let env = Binary::decode(row.get(1), &Default::default()).expect("decode");
                        black_box(env);
                    }
                    tx.execute("UPDATE cursor SET pos = $1 WHERE name = 'bench'", &[&last])
                        .await
                        .expect("cursor");
                    tx.commit().await.expect("commit");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    teardown(&rt, store, client, &schema);
}

fn pg_dedup(c: &mut Criterion) {
    let Some(url) = url() else { return };
    let rt = runtime();
    let (store, client, schema) = setup(&rt, &url, "dedup");
    let dedup = store.dedup();
    common::prepare_dedup(&rt, &dedup);
    rt.block_on(client.batch_execute("INSERT INTO keys VALUES ('already-done')"))
        .expect("key");
    let mut group = c.benchmark_group("pg_dedup");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));

    common::claim_hit(&mut group, &rt, &dedup);
    let lookup = rt
        .block_on(client.prepare("SELECT 1 FROM keys WHERE key = $1"))
        .expect("prepare");
    group.bench_function("tokio_postgres_lookup_hit", |b| {
        b.iter(|| {
            let row = rt
                .block_on(client.query_one(&lookup, &[&"already-done"]))
                .expect("hit");
            black_box(row.get::<_, i32>(0));
        })
    });
    common::claim_miss(&mut group, &rt, &dedup);
    let insert = rt
        .block_on(client.prepare("INSERT INTO keys VALUES ($1) ON CONFLICT DO NOTHING"))
        .expect("prepare");
    let mut m = 0u64;
    group.bench_function("tokio_postgres_insert_miss", |b| {
        b.iter(|| {
            m += 1;
            let inserted = rt
                .block_on(client.execute(&insert, &[&format!("new-{m}")]))
                .expect("insert");
            assert_eq!(inserted, 1);
        })
    });
    group.finish();
    teardown(&rt, store, client, &schema);
}

criterion_group!(benches, pg_append, pg_fetch_ack, pg_dedup);
criterion_main!(benches);
