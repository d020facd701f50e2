//! Batch subscriptions and reconciliation, each beside its peer in the same group:
//!
//! - `batch`: the same events through a [`BatchRunner`] (batches of 256) and through a
//!   per-event handler (a queued bus subscription), with a handler that does nothing and
//!   one that pays a fixed cost per call (a stand-in for a database round trip).
//! - `reconcile_1m`: a diff of 1,000,000 keys per side (0.1 % drift) by the streaming merge
//!   of two paged readers, against a plain sorted merge of two `Vec`s (inputs in memory),
//!   and against loading both sides into `Vec`s first and merging. The peak heap each one
//!   takes above what was allocated before is measured by a counting global allocator and
//!   printed once.
//!
//! `cargo bench` uses 100,000 events and 1,000,000 keys; test mode (`cargo test --benches`)
//! 2,000 events and 20,000 keys, so the check stays quick.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syncbus_core::{Bus, ConsumerConfig, EntityId, Envelope, Event};
use syncbus_stream::{BatchConfig, BatchRunner, Entry, Reconcile, SnapshotReader};
use syncbus_workflow::HandlerError;

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments; counting has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                - layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result and the peak heap above what was live before.
fn peak_above<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - base)
}

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

#[derive(Clone, Debug)]
struct Sale {
    shop: u64,
    cents: u64,
}

impl Event for Sale {
    const TYPE: &'static str = "shop.sale";
    const TOPIC: &'static str = "shop.sales";
    fn entity_id(&self) -> Option<EntityId> {
        Some(EntityId::from(self.shop))
    }
}

/// A fixed cost per handler call: a spin of about `micros` µs.
fn call_cost(micros: u64) {
    if micros == 0 {
        return;
    }
    let until = Instant::now() + Duration::from_micros(micros);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

fn batch(c: &mut Criterion) {
    let n: u64 = if bench_mode() { 100_000 } else { 2_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    for cost in [0u64, 2] {
        g.bench_function(format!("batch_runner_256/call_cost_{cost}us"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let bus = Bus::new();
                    let consumer = bus
                        .consumer::<Sale>(
                            "shop.sales",
                            ConsumerConfig::default().max_pending(n as usize),
                        )
                        .unwrap();
                    let sum = Arc::new(AtomicU64::new(0));
                    let s = sum.clone();
                    let config = BatchConfig::new("bench")
                        .max_size(256)
                        .max_wait(Duration::from_millis(5));
                    let runner =
                        BatchRunner::spawn(consumer, config, move |batch: Vec<Envelope<Sale>>| {
                            call_cost(cost);
                            let total: u64 = batch.iter().map(|e| e.payload().cents).sum();
                            s.fetch_add(total, Ordering::Relaxed);
                            async { Ok::<(), HandlerError>(()) }
                        })
                        .unwrap();
                    for i in 0..n {
                        bus.publish(Sale {
                            shop: i % 10,
                            cents: 1,
                        })
                        .await
                        .unwrap();
                    }
                    while runner.metrics().acked < n {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    runner.stop().await.unwrap();
                    assert_eq!(sum.load(Ordering::Relaxed), n);
                })
            })
        });
        g.bench_function(format!("per_event_handler/call_cost_{cost}us"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let bus = Bus::new();
                    let sum = Arc::new(AtomicU64::new(0));
                    let s = sum.clone();
                    let _sub = bus
                        .subscribe::<Sale>("shop.sales")
                        .unwrap()
                        .queued(move |e: &Envelope<Sale>| {
                            call_cost(cost);
                            s.fetch_add(black_box(e.payload().cents), Ordering::Relaxed);
                        })
                        .unwrap();
                    for i in 0..n {
                        bus.publish(Sale {
                            shop: i % 10,
                            cents: 1,
                        })
                        .await
                        .unwrap();
                    }
                    while sum.load(Ordering::Relaxed) < n {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                })
            })
        });
    }
    g.finish();
}

/// A sorted snapshot read in pages, as a database would answer.
struct Paged(Arc<Vec<(u64, u64)>>);

impl SnapshotReader for Paged {
    type Key = u64;
    type Value = u64;
    type Error = Infallible;

    async fn page(
        &self,
        after: Option<&u64>,
        limit: usize,
    ) -> Result<Vec<Entry<u64, u64>>, Infallible> {
        let start = after.map_or(0, |k| self.0.partition_point(|(id, _)| id <= k));
        Ok(self.0[start..]
            .iter()
            .take(limit)
            .map(|(k, v)| Entry::new(*k, *v))
            .collect())
    }
}

type Rows = Vec<(u64, u64)>;

/// Both sides: 1 in 1,000 keys missing locally, 1 in 1,000 divergent, 1 in 1,000 extra.
fn sides(n: u64) -> (Rows, Rows) {
    let upstream: Vec<(u64, u64)> = (0..n).map(|k| (k * 2, k)).collect();
    let mut local = Vec::with_capacity(n as usize);
    for k in 0..n {
        match k % 1000 {
            7 => {}                          // missing
            8 => local.push((k * 2, k + 1)), // divergent
            9 => {
                local.push((k * 2, k));
                local.push((k * 2 + 1, 0)); // extra
            }
            _ => local.push((k * 2, k)),
        }
    }
    (upstream, local)
}

/// The peer: a plain merge of two sorted `Vec`s, counting the drift.
fn merge_vecs(up: &[(u64, u64)], lo: &[(u64, u64)]) -> (u64, u64, u64) {
    let (mut i, mut j) = (0, 0);
    let (mut missing, mut divergent, mut extra) = (0, 0, 0);
    while i < up.len() || j < lo.len() {
        match (up.get(i), lo.get(j)) {
            (Some(u), Some(l)) if u.0 == l.0 => {
                if u.1 != l.1 {
                    divergent += 1;
                }
                i += 1;
                j += 1;
            }
            (Some(u), Some(l)) if u.0 < l.0 => {
                missing += 1;
                i += 1;
            }
            (Some(_), None) => {
                missing += 1;
                i += 1;
            }
            _ => {
                extra += 1;
                j += 1;
            }
        }
    }
    (missing, divergent, extra)
}

async fn streaming(up: &Paged, lo: &Paged) -> (u64, u64, u64) {
    let mut run = Reconcile::new(up, lo).page_size(1_000).unwrap();
    while let Some(d) = run.next().await.unwrap() {
        black_box(&d);
    }
    let r = run.report();
    (r.missing, r.divergent, r.extra)
}

async fn load_all(r: &Paged) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = r.page(after.as_ref(), 1_000).await.unwrap();
        let Some(last) = page.last() else { return out };
        after = Some(last.key);
        out.extend(page.into_iter().map(|e| (e.key, e.value)));
    }
}

fn reconcile(c: &mut Criterion) {
    let n: u64 = if bench_mode() { 1_000_000 } else { 20_000 };
    let (up, lo) = sides(n);
    let expected = merge_vecs(&up, &lo);
    assert_eq!(expected, (n / 1000, n / 1000, n / 1000));
    let (up_r, lo_r) = (Paged(Arc::new(up.clone())), Paged(Arc::new(lo.clone())));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    // Peak heap of one run of each, above what the inputs already hold.
    let (got, stream_peak) = peak_above(|| rt.block_on(streaming(&up_r, &lo_r)));
    assert_eq!(got, expected);
    let (got, load_peak) = peak_above(|| {
        rt.block_on(async {
            let (u, l) = (load_all(&up_r).await, load_all(&lo_r).await);
            merge_vecs(&u, &l)
        })
    });
    assert_eq!(got, expected);
    let (got, merge_peak) = peak_above(|| merge_vecs(&up, &lo));
    assert_eq!(got, expected);
    eprintln!(
        "reconcile_1m ({n} keys a side): peak heap above the inputs: streaming merge {} KiB, \
         load both into Vecs + merge {} KiB, merge of Vecs already in memory {} KiB (the inputs \
         themselves: {} KiB)",
        stream_peak / 1024,
        load_peak / 1024,
        merge_peak / 1024,
        (up.len() + lo.len()) * 16 / 1024
    );

    let mut g = c.benchmark_group("reconcile_1m");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("streaming_merge_paged_readers", |b| {
        b.iter(|| black_box(rt.block_on(streaming(&up_r, &lo_r))))
    });
    g.bench_function("sorted_merge_of_two_vecs", |b| {
        b.iter(|| black_box(merge_vecs(black_box(&up), black_box(&lo))))
    });
    g.bench_function("load_both_into_vecs_then_merge", |b| {
        b.iter(|| {
            black_box(rt.block_on(async {
                let (u, l) = (load_all(&up_r).await, load_all(&lo_r).await);
                merge_vecs(&u, &l)
            }))
        })
    });
    g.finish();
}

criterion_group!(benches, batch, reconcile);
criterion_main!(benches);
