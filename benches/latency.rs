//! Round-trip latency: one event bounced between two queued subscriptions, each on its own
//! worker thread, so every hop is a publish, a hand-over to another thread and a wake-up.
//!
//! Group `round_trip`: an iteration is 100 round trips (ping and pong) served one after
//! another; criterion's median divided by 100 is the p50 of a sample's mean round trip.
//! - `syncbus_queued_ping_pong`: a queued subscription on `rt.ping` publishes each ball to
//!   `rt.pong` through a bound `Publisher`, one on `rt.pong` publishes it back to `rt.ping`;
//!   the bench thread serves the first ball and waits (spin, then yield) for the last.
//! - `crossbeam_ping_pong`: the same with two threads and two crossbeam channels, the floor
//!   any hand-over between threads pays.
//!
//! Every round trip carries the full envelope (a fresh id and metadata per publish) on the
//! syncbus side and a bare struct on the crossbeam side.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use syncbus::{Bus, Event, Overflow, Publisher};

/// One ball: its hop count and the hop it stops at.
#[derive(Clone, Copy, Debug)]
struct Ball {
    hop: u64,
    last: u64,
}

impl Event for Ball {
    const TYPE: &'static str = "bench.ball";
}

/// The `last` of a ball that tells the crossbeam players to leave (each holds the other's
/// sender, so closing a channel cannot).
const STOP: u64 = 0;

/// Round trips per criterion iteration.
const ROUND_TRIPS: u64 = 100;

/// Waits until `done` reaches `target` without taking a core from the two players: a short
/// spin, then yields.
fn wait_for(done: &AtomicU64, target: u64) {
    let mut spins = 0u32;
    while done.load(Ordering::Acquire) < target {
        if spins < 64 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            thread::yield_now();
        }
    }
}

/// A player: sends the ball on with `send` unless it is the last hop, which it reports in
/// `done` instead.
fn play(ball: Ball, done: &AtomicU64, send: impl FnOnce(Ball)) {
    let next = Ball {
        hop: black_box(ball.hop) + 1,
        last: ball.last,
    };
    if next.hop == ball.last {
        done.store(ball.last, Ordering::Release);
    } else {
        send(next);
    }
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    group
        .throughput(Throughput::Elements(ROUND_TRIPS))
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);

    {
        let bus = Bus::new();
        let done = Arc::new(AtomicU64::new(0));
        let player = |from: &str, to: &str| {
            let to: Publisher<Ball> = bus.publisher(to).expect("valid topic");
            let done = done.clone();
            bus.subscribe::<Ball>(from)
                .expect("valid pattern")
                .capacity(16)
                .overflow(Overflow::Block)
                .queued(move |env| {
                    play(*env.payload(), &done, |ball| {
                        to.blocking_publish(ball).expect("bus open");
                    })
                })
                .expect("subscribe")
        };
        let subs = [player("rt.ping", "rt.pong"), player("rt.pong", "rt.ping")];
        let serve: Publisher<Ball> = bus.publisher("rt.ping").expect("valid topic");
        group.bench_function("syncbus_queued_ping_pong", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let last = 2 * ROUND_TRIPS;
                    done.store(0, Ordering::Release);
                    let start = Instant::now();
                    let n = serve
                        .blocking_publish(Ball { hop: 0, last })
                        .expect("publish");
                    assert_eq!(n, 1, "the ping player takes the first ball");
                    wait_for(&done, last);
                    total += start.elapsed();
                }
                total
            })
        });
        for s in subs {
            assert!(
                s.unsubscribe_and_wait(Duration::from_secs(10)),
                "workers did not stop"
            );
        }
    }

    {
        let done = Arc::new(AtomicU64::new(0));
        let (ping_tx, ping_rx) = crossbeam_channel::bounded::<Ball>(16);
        let (pong_tx, pong_rx) = crossbeam_channel::bounded::<Ball>(16);
        let player = |rx: crossbeam_channel::Receiver<Ball>,
                      tx: crossbeam_channel::Sender<Ball>| {
            let done = done.clone();
            thread::spawn(move || {
                for ball in rx {
                    if ball.last == STOP {
                        // Pass the stop on (the other player may have left already).
                        let _ = tx.send(ball);
                        break;
                    }
                    play(ball, &done, |ball| tx.send(ball).expect("peer alive"));
                }
            })
        };
        let serve = ping_tx.clone();
        let players = [player(ping_rx, pong_tx), player(pong_rx, ping_tx)];
        group.bench_function("crossbeam_ping_pong", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let last = 2 * ROUND_TRIPS;
                    done.store(0, Ordering::Release);
                    let start = Instant::now();
                    serve.send(Ball { hop: 0, last }).expect("player alive");
                    wait_for(&done, last);
                    total += start.elapsed();
                }
                total
            })
        });
        serve
            .send(Ball { hop: 0, last: STOP })
            .expect("player alive");
        for p in players {
            p.join().expect("player");
        }
    }
    group.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
