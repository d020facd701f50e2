//! Lifecycle: shutdown drains queues, reports what was left, and closes intake.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncbus_core::{Bus, ConsumerConfig, Event, PublishError, SubscribeError};

#[derive(Clone, Debug, PartialEq)]
struct Tick(u64);

impl Event for Tick {
    const TYPE: &'static str = "clock.tick";
}

#[test]
fn shutdown_drains_queued_events() {
    let bus = Bus::new();
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let _sub = bus
        .subscribe::<Tick>("clock.tick")
        .unwrap()
        .capacity(10_000)
        .queued(move |_| {
            std::thread::sleep(Duration::from_micros(20));
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    for i in 0..2_000 {
        bus.blocking_publish(Tick(i)).unwrap();
    }
    let report = bus.blocking_shutdown(Duration::from_secs(30));
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        handled.load(Ordering::SeqCst),
        2_000,
        "every queued event handled"
    );
    assert_eq!(
        bus.metrics().delivered,
        2_000,
        "counters outlive the shutdown"
    );
    assert!(bus.is_closed());
}

#[test]
fn shutdown_reports_what_missed_the_deadline() {
    let bus = Bus::new();
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let _slow = bus
        .subscribe::<Tick>("clock.tick")
        .unwrap()
        .name("slow")
        .capacity(100)
        .queued(move |_| {
            std::thread::sleep(Duration::from_millis(20));
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let pull = bus
        .consumer::<Tick>("clock.>", ConsumerConfig::default().name("puller"))
        .unwrap();
    for i in 0..50 {
        bus.blocking_publish(Tick(i)).unwrap();
    }
    let in_flight = pull.try_fetch(5);
    assert_eq!(in_flight.len(), 5);
    let started = Instant::now();
    let report = bus.blocking_shutdown(Duration::from_millis(100));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!report.drained);
    let slow = report
        .undelivered
        .iter()
        .find(|u| u.subscription == "slow")
        .expect("slow reported");
    // Every event is either handled or reported, including those the worker had taken.
    assert!(slow.count > 0, "{report:?}");
    assert_eq!(
        slow.count as u64 + handled.load(Ordering::SeqCst),
        50,
        "{report:?}"
    );
    let puller = report
        .undelivered
        .iter()
        .find(|u| u.subscription == "puller")
        .expect("pull consumer reported");
    assert_eq!(puller.count, 50, "45 unfetched + 5 unacked");
    assert_eq!(report.total_undelivered(), slow.count + 50);
}

#[test]
fn closed_bus_refuses_publish_and_subscribe() {
    let bus = Bus::new();
    let p = bus.publisher::<Tick>("clock.tick").unwrap();
    bus.blocking_shutdown(Duration::from_secs(1));
    assert!(matches!(
        bus.blocking_publish(Tick(1)),
        Err(PublishError::Closed(Tick(1)))
    ));
    assert!(matches!(
        p.blocking_publish(Tick(2)),
        Err(PublishError::Closed(Tick(2)))
    ));
    assert!(matches!(
        bus.subscribe::<Tick>("clock.tick"),
        Err(SubscribeError::Closed)
    ));
    let err = bus.blocking_publish(Tick(3)).unwrap_err();
    assert_eq!(err.to_string(), "publish on a closed bus");
    assert_eq!(err.into_inner(), Tick(3));
}

#[test]
fn a_publisher_blocked_on_a_full_queue_is_released_by_shutdown() {
    let bus = Bus::new();
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = gate.clone();
    let _sub = bus
        .subscribe::<Tick>("clock.tick")
        .unwrap()
        .capacity(1)
        .queued(move |t| {
            if t.payload().0 == 0 {
                g.wait();
            }
        })
        .unwrap();
    bus.blocking_publish(Tick(0)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    bus.blocking_publish(Tick(1)).unwrap();
    let blocked = {
        let bus = bus.clone();
        std::thread::spawn(move || bus.blocking_publish(Tick(2)))
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(!blocked.is_finished());
    let closer = {
        let bus = bus.clone();
        std::thread::spawn(move || bus.blocking_shutdown(Duration::from_secs(5)))
    };
    match blocked.join().unwrap() {
        Err(PublishError::Closed(t)) => assert_eq!(t, Tick(2), "handed back, not lost"),
        other => panic!("expected Closed, got {other:?}"),
    }
    gate.wait();
    let report = closer.join().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_shutdown_drains_tasks() {
    let bus = Bus::new();
    let n = Arc::new(AtomicU64::new(0));
    let c = n.clone();
    let _s = bus
        .subscribe::<Tick>("clock.tick")
        .unwrap()
        .capacity(1000)
        .queued_async(move |_| {
            let c = c.clone();
            async move {
                tokio::time::sleep(Duration::from_micros(100)).await;
                c.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    for i in 0..200 {
        bus.publish(Tick(i)).await.unwrap();
    }
    let report = bus.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(n.load(Ordering::SeqCst), 200);
}

/// A handler still running when the abort grace ends: the report counts every event after
/// the one in hand, exactly, and the worker, once released, handles nothing more and counts
/// nothing twice.
fn a_stuck_handler_is_reported_exactly(shape: &str) {
    let bus = Bus::new();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    let (entered, in_hand) = std::sync::mpsc::channel::<u64>();
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let builder = bus
        .subscribe::<Tick>("clock.tick")
        .unwrap()
        .name("stuck")
        .capacity(64);
    let builder = if shape == "keyed" {
        builder.keyed(1)
    } else {
        builder
    };
    let _sub = builder
        .queued(move |env| {
            if env.payload().0 == 0 {
                entered.send(0).unwrap();
                held.lock().unwrap().recv().unwrap();
            }
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    for i in 0..40 {
        bus.blocking_publish(Tick(i)).unwrap();
    }
    assert_eq!(in_hand.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
    let report = bus.blocking_shutdown(Duration::from_millis(50));
    assert!(!report.drained);
    assert_eq!(report.total_undelivered(), 39, "{shape}: {report:?}");
    release.send(()).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while handled.load(Ordering::SeqCst) < 1 && Instant::now() < until {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        handled.load(Ordering::SeqCst),
        1,
        "{shape}: only the event in hand"
    );
    assert_eq!(bus.metrics().delivered, 1, "{shape}");
}

#[test]
fn a_stuck_thread_worker_is_reported_exactly() {
    a_stuck_handler_is_reported_exactly("one lane");
    a_stuck_handler_is_reported_exactly("keyed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_task_worker_is_reported_exactly() {
    let bus = Bus::new();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let (entered, mut in_hand) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let _sub = bus
        .subscribe::<Tick>("clock.tick")
        .unwrap()
        .name("stuck")
        .capacity(64)
        .queued_async(move |env| {
            let (g, h, entered) = (g.clone(), h.clone(), entered.clone());
            async move {
                if env.payload().0 == 0 {
                    entered.send(0).unwrap();
                    g.notified().await;
                }
                h.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    for i in 0..40 {
        bus.publish(Tick(i)).await.unwrap();
    }
    assert_eq!(in_hand.recv().await, Some(0));
    let report = bus.shutdown(Duration::from_millis(50)).await;
    assert!(!report.drained);
    assert_eq!(report.total_undelivered(), 39, "{report:?}");
    gate.notify_one();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(handled.load(Ordering::SeqCst), 1, "only the event in hand");
}
