//! Pull consumers: fetch, ack, nak, ack timeout, max deliveries, term, dead letters,
//! retention overflow.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use syncbus_core::{
    AckError, Bus, ConsumerConfig, DeadLetter, DeadLetterReason, Event, Overflow, PublishError,
    SubscribeError,
};

#[derive(Clone, Debug, PartialEq)]
struct Job(u64);

impl Event for Job {
    const TYPE: &'static str = "jobs.new";
}

fn seqs(batch: &[syncbus_core::Delivery<Job>]) -> Vec<u64> {
    batch.iter().map(|d| d.payload().0).collect()
}

#[test]
fn fetch_and_ack_in_publish_order() {
    let bus = Bus::new();
    let c = bus
        .consumer::<Job>("jobs.*", ConsumerConfig::default())
        .unwrap();
    for i in 0..10 {
        assert_eq!(bus.blocking_publish(Job(i)).unwrap(), 1);
    }
    assert_eq!(c.pending(), 10);
    let a = c.try_fetch(4);
    assert_eq!(seqs(&a), vec![0, 1, 2, 3]);
    assert!(a.iter().all(|d| d.deliveries() == 1));
    let b = c.try_fetch(100);
    assert_eq!(seqs(&b), (4..10).collect::<Vec<_>>());
    assert!(c.try_fetch(10).is_empty());
    for d in a.into_iter().chain(b) {
        d.ack().unwrap();
    }
    assert_eq!(c.pending(), 0);
    let m = c.metrics();
    assert_eq!((m.delivered, m.redelivered, m.pending), (10, 0, 0));
}

#[test]
fn nack_redelivers_and_delay_is_honoured() {
    let bus = Bus::new();
    let c = bus
        .consumer::<Job>("jobs.new", ConsumerConfig::default())
        .unwrap();
    bus.blocking_publish(Job(1)).unwrap();
    bus.blocking_publish(Job(2)).unwrap();
    let mut batch = c.try_fetch(2);
    let second = batch.pop().unwrap();
    let first = batch.pop().unwrap();
    first.nak(Duration::ZERO).unwrap();
    second.nak(Duration::from_millis(150)).unwrap();
    let again = c.try_fetch(10);
    assert_eq!(seqs(&again), vec![1], "the delayed one is not due yet");
    assert_eq!(again[0].deliveries(), 2);
    let later = c.blocking_fetch(10, Duration::from_secs(5));
    assert_eq!(seqs(&later), vec![2]);
    assert_eq!(later[0].deliveries(), 2);
    for d in again.into_iter().chain(later) {
        d.ack().unwrap();
    }
    assert_eq!(c.metrics().redelivered, 2);
    assert_eq!(c.metrics().failed, 2);
}

#[test]
fn unacked_delivery_comes_back_after_ack_timeout() {
    let bus = Bus::new();
    let c = bus
        .consumer::<Job>(
            "jobs.new",
            ConsumerConfig::default().ack_timeout(Duration::from_millis(300)),
        )
        .unwrap();
    bus.blocking_publish(Job(7)).unwrap();
    let first = c.try_fetch(1);
    assert_eq!(first.len(), 1);
    assert!(c.try_fetch(1).is_empty(), "in flight, not yet due");
    let started = Instant::now();
    let again = c.blocking_fetch(1, Duration::from_secs(5));
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(seqs(&again), vec![7]);
    assert_eq!(again[0].deliveries(), 2);
    // The stale delivery can no longer be acked: it was handed out again.
    assert_eq!(
        first.into_iter().next().unwrap().ack(),
        Err(AckError::NotInFlight)
    );
    again.into_iter().next().unwrap().ack().unwrap();
}

#[test]
fn max_deliveries_go_to_the_dead_letter_hook() {
    let bus = Bus::new();
    let dead: Arc<Mutex<Vec<DeadLetter<Job>>>> = Arc::default();
    let d = dead.clone();
    let c = bus
        .consumer::<Job>(
            "jobs.new",
            ConsumerConfig::default()
                .max_deliver(3)
                .on_dead_letter(move |dl| d.lock().unwrap().push(dl)),
        )
        .unwrap();
    bus.blocking_publish(Job(9)).unwrap();
    for attempt in 1..=3 {
        let batch = c.try_fetch(1);
        assert_eq!(batch.len(), 1, "attempt {attempt}");
        assert_eq!(batch[0].deliveries(), attempt);
        batch
            .into_iter()
            .next()
            .unwrap()
            .nak(Duration::ZERO)
            .unwrap();
    }
    assert!(c.try_fetch(1).is_empty());
    let dead = dead.lock().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].envelope.payload(), &Job(9));
    assert_eq!(dead[0].deliveries, 3);
    assert_eq!(dead[0].reason, DeadLetterReason::MaxDeliveries);
    assert_eq!(c.metrics().dead_lettered, 1);
    assert_eq!(bus.metrics().dead_lettered, 1);
}

#[test]
fn ack_timeouts_count_towards_max_deliveries() {
    let bus = Bus::new();
    let c = bus
        .consumer::<Job>(
            "jobs.new",
            ConsumerConfig::default()
                .max_deliver(2)
                .ack_timeout(Duration::from_millis(20)),
        )
        .unwrap();
    bus.blocking_publish(Job(1)).unwrap();
    drop(c.try_fetch(1));
    let second = c.blocking_fetch(1, Duration::from_secs(5));
    assert_eq!(second[0].deliveries(), 2);
    drop(second);
    std::thread::sleep(Duration::from_millis(40));
    assert!(c.try_fetch(1).is_empty());
    // No hook: the dead letter is kept, not lost.
    let dead = c.take_dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadLetterReason::MaxDeliveries);
    assert!(c.take_dead_letters().is_empty());
}

#[test]
fn term_drops_the_event_without_a_dead_letter() {
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let h = hooked.clone();
    let bus = Bus::new();
    let c = bus
        .consumer::<Job>("jobs.new", ConsumerConfig::default())
        .unwrap();
    let with_hook = bus
        .consumer::<Job>(
            "jobs.new",
            ConsumerConfig::default().on_dead_letter(move |dl: DeadLetter<Job>| {
                h.lock().unwrap().push(dl.envelope.payload().0)
            }),
        )
        .unwrap();
    bus.blocking_publish(Job(3)).unwrap();
    for consumer in [&c, &with_hook] {
        let d = consumer.try_fetch(1).into_iter().next().unwrap();
        d.term().unwrap();
        // Never delivered again, even after the ack timeout would have passed.
        assert!(consumer.try_fetch(1).is_empty());
        let m = consumer.metrics();
        assert_eq!((m.terminated, m.dead_lettered, m.failed), (1, 0, 0));
        assert_eq!(consumer.pending(), 0);
    }
    // The caller recorded it: it is not a dead letter, kept or hooked.
    assert!(c.take_dead_letters().is_empty());
    assert!(hooked.lock().unwrap().is_empty());
    let totals = bus.metrics();
    assert_eq!((totals.terminated, totals.dead_lettered), (2, 0));
}

#[test]
fn retention_overflow_policies() {
    let bus = Bus::new();
    let reject = bus
        .consumer::<Job>(
            "a",
            ConsumerConfig::default()
                .max_pending(2)
                .overflow(Overflow::Reject),
        )
        .unwrap();
    bus.blocking_publish_to("a", Job(1)).unwrap();
    bus.blocking_publish_to("a", Job(2)).unwrap();
    match bus.blocking_publish_to("a", Job(3)) {
        Err(PublishError::Full(job)) => assert_eq!(job, Job(3)),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(reject.metrics().rejected, 1);

    let drop_oldest = bus
        .consumer::<Job>(
            "b",
            ConsumerConfig::default()
                .max_pending(2)
                .overflow(Overflow::DropOldest),
        )
        .unwrap();
    for i in 1..=5 {
        bus.blocking_publish_to("b", Job(i)).unwrap();
    }
    assert_eq!(seqs(&drop_oldest.try_fetch(10)), vec![4, 5]);
    assert_eq!(drop_oldest.metrics().dropped, 3);

    let block = bus
        .consumer::<Job>("c", ConsumerConfig::default().max_pending(1))
        .unwrap();
    bus.blocking_publish_to("c", Job(1)).unwrap();
    let publisher = {
        let bus = bus.clone();
        std::thread::spawn(move || bus.blocking_publish_to("c", Job(2)).unwrap())
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !publisher.is_finished(),
        "blocked until the consumer fetches"
    );
    let first = block.try_fetch(1);
    publisher.join().unwrap();
    assert_eq!(seqs(&first), vec![1]);
    assert_eq!(seqs(&block.try_fetch(1)), vec![2]);
}

#[tokio::test]
async fn async_fetch_waits_for_events() {
    let bus = Bus::new();
    let c = bus
        .consumer::<Job>("jobs.new", ConsumerConfig::default())
        .unwrap();
    let empty = c.fetch(10, Duration::from_millis(20)).await;
    assert!(empty.is_empty());
    let b = bus.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        b.publish(Job(5)).await.unwrap();
    });
    let got = c.fetch(10, Duration::from_secs(5)).await;
    assert_eq!(seqs(&got), vec![5]);
    publisher.await.unwrap();
}

#[test]
fn consumer_errors() {
    let bus = Bus::new();
    assert!(matches!(
        bus.consumer::<Job>("a.>.b", ConsumerConfig::default()),
        Err(SubscribeError::InvalidPattern(_))
    ));
    assert!(matches!(
        bus.consumer::<Job>("a", ConsumerConfig::default().max_deliver(0)),
        Err(SubscribeError::InvalidConfig(_))
    ));
    assert!(matches!(
        bus.consumer::<Job>("a", ConsumerConfig::default().max_pending(0)),
        Err(SubscribeError::InvalidConfig(_))
    ));
    assert!(matches!(
        bus.consumer::<Job>("a", ConsumerConfig::default().ack_timeout(Duration::ZERO)),
        Err(SubscribeError::InvalidConfig(_))
    ));
    bus.blocking_shutdown(Duration::from_millis(10));
    assert!(matches!(
        bus.consumer::<Job>("a", ConsumerConfig::default()),
        Err(SubscribeError::Closed)
    ));
}

#[test]
fn dropping_a_consumer_unsubscribes_it() {
    let bus = Bus::new();
    let c = bus
        .consumer::<Job>("jobs.new", ConsumerConfig::default())
        .unwrap();
    assert_eq!(bus.blocking_publish(Job(1)).unwrap(), 1);
    drop(c);
    assert_eq!(bus.blocking_publish(Job(2)).unwrap(), 0);
}

/// Ack timeouts, nak delays and fetch waits follow tokio's clock: on a paused clock a nak
/// delay of a minute passes at once, an unacked delivery comes back after its (virtual) ack
/// timeout, and an empty fetch sleeps through its timeout instead of spinning on the
/// system clock.
#[tokio::test(flavor = "current_thread")]
async fn timeouts_and_delays_follow_a_paused_tokio_clock() {
    tokio::time::pause();
    let bus = Bus::new();
    let config = ConsumerConfig::default()
        .ack_timeout(Duration::from_secs(30))
        .max_deliver(10);
    let c = bus.consumer::<Job>("jobs.*", config).unwrap();
    bus.publish(Job(1)).await.unwrap();
    let real = Instant::now();

    // A nak delay of a minute: not before, then at once in real time.
    let d = c.fetch(1, Duration::ZERO).await.remove(0);
    d.nak(Duration::from_secs(60)).unwrap();
    let virtual_start = tokio::time::Instant::now();
    assert!(c.fetch(1, Duration::from_secs(59)).await.is_empty());
    let again = c.fetch(1, Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1, "the nak delay ends on the paused clock");
    assert_eq!(again[0].deliveries(), 2);
    assert!(virtual_start.elapsed() >= Duration::from_secs(60));

    // Unacked: it comes back after the ack timeout of the paused clock.
    drop(again);
    let before = tokio::time::Instant::now();
    let back = c.fetch(1, Duration::from_secs(40)).await;
    assert_eq!(back.len(), 1, "the ack timeout passes on the paused clock");
    assert_eq!(back[0].deliveries(), 3);
    assert!(before.elapsed() >= Duration::from_secs(30));
    back.into_iter().for_each(|d| d.ack().unwrap());

    // An empty fetch of 10 (virtual) minutes sleeps, it does not spin for them.
    let before = tokio::time::Instant::now();
    assert!(c.fetch(1, Duration::from_secs(600)).await.is_empty());
    assert!(before.elapsed() >= Duration::from_secs(600));
    assert!(
        real.elapsed() < Duration::from_secs(2),
        "took {:?} of real time",
        real.elapsed()
    );
}

/// Leases that end out of fetch order: one extended with `in_progress` outlives a later one.
/// Each comes back at its own deadline, no sooner and no later, and an ack in between wakes
/// no waiting fetch early.
#[tokio::test(flavor = "current_thread")]
async fn extended_leases_come_back_each_at_its_own_deadline() {
    tokio::time::pause();
    let bus = Bus::new();
    let config = ConsumerConfig::default()
        .ack_timeout(Duration::from_secs(10))
        .max_deliver(10);
    let c = bus.consumer::<Job>("jobs.*", config).unwrap();
    for i in 1..=3 {
        bus.publish(Job(i)).await.unwrap();
    }
    let start = tokio::time::Instant::now();
    let mut first = c.fetch(3, Duration::ZERO).await;
    assert_eq!(seqs(&first), vec![1, 2, 3]);

    // At 6 s job 1's lease starts again (ends at 16 s); job 3 is acked.
    tokio::time::advance(Duration::from_secs(6)).await;
    first[0].in_progress().unwrap();
    first.pop().unwrap().ack().unwrap();

    // Job 2's lease ends at 10 s: it comes back then, alone.
    let back = c.fetch(3, Duration::from_secs(60)).await;
    assert_eq!(seqs(&back), vec![2]);
    at(start.elapsed(), 10);
    back.into_iter().for_each(|d| d.ack().unwrap());

    // Job 1 at 16 s, not before.
    let back = c.fetch(3, Duration::from_secs(60)).await;
    assert_eq!(seqs(&back), vec![1]);
    assert_eq!(back[0].deliveries(), 2);
    at(start.elapsed(), 16);
    assert_eq!(first.remove(0).ack(), Err(AckError::NotInFlight));
    back.into_iter().for_each(|d| d.ack().unwrap());
    assert_eq!(c.pending(), 0, "a stale delivery holds nothing");
}

/// `elapsed` is `secs` on the paused clock, give or take the timer's millisecond rounding.
fn at(elapsed: Duration, secs: u64) {
    let want = Duration::from_secs(secs);
    assert!(
        elapsed >= want && elapsed < want + Duration::from_millis(50),
        "at {elapsed:?}, expected {want:?}"
    );
}
