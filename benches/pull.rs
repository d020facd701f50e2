//! Pull consumers: publish a batch, fetch it, ack every delivery.
//!
//! Group `pull_fetch_ack`: per iteration 64 events are published to a pull consumer, taken
//! with `try_fetch(64)` and acked one by one (throughput 64 elements), against the bare
//! transport a pull consumer is built over, crossbeam-channel: send 64, receive 64.
//!
//! Group `serve`: per iteration 64 events are published to a pull consumer and the bench
//! waits until a handler has run on each and each delivery is acked. `syncbus_workflow_serve`
//! is `Workflow::serve` (decode check, context, the stack, metrics, settle from the
//! outcome); the peer `hand_written_fetch_ack` is the loop one would write instead, on the
//! same consumer and runtime: `fetch(64, wait)`, call the handler, `ack`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use syncbus::{Bus, ConsumerConfig, Envelope, Event, HandlerError, Workflow};

const BATCH: usize = 64;

#[derive(Clone, Serialize, Deserialize)]
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

/// Publishes one batch from the bench thread and waits until `handled` has grown by it.
fn publish_and_wait(bus: &Bus, seq: &mut u64, handled: &AtomicU64) {
    let target = handled.load(Relaxed) + BATCH as u64;
    for _ in 0..BATCH {
        *seq += 1;
        bus.blocking_publish(Ev { seq: *seq, a: 1 })
            .expect("publish");
    }
    while handled.load(Relaxed) < target {
        std::thread::yield_now();
    }
}

fn serve(c: &mut Criterion) {
    let mut group = c.benchmark_group("serve");
    group
        .throughput(Throughput::Elements(BATCH as u64))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let config = || ConsumerConfig::default().max_pending(4 * BATCH);

    {
        let bus = Bus::new();
        let consumer = bus.consumer::<Ev>("bench.ev", config()).expect("consumer");
        let handled = Arc::new(AtomicU64::new(0));
        let h = handled.clone();
        let wf = Workflow::new(&bus);
        let served = rt.block_on(async {
            wf.serve(consumer)
                .batch(BATCH)
                .fetch_wait(Duration::from_millis(50))
                .handle(move |env: Envelope<Ev>, _ctx| {
                    black_box(env.payload().seq ^ env.payload().a);
                    h.fetch_add(1, Relaxed);
                    async { Ok::<(), HandlerError>(()) }
                })
                .expect("serve")
        });
        let mut seq = 0u64;
        group.bench_function("syncbus_workflow_serve", |b| {
            b.iter(|| publish_and_wait(&bus, &mut seq, &handled))
        });
        let settled = rt.block_on(served.stop());
        assert_eq!(settled.acked, handled.load(Relaxed));
    }

    {
        let bus = Bus::new();
        let consumer = bus.consumer::<Ev>("bench.ev", config()).expect("consumer");
        let handled = Arc::new(AtomicU64::new(0));
        let h = handled.clone();
        let task = rt.spawn(async move {
            loop {
                // Runs until the bench aborts it.
                for d in consumer.fetch(BATCH, Duration::from_millis(50)).await {
                    black_box(d.payload().seq ^ d.payload().a);
                    h.fetch_add(1, Relaxed);
                    d.ack().expect("in flight");
                }
            }
        });
        let mut seq = 0u64;
        group.bench_function("hand_written_fetch_ack", |b| {
            b.iter(|| publish_and_wait(&bus, &mut seq, &handled))
        });
        task.abort();
    }

    group.finish();
}

criterion_group!(benches, pull_fetch_ack, serve);
criterion_main!(benches);
