//! What the reliability layers cost per event, each against the bare handler in the same
//! group (the peer): the same envelope and context handed to the same handler directly.
//!
//! Groups (per event, on a current-thread tokio runtime, no I/O):
//! - `workflow_dedup`: a miss (a fresh event id each time: claim + done in the memory
//!   store) and a hit (the same id again: acknowledged as a duplicate, the handler skipped).
//! - `workflow_ordering`: the resequencer, versions of one entity in order (the group keeps
//!   its name so results compare across the rename of the ordering layer).
//! - `workflow_retry`: the retry wrapper around a handler that succeeds.
//! - `workflow_stack`: dead letters + retry (what `Workflow::subscribe` adds by default) and
//!   every layer at once (dead letters, dedup, resequence, retry, circuit breaker, rate limit,
//!   timeout, concurrency limit).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use serde::{Deserialize, Serialize};
use syncbus::store::MemoryDeadLetterStore;
use syncbus::workflow::{
    ConcurrencyLimitLayer, DeadLettersLayer, Handler, Layer, Stack, TimeoutLayer,
};
use syncbus::{
    handler_fn, Bus, CircuitBreakerConfig, Context, DedupConfig, EntityId, Envelope, Event,
    EventId, HandlerError, RateLimitConfig, ResequenceConfig, RetryPolicy,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Change {
    entity: u64,
    version: u64,
}

impl Event for Change {
    const TYPE: &'static str = "bench.change";
    fn entity_id(&self) -> Option<EntityId> {
        Some(self.entity.into())
    }
    fn version(&self) -> Option<u64> {
        Some(self.version)
    }
}

fn handler() -> impl Handler<Change> {
    handler_fn(|e: Envelope<Change>, _ctx| async move {
        black_box(e.payload().version);
        Ok::<(), HandlerError>(())
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Times `iters` calls; `next` makes each call's envelope (the same work for every
/// function in a group).
fn run<H: Handler<Change>>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    h: &H,
    mut next: impl FnMut(&mut Envelope<Change>, u64),
) {
    let rt = rt();
    let bus = Bus::new();
    let mut env = Envelope::from_event(Change {
        entity: 1,
        version: 0,
    });
    let ctx = Context::new(&bus, env.meta());
    let mut i = 0u64;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    i += 1;
                    next(&mut env, i);
                    h.call(env.clone(), ctx.clone()).await.expect("handled");
                }
                start.elapsed()
            })
        })
    });
}

fn fresh_id(env: &mut Envelope<Change>, _: u64) {
    env.meta_mut().set_id(EventId::new());
}

fn same(_: &mut Envelope<Change>, _: u64) {}

fn next_version(env: &mut Envelope<Change>, i: u64) {
    *env = Envelope::from_event(Change {
        entity: 1,
        version: i,
    });
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    g
}

fn dedup(c: &mut Criterion) {
    let mut g = configure(c, "workflow_dedup");
    run(&mut g, "bare_handler_fresh_id", &handler(), fresh_id);
    run(
        &mut g,
        "dedup_miss",
        &DedupConfig::memory(100_000).layer().layer(handler()),
        fresh_id,
    );
    run(&mut g, "bare_handler_same_id", &handler(), same);
    run(
        &mut g,
        "dedup_hit",
        &DedupConfig::memory(100_000).layer().layer(handler()),
        same,
    );
    g.finish();
}

fn resequence(c: &mut Criterion) {
    let mut g = configure(c, "workflow_ordering");
    run(&mut g, "bare_handler", &handler(), next_version);
    run(
        &mut g,
        "ordering_in_order",
        &ResequenceConfig::new().layer().layer(handler()),
        next_version,
    );
    g.finish();
}

fn retry(c: &mut Criterion) {
    let mut g = configure(c, "workflow_retry");
    run(&mut g, "bare_handler", &handler(), same);
    run(
        &mut g,
        "retry_success",
        &RetryPolicy::default().layer().layer(handler()),
        same,
    );
    g.finish();
}

fn stack(c: &mut Criterion) {
    let mut g = configure(c, "workflow_stack");
    let dl = std::sync::Arc::new(MemoryDeadLetterStore::new(1000));
    run(&mut g, "bare_handler", &handler(), next_version);
    let default = Stack::new()
        .layer(DeadLettersLayer::new(dl.clone()))
        .layer(RetryPolicy::default().layer())
        .handler(handler());
    run(&mut g, "default_stack", &default, next_version);
    let full = Stack::new()
        .layer(DeadLettersLayer::new(dl.clone()))
        .layer(DedupConfig::memory(100_000).layer())
        .layer(ResequenceConfig::new().dead_letters(dl).layer())
        .layer(RetryPolicy::default().layer())
        .layer(CircuitBreakerConfig::new().layer())
        .layer(RateLimitConfig::per_second(1_000_000_000).layer())
        .layer(TimeoutLayer::new(Duration::from_secs(10)))
        .layer(ConcurrencyLimitLayer::new(64))
        .handler(handler());
    run(&mut g, "every_layer", &full, next_version);
    g.finish();
}

criterion_group!(benches, dedup, resequence, retry, stack);
criterion_main!(benches);
