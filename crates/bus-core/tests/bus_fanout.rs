//! Queued subscriptions of one pattern, type and capacity under `Block` read one shared
//! ring: each still gets every event, in order, counted exactly in the publish's `Ok(n)`,
//! through joins, leaves, refusals, targeted retries and shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use syncbus_core::{Bus, Envelope, Event, Overflow, PublishError, Subscription};

#[derive(Clone, Debug, PartialEq)]
struct Tick {
    from: u64,
    seq: u64,
}

impl Event for Tick {
    const TYPE: &'static str = "clock.tick";
}

fn tick(seq: u64) -> Tick {
    Tick { from: 0, seq }
}

type Seen = Arc<Mutex<Vec<Tick>>>;

/// A queued subscription on `clock.tick` recording what it handles.
fn recording(bus: &Bus, name: &str, capacity: usize) -> (Subscription, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let sub = bus
        .subscribe::<Tick>("clock.tick")
        .unwrap()
        .name(name)
        .capacity(capacity)
        .queued(move |env: &Envelope<Tick>| s.lock().unwrap().push(env.payload().clone()))
        .unwrap();
    (sub, seen)
}

fn seqs(seen: &Seen) -> Vec<u64> {
    seen.lock().unwrap().iter().map(|t| t.seq).collect()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `members` subscriptions of `capacity` each get all of `events` in order, and every
/// publish counts them all.
fn each_gets_everything(members: usize, capacity: usize, events: u64) -> Bus {
    let bus = Bus::new();
    let subs: Vec<_> = (0..members)
        .map(|i| recording(&bus, &format!("m{i}"), capacity))
        .collect();
    for seq in 0..events {
        assert_eq!(bus.blocking_publish(tick(seq)).unwrap(), members);
    }
    let all: Vec<u64> = (0..events).collect();
    for (sub, seen) in subs {
        assert!(sub.unsubscribe_and_wait(Duration::from_secs(20)));
        assert_eq!(seqs(&seen), all);
    }
    bus
}

#[test]
fn each_member_gets_every_event_in_order_and_the_publish_counts_them_all() {
    let bus = each_gets_everything(3, 64, 5_000);
    let m = bus.metrics();
    assert_eq!((m.published, m.delivered), (5_000, 15_000));
}

#[test]
fn nine_subscriptions_outgrow_one_ring_and_still_each_get_everything() {
    each_gets_everything(9, 16, 500);
}

/// Publishes `n` ticks from a thread, summing what each publish counted.
fn publish_in_background(bus: &Bus, n: u64) -> std::thread::JoinHandle<u64> {
    let bus = bus.clone();
    std::thread::spawn(move || {
        (0..n)
            .map(|seq| bus.blocking_publish(tick(seq)).unwrap() as u64)
            .sum()
    })
}

#[test]
fn a_member_leaving_while_publishing_gets_exactly_what_counted_it() {
    let bus = Bus::new();
    let (stays, stays_seen) = recording(&bus, "stays", 32);
    let (leaves, leaves_seen) = recording(&bus, "leaves", 32);
    let n = 200_000;
    let publisher = publish_in_background(&bus, n);
    wait_for("the leaving one to handle some", || {
        leaves_seen.lock().unwrap().len() > 1_000
    });
    assert!(leaves.unsubscribe_and_wait(Duration::from_secs(20)));
    let counted = publisher.join().unwrap();
    assert!(stays.unsubscribe_and_wait(Duration::from_secs(20)));
    let (stays, leaves) = (seqs(&stays_seen), seqs(&leaves_seen));
    assert_eq!(stays, (0..n).collect::<Vec<_>>());
    // What it handled is a prefix, and every publish that counted it is in it.
    assert!((leaves.len() as u64) < n, "left before the end");
    assert_eq!(leaves, (0..leaves.len() as u64).collect::<Vec<_>>());
    assert_eq!(counted, stays.len() as u64 + leaves.len() as u64);
}

#[test]
fn a_member_joining_while_publishing_gets_a_suffix_counted_exactly() {
    let bus = Bus::new();
    let (first, first_seen) = recording(&bus, "first", 32);
    let n = 200_000;
    let publisher = publish_in_background(&bus, n);
    wait_for("the first to handle some", || {
        first_seen.lock().unwrap().len() > 1_000
    });
    let (late, late_seen) = recording(&bus, "late", 32);
    let counted = publisher.join().unwrap();
    assert!(first.unsubscribe_and_wait(Duration::from_secs(20)));
    assert!(late.unsubscribe_and_wait(Duration::from_secs(20)));
    let (first, late) = (seqs(&first_seen), seqs(&late_seen));
    assert_eq!(first, (0..n).collect::<Vec<_>>());
    assert!(!late.is_empty() && (late.len() as u64) < n, "joined midway");
    let start = late[0];
    assert_eq!(late, (start..n).collect::<Vec<_>>());
    assert_eq!(counted, first.len() as u64 + late.len() as u64);
}

#[test]
fn three_publishers_and_four_members_keep_per_publisher_order_without_loss() {
    let bus = Bus::new();
    let members: Vec<_> = (0..4)
        .map(|i| recording(&bus, &format!("m{i}"), 128))
        .collect();
    let per = 30_000u64;
    let publishers: Vec<_> = (1..=3u64)
        .map(|from| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for seq in 0..per {
                    assert_eq!(bus.blocking_publish(Tick { from, seq }).unwrap(), 4);
                }
            })
        })
        .collect();
    publishers.into_iter().for_each(|p| p.join().unwrap());
    for (sub, seen) in members {
        assert!(sub.unsubscribe_and_wait(Duration::from_secs(30)));
        let mut next: HashMap<u64, u64> = HashMap::new();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len() as u64, 3 * per, "no loss, no duplicate");
        for t in seen.iter() {
            let expected = next.entry(t.from).or_insert(0);
            assert_eq!(t.seq, *expected, "publisher {} in order", t.from);
            *expected += 1;
        }
    }
}

/// Two members of capacity 2 whose handlers wait at a gate on event 0.
struct Gated {
    a: Subscription,
    b: Subscription,
    seen_a: Seen,
    seen_b: Seen,
    gate: Arc<Barrier>,
}

fn gated(bus: &Bus) -> Gated {
    let gate = Arc::new(Barrier::new(3));
    let member = |name: &str| {
        let seen: Seen = Arc::default();
        let (s, g) = (seen.clone(), gate.clone());
        let sub = bus
            .subscribe::<Tick>("clock.tick")
            .unwrap()
            .name(name)
            .capacity(2)
            .queued(move |env: &Envelope<Tick>| {
                if env.payload().seq == 0 {
                    g.wait();
                }
                s.lock().unwrap().push(env.payload().clone());
            })
            .unwrap();
        (sub, seen)
    };
    let (a, seen_a) = member("a");
    let (b, seen_b) = member("b");
    Gated {
        a,
        b,
        seen_a,
        seen_b,
        gate,
    }
}

/// Fills the shared ring: event 0 in both handlers, then the capacity.
fn fill(bus: &Bus) {
    for seq in 0..3 {
        assert_eq!(bus.try_publish(tick(seq)).unwrap(), 2);
    }
}

#[test]
fn a_full_shared_ring_hands_the_event_back_whole_and_counts_each_member() {
    let bus = Bus::new();
    let g = gated(&bus);
    fill(&bus);
    match bus.try_publish(tick(3)) {
        Err(PublishError::Full(event)) => assert_eq!(event, tick(3)),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!((g.a.metrics().rejected, g.b.metrics().rejected), (1, 1));
    g.gate.wait();
    assert!(g.a.unsubscribe_and_wait(Duration::from_secs(10)));
    assert!(g.b.unsubscribe_and_wait(Duration::from_secs(10)));
    assert_eq!(seqs(&g.seen_a), vec![0, 1, 2]);
    assert_eq!(seqs(&g.seen_b), vec![0, 1, 2]);
}

#[test]
fn a_partial_publish_names_every_member_and_a_retry_reaches_only_those_named() {
    let bus = Bus::new();
    let g = gated(&bus);
    let inline_seen = Arc::new(AtomicU64::new(0));
    let i = inline_seen.clone();
    let inline = bus
        .subscribe::<Tick>("clock.tick")
        .unwrap()
        .inline(move |_| {
            i.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    for seq in 0..3 {
        assert_eq!(bus.try_publish(tick(seq)).unwrap(), 3);
    }
    let (event, partial) = match bus.try_publish(tick(3)) {
        Err(PublishError::Partial(event, partial)) => (event, partial),
        other => panic!("expected Partial, got {other:?}"),
    };
    assert_eq!(event, tick(3));
    assert_eq!(partial.took, vec![inline.id()]);
    let mut members = vec![g.a.id(), g.b.id()];
    members.sort_unstable();
    assert_eq!(partial.refused, members);
    g.gate.wait();
    // A retry for one member only: the other passes it by.
    let until = Instant::now() + Duration::from_secs(10);
    let retried = loop {
        match bus.try_publish_to_only("clock.tick", event.clone(), &[g.b.id()]) {
            Ok(n) => break n,
            Err(PublishError::Full(_)) if Instant::now() < until => std::thread::yield_now(),
            Err(e) => panic!("retry failed: {e:?}"),
        }
    };
    assert_eq!(retried, 1);
    assert_eq!(bus.try_publish(tick(4)).unwrap(), 3);
    assert!(g.a.unsubscribe_and_wait(Duration::from_secs(10)));
    assert!(g.b.unsubscribe_and_wait(Duration::from_secs(10)));
    assert_eq!(seqs(&g.seen_a), vec![0, 1, 2, 4]);
    assert_eq!(seqs(&g.seen_b), vec![0, 1, 2, 3, 4]);
    // 0, 1, 2, the partial 3 (it took it) and 4: the retry was not for it.
    assert_eq!(inline_seen.load(Ordering::SeqCst), 5);
}

#[test]
fn shutdown_reports_each_member_exactly_even_for_events_meant_for_others() {
    let bus = Bus::new();
    let (release, held) = mpsc::channel::<()>();
    let held = Mutex::new(held);
    let (entered, in_hand) = mpsc::channel::<u64>();
    let stuck_handled = Arc::new(AtomicU64::new(0));
    let h = stuck_handled.clone();
    let stuck = bus
        .subscribe::<Tick>("clock.tick")
        .unwrap()
        .name("stuck")
        .capacity(64)
        .queued(move |env: &Envelope<Tick>| {
            if env.payload().seq == 0 {
                entered.send(0).unwrap();
                held.lock().unwrap().recv().unwrap();
            }
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let (fast, fast_seen) = recording(&bus, "fast", 64);
    for seq in 0..40 {
        assert_eq!(bus.blocking_publish(tick(seq)).unwrap(), 2);
    }
    // Five more for the fast one alone: never the stuck one's to report.
    for seq in 40..45 {
        assert_eq!(
            bus.try_publish_to_only("clock.tick", tick(seq), &[fast.id()])
                .unwrap(),
            1
        );
    }
    assert_eq!(in_hand.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
    wait_for("the fast one to handle all", || {
        fast_seen.lock().unwrap().len() == 45
    });
    let report = bus.blocking_shutdown(Duration::from_millis(50));
    assert!(!report.drained);
    let count = |name: &str| {
        report
            .undelivered
            .iter()
            .find(|u| u.subscription == name)
            .map_or(0, |u| u.count)
    };
    assert_eq!(count("stuck"), 39, "{report:?}");
    assert_eq!(count("fast"), 0, "{report:?}");
    assert_eq!(report.total_undelivered(), 39, "{report:?}");
    release.send(()).unwrap();
    wait_for("the event in hand", || {
        stuck_handled.load(Ordering::SeqCst) == 1
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        stuck_handled.load(Ordering::SeqCst),
        1,
        "only the event in hand"
    );
    drop((stuck, fast));
}

#[test]
fn a_reject_subscription_keeps_a_ring_of_its_own_beside_block_ones_of_its_capacity() {
    let bus = Bus::new();
    let (_roomy, roomy_seen) = recording(&bus, "roomy", 2);
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let tight = bus
        .subscribe::<Tick>("clock.tick")
        .unwrap()
        .capacity(2)
        .overflow(Overflow::Reject)
        .queued(move |env: &Envelope<Tick>| {
            if env.payload().seq == 0 {
                g.wait();
            }
        })
        .unwrap();
    // The tight one: event 0 in hand, 1 and 2 queued. The roomy one handles all three.
    for seq in 0..3 {
        assert_eq!(bus.try_publish(tick(seq)).unwrap(), 2);
    }
    wait_for("the roomy one", || roomy_seen.lock().unwrap().len() == 3);
    // Sharing a ring would refuse it to both; apart, the roomy one still takes it.
    match bus.try_publish(tick(3)) {
        Err(PublishError::Partial(_, partial)) => assert_eq!(partial.refused, vec![tight.id()]),
        other => panic!("expected Partial, got {other:?}"),
    }
    gate.wait();
    wait_for("the roomy one", || roomy_seen.lock().unwrap().len() == 4);
}
