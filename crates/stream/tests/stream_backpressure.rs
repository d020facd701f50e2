//! A running topology under backpressure: its output's reader is slow and its queue small
//! (`Overflow::Block`), so the runner waits for room and fetches nothing more meanwhile; the
//! input waits in the source. Nothing is dropped: every input comes out, in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncbus_core::{Bus, ConsumerConfig, Envelope, Event, Overflow, Topic};
use syncbus_storage::MemoryStore;
use syncbus_stream::{RunConfig, Stream, Topology};

#[derive(Clone, Debug)]
struct Reading(u64);
impl Event for Reading {
    const TYPE: &'static str = "sensor.reading";
}

#[derive(Clone, Debug)]
struct Doubled(u64);
impl Event for Doubled {
    const TYPE: &'static str = "sensor.doubled";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_slows_the_topology_and_nothing_is_dropped() {
    const N: u64 = 300;
    let bus = Bus::new();
    let input = bus
        .consumer::<Reading>("sensor.reading", ConsumerConfig::default().name("readings"))
        .unwrap();
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let s = seen.clone();
    let _slow = bus
        .subscribe::<Doubled>("sensor.doubled")
        .unwrap()
        .capacity(4)
        .overflow(Overflow::Block)
        .queued(move |env| {
            std::thread::sleep(Duration::from_millis(1));
            s.lock().unwrap().push(env.payload().0);
        })
        .unwrap();
    for n in 0..N {
        bus.publish(Reading(n)).await.unwrap();
    }
    let stream = Stream::<Envelope<Reading>>::new()
        .map(|env| Doubled(env.payload().0 * 2))
        .to(&bus, Topic::from_static("sensor.doubled"));
    let running = Topology::new(stream).spawn(
        input,
        RunConfig::new("doubler")
            .batch(16)
            .unwrap()
            .fetch_wait(Duration::from_millis(10))
            .checkpoints(MemoryStore::new()),
    );
    // While the reader is slow, most inputs are still waiting in the source.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let early = running.metrics().processed;
    assert!(
        early < N,
        "the topology ran ahead of its slow reader: {early} of {N} processed"
    );
    running.caught_up().await;
    bus.settled_within(Duration::from_secs(30)).await.unwrap();
    let out = seen.lock().unwrap().clone();
    assert_eq!(
        out,
        (0..N).map(|n| n * 2).collect::<Vec<_>>(),
        "lost, repeated or reordered"
    );
    assert_eq!(running.metrics().processed, N);
    assert_eq!(bus.metrics().dropped, 0);
    running.stop().await.unwrap();
}
