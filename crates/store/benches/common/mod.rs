//! What the SQLite and PostgreSQL benches share: the events, the runtime, the group settings
//! and the syncbus side of each group (the peers are backend-specific).
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::BenchmarkGroup;
use syncbus_core::{Bytes, Envelope, EventType, Metadata};
use syncbus_storage::{Claim, DedupKey, DedupStore, Outcome};
use syncbus_storage::{DurableConsumer, EventLog};
use tokio::runtime::Runtime;

pub const BATCH: usize = 100;

/// The dedup key the hit benches look up.
pub const DONE_KEY: &str = "already-done";

pub fn envelope(n: u64) -> Envelope<Bytes> {
    let meta = Metadata::new(EventType::from_static("bench.event"))
        .with_topic(syncbus_envelope::Topic::from_static("bench.events"));
    Envelope::new(
        meta,
        Bytes::from(format!("{{\"order\":{n},\"total_cents\":1999}}")),
    )
}

pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
}

/// `syncbus_append_1` (set the group's throughput to 1 first).
pub fn append_1(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, log: &dyn EventLog) {
    group.bench_function("syncbus_append_1", |b| {
        b.iter(|| rt.block_on(log.append(envelope(1))).expect("append"))
    });
}

/// `syncbus_append_batch_100` (throughput `BATCH`).
pub fn append_batch(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, log: &dyn EventLog) {
    group.bench_function("syncbus_append_batch_100", |b| {
        b.iter(|| {
            let batch = (0..BATCH as u64).map(envelope).collect();
            rt.block_on(log.append_batch(batch)).expect("append")
        })
    });
}

/// `syncbus_fetch_100_ack`: fills the log outside the timing, then fetches 100 and acks them.
pub fn fetch_ack(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    log: &dyn EventLog,
    consumer: &DurableConsumer,
) {
    group.bench_function("syncbus_fetch_100_ack", |b| {
        b.iter_custom(|iters| {
            for _ in 0..iters {
                let batch = (0..BATCH as u64).map(envelope).collect();
                rt.block_on(log.append_batch(batch)).expect("fill");
            }
            let start = Instant::now();
            for _ in 0..iters {
                let got = rt
                    .block_on(consumer.fetch(BATCH, Duration::ZERO))
                    .expect("fetch");
                assert_eq!(got.len(), BATCH);
                rt.block_on(consumer.ack_all(got)).expect("ack");
            }
            start.elapsed()
        })
    });
}

/// Marks [`DONE_KEY`] done, for the hit bench.
pub fn prepare_dedup(rt: &Runtime, dedup: &dyn DedupStore) {
    let seen = DedupKey::new(DONE_KEY).expect("key");
    rt.block_on(dedup.finish(&seen, Outcome::Done, Duration::from_secs(3600)))
        .expect("finish");
}

/// `syncbus_claim_hit`: a claim of a done key (a duplicate).
pub fn claim_hit(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, dedup: &dyn DedupStore) {
    let seen = DedupKey::new(DONE_KEY).expect("key");
    let hour = Duration::from_secs(3600);
    group.bench_function("syncbus_claim_hit", |b| {
        b.iter(|| {
            let claim = rt.block_on(dedup.claim(&seen, hour)).expect("claim");
            assert_eq!(claim, Claim::Duplicate);
        })
    });
}

/// `syncbus_claim_miss`: a claim of a new key (acquired).
pub fn claim_miss(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, dedup: &dyn DedupStore) {
    let hour = Duration::from_secs(3600);
    let mut n = 0u64;
    group.bench_function("syncbus_claim_miss", |b| {
        b.iter(|| {
            n += 1;
            let key = DedupKey::new(&format!("new-{n}")).expect("key");
            let claim = rt.block_on(dedup.claim(&key, hour)).expect("claim");
            assert_eq!(claim, Claim::Acquired);
        })
    });
}
