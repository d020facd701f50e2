//! Keyed count and tumbling-window sum through a topology, each beside a hand-written
//! `HashMap` loop doing the same work (same hasher); and the cost of a checkpoint of
//! 1,000,000 keys (snapshot, and snapshot + SQLite write).
//!
//! `cargo bench` runs 10,000,000 events per iteration; in test mode (`cargo test --benches`)
//! 100,000, so the check stays quick.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use syncbus_storage::Checkpoints;
use syncbus_stream::{Stream, Topology, Windows};

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

fn events() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        10_000_000
    } else {
        100_000
    }
}

/// Event `i`: key, value, event time (ms, increasing with a little disorder).
#[inline]
fn event(i: u64) -> (u64, i64, i64) {
    let key = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10_000;
    (key, (i % 100) as i64, (i / 10) as i64 - (i % 7) as i64)
}

fn keyed_count(c: &mut Criterion) {
    let n = events();
    let mut g = c.benchmark_group("keyed_count");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("topology", |b| {
        b.iter(|| {
            let s = Stream::<u64>::new().key_by(|k| *k).count();
            let mut t = Topology::new(s);
            for i in 0..n {
                t.process(event(i).0, None);
            }
            black_box(t.metrics().processed)
        })
    });
    g.bench_function("hashmap_loop", |b| {
        b.iter(|| {
            let mut counts: Map<u64, u64> = Map::default();
            for i in 0..n {
                let k = black_box(event(i).0);
                let c = counts.entry(k).or_insert(0);
                *c += 1;
                black_box((k, *c));
            }
            black_box(counts.len())
        })
    });
    g.finish();
}

fn tumbling_sum(c: &mut Criterion) {
    let n = events();
    let mut g = c.benchmark_group("tumbling_sum");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("topology", |b| {
        b.iter(|| {
            let s = Stream::<(u64, i64)>::new()
                .map(|(k, v)| (k, v))
                .window(Windows::tumbling(Duration::from_secs(1)).unwrap())
                .sum();
            let mut t = Topology::new(s);
            let mut closed = 0u64;
            for i in 0..n {
                let (k, v, at) = event(i);
                t.process((k, v), Some(at));
                if i % 1024 == 1023 {
                    t.advance_with(at - 100, &mut |r, _| closed += r.value as u64);
                }
            }
            t.advance_with(i64::MAX / 8, &mut |r, _| closed += r.value as u64);
            black_box(closed)
        })
    });
    g.bench_function("hashmap_loop", |b| {
        b.iter(|| {
            // Open windows by start, each a map of key -> sum; closed when the watermark passes.
            let mut open: std::collections::BTreeMap<i64, Map<u64, i64>> = Default::default();
            let mut closed = 0u64;
            for i in 0..n {
                let (k, v, at) = black_box(event(i));
                let start = at.div_euclid(1_000) * 1_000;
                *open.entry(start).or_default().entry(k).or_insert(0) += v;
                if i % 1024 == 1023 {
                    let wm = at - 100;
                    while let Some(e) = open.first_entry() {
                        if *e.key() + 1_000 > wm {
                            break;
                        }
                        let mut sums: Vec<_> = e.remove().into_iter().collect();
                        sums.sort_unstable();
                        closed += sums.iter().map(|(_, s)| *s as u64).sum::<u64>();
                    }
                }
            }
            for (_, m) in open {
                closed += m.values().map(|s| *s as u64).sum::<u64>();
            }
            black_box(closed)
        })
    });
    g.finish();
}

fn checkpoint(c: &mut Criterion) {
    let keys: u64 = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    let s = Stream::<u64>::new().key_by(|k| *k).count();
    let mut t = Topology::new(s);
    for k in 0..keys {
        t.process(k, None);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(syncbus_store::SqliteStore::open(
            dir.path().join("bench.db"),
        ))
        .unwrap();
    let mut g = c.benchmark_group("checkpoint_1m_keys");
    g.sample_size(10);
    g.bench_function("snapshot", |b| {
        b.iter(|| black_box(t.snapshot().unwrap().len()))
    });
    g.bench_function("snapshot_and_sqlite_put", |b| {
        b.iter_batched(
            || (),
            |()| {
                let bytes = t.snapshot().unwrap();
                rt.block_on(store.put("bench", bytes)).unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, keyed_count, tumbling_sum, checkpoint);
criterion_main!(benches);
