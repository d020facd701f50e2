//! A log feed through a tap records every payload type; the outbox relay and taps: a tap
//! that only observes never counts as a receiver, the feed's tap does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use syncbus_core::{
    Bus, Bytes, EncodeError, Encoded, Envelope, Event, EventId, EventType, Metadata, Overflow,
    TapPayload, Tapped, Topic,
};
use syncbus_storage::{EventLog, LogFeed, MemoryStore, Outbox, Relay, RelayError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Placed {
    order: u64,
}

impl Event for Placed {
    const TYPE: &'static str = "shop.order.placed";
    const TOPIC: &'static str = "orders.placed";
    fn encode(&self) -> Option<Result<Encoded, EncodeError>> {
        Some(Encoded::json(self))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Shipped {
    order: u64,
    carrier: String,
}

impl Event for Shipped {
    const TYPE: &'static str = "shop.order.shipped";
    const TOPIC: &'static str = "orders.shipped";
    fn encode(&self) -> Option<Result<Encoded, EncodeError>> {
        Some(Encoded::json(self))
    }
}

/// Serializable and decodable, but `encode` left at its default: not encodable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Audited {
    order: u64,
}

impl Event for Audited {
    const TYPE: &'static str = "shop.order.audited";
    const TOPIC: &'static str = "orders.audited";
}

fn raw(event_type: &str, topic: &str, payload: &'static [u8]) -> Envelope<Bytes> {
    let meta = Metadata::new(EventType::new(event_type).unwrap())
        .with_topic(Topic::new(topic).unwrap())
        .with_content_type("application/json");
    Envelope::new(meta, Bytes::from_static(payload))
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_tap_feed_appends_every_type_in_order() {
    let bus = Bus::new();
    let log = Arc::new(MemoryStore::new());
    let feed = LogFeed::tap(&bus, "orders.>", log.clone()).unwrap();

    let placed = Envelope::from_event(Placed { order: 1 });
    let placed_id = placed.id().clone();
    // The feed's tap is a receiver: each publish counts it.
    assert_eq!(bus.publish_envelope(placed).await.unwrap(), 1);
    let paid = raw("psp.charge.settled", "orders.paid", br#"{"psp":"x"}"#);
    assert_eq!(bus.publish_envelope(paid.clone()).await.unwrap(), 1);
    assert_eq!(
        bus.publish(Shipped {
            order: 1,
            carrier: "dhl".into()
        })
        .await
        .unwrap(),
        1
    );
    bus.publish_envelope(raw("user.renamed", "users.renamed", b"{}"))
        .await
        .unwrap(); // not on the pattern

    eventually("three appends", || feed.appended() == 3).await;
    let stored = log.read(0, 10).await.unwrap();
    assert_eq!(stored.len(), 3);
    let types: Vec<&str> = stored
        .iter()
        .map(|r| r.envelope.meta().event_type().as_str())
        .collect();
    assert_eq!(
        types,
        [
            "shop.order.placed",
            "psp.charge.settled",
            "shop.order.shipped"
        ]
    );
    assert_eq!(stored[0].envelope.id(), &placed_id);
    assert_eq!(
        stored[0].envelope.meta().content_type(),
        Some("application/json")
    );
    // The same bytes a typed feed stores, so consumers decode them as before.
    assert_eq!(
        stored[0]
            .envelope
            .decode_payload::<Placed>()
            .unwrap()
            .payload(),
        &Placed { order: 1 }
    );
    assert_eq!(stored[1].envelope, paid, "a bytes event as it was");
    assert_eq!(
        stored[2]
            .envelope
            .decode_payload::<Shipped>()
            .unwrap()
            .payload()
            .carrier,
        "dhl"
    );
    assert_eq!(feed.failed(), 0);
}

#[tokio::test]
async fn a_tap_feed_does_not_append_a_type_that_does_not_encode_and_says_so() {
    let bus = Bus::new();
    let log = Arc::new(MemoryStore::new());
    let feed = LogFeed::tap(&bus, "orders.>", log.clone()).unwrap();
    bus.publish(Placed { order: 1 }).await.unwrap();
    bus.publish(Audited { order: 1 }).await.unwrap();
    bus.publish(Placed { order: 2 }).await.unwrap();
    eventually("two appends and a failure", || {
        feed.appended() == 2 && feed.failed() == 1
    })
    .await;
    let stored = log.read(0, 10).await.unwrap();
    let orders: Vec<u64> = stored
        .iter()
        .map(|r| {
            r.envelope
                .decode_payload::<Placed>()
                .unwrap()
                .payload()
                .order
        })
        .collect();
    assert_eq!(orders, [1, 2], "nothing without a payload in the log");
    assert_eq!(feed.subscription().metrics().failed, 1);
}

#[tokio::test]
async fn a_typed_feed_still_works_beside_a_tap_feed() {
    let bus = Bus::new();
    let typed_log = Arc::new(MemoryStore::new());
    let tap_log = Arc::new(MemoryStore::new());
    let typed = LogFeed::typed::<Placed>(&bus, "orders.*", typed_log.clone()).unwrap();
    let tapped = LogFeed::tap(&bus, "orders.*", tap_log.clone()).unwrap();
    assert_eq!(bus.publish(Placed { order: 5 }).await.unwrap(), 2);
    bus.publish(Shipped {
        order: 5,
        carrier: "ups".into(),
    })
    .await
    .unwrap();
    eventually("appends", || {
        typed.appended() == 1 && tapped.appended() == 2
    })
    .await;
    let a = &typed_log.read(0, 10).await.unwrap()[0].envelope;
    let b = &tap_log.read(0, 10).await.unwrap()[0].envelope;
    assert_eq!(
        a, b,
        "the typed feed and the tap feed store the same envelope"
    );
}

fn recorder() -> (
    Arc<Mutex<Vec<Tapped>>>,
    impl Fn(&Tapped) + Send + Sync + 'static,
) {
    let seen: Arc<Mutex<Vec<Tapped>>> = Arc::default();
    let s = seen.clone();
    (seen, move |t: &Tapped| s.lock().unwrap().push(t.clone()))
}

#[tokio::test]
async fn the_relay_does_not_count_an_observer_tap_as_a_receiver() {
    let store = MemoryStore::new();
    store
        .enqueue(raw("shop.order.placed", "orders.placed", br#"{"order":1}"#))
        .unwrap();
    let bus = Bus::new();
    let relay = Relay::new(Arc::new(store.clone()), bus.clone());
    let (seen, record) = recorder();
    let _debug = bus.tap(">").unwrap().inline(record).unwrap();

    let err = relay.run_once().await.unwrap_err();
    assert!(matches!(err, RelayError::Unreceived { .. }), "{err}");
    assert_eq!(store.pending(10).await.unwrap().len(), 1, "kept");
    assert_eq!(relay.stats().unreceived, 1);
    assert_eq!(seen.lock().unwrap().len(), 1, "the tap saw it");

    // A real subscription takes it: marked sent; the tap sees it again (at-least-once).
    let _sub = bus
        .subscribe::<Bytes>("orders.>")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    assert_eq!(relay.run_once().await.unwrap(), 1);
    assert!(store.pending(10).await.unwrap().is_empty());
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn the_relay_keeps_an_event_a_subscription_refused_though_an_observer_tap_took_it() {
    let store = MemoryStore::new();
    let first = Envelope::from_event(Placed { order: 1 })
        .to_bytes_payload()
        .unwrap();
    store.enqueue(first).unwrap();
    let bus = Bus::new();
    let (seen, record) = recorder();
    let _debug = bus.tap(">").unwrap().inline(record).unwrap();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let tight = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .capacity(1)
        .overflow(Overflow::Reject)
        .queued(move |_| {
            let _ = wait.lock().unwrap().recv();
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    // Fill the subscription: one in the worker's hands, one queued.
    bus.try_publish(Placed { order: 0 }).unwrap();
    eventually("the worker to take it", || tight.metrics().pending == 0).await;
    bus.try_publish(Placed { order: 0 }).unwrap();

    let relay = Relay::new(Arc::new(store.clone()), bus.clone()).typed::<Placed>();
    let err = relay.run_once().await.unwrap_err();
    assert!(matches!(err, RelayError::Publish { .. }), "{err}");
    assert!(err.to_string().contains("only taps"), "{err}");
    assert_eq!(store.pending(10).await.unwrap().len(), 1, "not marked sent");
    assert_eq!(relay.stats().refused, 1);
    assert_eq!(relay.stats().partial, 0);
    // The tap saw the typed publish, its payload encoded by `Placed::encode`.
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        last.payload().bytes().map(|b| b.as_ref()),
        Some(&br#"{"order":1}"#[..])
    );
    assert!(last.payload_type().ends_with("Placed"));

    drop(release);
    eventually("room", || {
        tight.metrics().pending == 0 && handled.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(relay.run_once().await.unwrap(), 1);
    assert!(store.pending(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_relay_marks_sent_what_a_tap_feed_stored_whatever_its_type() {
    let store = MemoryStore::new();
    let placed = Envelope::from_event(Placed { order: 1 })
        .to_bytes_payload()
        .unwrap();
    let audited = Envelope::from_event(Audited { order: 1 })
        .to_bytes_payload()
        .unwrap();
    let paid = raw("psp.charge.settled", "orders.paid", b"{}");
    let ids: Vec<EventId> = [&placed, &audited, &paid]
        .iter()
        .map(|e| e.id().clone())
        .collect();
    for env in [placed, audited, paid] {
        store.enqueue(env).unwrap();
    }
    let bus = Bus::new();
    let log = Arc::new(MemoryStore::new());
    let feed = LogFeed::tap(&bus, ">", log.clone()).unwrap();
    // No `.typed::<E>()` for any of them: they go out as bytes, and the feed takes each.
    let relay = Relay::new(Arc::new(store.clone()), bus.clone());
    assert_eq!(relay.run_once().await.unwrap(), 3);
    assert!(store.pending(10).await.unwrap().is_empty());
    eventually("three appends", || feed.appended() == 3).await;
    let stored: Vec<EventId> = log
        .read(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.envelope.id().clone())
        .collect();
    assert_eq!(stored, ids, "in commit order, every type");
}

#[tokio::test]
async fn a_tap_sees_a_relayed_bytes_event_as_it_was_committed() {
    let store = MemoryStore::new();
    let committed = raw("psp.charge.settled", "payments.settled", br#"{"psp":"y"}"#);
    store.enqueue(committed.clone()).unwrap();
    let bus = Bus::new();
    let (seen, record) = recorder();
    let _audit = bus.tap("payments.>").unwrap().inline(record).unwrap();
    let _sub = bus
        .subscribe::<Bytes>("payments.>")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    assert_eq!(
        Relay::new(Arc::new(store), bus).run_once().await.unwrap(),
        1
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].meta(), committed.meta());
    match seen[0].payload() {
        TapPayload::Encoded(bytes) => assert_eq!(bytes, committed.payload()),
        other => panic!("expected the committed bytes, got {other:?}"),
    }
}
