//! Inline dispatch: the cost of one publish reaching handlers on the publisher's thread.
//!
//! Group `inline_dispatch`: a bound `Publisher` and `bus.publish` (default topic) against the
//! floor any dispatcher has to pay, a `Vec<Box<dyn Fn(&Ev)>>` call loop with the same
//! handlers. Each handler adds to its own counter (relaxed), so the work is identical.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use syncbus::{Bus, Event, Subscription};

#[derive(Clone)]
struct Ev {
    seq: u64,
    a: u64,
}

impl Event for Ev {
    const TYPE: &'static str = "bench.ev";
}

fn counters(n: usize) -> Vec<Arc<AtomicU64>> {
    (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect()
}

/// A bus with `n` inline handlers on `bench.ev`, each counting into its own counter.
fn bus_with(n: usize) -> (Bus, Vec<Subscription>, Vec<Arc<AtomicU64>>) {
    let bus = Bus::new();
    let counts = counters(n);
    let subs = counts
        .iter()
        .map(|c| {
            let c = c.clone();
            bus.subscribe::<Ev>("bench.ev")
                .expect("valid pattern")
                .inline(move |env| {
                    let ev = env.payload();
                    black_box(ev.seq);
                    c.fetch_add(ev.a, Ordering::Relaxed);
                })
                .expect("bus open")
        })
        .collect();
    (bus, subs, counts)
}

type Handler = Box<dyn Fn(&Ev)>;

fn peer_with(n: usize) -> (Vec<Handler>, Vec<Arc<AtomicU64>>) {
    let counts = counters(n);
    let handlers = counts
        .iter()
        .map(|c| {
            let c = c.clone();
            Box::new(move |ev: &Ev| {
                black_box(ev.seq);
                c.fetch_add(ev.a, Ordering::Relaxed);
            }) as Handler
        })
        .collect();
    (handlers, counts)
}

fn inline_dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("inline_dispatch");
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);

    for handlers in [1usize, 4] {
        let (bus, subs, counts) = bus_with(handlers);
        let publisher = bus.publisher::<Ev>("bench.ev").expect("valid topic");
        let mut seq = 0u64;
        group.bench_function(BenchmarkId::new("syncbus_publisher", handlers), |b| {
            b.iter(|| {
                seq += 1;
                black_box(publisher.blocking_publish(Ev { seq, a: 1 }).ok());
            })
        });
        if handlers == 1 {
            group.bench_function(BenchmarkId::new("syncbus_publish", handlers), |b| {
                b.iter(|| {
                    seq += 1;
                    black_box(bus.blocking_publish(Ev { seq, a: 1 }).ok());
                })
            });
        }
        // every handler ran, where a filter let the functions run at all
        assert!(seq == 0 || counts.iter().all(|c| c.load(Ordering::Relaxed) > 0));
        drop(subs);

        let (peer, counts) = peer_with(handlers);
        let mut seq = 0u64;
        group.bench_function(BenchmarkId::new("vec_box_dyn_fn", handlers), |b| {
            b.iter(|| {
                seq += 1;
                let ev = black_box(Ev { seq, a: 1 });
                for h in black_box(&peer) {
                    h(&ev);
                }
            })
        });
        // every handler ran, where a filter let the functions run at all
        assert!(seq == 0 || counts.iter().all(|c| c.load(Ordering::Relaxed) > 0));
    }
    group.finish();
}

criterion_group!(benches, inline_dispatch);
criterion_main!(benches);
