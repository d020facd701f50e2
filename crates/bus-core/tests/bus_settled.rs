//! `Bus::settled`: waits for every queued event and running handler of push subscriptions
//! (threads, tasks, keyed lanes), and `settled_within` names who was still busy.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use syncbus_core::{Bus, ConsumerConfig, EntityId, Event};

#[derive(Clone, Debug)]
struct Moved {
    item: u64,
}

impl Event for Moved {
    const TYPE: &'static str = "stock.moved";
    fn entity_id(&self) -> Option<EntityId> {
        Some(self.item.into())
    }
}

/// Each shape's handler is slow, so the last events are still running when the queues are
/// empty: a settle that looked at the queues alone would return early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_waits_for_queued_and_running_work_of_every_shape() {
    let bus = Bus::new();
    let threads = Arc::new(AtomicU64::new(0));
    let tasks = Arc::new(AtomicU64::new(0));
    let lanes = Arc::new(AtomicU64::new(0));
    let (t, a, l) = (threads.clone(), tasks.clone(), lanes.clone());
    let _threads = bus
        .subscribe::<Moved>("stock.>")
        .unwrap()
        .workers(2)
        .queued(move |_| {
            std::thread::sleep(Duration::from_millis(3));
            t.fetch_add(1, SeqCst);
        })
        .unwrap();
    let _tasks = bus
        .subscribe::<Moved>("stock.>")
        .unwrap()
        .workers(3)
        .queued_async(move |_| {
            let a = a.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                a.fetch_add(1, SeqCst);
            }
        })
        .unwrap();
    let _lanes = bus
        .subscribe::<Moved>("stock.>")
        .unwrap()
        .keyed(4)
        .queued(move |_| {
            std::thread::sleep(Duration::from_millis(2));
            l.fetch_add(1, SeqCst);
        })
        .unwrap();
    // A pull consumer holds events until they are fetched: not the bus's work to wait for.
    let _pull = bus
        .consumer::<Moved>("stock.>", ConsumerConfig::default())
        .unwrap();
    for round in 0..3 {
        for item in 0..20 {
            bus.publish(Moved { item }).await.unwrap();
        }
        bus.settled_within(Duration::from_secs(30)).await.unwrap();
        let want = 20 * (round + 1);
        assert_eq!(
            (threads.load(SeqCst), tasks.load(SeqCst), lanes.load(SeqCst)),
            (want, want, want),
            "round {round}: settled before the work was done"
        );
    }
    bus.settled().await;
}

/// On a timeout the error says which subscription, how much queued and how much running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_within_names_the_busy_subscriptions() {
    let bus = Bus::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let _slow = bus
        .subscribe::<Moved>("stock.>")
        .unwrap()
        .name("slow-index")
        .queued_async(move |_| {
            let g = g.clone();
            async move {
                let _permit = g.acquire().await.unwrap();
            }
        })
        .unwrap();
    let _quick = bus
        .subscribe::<Moved>("stock.>")
        .unwrap()
        .name("quick")
        .queued(|_| {})
        .unwrap();
    for item in 0..3 {
        bus.publish(Moved { item }).await.unwrap();
    }
    let e = bus
        .settled_within(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(e.waited(), Duration::from_millis(100));
    let busy: Vec<_> = e
        .busy()
        .iter()
        .map(|b| (b.name.as_str(), b.queued, b.running))
        .collect();
    assert_eq!(busy, vec![("slow-index", 2, 1)], "{e}");
    assert!(
        e.to_string()
            .contains("2 events queued and 1 handlers running (slow-index: 2 queued, 1 running)"),
        "{e}"
    );
    gate.add_permits(3);
    bus.settled_within(Duration::from_secs(10)).await.unwrap();
}

/// With nothing subscribed, or only inline handlers, the bus is settled at once.
#[tokio::test]
async fn an_idle_bus_is_settled_at_once() {
    let bus = Bus::new();
    bus.settled_within(Duration::ZERO).await.unwrap();
    let _inline = bus
        .subscribe::<Moved>("stock.>")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    bus.publish(Moved { item: 1 }).await.unwrap();
    bus.settled_within(Duration::ZERO).await.unwrap();
}

/// After a shutdown the counters still describe the run: the bus's and each subscription's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_still_describe_the_run_after_shutdown() {
    let bus = Bus::new();
    let sub = bus
        .subscribe::<Moved>("stock.>")
        .unwrap()
        .name("index")
        .workers(2)
        .queued(|_| {})
        .unwrap();
    let _inline = bus
        .subscribe::<Moved>("stock.>")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    for item in 0..5 {
        bus.publish(Moved { item }).await.unwrap();
    }
    assert!(bus.shutdown(Duration::from_secs(10)).await.is_clean());
    let m = bus.metrics();
    assert_eq!((m.published, m.delivered, m.failed), (5, 10, 0), "{m}");
    assert_eq!(sub.metrics().delivered, 5, "{}", sub.metrics());
    assert!(
        m.to_string()
            .starts_with("published 5 (unrouted 0), delivered 10"),
        "{m}"
    );
}
