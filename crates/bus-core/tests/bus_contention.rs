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
