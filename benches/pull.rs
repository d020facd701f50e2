//! Pull consumers: publish a batch, fetch it, ack every delivery.
//!
//! Group `pull_fetch_ack`: per iteration 64 events are published to a pull consumer, taken
//! with `try_fetch(64)` and acked one by one (throughput 64 elements), against the bare
//! transport a pull consumer is built over, crossbeam-channel: send 64, receive 64.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syncbus::{Bus, ConsumerConfig, Event};

const BATCH: usize = 64;

#[derive(Clone)]
struct Ev {
    seq: u64,
    a: u64,
}

impl Event for Ev {
    const TYPE: &'static str = "bench.ev";
}

fn pull_fetch_ack(c: &mut Criterion) {
    let mut group = c.benchmark_group("pull_fetch_ack");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);

    {
        let bus = Bus::new();
        let consumer = bus
            .consumer::<Ev>("bench.ev", ConsumerConfig::default())
            .expect("consumer");
        let mut seq = 0u64;
        group.bench_function("syncbus_publish_fetch_ack", |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    seq += 1;
                    bus.blocking_publish(Ev { seq, a: 1 }).expect("publish");
                }
                let batch = consumer.try_fetch(BATCH);
                assert_eq!(batch.len(), BATCH);
                for d in batch {
                    black_box(d.payload().seq ^ d.payload().a);
                    d.ack().expect("in flight");
                }
            })
        });
        assert_eq!(consumer.pending(), 0);
    }

    {
        let (tx, rx) = crossbeam_channel::bounded::<Ev>(1024);
        let mut seq = 0u64;
        group.bench_function("crossbeam_send_recv", |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    seq += 1;
                    tx.send(Ev { seq, a: 1 }).unwrap();
                }
                for ev in rx.try_iter().take(BATCH) {
                    black_box(ev.seq ^ ev.a);
                }
            })
        });
        assert!(rx.is_empty());
    }

    group.finish();
}

criterion_group!(benches, pull_fetch_ack);
criterion_main!(benches);
