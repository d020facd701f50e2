//! Routing among many topics: one publish to one of 10,000 literal topics while 1,000
//! wildcard patterns are also subscribed.
//!
//! Group `routing_10k_topics`:
//! - `syncbus_literal`: `bus.blocking_publish_to(topic, ev)` cycling through every literal topic
//!   (`t.{i}.x`, one inline no-op handler each); the `w.{j}.*` patterns match none of them.
//! - `syncbus_wildcard_only/<n>`: topics `w.{j}.y` that only a wildcard pattern matches, so
//!   the route comes from the route cache (or the trie on a miss), cycling through `n` of
//!   them: 64 (a hot set) and one per pattern.
//! - peers: an `FxHashMap<String, Vec<Box<dyn Fn(&Ev)>>>` lookup plus the same handler
//!   calls, keyed by the literal topics or by the wildcard-only topics (an ideal cache).
//!
//! Building the bus subscribes one at a time; the time it took is printed. The full size
//! runs with `--bench`; test mode uses 1,000 topics and 100 patterns.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rustc_hash::FxHashMap;
use syncbus::{Bus, Event, Subscription};

#[derive(Clone)]
struct Ev {
    seq: u64,
    a: u64,
}

impl Event for Ev {
    const TYPE: &'static str = "bench.ev";
}

/// (literal topics, wildcard patterns): full size under `cargo bench`, small in test mode.
fn sizes() -> (usize, usize) {
    if std::env::args().any(|a| a == "--bench") {
        (10_000, 1_000)
    } else {
        (1_000, 100)
    }
}

fn handle(ev: &Ev) {
    black_box(ev.seq ^ ev.a);
}

type Handler = Box<dyn Fn(&Ev)>;

fn build_bus(topics: &[String], patterns: usize) -> (Bus, Vec<Subscription>) {
    let bus = Bus::new();
    let start = Instant::now();
    let mut subs = Vec::with_capacity(topics.len() + patterns);
    for t in topics {
        let s = bus.subscribe::<Ev>(t).expect("valid pattern");
        subs.push(s.inline(|env| handle(env.payload())).expect("subscribe"));
    }
    let literal = start.elapsed();
    for j in 0..patterns {
        let s = bus
            .subscribe::<Ev>(format!("w.{j}.*"))
            .expect("valid pattern");
        subs.push(s.inline(|env| handle(env.payload())).expect("subscribe"));
    }
    eprintln!(
        "routing_10k_topics: subscribed {} literal topics in {:.2?}, then {patterns} patterns in {:.2?}",
        topics.len(),
        literal,
        start.elapsed() - literal
    );
    (bus, subs)
}

fn peer_map(topics: &[String]) -> FxHashMap<String, Vec<Handler>> {
    topics
        .iter()
        .map(|t| (t.clone(), vec![Box::new(handle) as Handler]))
        .collect()
}

fn routing_10k_topics(c: &mut Criterion) {
    let (n_topics, n_patterns) = sizes();
    let literal: Vec<String> = (0..n_topics).map(|i| format!("t.{i}.x")).collect();
    let wild: Vec<String> = (0..n_patterns).map(|j| format!("w.{j}.y")).collect();
    let (bus, subs) = build_bus(&literal, n_patterns);

    let mut group = c.benchmark_group("routing_10k_topics");
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);

    let mut publish_cycling = |name: BenchmarkId, topics: &[String]| {
        let mut i = 0usize;
        let mut seq = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                let t = &topics[i];
                i = if i + 1 == topics.len() { 0 } else { i + 1 };
                seq += 1;
                let n = bus
                    .blocking_publish_to(t, Ev { seq, a: 1 })
                    .expect("publish");
                debug_assert_eq!(n, 1);
                black_box(n)
            })
        });
    };
    publish_cycling(BenchmarkId::new("syncbus_literal", n_topics), &literal);
    publish_cycling(BenchmarkId::new("syncbus_wildcard_only", 64), &wild[..64]);
    publish_cycling(BenchmarkId::new("syncbus_wildcard_only", n_patterns), &wild);

    let mut lookup_cycling = |name: BenchmarkId, topics: &[String]| {
        let map = peer_map(topics);
        let mut i = 0usize;
        let mut seq = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                let t = &topics[i];
                i = if i + 1 == topics.len() { 0 } else { i + 1 };
                seq += 1;
                let ev = Ev { seq, a: 1 };
                let handlers = map.get(black_box(t.as_str())).expect("known topic");
                for h in handlers {
                    h(&ev);
                }
                black_box(handlers.len())
            })
        });
    };
    lookup_cycling(BenchmarkId::new("fxhashmap_literal", n_topics), &literal);
    lookup_cycling(
        BenchmarkId::new("fxhashmap_wildcard_topics", 64),
        &wild[..64],
    );
    lookup_cycling(
        BenchmarkId::new("fxhashmap_wildcard_topics", n_patterns),
        &wild,
    );

    group.finish();

    // Every publish above reached its one handler; check the routing agreed.
    let m = bus.metrics();
    assert_eq!(m.unrouted, 0, "a publish found no route");
    // Shutting down clears the router once; dropping the handles afterwards finds nothing
    // to remove. (Dropping them first would rebuild the snapshot once per subscription.)
    let start = Instant::now();
    assert!(bus.blocking_shutdown(Duration::from_secs(1)).is_clean());
    drop(subs);
    eprintln!("routing_10k_topics: shut down in {:.2?}", start.elapsed());
}

criterion_group!(benches, routing_10k_topics);
criterion_main!(benches);
