//! Publishing racing shutdown and unsubscribe: every `Ok(n)` is n subscriptions that took
//! the event, and each of them handles it or reports it; once intake closed, a publish is
//! `Closed` with the event, never `Ok(0)`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use syncbus_core::{Bus, Event, PublishError, Subscription};

#[derive(Clone, Debug, PartialEq)]
struct Tick(u64);

impl Event for Tick {
    const TYPE: &'static str = "clock.tick";
}

const PUBLISHERS: usize = 3;
const SUBSCRIPTIONS: usize = 3;
/// Rounds per test: enough to hit the windows every run, well under the time budget.
const ROUNDS: usize = 150;

/// What the publishers of one round saw.
#[derive(Debug, Default)]
struct Seen {
    /// The sum of every `Ok(n)`.
    accepted: u64,
    /// `Ok(0)` answers: with a subscription on the topic until intake closes, each is a
    /// silent loss.
    zeros: u64,
    /// `Closed` answers that handed the event back.
    closed: u64,
}

fn publisher(bus: Bus, stop: Arc<AtomicBool>, seed: u64) -> Seen {
    let mut seen = Seen::default();
    let mut i = seed;
    loop {
        i += PUBLISHERS as u64;
        match bus.blocking_publish(Tick(i)) {
            Ok(0) => seen.zeros += 1,
            Ok(n) => seen.accepted += n as u64,
            Err(PublishError::Closed(t)) => {
                assert_eq!(t, Tick(i), "the event comes back");
                seen.closed += 1;
                return seen;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
        if stop.load(Ordering::Relaxed) {
            return seen;
        }
    }
}

fn subscribe(bus: &Bus, handled: &Arc<AtomicU64>) -> Vec<Subscription> {
    (0..SUBSCRIPTIONS)
        .map(|s| {
            let h = handled.clone();
            bus.subscribe::<Tick>("clock.tick")
                .unwrap()
                .name(format!("sub-{s}"))
                .capacity(64)
                .queued(move |_| {
                    h.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
        })
        .collect()
}

fn spawn_publishers(bus: &Bus, stop: &Arc<AtomicBool>) -> Vec<thread::JoinHandle<Seen>> {
    (0..PUBLISHERS as u64)
        .map(|p| {
            let (bus, stop) = (bus.clone(), stop.clone());
            thread::spawn(move || publisher(bus, stop, p))
        })
        .collect()
}

/// One round: a bus with its subscriptions, publishers running on it for 2 ms.
struct Race {
    bus: Bus,
    handled: Arc<AtomicU64>,
    subs: Vec<Subscription>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<Seen>>,
}

impl Race {
    fn start() -> Race {
        let bus = Bus::new();
        let handled = Arc::new(AtomicU64::new(0));
        let subs = subscribe(&bus, &handled);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = spawn_publishers(&bus, &stop);
        thread::sleep(Duration::from_millis(2));
        Race {
            bus,
            handled,
            subs,
            stop,
            threads,
        }
    }
}

#[test]
fn every_accepted_publish_is_handled_or_reported_at_shutdown() {
    let started = Instant::now();
    for round in 0..ROUNDS {
        // The publishers stop on `Closed` here, so the stop flag goes unused.
        let Race {
            bus,
            handled,
            subs,
            stop: _,
            threads,
        } = Race::start();
        let report = bus.blocking_shutdown(Duration::from_secs(2));
        let seen: Vec<Seen> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        drop(subs);
        let accepted: u64 = seen.iter().map(|s| s.accepted).sum();
        let zeros: u64 = seen.iter().map(|s| s.zeros).sum();
        let closed: u64 = seen.iter().map(|s| s.closed).sum();
        let reported = report.total_undelivered() as u64;
        assert_eq!(
            accepted,
            handled.load(Ordering::SeqCst) + reported,
            "round {round}: accepted = handled + reported ({report:?})"
        );
        assert_eq!(
            zeros, 0,
            "round {round}: Ok(0) while a subscription listened"
        );
        assert_eq!(
            closed, PUBLISHERS as u64,
            "round {round}: every publisher saw Closed"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn every_accepted_publish_is_handled_after_unsubscribe_and_wait() {
    for round in 0..ROUNDS {
        let Race {
            bus,
            handled,
            subs,
            stop,
            threads,
        } = Race::start();
        for sub in subs {
            assert!(
                sub.unsubscribe_and_wait(Duration::from_secs(2)),
                "round {round}"
            );
        }
        // Publishes after the unsubscribe reach nobody (Ok(0) is right now); let a few run.
        thread::sleep(Duration::from_micros(200));
        stop.store(true, Ordering::Relaxed);
        let seen: Vec<Seen> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let accepted: u64 = seen.iter().map(|s| s.accepted).sum();
        // A worker that left with an event still to land would never handle it: give any
        // such straggler time to show up in neither count.
        thread::sleep(Duration::from_micros(200));
        assert_eq!(
            accepted,
            handled.load(Ordering::SeqCst),
            "round {round}: every accepted event handled by the unsubscribed workers"
        );
        assert_eq!(
            bus.metrics().pending,
            0,
            "round {round}: nothing left in a queue"
        );
    }
}
