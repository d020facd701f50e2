//! Push subscriptions: inline, queued, keyed, async; overflow policies; failures and panics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use syncbus_core::{
    Bus, Bytes, EntityId, Envelope, Event, EventType, Metadata, NameReason, Overflow, PublishError,
    SubscribeError, Topic,
};

#[derive(Clone, Debug, PartialEq)]
struct Placed {
    order: u64,
    seq: u64,
}

impl Event for Placed {
    const TYPE: &'static str = "orders.placed";
    fn entity_id(&self) -> Option<EntityId> {
        Some(self.order.into())
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Shipped(u64);

impl Event for Shipped {
    const TYPE: &'static str = "orders.shipped";
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn inline_handler_runs_before_publish_returns() {
    let bus = Bus::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let sub = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .inline(move |env| s.lock().unwrap().push(env.payload().seq))
        .unwrap();
    for seq in 0..5 {
        assert_eq!(bus.blocking_publish(Placed { order: 1, seq }).unwrap(), 1);
        assert_eq!(seen.lock().unwrap().len() as u64, seq + 1);
    }
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(sub.metrics().delivered, 5);
    let m = bus.metrics();
    assert_eq!((m.published, m.delivered, m.unrouted), (5, 5, 0));
}

#[test]
fn envelope_carries_metadata() {
    let bus = Bus::new();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let _sub = bus
        .subscribe::<Placed>("orders.*.placed")
        .unwrap()
        .inline(move |env| *s.lock().unwrap() = Some(env.clone()))
        .unwrap();
    bus.blocking_publish_to("orders.eu.placed", Placed { order: 42, seq: 0 })
        .unwrap();
    let env = seen.lock().unwrap().take().expect("delivered");
    assert_eq!(
        env.meta().topic().map(Topic::as_str),
        Some("orders.eu.placed")
    );
    assert_eq!(env.meta().event_type().as_str(), "orders.placed");
    assert_eq!(env.meta().entity_id().map(|e| e.as_str()), Some("42"));
    assert!(env.id().timestamp_ms().is_some(), "ids are UUIDv7");
}

#[test]
fn wildcards_route_by_pattern_and_type() {
    let bus = Bus::new();
    let count = |c: &Arc<AtomicUsize>| c.load(Ordering::SeqCst);
    let (one, rest, all, shipped) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let c = one.clone();
    let _a = bus
        .subscribe::<Placed>("orders.*")
        .unwrap()
        .inline(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let c = rest.clone();
    let _b = bus
        .subscribe::<Placed>("orders.>")
        .unwrap()
        .inline(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let c = all.clone();
    let _c = bus
        .subscribe::<Placed>(">")
        .unwrap()
        .inline(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let c = shipped.clone();
    let _d = bus
        .subscribe::<Shipped>("orders.>")
        .unwrap()
        .inline(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();

    let p = || Placed { order: 1, seq: 0 };
    assert_eq!(bus.blocking_publish_to("orders.x", p()).unwrap(), 3);
    assert_eq!(bus.blocking_publish_to("orders.eu.x", p()).unwrap(), 2);
    assert_eq!(bus.blocking_publish_to("orders", p()).unwrap(), 1);
    assert_eq!(bus.blocking_publish_to("billing.x", p()).unwrap(), 1);
    assert_eq!(bus.blocking_publish_to("orders.eu", Shipped(1)).unwrap(), 1);
    assert_eq!(
        (count(&one), count(&rest), count(&all), count(&shipped)),
        (1, 2, 4, 1)
    );
    // Repeated publishes hit the cached route and give the same answer.
    for _ in 0..3 {
        assert_eq!(bus.blocking_publish_to("orders.eu.x", p()).unwrap(), 2);
    }
    assert_eq!(
        bus.blocking_publish_to("nobody.listens", Shipped(1))
            .unwrap(),
        0
    );
    assert_eq!(bus.metrics().unrouted, 1);
}

#[test]
fn bytes_envelopes_route_to_bytes_subscribers() {
    let bus = Bus::new();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let _s = bus
        .subscribe::<Bytes>("ingress.>")
        .unwrap()
        .inline(move |env| g.lock().unwrap().push(env.payload().clone()))
        .unwrap();
    let meta = Metadata::new(EventType::new("webhook.received").unwrap())
        .with_topic(Topic::from_static("ingress.stripe"));
    let env = Envelope::new(meta, Bytes::from_static(br#"{"a":1}"#));
    assert_eq!(bus.blocking_publish_envelope(env).unwrap(), 1);
    assert_eq!(got.lock().unwrap()[0].as_ref(), br#"{"a":1}"#);

    // A bad topic never reaches an envelope: metadata takes a `Topic`, validated once.
    assert!(matches!(
        Topic::new("ingress..stripe").unwrap_err().reason(),
        NameReason::EmptyToken { index: 1, .. }
    ));

    let no_topic = Envelope::new(
        Metadata::new(EventType::new("x").unwrap()),
        Bytes::from_static(b"1"),
    );
    match bus.blocking_publish_envelope(no_topic) {
        Err(PublishError::InvalidTopic(back, e)) if e.reason() == &NameReason::Empty => {
            assert_eq!(back.payload().as_ref(), b"1")
        }
        other => panic!("expected InvalidTopic, got {other:?}"),
    }
}

#[test]
fn invalid_topics_and_patterns_are_typed_errors() {
    let bus = Bus::new();
    for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
        match bus.blocking_publish_to(bad, Shipped(9)) {
            Err(PublishError::InvalidTopic(ev, _)) => assert_eq!(ev, Shipped(9)),
            other => panic!("{bad:?}: expected InvalidTopic, got {other:?}"),
        }
    }
    // Same with a wildcard subscription present (the cached path).
    let _s = bus
        .subscribe::<Shipped>("a.*")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    assert!(matches!(
        bus.blocking_publish_to("a..b", Shipped(1)),
        Err(PublishError::InvalidTopic(..))
    ));
    for bad in ["", "a.>.b", "a*", "a.b>", "a..b"] {
        assert!(
            matches!(
                bus.subscribe::<Shipped>(bad),
                Err(SubscribeError::InvalidPattern(_))
            ),
            "{bad:?} accepted"
        );
    }
    assert!(bus.publisher::<Shipped>("a.*").is_err());
    let err = bus.subscribe::<Shipped>("a.>.b").unwrap_err();
    assert!(err.to_string().starts_with("invalid pattern: "), "{err}");
}

#[test]
fn queued_handler_runs_on_worker_thread_in_order() {
    let bus = Bus::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let main = std::thread::current().id();
    let sub = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .capacity(16)
        .queued(move |env| {
            assert_ne!(std::thread::current().id(), main);
            s.lock().unwrap().push(env.payload().seq);
        })
        .unwrap();
    for seq in 0..1000 {
        bus.blocking_publish(Placed {
            order: seq % 3,
            seq,
        })
        .unwrap();
    }
    wait_for("1000 events", || seen.lock().unwrap().len() == 1000);
    assert_eq!(*seen.lock().unwrap(), (0..1000).collect::<Vec<_>>());
    assert_eq!(sub.metrics().delivered, 1000);
    assert!(sub.unsubscribe_and_wait(Duration::from_secs(5)));
}

#[test]
fn queued_with_several_workers_delivers_everything_once() {
    let bus = Bus::new();
    let sum = Arc::new(AtomicU64::new(0));
    let s = sum.clone();
    let sub = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .workers(3)
        .capacity(64)
        .queued(move |env| {
            s.fetch_add(env.payload().seq, Ordering::SeqCst);
        })
        .unwrap();
    for seq in 1..=10_000 {
        bus.blocking_publish(Placed { order: 0, seq }).unwrap();
    }
    wait_for("sum", || sub.metrics().delivered == 10_000);
    assert_eq!(sum.load(Ordering::SeqCst), 10_000 * 10_001 / 2);
}

#[test]
fn keyed_lanes_keep_per_entity_order_with_many_entities() {
    const ENTITIES: u64 = 500;
    const PER_ENTITY: u64 = 40;
    let bus = Bus::new();
    let seen: Arc<Mutex<Vec<Vec<u64>>>> = Arc::new(Mutex::new(vec![Vec::new(); ENTITIES as usize]));
    let in_flight: Arc<Vec<AtomicUsize>> =
        Arc::new((0..ENTITIES).map(|_| AtomicUsize::new(0)).collect());
    let lanes_used = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let (s, f, l) = (seen.clone(), in_flight.clone(), lanes_used.clone());
    let sub = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .keyed(4)
        .capacity(32)
        .queued(move |env| {
            let p = env.payload();
            // One at a time per entity.
            assert_eq!(f[p.order as usize].fetch_add(1, Ordering::SeqCst), 0);
            l.lock().unwrap().insert(std::thread::current().id());
            s.lock().unwrap()[p.order as usize].push(p.seq);
            f[p.order as usize].fetch_sub(1, Ordering::SeqCst);
        })
        .unwrap();
    // Two publisher threads, each owning half of the entities, so per-entity publish order
    // is well defined.
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2u64)
        .map(|t| {
            let bus = bus.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for seq in 0..PER_ENTITY {
                    for order in (t..ENTITIES).step_by(2) {
                        bus.blocking_publish(Placed { order, seq }).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    wait_for("all events", || {
        sub.metrics().delivered == ENTITIES * PER_ENTITY
    });
    let seen = seen.lock().unwrap();
    for (order, seqs) in seen.iter().enumerate() {
        assert_eq!(
            *seqs,
            (0..PER_ENTITY).collect::<Vec<_>>(),
            "entity {order} out of order"
        );
    }
    assert!(
        lanes_used.lock().unwrap().len() > 1,
        "entities ran in parallel lanes"
    );
    assert_eq!(sub.metrics().failed, 0);
}

#[test]
fn block_policy_applies_backpressure_without_loss() {
    let bus = Bus::new();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let sub = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .capacity(2)
        .overflow(Overflow::Block)
        .queued(move |env| {
            if env.payload().seq == 0 {
                g.wait();
            }
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let publisher = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            for seq in 0..100 {
                bus.blocking_publish(Placed { order: 0, seq }).unwrap();
            }
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !publisher.is_finished(),
        "publisher must be blocked by the full queue"
    );
    assert!(sub.metrics().pending <= 2);
    gate.wait();
    publisher.join().unwrap();
    wait_for("all", || count.load(Ordering::SeqCst) == 100);
    let m = sub.metrics();
    assert_eq!((m.delivered, m.dropped, m.rejected), (100, 0, 0));
}

#[test]
fn reject_policy_hands_the_event_back() {
    let bus = Bus::new();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let sub = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .capacity(2)
        .overflow(Overflow::Reject)
        .queued(move |env| {
            if env.payload().seq == 0 {
                g.wait();
            }
        })
        .unwrap();
    bus.blocking_publish(Placed { order: 0, seq: 0 }).unwrap();
    wait_for("worker holds seq 0", || sub.metrics().pending == 0);
    bus.blocking_publish(Placed { order: 0, seq: 1 }).unwrap();
    bus.blocking_publish(Placed { order: 0, seq: 2 }).unwrap();
    match bus.blocking_publish(Placed { order: 0, seq: 3 }) {
        Err(PublishError::Full(ev)) => assert_eq!(ev.seq, 3),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(sub.metrics().rejected, 1);
    gate.wait();
    wait_for("drained", || sub.metrics().delivered == 3);
    assert_eq!(bus.metrics().rejected, 1);
}

#[test]
fn reject_with_fanout_still_returns_the_event() {
    let bus = Bus::new();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    // Subscribed first, so it is not the last sink in the route.
    let full = bus
        .subscribe::<Shipped>("s")
        .unwrap()
        .capacity(1)
        .overflow(Overflow::Reject)
        .queued(move |env| {
            if env.payload().0 == 0 {
                g.wait();
            }
        })
        .unwrap();
    let roomy = Arc::new(AtomicUsize::new(0));
    let r = roomy.clone();
    let _ok = bus
        .subscribe::<Shipped>("s")
        .unwrap()
        .inline(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    bus.blocking_publish_to("s", Shipped(0)).unwrap();
    wait_for("held", || full.metrics().pending == 0);
    bus.blocking_publish_to("s", Shipped(1)).unwrap();
    match bus.blocking_publish_to("s", Shipped(2)) {
        Err(PublishError::Partial(ev, partial)) => {
            assert_eq!(ev, Shipped(2));
            assert_eq!(partial.refused, vec![full.id()]);
            assert_eq!(partial.took.len(), 1);
        }
        other => panic!("expected Partial, got {other:?}"),
    }
    assert_eq!(
        roomy.load(Ordering::SeqCst),
        3,
        "the subscription with room got it"
    );
    gate.wait();
}

#[test]
fn drop_oldest_counts_and_reports_lag() {
    let bus = Bus::new();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let lost = Arc::new(AtomicU64::new(0));
    let (s, l) = (seen.clone(), lost.clone());
    let sub = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .capacity(4)
        .overflow(Overflow::DropOldest)
        .on_lag(move |n| {
            l.fetch_add(n, Ordering::SeqCst);
        })
        .queued(move |env| {
            if env.payload().seq == 0 {
                g.wait();
            }
            s.lock().unwrap().push(env.payload().seq);
        })
        .unwrap();
    bus.blocking_publish(Placed { order: 0, seq: 0 }).unwrap();
    wait_for("held", || sub.metrics().pending == 0);
    for seq in 1..=10 {
        bus.blocking_publish(Placed { order: 0, seq }).unwrap();
    }
    let m = sub.metrics();
    assert_eq!((m.dropped, m.pending), (6, 4));
    gate.wait();
    wait_for("drained", || seen.lock().unwrap().len() == 5);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![0, 7, 8, 9, 10],
        "the newest four survive"
    );
    assert_eq!(lost.load(Ordering::SeqCst), 6, "on_lag told the subscriber");
    let bm = bus.metrics();
    assert_eq!((bm.dropped, bm.lagging), (6, 1));
}

#[test]
fn panics_and_failures_are_isolated_and_counted() {
    let bus = Bus::new();
    let healthy = Arc::new(AtomicUsize::new(0));
    let h = healthy.clone();
    let bad_inline = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .inline(|env| {
            if env.payload().seq % 2 == 0 {
                panic!("boom {}", env.payload().seq);
            }
        })
        .unwrap();
    let bad_queued = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .queued(|env| -> Result<(), String> {
            match env.payload().seq % 3 {
                0 => panic!("queued boom"),
                1 => Err("no".into()),
                _ => Ok(()),
            }
        })
        .unwrap();
    let good = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .queued(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for seq in 0..30 {
        assert_eq!(bus.blocking_publish(Placed { order: 0, seq }).unwrap(), 3);
    }
    wait_for("good drained", || good.metrics().delivered == 30);
    wait_for("bad drained", || {
        let m = bad_queued.metrics();
        m.delivered + m.failed == 30
    });
    std::panic::set_hook(prev);
    let m = bad_inline.metrics();
    assert_eq!((m.delivered, m.failed, m.panicked), (15, 15, 15));
    let m = bad_queued.metrics();
    assert_eq!((m.delivered, m.failed, m.panicked), (10, 20, 10));
    assert_eq!(healthy.load(Ordering::SeqCst), 30);
    // The worker survived its panics.
    bus.blocking_publish(Placed { order: 0, seq: 2 }).unwrap();
    wait_for("still alive", || bad_queued.metrics().delivered == 11);
    let bm = bus.metrics();
    // 15 inline + 10 queued, plus the inline one for the last publish.
    assert_eq!(bm.panicked, 26);
}

#[test]
fn unsubscribe_and_detach() {
    let bus = Bus::new();
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    let sub = bus
        .subscribe::<Shipped>("orders.shipped")
        .unwrap()
        .inline(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(bus.blocking_publish(Shipped(1)).unwrap(), 1);
    drop(sub);
    assert_eq!(
        bus.blocking_publish(Shipped(2)).unwrap(),
        0,
        "dropping unsubscribes"
    );
    let c = n.clone();
    bus.subscribe::<Shipped>("orders.shipped")
        .unwrap()
        .inline(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap()
        .detach();
    assert_eq!(
        bus.blocking_publish(Shipped(3)).unwrap(),
        1,
        "detached keeps running"
    );
    assert_eq!(n.load(Ordering::SeqCst), 2);
    let m = bus.metrics();
    assert_eq!((m.delivered, m.subscriptions), (2, 1));
}

#[test]
fn publisher_handle_follows_subscription_changes() {
    let bus = Bus::new();
    let p = bus.publisher::<Shipped>("orders.eu.shipped").unwrap();
    assert_eq!(p.blocking_publish(Shipped(0)).unwrap(), 0);
    let a = bus
        .subscribe::<Shipped>("orders.*.shipped")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    assert_eq!(p.blocking_publish(Shipped(1)).unwrap(), 1);
    let b = bus
        .subscribe::<Shipped>("orders.eu.shipped")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    assert_eq!(p.blocking_publish(Shipped(2)).unwrap(), 2);
    drop(a);
    assert_eq!(p.blocking_publish(Shipped(3)).unwrap(), 1);
    drop(b);
    assert_eq!(p.blocking_publish(Shipped(4)).unwrap(), 0);
    let p2 = p.clone();
    assert_eq!(p2.topic().as_str(), "orders.eu.shipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_queued_and_keyed_handlers() {
    let bus = Bus::new();
    let total = Arc::new(AtomicU64::new(0));
    let t = total.clone();
    let q = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .workers(2)
        .queued_async(move |env| {
            let t = t.clone();
            async move {
                tokio::task::yield_now().await;
                t.fetch_add(env.payload().seq, Ordering::SeqCst);
            }
        })
        .unwrap();
    let order = Arc::new(Mutex::new(vec![Vec::new(); 8]));
    let o = order.clone();
    let k = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .keyed(3)
        .queued_async(move |env| {
            let o = o.clone();
            async move {
                tokio::task::yield_now().await;
                let p = env.payload();
                o.lock().unwrap()[p.order as usize].push(p.seq);
            }
        })
        .unwrap();
    for seq in 0..400u64 {
        bus.publish(Placed {
            order: seq % 8,
            seq,
        })
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while q.metrics().delivered < 400 || k.metrics().delivered < 400 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(total.load(Ordering::SeqCst), (0..400).sum::<u64>());
    for (e, seqs) in order.lock().unwrap().iter().enumerate() {
        let want: Vec<u64> = (0..400).filter(|s| s % 8 == e as u64).collect();
        assert_eq!(*seqs, want);
    }
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_handler_panic_is_counted() {
    let bus = Bus::new();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let sub = bus
        .subscribe::<Shipped>("orders.shipped")
        .unwrap()
        .queued_async(|env| async move {
            if env.payload().0 == 1 {
                panic!("async boom");
            }
        })
        .unwrap();
    for i in 0..3 {
        bus.publish(Shipped(i)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sub.metrics().delivered + sub.metrics().failed < 3 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    std::panic::set_hook(prev);
    let m = sub.metrics();
    assert_eq!((m.delivered, m.failed, m.panicked), (2, 1, 1));
}

#[test]
fn async_subscription_outside_runtime_is_an_error() {
    let bus = Bus::new();
    let err = bus
        .subscribe::<Shipped>("x")
        .unwrap()
        .queued_async(|_| async {})
        .unwrap_err();
    assert!(matches!(err, SubscribeError::NoRuntime));
}

#[test]
fn invalid_config_is_rejected() {
    let bus = Bus::new();
    let b = || bus.subscribe::<Shipped>("x").unwrap();
    assert!(matches!(
        b().capacity(0).queued(|_| {}),
        Err(SubscribeError::InvalidConfig(_))
    ));
    assert!(matches!(
        b().workers(0).queued(|_| {}),
        Err(SubscribeError::InvalidConfig(_))
    ));
    assert!(matches!(
        b().keyed(0).queued(|_| {}),
        Err(SubscribeError::InvalidConfig(_))
    ));
    // A keyed subscription has one worker per lane: asking for workers too is a mistake.
    assert!(matches!(
        b().keyed(4).workers(2).queued(|_| {}),
        Err(SubscribeError::InvalidConfig(_))
    ));
}

/// What an `on_failure` hook saw: the event, and whether it was a panic, with the message.
type Failures = Arc<Mutex<Vec<(Placed, bool, String)>>>;

fn record(failures: &Failures) -> impl Fn(&Envelope<Placed>, &syncbus_core::HandlerFailure) {
    let failures = failures.clone();
    move |env, failure| {
        failures.lock().unwrap().push((
            env.payload().clone(),
            failure.is_panic(),
            failure.message().to_owned(),
        ));
    }
}

/// The handler of `seq` 1 errs, of 2 panics, of 0 succeeds.
fn flaky(env: &Envelope<Placed>) -> Result<(), String> {
    match env.payload().seq {
        1 => Err("downstream is down".into()),
        2 => panic!("bad state"),
        _ => Ok(()),
    }
}

fn assert_failures(failures: &Failures) {
    let mut seen = failures.lock().unwrap().clone();
    seen.sort_by_key(|(p, _, _)| p.seq);
    assert_eq!(
        seen,
        vec![
            (
                Placed { order: 1, seq: 1 },
                false,
                "downstream is down".to_owned()
            ),
            (Placed { order: 1, seq: 2 }, true, "bad state".to_owned()),
        ]
    );
}

#[test]
fn on_failure_sees_the_envelope_and_the_error_inline_and_queued() {
    let bus = Bus::new();
    let inline_failures = Failures::default();
    let queued_failures = Failures::default();
    let inline = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .on_failure(record(&inline_failures))
        .inline(flaky)
        .unwrap();
    let queued = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .on_failure(record(&queued_failures))
        .queued(flaky)
        .unwrap();
    for seq in 0..3 {
        bus.blocking_publish(Placed { order: 1, seq }).unwrap();
    }
    assert!(queued.unsubscribe_and_wait(Duration::from_secs(5)));
    assert_failures(&inline_failures);
    assert_failures(&queued_failures);
    assert_eq!(inline.metrics().failed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_sees_the_envelope_and_the_error_of_an_async_handler() {
    let bus = Bus::new();
    let failures = Failures::default();
    let _sub = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .on_failure(record(&failures))
        .queued_async(|env| async move { flaky(&env) })
        .unwrap();
    for seq in 0..3 {
        bus.publish(Placed { order: 1, seq }).await.unwrap();
    }
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_failures(&failures);
}

/// A `Reject` subscription full while another took the event: the error names who took it
/// and who refused, and a retry for the refusers alone reaches them without handing the
/// event to the others twice.
#[test]
fn full_with_several_subscriptions_says_who_took_it_and_a_retry_reaches_only_the_refusers() {
    let bus = Bus::new();
    let roomy_seen = Arc::new(AtomicUsize::new(0));
    let r = roomy_seen.clone();
    let roomy = bus
        .subscribe::<Shipped>("orders.shipped")
        .unwrap()
        .inline(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let tight_seen = Arc::new(Mutex::new(Vec::new()));
    let t = tight_seen.clone();
    let tight = bus
        .subscribe::<Shipped>("orders.shipped")
        .unwrap()
        .capacity(1)
        .overflow(Overflow::Reject)
        .queued(move |env: &Envelope<Shipped>| {
            if env.payload().0 == 0 {
                g.wait();
            }
            t.lock().unwrap().push(env.payload().0);
        })
        .unwrap();
    bus.try_publish(Shipped(0)).unwrap(); // the worker holds it at the gate
    let until = Instant::now() + Duration::from_secs(5);
    while tight.metrics().pending > 0 && Instant::now() < until {
        std::thread::yield_now();
    }
    bus.try_publish(Shipped(1)).unwrap(); // fills the one slot
    let (event, partial) = match bus.try_publish(Shipped(2)) {
        Err(PublishError::Partial(event, partial)) => (event, partial),
        other => panic!("expected Partial, got {other:?}"),
    };
    assert_eq!(event, Shipped(2));
    assert_eq!(partial.took, vec![roomy.id()]);
    assert_eq!(partial.refused, vec![tight.id()]);
    gate.wait();
    let until = Instant::now() + Duration::from_secs(5);
    let retried = loop {
        match bus.try_publish_to_only("orders.shipped", event.clone(), &partial.refused) {
            Ok(n) => break n,
            Err(PublishError::Full(_)) if Instant::now() < until => std::thread::yield_now(),
            Err(e) => panic!("retry failed: {e:?}"),
        }
    };
    assert_eq!(retried, 1);
    assert!(tight.unsubscribe_and_wait(Duration::from_secs(5)));
    assert_eq!(*tight_seen.lock().unwrap(), vec![0, 1, 2]);
    assert_eq!(
        roomy_seen.load(Ordering::SeqCst),
        3,
        "the roomy one got each once"
    );
}

/// A hook that panics (`on_failure` after a failed event, `on_lag` after a drop) is logged
/// and its worker goes on: every later event is still handled.
#[test]
fn a_panicking_hook_leaves_the_worker_running() {
    let bus = Bus::new();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let (h, h_lag) = (handled.clone(), Arc::new(Mutex::new(Vec::new())));
    let hl = h_lag.clone();
    let failing = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .on_failure(|_, _| panic!("on_failure hook boom"))
        .queued(move |env| -> Result<(), String> {
            h.lock().unwrap().push(env.payload().seq);
            if env.payload().seq == 0 {
                return Err("first one fails".into());
            }
            Ok(())
        })
        .unwrap();
    let lagging = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .capacity(2)
        .overflow(Overflow::DropOldest)
        .on_lag(|_| panic!("on_lag hook boom"))
        .queued(move |env| {
            if env.payload().seq == 0 {
                g.wait();
            }
            hl.lock().unwrap().push(env.payload().seq);
        })
        .unwrap();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    bus.blocking_publish(Placed { order: 0, seq: 0 }).unwrap();
    wait_for("held", || lagging.metrics().pending == 0);
    for seq in 1..=5 {
        bus.blocking_publish(Placed { order: 0, seq }).unwrap();
    }
    gate.wait();
    wait_for("failing drained", || handled.lock().unwrap().len() == 6);
    wait_for("lagging drained", || h_lag.lock().unwrap().len() == 3);
    // After the hooks panicked, both workers still take new events.
    bus.blocking_publish(Placed { order: 0, seq: 6 }).unwrap();
    wait_for("failing alive", || failing.metrics().delivered == 6);
    wait_for("lagging alive", || lagging.metrics().delivered == 4);
    std::panic::set_hook(prev);
    assert_eq!(*handled.lock().unwrap(), (0..=6).collect::<Vec<_>>());
    assert_eq!(*h_lag.lock().unwrap(), vec![0, 4, 5, 6]);
    assert_eq!(failing.metrics().failed, 1);
    assert_eq!(lagging.metrics().dropped, 3);
}
