//! Publishing from async code: no deadlock when a `Block` queue fills up inside a runtime,
//! `publish(..).await` awaits room, `try_publish` never waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use syncbus_core::{Bus, ConsumerConfig, Event, PublishError};

#[derive(Clone, Debug, PartialEq)]
struct Ev(u64);

impl Event for Ev {
    const TYPE: &'static str = "ev";
}

fn counting_async_sub(bus: &Bus, capacity: usize) -> (Arc<AtomicU64>, syncbus_core::Subscription) {
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    let sub = bus
        .subscribe::<Ev>("ev")
        .unwrap()
        .capacity(capacity)
        .queued_async(move |_| {
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    (seen, sub)
}

/// A blocking `publish` from a task of a multi-thread runtime, on a full queue drained by a
/// task of the same runtime: this used to park the worker that held the consumer.
#[test]
fn blocking_publish_inside_a_multi_thread_runtime_does_not_deadlock() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bus = Bus::new();
    let (seen, _sub) = {
        let _g = rt.enter();
        counting_async_sub(&bus, 4)
    };
    let b = bus.clone();
    let producer = rt.spawn(async move {
        for i in 0..20_000 {
            b.blocking_publish(Ev(i)).unwrap();
        }
    });
    let finished =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), producer).await });
    assert!(finished.is_ok(), "publisher deadlocked");
    rt.block_on(async {
        while seen.load(Ordering::SeqCst) < 20_000 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_publish_on_a_current_thread_runtime_refuses_instead_of_hanging() {
    let bus = Bus::new();
    let (seen, _sub) = counting_async_sub(&bus, 2);
    // The consumer task cannot run while this task does not yield: fill the queue.
    bus.blocking_publish(Ev(0)).unwrap();
    bus.blocking_publish(Ev(1)).unwrap();
    match bus.blocking_publish(Ev(2)) {
        Err(PublishError::WouldBlock(ev)) => assert_eq!(ev, Ev(2)),
        other => panic!("expected WouldBlock, got {other:?}"),
    }
    let err = bus.blocking_publish(Ev(3)).unwrap_err();
    assert!(err.to_string().contains("publish(..).await"), "{err}");
    // The async form waits for the consumer instead.
    for i in 2..100 {
        assert_eq!(bus.publish(Ev(i)).await.unwrap(), 1);
    }
    while seen.load(Ordering::SeqCst) < 100 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn publish_waits_for_every_full_subscription() {
    let bus = Bus::new();
    let (a, _sa) = counting_async_sub(&bus, 1);
    let (b, _sb) = counting_async_sub(&bus, 3);
    let p = bus.publisher::<Ev>("ev").unwrap();
    for i in 0..500 {
        let n = if i % 2 == 0 {
            bus.publish(Ev(i)).await.unwrap()
        } else {
            p.publish(Ev(i)).await.unwrap()
        };
        assert_eq!(n, 2);
    }
    while a.load(Ordering::SeqCst) < 500 || b.load(Ordering::SeqCst) < 500 {
        tokio::task::yield_now().await;
    }
    assert_eq!(bus.metrics().rejected, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn publish_waits_for_a_pull_consumer_to_fetch() {
    let bus = Bus::new();
    let consumer = bus
        .consumer::<Ev>("ev", ConsumerConfig::default().max_pending(2))
        .unwrap();
    let b = bus.clone();
    let producer = tokio::spawn(async move {
        for i in 0..10 {
            b.publish(Ev(i)).await.unwrap();
        }
    });
    let mut got = Vec::new();
    while got.len() < 10 {
        for d in consumer.fetch(10, Duration::from_secs(5)).await {
            got.push(d.payload().0);
            d.ack().unwrap();
        }
    }
    producer.await.unwrap();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[test]
fn try_publish_never_waits() {
    let bus = Bus::new();
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = gate.clone();
    let sub = bus
        .subscribe::<Ev>("ev")
        .unwrap()
        .capacity(1)
        .queued(move |e| {
            if e.payload().0 == 0 {
                g.wait();
            }
        })
        .unwrap();
    bus.blocking_publish(Ev(0)).unwrap();
    while sub.metrics().pending > 0 {
        std::thread::yield_now();
    }
    let p = bus.publisher::<Ev>("ev").unwrap();
    assert_eq!(p.try_publish(Ev(1)).unwrap(), 1);
    match bus.try_publish(Ev(2)) {
        Err(PublishError::Full(ev)) => assert_eq!(ev, Ev(2)),
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(matches!(
        p.try_publish(Ev(3)),
        Err(PublishError::Full(Ev(3)))
    ));
    assert_eq!(sub.metrics().rejected, 2);
    gate.wait();
}

#[tokio::test]
async fn publish_reports_closed_and_bad_topics() {
    let bus = Bus::new();
    assert!(matches!(
        bus.publish_to("a..b", Ev(1)).await,
        Err(PublishError::InvalidTopic(Ev(1), _))
    ));
    assert_eq!(bus.publish_to("nobody.here", Ev(2)).await.unwrap(), 0);
    bus.shutdown(Duration::from_secs(1)).await;
    assert!(matches!(
        bus.publish(Ev(3)).await,
        Err(PublishError::Closed(Ev(3)))
    ));
}

/// A subscription that takes its first event and holds its worker until `release` fires,
/// with a queue of one behind it.
fn held_sub(
    bus: &Bus,
    overflow: syncbus_core::Overflow,
) -> (std::sync::mpsc::Sender<()>, syncbus_core::Subscription) {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Mutex::new(wait);
    let sub = bus
        .subscribe::<Ev>("ev")
        .unwrap()
        .capacity(1)
        .overflow(overflow)
        .queued(move |e| {
            if e.payload().0 == 0 {
                let _ = wait.lock().unwrap().recv();
            }
        })
        .unwrap();
    (release, sub)
}

/// An async publish that meets a full `Reject` queue and then a full `Block` one: the first
/// refusal is kept while it awaits room in the second, so the result names exactly who
/// took the event and who refused it, and no one gets it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_awaiting_room_keeps_what_the_sinks_before_did() {
    use syncbus_core::Overflow;
    let bus = Bus::new();
    let (seen, first) = counting_async_sub(&bus, 64);
    let (release_reject, rejecting) = held_sub(&bus, Overflow::Reject);
    let (release_block, blocking) = held_sub(&bus, Overflow::Block);
    assert_eq!(bus.publish(Ev(0)).await.unwrap(), 3);
    while rejecting.metrics().pending > 0 || blocking.metrics().pending > 0 {
        tokio::task::yield_now().await;
    }
    // Both held subscriptions' queues of one fill up.
    assert_eq!(bus.publish(Ev(1)).await.unwrap(), 3);
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        release_block.send(()).unwrap();
    });
    match bus.publish(Ev(2)).await {
        Err(PublishError::Partial(ev, partial)) => {
            assert_eq!(ev, Ev(2));
            assert_eq!(partial.took, vec![first.id(), blocking.id()]);
            assert_eq!(partial.refused, vec![rejecting.id()]);
        }
        other => panic!("expected Partial, got {other:?}"),
    }
    release.await.unwrap();
    release_reject.send(()).unwrap();
    bus.settled_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    assert_eq!(blocking.metrics().delivered, 3);
    assert_eq!(blocking.metrics().rejected, 0);
    assert_eq!(rejecting.metrics().delivered, 2);
    assert_eq!(rejecting.metrics().rejected, 1);
}

/// An async handler that panics before it returns its future (in the closure's own body,
/// not in the `async` block) is a panicking handler like any other: counted, and its worker
/// goes on with the next event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_before_the_handler_future_exists_is_caught() {
    let bus = Bus::new();
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    let sub = bus
        .subscribe::<Ev>("ev")
        .unwrap()
        .queued_async(move |env| {
            assert!(env.payload().0 % 2 == 1, "even event {}", env.payload().0);
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..10 {
        assert_eq!(bus.publish(Ev(i)).await.unwrap(), 1);
    }
    let settled = bus.settled_within(Duration::from_secs(10)).await;
    std::panic::set_hook(prev);
    settled.unwrap();
    let m = sub.metrics();
    assert_eq!((m.delivered, m.panicked), (5, 5));
    assert_eq!(seen.load(Ordering::SeqCst), 5);
}

/// An async subscription's `on_failure` hook that panics is logged, and its worker task
/// goes on with the next event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_failure_hook_leaves_the_task_running() {
    let bus = Bus::new();
    let sub = bus
        .subscribe::<Ev>("ev")
        .unwrap()
        .on_failure(|_, _| panic!("hook boom"))
        .queued_async(|env| async move {
            if env.payload().0 % 2 == 0 {
                Err("even".to_string())
            } else {
                Ok(())
            }
        })
        .unwrap();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..6 {
        bus.publish(Ev(i)).await.unwrap();
    }
    let settled = bus.settled_within(Duration::from_secs(10)).await;
    std::panic::set_hook(prev);
    settled.unwrap();
    let m = sub.metrics();
    assert_eq!((m.delivered, m.failed), (3, 3));
}
