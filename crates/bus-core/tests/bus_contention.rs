//! Subscribe and unsubscribe while other threads publish: stable subscriptions lose nothing
//! and see nothing twice; churned ones never see an event after unsubscribe returned.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncbus_core::{Bus, Event};

#[derive(Clone, Debug)]
struct Ev {
    publisher: u64,
    seq: u64,
    /// `EPOCH` read just before this event's publish started.
    started_at: u64,
}

/// Bumped by the churner right after each unsubscribe returns. An event whose publish read
/// an epoch at or past a subscription's death started after its unsubscribe returned, and must
/// not reach it; one that read an earlier epoch may still be in flight (no timing involved).
static EPOCH: AtomicU64 = AtomicU64::new(0);

impl Event for Ev {
    const TYPE: &'static str = "load.ev";
}

const PUBLISHERS: u64 = 3;
const PER_PUBLISHER: u64 = 20_000;

#[test]
fn churn_does_not_lose_or_duplicate_for_stable_subscriptions() {
    let bus = Bus::new();
    // Stable: one exact, one wildcard, one queued; each records (publisher, seq).
    let exact = Arc::new(Mutex::new(vec![
        0u32;
        (PUBLISHERS * PER_PUBLISHER) as usize
    ]));
    let wild = Arc::new(Mutex::new(vec![
        0u32;
        (PUBLISHERS * PER_PUBLISHER) as usize
    ]));
    let queued = Arc::new(Mutex::new(vec![
        0u32;
        (PUBLISHERS * PER_PUBLISHER) as usize
    ]));
    let idx = |e: &Ev| (e.publisher * PER_PUBLISHER + e.seq) as usize;
    let (x, w, q) = (exact.clone(), wild.clone(), queued.clone());
    let _s1 = bus
        .subscribe::<Ev>("load.t0")
        .unwrap()
        .inline(move |env| x.lock().unwrap()[idx(env.payload())] += 1)
        .unwrap();
    let _s2 = bus
        .subscribe::<Ev>("load.*")
        .unwrap()
        .inline(move |env| w.lock().unwrap()[idx(env.payload())] += 1)
        .unwrap();
    let s3 = bus
        .subscribe::<Ev>("load.>")
        .unwrap()
        .capacity(256)
        .queued(move |env| q.lock().unwrap()[idx(env.payload())] += 1)
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let phantom = Arc::new(AtomicU64::new(0));
    let churner = {
        let (bus, stop, phantom) = (bus.clone(), stop.clone(), phantom.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let pattern = ["load.t0", "load.*", "load.>", "other.*"][(rounds % 4) as usize];
                let died_at = Arc::new(AtomicU64::new(u64::MAX));
                let (d, p) = (died_at.clone(), phantom.clone());
                let sub = bus
                    .subscribe::<Ev>(pattern)
                    .unwrap()
                    .inline(move |env| {
                        if env.payload().started_at >= d.load(Ordering::SeqCst) {
                            p.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                    .unwrap();
                std::thread::yield_now();
                drop(sub);
                let epoch = EPOCH.fetch_add(1, Ordering::SeqCst) + 1;
                died_at.store(epoch, Ordering::SeqCst);
                std::thread::sleep(Duration::from_micros(100));
                rounds += 1;
            }
            rounds
        })
    };
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                let bound = bus.publisher::<Ev>("load.t0").unwrap();
                for seq in 0..PER_PUBLISHER {
                    let ev = Ev {
                        publisher: p,
                        seq,
                        started_at: EPOCH.load(Ordering::SeqCst),
                    };
                    if seq % 2 == 0 {
                        bound.blocking_publish(ev).unwrap();
                    } else {
                        bus.blocking_publish_to("load.t0", ev).unwrap();
                    }
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = churner.join().unwrap();
    assert!(rounds > 10, "the churner ran ({rounds} rounds)");
    assert!(s3.unsubscribe_and_wait(Duration::from_secs(30)));
    for (name, counts) in [("exact", &exact), ("wildcard", &wild), ("queued", &queued)] {
        let counts = counts.lock().unwrap();
        let lost = counts.iter().filter(|&&c| c == 0).count();
        let dup = counts.iter().filter(|&&c| c > 1).count();
        assert_eq!((lost, dup), (0, 0), "{name}: lost {lost}, duplicated {dup}");
    }
    assert_eq!(
        phantom.load(Ordering::SeqCst),
        0,
        "no delivery after unsubscribe"
    );
}

#[derive(Clone, Debug)]
struct Keyed {
    publisher: u64,
    seq: u64,
}

impl Event for Keyed {
    const TYPE: &'static str = "load.keyed";
    fn entity_id(&self) -> Option<syncbus_core::EntityId> {
        Some(self.publisher.into())
    }
}

/// Three publishers into small queues (8 events: they wrap and block all the time): a
/// single-lane thread worker, a keyed one whose entity is the publisher, and a task worker
/// each see every event once, each publisher's in its publish order.
#[test]
fn three_publishers_into_small_lanes_keep_each_publishers_order() {
    const EACH: u64 = 50_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let bus = Bus::new();
    // Per subscription: the next sequence expected from each publisher, and the faults.
    type Seen = Arc<Mutex<(Vec<u64>, u64)>>;
    let seen = || -> Seen { Arc::new(Mutex::new((vec![0; PUBLISHERS as usize], 0))) };
    let check = |seen: &Seen, ev: &Keyed| {
        let mut s = seen.lock().unwrap();
        let next = &mut s.0[ev.publisher as usize];
        if ev.seq == *next {
            *next += 1;
        } else {
            s.1 += 1;
        }
    };
    let (one, keyed, task) = (seen(), seen(), seen());
    let subs = {
        let (a, b, c) = (one.clone(), keyed.clone(), task.clone());
        let _guard = runtime.enter();
        vec![
            bus.subscribe::<Keyed>("load.keyed")
                .unwrap()
                .capacity(8)
                .queued(move |env| check(&a, env.payload()))
                .unwrap(),
            bus.subscribe::<Keyed>("load.>")
                .unwrap()
                .capacity(8)
                .keyed(3)
                .queued(move |env| check(&b, env.payload()))
                .unwrap(),
            bus.subscribe::<Keyed>("load.*")
                .unwrap()
                .capacity(8)
                .queued_async(move |env| {
                    check(&c, env.payload());
                    async {}
                })
                .unwrap(),
        ]
    };
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for seq in 0..EACH {
                    assert_eq!(bus.blocking_publish(Keyed { publisher, seq }).unwrap(), 3);
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    for s in subs {
        assert!(s.unsubscribe_and_wait(Duration::from_secs(60)));
    }
    for (name, seen) in [("one lane", &one), ("keyed", &keyed), ("task", &task)] {
        let s = seen.lock().unwrap();
        assert_eq!(s.1, 0, "{name}: events out of order or repeated");
        assert_eq!(
            s.0,
            vec![EACH; PUBLISHERS as usize],
            "{name}: every event once"
        );
    }
    assert_eq!(bus.metrics().delivered, 3 * PUBLISHERS * EACH);
}
