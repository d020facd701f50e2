//! Changes/s from PostgreSQL into the bus for a bulk update of 100,000 rows (one
//! transaction): `PgCdc` (decode pgoutput, build each envelope, publish it to a bus with an
//! inline subscriber, ack, checkpoint, confirm the slot) over each transport, against its
//! peer, reading the same changes raw with `pg_logical_slot_peek_binary_changes` (rows
//! counted, nothing decoded), in the same run. Each side has its own slot on the table and
//! catches it up, untimed, before each iteration. Target: at least 0.8x the peer.
//!
//! `cdc_pg_one_row_latency`: one row updated, until its change is in the bus, per transport
//! (the slot functions with their default 200 ms poll).
//!
//! Needs `SYNCBUS_PG_URL` (skips without it). Rows: `SYNCBUS_CDC_BENCH_ROWS` (100,000).
//!
//! ```text
//! SYNCBUS_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p syncbus-cdc --bench cdc_pg -- --measurement-time 20
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::StreamExt;
use syncbus_cdc::{Change, PgCdc, PgCdcConfig, PgDelivery, PgTransport};
use syncbus_core::{Bus, Settle, Source};
use syncbus_storage::MemoryStore;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

async fn client(url: &str) -> Client {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

/// Untimed, before each iteration on both sides: the table is vacuumed here (autovacuum is off
/// for it, so it never runs beside a timed region), and a checkpoint writes the
/// running-transactions record that lets the slot's restart point move up to what was
/// confirmed, so neither side's peek re-reads the WAL of earlier iterations (without it the
/// restart point lags by hundreds of MB within a run, and whichever side runs later pays for
/// it). The checkpoint needs a superuser; without one the bench runs as before.
async fn settle_wal(app: &Client, table: &str) {
    app.batch_execute(&format!("VACUUM {table}")).await.unwrap();
    let _ = app.batch_execute("CHECKPOINT").await;
}

/// Untimed: moves an idle slot past everything written so far.
async fn skip_to_now(app: &Client, slot: &str) {
    app.execute(
        "SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())",
        &[&slot],
    )
    .await
    .unwrap();
}

/// Untimed, before each iteration: reads and acks what the other sides' iterations left for
/// this reader's slot, so each iteration times one transaction.
async fn catch_up(reader: &PgCdc) {
    loop {
        let ds: Vec<PgDelivery> = reader
            .fetch(10_000, Duration::from_millis(300))
            .await
            .unwrap();
        if ds.is_empty() {
            break;
        }
        for d in ds {
            d.ack().await.unwrap();
        }
    }
    reader.flush().await.unwrap();
}

fn bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("SYNCBUS_PG_URL") else {
        eprintln!("SYNCBUS_PG_URL is not set: cdc_pg bench skipped");
        return;
    };
    let rows: i64 = std::env::var("SYNCBUS_CDC_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let name = format!("cdc_bench_{}", std::process::id());
    let raw_slot = format!("{name}_raw");
    let streaming_slot = format!("{name}_repl");
    let (app, readers, bus, seen) = rt.block_on(async {
        let app = client(&url).await;
        app.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name};
             CREATE TABLE {name}.t (id int PRIMARY KEY, v int NOT NULL, label text NOT NULL)
                 WITH (autovacuum_enabled = off);
             INSERT INTO {name}.t SELECT g, 0, 'row ' || g FROM generate_series(1, {rows}) g;"
        ))
        .await
        .unwrap();
        let config = PgCdcConfig::new(&url, [format!("{name}.t")])
            .unwrap()
            .slot(&name)
            .unwrap();
        let readers = [
            (
                "syncbus_cdc_replication",
                config
                    .clone()
                    .slot(&streaming_slot)
                    .unwrap()
                    .publication(&name)
                    .unwrap()
                    .transport(PgTransport::Replication),
            ),
            (
                "syncbus_cdc_slot_functions",
                config.transport(PgTransport::SlotFunctions),
            ),
        ];
        // Setup makes the slots (and the publication), then the readers go: each connects
        // for its own functions only, so no other slot's walsender decodes while it runs.
        for (_, config) in &readers {
            drop(
                PgCdc::connect(config.clone(), MemoryStore::new())
                    .await
                    .unwrap(),
            );
        }
        app.query_one(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&raw_slot],
        )
        .await
        .unwrap();
        let bus = Bus::new();
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let sub = bus.subscribe::<Change>(">").unwrap().inline(move |_env| {
            s.fetch_add(1, Relaxed);
        });
        std::mem::forget(sub.unwrap());
        (app, readers, bus, seen)
    });
    // A reader for one function: its slot moved past what other functions left, untimed.
    let open = |config: &PgCdcConfig| {
        rt.block_on(async {
            skip_to_now(&app, config.slot_name()).await;
            PgCdc::connect(config.clone(), MemoryStore::new())
                .await
                .unwrap()
        })
    };
    let update = format!("UPDATE {name}.t SET v = v + 1");
    let table = format!("{name}.t");
    let mut group = c.benchmark_group("cdc_pg_bulk_update");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(rows as u64));
    for (function, config) in &readers {
        let reader = open(config);
        let reader = &reader;
        group.bench_function(*function, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        catch_up(reader).await;
                        settle_wal(&app, &table).await;
                        if config.transport_kind() == PgTransport::SlotFunctions {
                            // untimed: the restart point passes the checkpoint too
                            skip_to_now(&app, config.slot_name()).await;
                        }
                        app.batch_execute(&update).await.unwrap();
                        let start = Instant::now();
                        let mut got = 0;
                        while got < rows {
                            for d in reader
                                .fetch(1000, Duration::from_millis(100))
                                .await
                                .unwrap()
                            {
                                bus.publish_envelope(d.envelope().clone()).await.unwrap();
                                d.ack().await.unwrap();
                                got += 1;
                            }
                        }
                        reader.flush().await.unwrap();
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
    }
    group.bench_function("raw_peek_binary_changes", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // untimed: what the other functions left in this slot
                    skip_to_now(&app, &raw_slot).await;
                    settle_wal(&app, &table).await;
                    // untimed: the restart point passes the checkpoint too
                    skip_to_now(&app, &raw_slot).await;
                    app.batch_execute(&update).await.unwrap();
                    let start = Instant::now();
                    let (page, publication) = (10_000i32, name.clone());
                    let params: [&(dyn ToSql + Sync); 3] = [&raw_slot, &page, &publication];
                    let mut stream = Box::pin(
                        app.query_raw(
                            "SELECT lsn, data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, 'proto_version', '1', 'publication_names', $3)",
                            params,
                        )
                        .await
                        .unwrap(),
                    );
                    let (mut n, mut bytes) = (0i64, 0usize);
                    while let Some(row) = stream.next().await {
                        let row = row.unwrap();
                        bytes += row.get::<_, &[u8]>(1).len();
                        n += 1;
                    }
                    total += start.elapsed();
                    assert!(n >= rows, "{n} rows, {bytes} bytes");
                }
                total
            })
        })
    });
    group.finish();

    // One row changed, until its change is in the bus: the latency each transport adds.
    let touch = format!("UPDATE {name}.t SET v = v + 1 WHERE id = 1");
    let mut group = c.benchmark_group("cdc_pg_one_row_latency");
    group.sample_size(10);
    for (function, config) in &readers {
        let reader = open(config);
        let reader = &reader;
        rt.block_on(catch_up(reader));
        group.bench_function(*function, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        app.batch_execute(&touch).await.unwrap();
                        let mut got = 0;
                        while got < 1 {
                            for d in reader.fetch(1, Duration::from_secs(1)).await.unwrap() {
                                bus.publish_envelope(d.envelope().clone()).await.unwrap();
                                d.ack().await.unwrap();
                                got += 1;
                            }
                        }
                    }
                    reader.flush().await.unwrap();
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
    eprintln!("changes into the bus: {}", seen.load(Relaxed));
    rt.block_on(async {
        PgCdc::drop_slot(&url, &streaming_slot, &name)
            .await
            .unwrap();
        PgCdc::drop_slot(&url, &raw_slot, &name).await.unwrap();
        PgCdc::drop_slot(&url, &name, &name).await.unwrap();
        app.batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
            .await
            .unwrap();
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
