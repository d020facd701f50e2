//! Zero heap allocations per publish in steady state, on the typed inline and queued paths,
//! counted by a global allocator wrapper.
//!
//! The only `unsafe` in the workspace: a `GlobalAlloc` impl cannot be written without it.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncbus_core::{Bus, EntityId, Event};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments; counting has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Debug)]
struct Reading {
    sensor: u64,
    value: f64,
}

impl Event for Reading {
    const TYPE: &'static str = "sensors.reading";
    fn entity_id(&self) -> Option<EntityId> {
        Some(self.sensor.into())
    }
}

fn count_allocs(f: impl FnOnce()) -> u64 {
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCS.load(Ordering::SeqCst)
}

// One test function: the counter is process-wide, so the paths run one after another.
#[test]
fn steady_state_publish_does_not_allocate() {
    const N: u64 = 10_000;
    let bus = Bus::new();
    let sum = Arc::new(AtomicU64::new(0));
    let s = sum.clone();
    let _inline = bus
        .subscribe::<Reading>("sensors.reading")
        .unwrap()
        .inline(move |env| {
            s.fetch_add(env.payload().value as u64, Ordering::Relaxed);
        })
        .unwrap();
    let q = sum.clone();
    let queued = bus
        .subscribe::<Reading>("sensors.>")
        .unwrap()
        .capacity(N as usize * 2)
        .queued(move |env| {
            q.fetch_add(env.payload().value as u64, Ordering::Relaxed);
        })
        .unwrap();
    let k = sum.clone();
    let keyed = bus
        .subscribe::<Reading>("sensors.*")
        .unwrap()
        .capacity(N as usize * 2)
        .keyed(2)
        .queued(move |env| {
            k.fetch_add(env.payload().value as u64, Ordering::Relaxed);
        })
        .unwrap();
    let publisher = bus.publisher::<Reading>("sensors.reading").unwrap();
    let wait = |want: u64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while queued.metrics().delivered < want || keyed.metrics().delivered < want {
            assert!(Instant::now() < deadline, "workers stalled");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // Warm up: thread-locals, route caches, worker buffers.
    for i in 0..100 {
        bus.blocking_publish(Reading {
            sensor: i,
            value: 1.0,
        })
        .unwrap();
        publisher
            .blocking_publish(Reading {
                sensor: i,
                value: 1.0,
            })
            .unwrap();
    }
    wait(200);
    // Let every worker run out of work and park once: a thread's first park sets up its
    // parking state (a one-off allocation, not a per-event one).
    std::thread::sleep(Duration::from_millis(100));

    let by_type = count_allocs(|| {
        for i in 0..N {
            bus.blocking_publish(Reading {
                sensor: i % 16,
                value: 1.0,
            })
            .unwrap();
        }
    });
    let bound = count_allocs(|| {
        for i in 0..N {
            publisher
                .blocking_publish(Reading {
                    sensor: i % 16,
                    value: 1.0,
                })
                .unwrap();
        }
    });
    wait(200 + 2 * N);
    // The worker threads allocate nothing either: the counter saw their handling too,
    // since they ran while counting was on.
    assert_eq!(
        by_type, 0,
        "bus.publish allocated {by_type} times for {N} events"
    );
    assert_eq!(
        bound, 0,
        "Publisher::publish allocated {bound} times for {N} events"
    );
    assert_eq!(sum.load(Ordering::Relaxed), 3 * (200 + 2 * N));
}
