//! Queued delivery across threads: throughput of a batch of events from one producer (the
//! bench thread) until every consumer has handled all of them.
//!
//! Each iteration publishes `N` events (100,000 with `--bench`, 1,000 in test mode) and stops
//! the clock when the consumers' counters reach the target, so the time includes draining.
//! Every consumer does the same work per event: a `black_box` read and a relaxed add.
//!
//! Groups, syncbus and its peers side by side:
//! - `queued_1to1`: one queued subscription (thread worker, capacity 1024, `Overflow::Block`)
//!   vs crossbeam-channel (also moving the event padded to an envelope's 128 bytes, as a
//!   ring slot holds: `crossbeam_bounded_envelope_sized`), std `sync_channel`, flume, an
//!   rtrb SPSC ring with a busy-polling consumer (the practical limit), and tokio mpsc with
//!   a consumer task on 2 workers.
//! - `async_1to1`: `queued_async` on a 2-worker tokio runtime vs tokio mpsc on the same
//!   runtime, with the producer on a plain thread and as a task (`publish(..).await`, awaiting
//!   room like tokio's `send().await`).
//! - `fanout_1to2`, `fanout_1to4`: k queued subscriptions on one topic vs one crossbeam
//!   channel per consumer (a clone sent to each) vs tokio broadcast (lagged events counted
//!   as seen, and reported). Throughput counts published events, not deliveries.
//! - `keyed_lanes`: a keyed subscription with 2 lanes over 64 entities vs two crossbeam
//!   channels picked by hashing the key.
//! - `tap_1to2`: what a tap costs beside a queued subscription: one queued subscription
//!   plus a queued tap on `>`, whose worker encodes each event to JSON through
//!   `Event::encode` (`_tap_json`) or gets a type that does not encode (`_tap_no_payload`:
//!   the tap's own cost, a box per event, without a serializer), vs plus a second queued
//!   subscription (`fanout_1to2`'s shape) vs two crossbeam channels.

use std::hash::BuildHasher;
use std::hint::black_box;
use std::slice;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use criterion::{measurement::WallTime, Throughput};
use syncbus::{Bus, EncodeError, Encoded, EntityId, Event, Overflow, Subscription};

const CAPACITY: usize = 1024;

#[derive(Clone, serde::Serialize)]
struct Ev {
    seq: u64,
    a: u64,
}

impl Event for Ev {
    const TYPE: &'static str = "bench.ev";
    // Only taps call it: every other group here never encodes.
    fn encode(&self) -> Option<Result<Encoded, EncodeError>> {
        Some(Encoded::json(self))
    }
}

/// The bench's event padded to the size of a syncbus envelope (128 bytes), for the peer
/// that moves as many bytes per event as a ring slot holds.
#[derive(Clone)]
struct Wide {
    ev: Ev,
    _pad: [u64; 14],
}

/// The same shape without `Event::encode`: a tap sees it with its metadata and no payload,
/// so a tap's cost without the serializer shows.
#[derive(Clone)]
struct Plain {
    seq: u64,
    a: u64,
}

impl Event for Plain {
    const TYPE: &'static str = "bench.ev";
}

/// The same shape with an entity id, for keyed lanes: 64 distinct entities.
#[derive(Clone)]
struct Keyed {
    seq: u64,
    a: u64,
}

impl Event for Keyed {
    const TYPE: &'static str = "bench.keyed";

    fn entity_id(&self) -> Option<EntityId> {
        Some((self.seq % 64).into())
    }
}

/// Events per iteration: full size under `cargo bench`, small under `cargo test --benches`.
fn batch() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        100_000
    } else {
        1_000
    }
}

type Counter = Arc<AtomicU64>;

fn counter() -> Counter {
    Arc::new(AtomicU64::new(0))
}

#[inline]
fn consume(count: &AtomicU64, seq: u64, a: u64) {
    black_box(seq);
    count.fetch_add(a, Ordering::Relaxed);
}

/// Waits for a consumer without taking a core from it: a short spin, then yields.
fn wait_for(count: &AtomicU64, target: u64) {
    let mut spins = 0u32;
    while count.load(Ordering::Acquire) < target {
        if spins < 64 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            thread::yield_now();
        }
    }
}

/// Sends `iters * batch` events with `send`, then waits until every counter has seen them.
fn measure(iters: u64, counts: &[Counter], mut send: impl FnMut(Ev)) -> Duration {
    let total = iters * batch();
    let targets: Vec<u64> = counts
        .iter()
        .map(|c| c.load(Ordering::Acquire) + total)
        .collect();
    let start = Instant::now();
    for seq in 0..total {
        send(Ev { seq, a: 1 });
    }
    for (c, t) in counts.iter().zip(targets) {
        wait_for(c, t);
    }
    start.elapsed()
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .throughput(Throughput::Elements(batch()))
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime")
}

fn queued_sub(bus: &Bus, count: &Counter) -> Subscription {
    let c = count.clone();
    bus.subscribe::<Ev>("bench.ev")
        .expect("valid pattern")
        .capacity(CAPACITY)
        .overflow(Overflow::Block)
        .queued(move |env| consume(&c, env.payload().seq, env.payload().a))
        .expect("subscribe")
}

fn finish(subs: Vec<Subscription>) {
    for s in subs {
        assert!(
            s.unsubscribe_and_wait(Duration::from_secs(10)),
            "workers did not stop"
        );
    }
}

/// A bounded channel peer: a consumer thread drains `rx` while the bench thread calls `send`;
/// dropping `send` (and with it the sender) ends the consumer.
fn bench_channel(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    rx: impl IntoIterator<Item = Ev> + Send + 'static,
    mut send: impl FnMut(Ev),
) {
    let count = counter();
    let c2 = count.clone();
    let consumer = spawn_consumer(move || {
        for ev in rx {
            consume(&c2, ev.seq, ev.a);
        }
    });
    group.bench_function(name, |b| {
        b.iter_custom(|iters| measure(iters, slice::from_ref(&count), &mut send))
    });
    drop(send);
    consumer.join().unwrap();
}

fn spawn_consumer(body: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new()
        .name("bench-consumer".into())
        .spawn(body)
        .expect("spawn consumer")
}

fn queued_1to1(c: &mut Criterion) {
    let mut group = c.benchmark_group("queued_1to1");
    configure(&mut group);

    {
        let bus = Bus::new();
        let count = counter();
        let sub = queued_sub(&bus, &count);
        group.bench_function("syncbus_queued", |b| {
            b.iter_custom(|iters| {
                measure(iters, slice::from_ref(&count), |ev| {
                    bus.blocking_publish(ev).expect("publish");
                })
            })
        });
        finish(vec![sub]);
    }

    let (tx, rx) = crossbeam_channel::bounded::<Ev>(CAPACITY);
    bench_channel(&mut group, "crossbeam_bounded", rx, move |ev| {
        tx.send(ev).unwrap()
    });
    assert_eq!(
        std::mem::size_of::<Wide>(),
        std::mem::size_of::<syncbus::Envelope<Ev>>(),
        "the padded event is as large as an envelope"
    );
    let (tx, rx) = crossbeam_channel::bounded::<Wide>(CAPACITY);
    let rx = rx.into_iter().map(|wide| wide.ev);
    bench_channel(
        &mut group,
        "crossbeam_bounded_envelope_sized",
        rx,
        move |ev| tx.send(Wide { ev, _pad: [0; 14] }).unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::sync_channel::<Ev>(CAPACITY);
    bench_channel(&mut group, "std_sync_channel", rx, move |ev| {
        tx.send(ev).unwrap()
    });
    let (tx, rx) = flume::bounded::<Ev>(CAPACITY);
    bench_channel(&mut group, "flume_bounded", rx, move |ev| {
        tx.send(ev).unwrap()
    });

    {
        let count = counter();
        let (mut tx, mut rx) = rtrb::RingBuffer::<Ev>::new(CAPACITY);
        let c2 = count.clone();
        // Busy-polls: never parks. The yield every 256 empty polls only keeps a descheduled
        // producer from being starved on a loaded 2-core machine.
        let consumer = spawn_consumer(move || {
            let mut idle = 0u32;
            loop {
                match rx.pop() {
                    Ok(ev) => {
                        idle = 0;
                        consume(&c2, ev.seq, ev.a);
                    }
                    Err(_) if rx.is_abandoned() => break,
                    Err(_) => {
                        idle = idle.wrapping_add(1);
                        if idle.is_multiple_of(256) {
                            thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                }
            }
        });
        group.bench_function("rtrb_spsc_busy_poll", |b| {
            b.iter_custom(|iters| {
                measure(iters, slice::from_ref(&count), |mut ev| loop {
                    match tx.push(ev) {
                        Ok(()) => break,
                        Err(rtrb::PushError::Full(back)) => {
                            ev = back;
                            std::hint::spin_loop();
                        }
                    }
                })
            })
        });
        drop(tx);
        consumer.join().unwrap();
    }

    {
        let rt = runtime();
        let count = counter();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Ev>(CAPACITY);
        let c2 = count.clone();
        let consumer = rt.spawn(async move {
            while let Some(ev) = rx.recv().await {
                consume(&c2, ev.seq, ev.a);
            }
        });
        group.bench_function("tokio_mpsc_2_workers", |b| {
            b.iter_custom(|iters| {
                measure(iters, slice::from_ref(&count), |ev| {
                    tx.blocking_send(ev).unwrap()
                })
            })
        });
        drop(tx);
        rt.block_on(consumer).unwrap();
    }

    group.finish();
}

fn async_1to1(c: &mut Criterion) {
    let mut group = c.benchmark_group("async_1to1");
    configure(&mut group);
    let rt = runtime();

    {
        let bus = Bus::new();
        let count = counter();
        let c2 = count.clone();
        let sub = {
            let _rt = rt.enter();
            bus.subscribe::<Ev>("bench.ev")
                .expect("valid pattern")
                .capacity(CAPACITY)
                .overflow(Overflow::Block)
                .queued_async(move |env| {
                    consume(&c2, env.payload().seq, env.payload().a);
                    std::future::ready(())
                })
                .expect("subscribe")
        };
        group.bench_function("syncbus_queued_async/thread_producer", |b| {
            b.iter_custom(|iters| {
                measure(iters, slice::from_ref(&count), |ev| {
                    bus.blocking_publish(ev).expect("publish");
                })
            })
        });
        group.bench_function("syncbus_queued_async/task_producer", |b| {
            b.iter_custom(|iters| {
                let total = iters * batch();
                let target = count.load(Ordering::Acquire) + total;
                let bus = bus.clone();
                let start = Instant::now();
                let producer = rt.spawn(async move {
                    for seq in 0..total {
                        bus.publish(Ev { seq, a: 1 }).await.expect("publish");
                    }
                });
                rt.block_on(producer).unwrap();
                wait_for(&count, target);
                start.elapsed()
            })
        });
        finish(vec![sub]);
    }

    {
        let count = counter();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Ev>(CAPACITY);
        let c2 = count.clone();
        let consumer = rt.spawn(async move {
            while let Some(ev) = rx.recv().await {
                consume(&c2, ev.seq, ev.a);
            }
        });
        group.bench_function("tokio_mpsc/thread_producer", |b| {
            b.iter_custom(|iters| {
                measure(iters, slice::from_ref(&count), |ev| {
                    tx.blocking_send(ev).unwrap()
                })
            })
        });
        group.bench_function("tokio_mpsc/task_producer", |b| {
            b.iter_custom(|iters| {
                let total = iters * batch();
                let target = count.load(Ordering::Acquire) + total;
                let tx = tx.clone();
                let start = Instant::now();
                let producer = rt.spawn(async move {
                    for seq in 0..total {
                        tx.send(Ev { seq, a: 1 }).await.unwrap();
                    }
                });
                rt.block_on(producer).unwrap();
                wait_for(&count, target);
                start.elapsed()
            })
        });
        drop(tx);
        rt.block_on(consumer).unwrap();
    }

    group.finish();
}

fn fanout(c: &mut Criterion, consumers: usize) {
    let mut group = c.benchmark_group(format!("fanout_1to{consumers}"));
    configure(&mut group);

    {
        let bus = Bus::new();
        let counts: Vec<Counter> = (0..consumers).map(|_| counter()).collect();
        let subs = counts.iter().map(|c| queued_sub(&bus, c)).collect();
        group.bench_function("syncbus_queued", |b| {
            b.iter_custom(|iters| {
                measure(iters, &counts, |ev| {
                    bus.blocking_publish(ev).expect("publish");
                })
            })
        });
        finish(subs);
    }

    {
        let counts: Vec<Counter> = (0..consumers).map(|_| counter()).collect();
        let mut txs = Vec::new();
        let mut threads = Vec::new();
        for c in &counts {
            let (tx, rx) = crossbeam_channel::bounded::<Ev>(CAPACITY);
            let c = c.clone();
            txs.push(tx);
            threads.push(spawn_consumer(move || {
                for ev in rx {
                    consume(&c, ev.seq, ev.a);
                }
            }));
        }
        group.bench_function("crossbeam_channel_per_consumer", |b| {
            b.iter_custom(|iters| {
                measure(iters, &counts, |ev| {
                    let (last, rest) = txs.split_last().expect("at least one consumer");
                    for tx in rest {
                        tx.send(ev.clone()).unwrap();
                    }
                    last.send(ev).unwrap();
                })
            })
        });
        drop(txs);
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    {
        let counts: Vec<Counter> = (0..consumers).map(|_| counter()).collect();
        let lagged = counter();
        let (tx, _) = tokio::sync::broadcast::channel::<Ev>(CAPACITY);
        let threads: Vec<_> = counts
            .iter()
            .map(|c| {
                let mut rx = tx.subscribe();
                let (c, lagged) = (c.clone(), lagged.clone());
                spawn_consumer(move || loop {
                    use tokio::sync::broadcast::error::RecvError;
                    match rx.blocking_recv() {
                        Ok(ev) => consume(&c, ev.seq, ev.a),
                        Err(RecvError::Lagged(n)) => {
                            // Lost to the ring: counted as seen so the batch can end.
                            c.fetch_add(n, Ordering::Relaxed);
                            lagged.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(RecvError::Closed) => break,
                    }
                })
            })
            .collect();
        let mut sent = 0u64;
        group.bench_function("tokio_broadcast", |b| {
            b.iter_custom(|iters| {
                sent += iters * batch() * consumers as u64;
                measure(iters, &counts, |ev| {
                    assert!(tx.send(ev).is_ok(), "receivers alive");
                })
            })
        });
        drop(tx);
        threads.into_iter().for_each(|t| t.join().unwrap());
        let lost = lagged.load(Ordering::Relaxed);
        if lost > 0 {
            eprintln!(
                "fanout_1to{consumers}/tokio_broadcast: {lost} of {sent} deliveries lagged ({:.2}%)",
                100.0 * lost as f64 / sent as f64
            );
        }
    }

    group.finish();
}

fn fanout_1to2(c: &mut Criterion) {
    fanout(c, 2);
}

fn fanout_1to4(c: &mut Criterion) {
    fanout(c, 4);
}

fn keyed_lanes(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_lanes");
    configure(&mut group);
    const LANES: usize = 2;

    {
        let bus = Bus::new();
        let count = counter();
        let c2 = count.clone();
        let sub = bus
            .subscribe::<Keyed>("bench.keyed")
            .expect("valid pattern")
            .capacity(CAPACITY)
            .keyed(LANES)
            .overflow(Overflow::Block)
            .queued(move |env| consume(&c2, env.payload().seq, env.payload().a))
            .expect("subscribe");
        group.bench_function("syncbus_keyed_2_lanes", |b| {
            b.iter_custom(|iters| {
                measure(iters, slice::from_ref(&count), |ev| {
                    let ev = Keyed {
                        seq: ev.seq,
                        a: ev.a,
                    };
                    bus.blocking_publish(ev).expect("publish");
                })
            })
        });
        finish(vec![sub]);
    }

    {
        let count = counter();
        let mut txs = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..LANES {
            let (tx, rx) = crossbeam_channel::bounded::<Keyed>(CAPACITY);
            let c = count.clone();
            txs.push(tx);
            threads.push(spawn_consumer(move || {
                for ev in rx {
                    consume(&c, ev.seq, ev.a);
                }
            }));
        }
        group.bench_function("crossbeam_2_lanes_by_key", |b| {
            b.iter_custom(|iters| {
                measure(iters, slice::from_ref(&count), |ev| {
                    let ev = Keyed {
                        seq: ev.seq,
                        a: ev.a,
                    };
                    let key = ev.seq % 64;
                    let lane = rustc_hash::FxBuildHasher.hash_one(key) as usize % LANES;
                    txs[lane].send(ev).unwrap();
                })
            })
        });
        drop(txs);
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    group.finish();
}

fn tap_1to2(c: &mut Criterion) {
    let mut group = c.benchmark_group("tap_1to2");
    configure(&mut group);

    {
        let bus = Bus::new();
        let counts = [counter(), counter()];
        let sub = queued_sub(&bus, &counts[0]);
        let t = counts[1].clone();
        let tap = bus
            .tap(">")
            .expect("valid pattern")
            .capacity(CAPACITY)
            .overflow(Overflow::Block)
            .queued(move |tapped| {
                let bytes = tapped.payload().bytes().expect("encodes");
                consume(&t, bytes.len() as u64, 1);
            })
            .expect("tap");
        group.bench_function("syncbus_queued_and_tap_json", |b| {
            b.iter_custom(|iters| {
                measure(iters, &counts, |ev| {
                    bus.blocking_publish(ev).expect("publish");
                })
            })
        });
        finish(vec![sub, tap]);
    }

    {
        let bus = Bus::new();
        let counts = [counter(), counter()];
        let c = counts[0].clone();
        let sub = bus
            .subscribe::<Plain>("bench.ev")
            .expect("valid pattern")
            .capacity(CAPACITY)
            .overflow(Overflow::Block)
            .queued(move |env| consume(&c, env.payload().seq, env.payload().a))
            .expect("subscribe");
        let t = counts[1].clone();
        let tap = bus
            .tap(">")
            .expect("valid pattern")
            .capacity(CAPACITY)
            .overflow(Overflow::Block)
            .queued(move |tapped| {
                assert!(tapped.payload().bytes().is_none());
                consume(&t, tapped.meta().version().unwrap_or(0), 1);
            })
            .expect("tap");
        group.bench_function("syncbus_queued_and_tap_no_payload", |b| {
            b.iter_custom(|iters| {
                measure(iters, &counts, |ev| {
                    let ev = Plain {
                        seq: ev.seq,
                        a: ev.a,
                    };
                    bus.blocking_publish(ev).expect("publish");
                })
            })
        });
        finish(vec![sub, tap]);
    }

    {
        let bus = Bus::new();
        let counts = [counter(), counter()];
        let subs = counts.iter().map(|c| queued_sub(&bus, c)).collect();
        group.bench_function("syncbus_queued_and_queued", |b| {
            b.iter_custom(|iters| {
                measure(iters, &counts, |ev| {
                    bus.blocking_publish(ev).expect("publish");
                })
            })
        });
        finish(subs);
    }

    {
        let counts = [counter(), counter()];
        let mut txs = Vec::new();
        let mut threads = Vec::new();
        for c in &counts {
            let (tx, rx) = crossbeam_channel::bounded::<Ev>(CAPACITY);
            let c = c.clone();
            txs.push(tx);
            threads.push(spawn_consumer(move || {
                for ev in rx {
                    consume(&c, ev.seq, ev.a);
                }
            }));
        }
        group.bench_function("crossbeam_channel_per_consumer", |b| {
            b.iter_custom(|iters| {
                measure(iters, &counts, |ev| {
                    txs[0].send(ev.clone()).unwrap();
                    txs[1].send(ev).unwrap();
                })
            })
        });
        drop(txs);
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    group.finish();
}

criterion_group!(
    benches,
    queued_1to1,
    async_1to1,
    fanout_1to2,
    fanout_1to4,
    keyed_lanes,
    tap_1to2
);
criterion_main!(benches);
