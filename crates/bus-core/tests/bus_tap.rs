//! Taps: every payload type on a pattern, with metadata and encoded payloads; types that do
//! not encode; pattern filtering; receivers and observers; overflow; shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use syncbus_core::{
    Bus, Bytes, EncodeError, Encoded, EntityId, Envelope, Event, EventId, EventType, Metadata,
    Overflow, PublishError, TapPayload, Tapped, Topic,
};

#[derive(Clone, Debug, PartialEq, Serialize)]
struct Placed {
    order: u64,
    rev: u64,
}

impl Event for Placed {
    const TYPE: &'static str = "shop.order.placed";
    const TOPIC: &'static str = "orders.placed";
    fn entity_id(&self) -> Option<EntityId> {
        Some(self.order.into())
    }
    fn version(&self) -> Option<u64> {
        Some(self.rev)
    }
    fn encode(&self) -> Option<Result<Encoded, EncodeError>> {
        Some(Encoded::json(self))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct Paid {
    order: u64,
    cents: u64,
}

impl Event for Paid {
    const TYPE: &'static str = "shop.payment.received";
    const TOPIC: &'static str = "payments.received";
    fn encode(&self) -> Option<Result<Encoded, EncodeError>> {
        Some(Encoded::json(self))
    }
}

/// Not serializable, and `encode` left at its default.
#[derive(Clone, Debug)]
struct Secret {
    _key: Arc<str>,
}

impl Event for Secret {
    const TYPE: &'static str = "vault.secret.rotated";
    const TOPIC: &'static str = "vault.rotated";
    fn entity_id(&self) -> Option<EntityId> {
        Some(EntityId::from_static("vault-1"))
    }
}

/// Serializable, but into something JSON cannot hold (a map with tuple keys).
#[derive(Clone, Debug, Serialize)]
struct Odd {
    map: BTreeMap<(u8, u8), u8>,
}

impl Event for Odd {
    const TYPE: &'static str = "odd.thing";
    fn encode(&self) -> Option<Result<Encoded, EncodeError>> {
        Some(Encoded::json(self))
    }
}

/// Its encoder panics.
#[derive(Clone, Debug)]
struct Explodes;

impl Event for Explodes {
    const TYPE: &'static str = "odd.explodes";
    fn encode(&self) -> Option<Result<Encoded, EncodeError>> {
        panic!("encoder blew up")
    }
}

fn bytes_envelope(event_type: &str, topic: &str, payload: &'static [u8]) -> Envelope<Bytes> {
    let meta = Metadata::new(EventType::new(event_type).unwrap())
        .with_topic(Topic::new(topic).unwrap())
        .with_content_type("application/vnd.shop+json")
        .with_source("/webhooks/psp");
    Envelope::new(meta, Bytes::from_static(payload))
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

type Seen = Arc<Mutex<Vec<Tapped>>>;

fn recorder() -> (Seen, impl Fn(&Tapped) + Send + Sync + 'static) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    (seen, move |t: &Tapped| s.lock().unwrap().push(t.clone()))
}

fn event_types(seen: &Seen) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|t| t.meta().event_type().to_string())
        .collect()
}

#[test]
fn a_tap_on_everything_sees_typed_and_bytes_publishes_in_order_with_metadata_and_payloads() {
    let bus = Bus::new();
    let (seen, record) = recorder();
    let tap = bus.tap(">").unwrap().name("audit").queued(record).unwrap();
    // Typed subscriptions on the same topics still get their events.
    let placed_seen = Arc::new(AtomicU64::new(0));
    let p = placed_seen.clone();
    let _placed = bus
        .subscribe::<Placed>("orders.*")
        .unwrap()
        .inline(move |env| {
            p.fetch_add(env.payload().order, Ordering::SeqCst);
        })
        .unwrap();

    let mut ids: Vec<EventId> = Vec::new();
    let first = Envelope::from_event(Placed { order: 7, rev: 1 });
    ids.push(first.id().clone());
    // The typed subscription takes it, the tap only observes: 1 receiver.
    assert_eq!(bus.blocking_publish_envelope(first).unwrap(), 1);

    let raw = bytes_envelope("psp.charge.settled", "payments.settled", br#"{"psp":"x"}"#);
    ids.push(raw.id().clone());
    assert_eq!(bus.blocking_publish_envelope(raw.clone()).unwrap(), 0);

    let mut paid = Envelope::from_event(Paid {
        order: 7,
        cents: 1250,
    });
    let correlation = EventId::new();
    paid.meta_mut()
        .set_correlation_id(Some(correlation.clone()));
    paid.meta_mut()
        .headers_mut()
        .insert("tenant", "acme")
        .unwrap();
    ids.push(paid.id().clone());
    bus.blocking_publish_envelope(paid).unwrap();

    // Through the typed publish paths too (their ids are made inside the bus).
    bus.try_publish_to("orders.eu", Placed { order: 8, rev: 2 })
        .unwrap();
    bus.publisher::<Paid>("payments.received")
        .unwrap()
        .blocking_publish(Paid { order: 8, cents: 5 })
        .unwrap();

    wait_for("five tapped events", || seen.lock().unwrap().len() == 5);
    let seen = seen.lock().unwrap().clone();
    let got_ids: Vec<&EventId> = seen.iter().take(3).map(Tapped::id).collect();
    assert_eq!(got_ids, ids.iter().collect::<Vec<_>>(), "in publish order");
    let types: Vec<&str> = seen
        .iter()
        .map(|t| t.meta().event_type().as_str())
        .collect();
    assert_eq!(
        types,
        [
            "shop.order.placed",
            "psp.charge.settled",
            "shop.payment.received",
            "shop.order.placed",
            "shop.payment.received"
        ]
    );
    let topics: Vec<&str> = seen
        .iter()
        .map(|t| t.meta().topic().unwrap().as_str())
        .collect();
    assert_eq!(
        topics,
        [
            "orders.placed",
            "payments.settled",
            "payments.received",
            "orders.eu",
            "payments.received"
        ]
    );
    let payloads: Vec<&[u8]> = seen
        .iter()
        .map(|t| t.payload().bytes().expect("encoded").as_ref())
        .collect();
    assert_eq!(
        payloads,
        [
            &br#"{"order":7,"rev":1}"#[..],
            br#"{"psp":"x"}"#,
            br#"{"order":7,"cents":1250}"#,
            br#"{"order":8,"rev":2}"#,
            br#"{"order":8,"cents":5}"#,
        ]
    );
    // Typed events: entity, version from the event; content type from the encoding.
    assert_eq!(seen[0].meta().entity_id().map(EntityId::as_str), Some("7"));
    assert_eq!(seen[0].meta().version(), Some(1));
    assert_eq!(seen[0].meta().content_type(), Some("application/json"));
    assert_eq!(seen[3].meta().entity_id().map(EntityId::as_str), Some("8"));
    assert_eq!(seen[3].meta().version(), Some(2));
    // A bytes envelope as it was: metadata untouched, its own content type kept.
    assert_eq!(seen[1].meta(), raw.meta());
    assert_eq!(
        seen[1].meta().content_type(),
        Some("application/vnd.shop+json")
    );
    assert_eq!(seen[1].meta().source(), Some("/webhooks/psp"));
    assert!(seen[1].payload_type().ends_with("Bytes"));
    // A ready-made typed envelope keeps everything it carried.
    assert_eq!(seen[2].meta().correlation_id(), Some(&correlation));
    assert_eq!(seen[2].meta().headers().get("tenant"), Some("acme"));
    assert!(seen[2].payload_type().ends_with("Paid"));
    // It is the same envelope the JSON helper would give, bytes and metadata.
    let again = Envelope::from_event(Placed { order: 7, rev: 1 });
    let json = again.to_bytes_payload().unwrap();
    let tapped = Tapped::from_envelope(&again).into_envelope().unwrap();
    assert_eq!(tapped, json);

    assert_eq!(placed_seen.load(Ordering::SeqCst), 7 + 8);
    assert_eq!(tap.metrics().delivered, 5);
}

#[test]
fn a_type_that_does_not_encode_is_seen_with_metadata_and_no_payload() {
    let bus = Bus::new();
    let (seen, record) = recorder();
    let _tap = bus.tap("vault.>").unwrap().inline(record).unwrap();
    let mut env = Envelope::from_event(Secret { _key: "k-1".into() });
    env.meta_mut().headers_mut().insert("actor", "ops").unwrap();
    let id = env.id().clone();
    bus.blocking_publish_envelope(env).unwrap();
    bus.blocking_publish(Secret { _key: "k-2".into() }).unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let t = &seen[0];
    assert_eq!(t.id(), &id);
    assert_eq!(t.meta().event_type().as_str(), "vault.secret.rotated");
    assert_eq!(t.meta().topic().map(Topic::as_str), Some("vault.rotated"));
    assert_eq!(t.meta().entity_id().map(EntityId::as_str), Some("vault-1"));
    assert_eq!(t.meta().headers().get("actor"), Some("ops"));
    assert_eq!(t.meta().content_type(), None, "nothing was encoded");
    assert!(matches!(t.payload(), TapPayload::NotEncodable));
    assert!(t.payload().bytes().is_none());
    assert!(t.payload_type().ends_with("Secret"));
    assert!(t.clone().into_envelope().is_err());
    assert!(matches!(seen[1].payload(), TapPayload::NotEncodable));
}

#[test]
fn a_failed_or_panicking_encoding_is_seen_with_its_error_and_the_tap_goes_on() {
    let bus = Bus::new();
    let (seen, record) = recorder();
    let tap = bus.tap("odd.*").unwrap().queued(record).unwrap();
    bus.blocking_publish(Odd {
        map: BTreeMap::from([((1, 2), 3)]),
    })
    .unwrap();
    bus.blocking_publish(Explodes).unwrap();
    bus.blocking_publish_envelope(bytes_envelope("odd.after", "odd.after", b"1"))
        .unwrap();
    wait_for("three tapped events", || seen.lock().unwrap().len() == 3);
    let seen = seen.lock().unwrap();
    match seen[0].payload() {
        TapPayload::Failed(e) => assert!(matches!(**e, EncodeError::Serialize { .. })),
        other => panic!("expected a failed encoding, got {other:?}"),
    }
    match seen[1].payload() {
        TapPayload::Failed(e) => {
            let cause = std::error::Error::source(&**e).unwrap().to_string();
            assert!(cause.contains("encoder blew up"), "{cause}");
        }
        other => panic!("expected a failed encoding, got {other:?}"),
    }
    assert_eq!(seen[1].meta().event_type().as_str(), "odd.explodes");
    assert_eq!(
        seen[2].payload().bytes().map(|b| b.as_ref()),
        Some(&b"1"[..])
    );
    assert_eq!(tap.metrics().failed, 0, "the handler never failed");
}

#[test]
fn an_inline_tap_does_not_let_a_panicking_encoder_reach_the_publisher() {
    let bus = Bus::new();
    let (seen, record) = recorder();
    let _tap = bus.tap(">").unwrap().inline(record).unwrap();
    assert_eq!(bus.blocking_publish(Explodes).unwrap(), 0);
    assert!(matches!(
        seen.lock().unwrap()[0].payload(),
        TapPayload::Failed(_)
    ));
}

#[test]
fn a_tap_sees_only_topics_its_pattern_matches() {
    let bus = Bus::new();
    let (orders, record_orders) = recorder();
    let (eu, record_eu) = recorder();
    let (literal, record_literal) = recorder();
    let _orders = bus.tap("orders.>").unwrap().inline(record_orders).unwrap();
    let _eu = bus.tap("*.eu").unwrap().inline(record_eu).unwrap();
    let _literal = bus
        .tap("payments.received")
        .unwrap()
        .inline(record_literal)
        .unwrap();
    // A typed subscription on a literal topic, so that topic's route is precomputed.
    let _typed = bus
        .subscribe::<Paid>("payments.received")
        .unwrap()
        .inline(|_| {})
        .unwrap();

    bus.blocking_publish(Placed { order: 1, rev: 1 }).unwrap(); // orders.placed
    bus.blocking_publish_to("orders.eu", Placed { order: 2, rev: 1 })
        .unwrap();
    bus.blocking_publish_to("payments.eu", Paid { order: 3, cents: 1 })
        .unwrap();
    bus.blocking_publish(Paid { order: 4, cents: 1 }).unwrap(); // payments.received
    bus.blocking_publish_envelope(bytes_envelope("user.renamed", "users.renamed", b"{}"))
        .unwrap();
    bus.blocking_publish_envelope(bytes_envelope("x", "orders.eu.late", b"{}"))
        .unwrap();

    let topics = |seen: &Seen| -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|t| t.meta().topic().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        topics(&orders),
        ["orders.placed", "orders.eu", "orders.eu.late"]
    );
    assert_eq!(topics(&eu), ["orders.eu", "payments.eu"]);
    assert_eq!(topics(&literal), ["payments.received"]);
}

#[test]
fn a_bound_publisher_sees_a_tap_added_after_it_and_stops_after_it_is_dropped() {
    let bus = Bus::new();
    let publisher = bus.publisher::<Paid>("payments.received").unwrap();
    assert_eq!(
        publisher
            .blocking_publish(Paid { order: 1, cents: 1 })
            .unwrap(),
        0
    );
    let (seen, record) = recorder();
    let tap = bus.tap("payments.>").unwrap().inline(record).unwrap();
    publisher
        .blocking_publish(Paid { order: 2, cents: 1 })
        .unwrap();
    drop(tap);
    publisher
        .blocking_publish(Paid { order: 3, cents: 1 })
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].payload().bytes().unwrap().as_ref(),
        br#"{"order":2,"cents":1}"#
    );
}

#[test]
fn an_observer_tap_is_not_counted_as_a_receiver_and_a_receiver_tap_is() {
    let bus = Bus::new();
    let (observed, record) = recorder();
    let observer = bus.tap(">").unwrap().inline(record).unwrap();
    assert_eq!(
        bus.blocking_publish(Placed { order: 1, rev: 1 }).unwrap(),
        0
    );
    assert_eq!(
        bus.try_publish_envelope(bytes_envelope("a.b", "a.b", b"{}"))
            .unwrap(),
        0
    );
    let m = bus.metrics();
    assert_eq!(
        (m.published, m.unrouted, m.delivered),
        (2, 2, 2),
        "published, and unrouted: no subscription received them; the tap handled both"
    );

    let receiver = bus
        .tap("orders.>")
        .unwrap()
        .receiver()
        .inline(|_| {})
        .unwrap();
    assert_eq!(
        bus.blocking_publish(Placed { order: 2, rev: 1 }).unwrap(),
        1
    );
    let _typed = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    assert_eq!(
        bus.blocking_publish(Placed { order: 3, rev: 1 }).unwrap(),
        2
    );
    let m = bus.metrics();
    assert_eq!((m.published, m.unrouted), (4, 2));
    assert_eq!(observed.lock().unwrap().len(), 4);
    assert_eq!(observer.metrics().delivered, 4);
    assert_eq!(receiver.metrics().delivered, 2);
}

/// One literal topic with subscriptions of two payload types and a receiver tap: each
/// type reaches its own subscription and the tap, a third type only the tap, and dropping
/// the typed subscriptions leaves the tap.
#[test]
fn a_literal_topic_with_two_types_and_a_tap_routes_each_type_to_its_own() {
    let bus = Bus::new();
    let (seen, record) = recorder();
    let _tap = bus
        .tap("orders.>")
        .unwrap()
        .receiver()
        .inline(record)
        .unwrap();
    let on_placed = bus
        .subscribe::<Placed>("orders.x")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    let on_paid = bus
        .subscribe::<Paid>("orders.x")
        .unwrap()
        .inline(|_| {})
        .unwrap();

    let p = || Placed { order: 1, rev: 1 };
    let q = || Paid { order: 1, cents: 5 };
    assert_eq!(bus.blocking_publish_to("orders.x", p()).unwrap(), 2);
    assert_eq!(bus.blocking_publish_to("orders.x", q()).unwrap(), 2);
    assert_eq!(bus.blocking_publish_to("orders.x", q()).unwrap(), 2);
    let odd = Odd {
        map: BTreeMap::new(),
    };
    assert_eq!(bus.blocking_publish_to("orders.x", odd).unwrap(), 1);
    assert_eq!(on_placed.metrics().delivered, 1);
    assert_eq!(on_paid.metrics().delivered, 2);

    // Only the tap is left: it alone receives the next one.
    drop((on_placed, on_paid));
    assert_eq!(bus.blocking_publish_to("orders.x", p()).unwrap(), 1);
    assert_eq!(
        event_types(&seen),
        [
            "shop.order.placed",
            "shop.payment.received",
            "shop.payment.received",
            "odd.thing",
            "shop.order.placed"
        ]
    );
    assert_eq!(bus.metrics().unrouted, 0);
}

/// A queued tap whose worker is held until `release` is dropped, after taking one event.
fn held_tap(
    bus: &Bus,
    capacity: usize,
    overflow: Overflow,
) -> (
    syncbus_core::Subscription,
    std::sync::mpsc::Sender<()>,
    Seen,
    Arc<AtomicU64>,
) {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let lost = Arc::new(AtomicU64::new(0));
    let l = lost.clone();
    let tap = bus
        .tap(">")
        .unwrap()
        .name("held")
        .capacity(capacity)
        .overflow(overflow)
        .on_lag(move |n| {
            l.fetch_add(n, Ordering::SeqCst);
        })
        .queued(move |t| {
            let _ = wait.lock().unwrap().recv();
            s.lock().unwrap().push(t.clone());
        })
        .unwrap();
    (tap, release, seen, lost)
}

#[test]
fn a_full_reject_tap_refuses_and_a_partial_publish_names_it() {
    let bus = Bus::new();
    let (tap, release, seen, _) = held_tap(&bus, 1, Overflow::Reject);
    bus.try_publish(Paid { order: 0, cents: 0 }).unwrap(); // the worker takes it and waits
    wait_for("the worker to take it", || tap.metrics().pending == 0);
    bus.try_publish(Paid { order: 1, cents: 0 }).unwrap(); // fills the one slot
                                                           // Only the tap would take it: refused, handed back.
    match bus.try_publish(Paid { order: 2, cents: 0 }) {
        Err(PublishError::Full(back)) => assert_eq!(back.order, 2),
        other => panic!("expected Full, got {other:?}"),
    }
    // With a typed subscription that takes it: partial, the tap among the refusers.
    let typed = bus
        .subscribe::<Paid>("payments.*")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    let partial = match bus.try_publish(Paid { order: 3, cents: 0 }) {
        Err(PublishError::Partial(back, partial)) => {
            assert_eq!(back.order, 3);
            partial
        }
        other => panic!("expected Partial, got {other:?}"),
    };
    assert_eq!(partial.took, [typed.id()]);
    assert_eq!(partial.refused, [tap.id()]);
    assert!(partial.observed.is_empty());
    assert_eq!(tap.metrics().rejected, 2);
    drop(release);
    // The retry reaches the tap only; it observes, so no receiver is counted.
    let n = loop {
        match bus.try_publish_to_only(
            "payments.received",
            Paid { order: 3, cents: 0 },
            &partial.refused,
        ) {
            Err(PublishError::Full(_)) => std::thread::yield_now(),
            other => break other.unwrap(),
        }
    };
    assert_eq!(n, 0);
    assert_eq!(typed.metrics().delivered, 1);
    wait_for("the tap to catch up", || seen.lock().unwrap().len() == 3);
    let orders: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| String::from_utf8(t.payload().bytes().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(
        orders,
        [
            r#"{"order":0,"cents":0}"#,
            r#"{"order":1,"cents":0}"#,
            r#"{"order":3,"cents":0}"#
        ]
    );
}

#[test]
fn a_subscription_refusing_while_only_an_observer_tap_took_it_is_partial_with_nobody_in_took() {
    let bus = Bus::new();
    let (seen, record) = recorder();
    let tap = bus.tap(">").unwrap().inline(record).unwrap();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let tight = bus
        .subscribe::<Paid>("payments.received")
        .unwrap()
        .capacity(1)
        .overflow(Overflow::Reject)
        .queued(move |_| {
            let _ = wait.lock().unwrap().recv();
        })
        .unwrap();
    bus.try_publish(Paid { order: 0, cents: 0 }).unwrap();
    wait_for("the worker to take it", || tight.metrics().pending == 0);
    bus.try_publish(Paid { order: 1, cents: 0 }).unwrap();
    match bus.try_publish(Paid { order: 2, cents: 0 }) {
        Err(PublishError::Partial(_, partial)) => {
            assert!(partial.took.is_empty(), "{partial:?}");
            assert_eq!(partial.observed, [tap.id()]);
            assert_eq!(partial.refused, [tight.id()]);
        }
        other => panic!("expected Partial, got {other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 3);
    drop(release);
}

#[test]
fn a_drop_oldest_tap_counts_and_reports_what_it_lost() {
    let bus = Bus::new();
    let (tap, release, seen, lost) = held_tap(&bus, 2, Overflow::DropOldest);
    bus.try_publish(Paid { order: 0, cents: 0 }).unwrap();
    wait_for("the worker to take it", || tap.metrics().pending == 0);
    for order in 1..=5 {
        // Never refused: the oldest queued one makes room.
        bus.try_publish(Paid { order, cents: 0 }).unwrap();
    }
    assert_eq!(tap.metrics().dropped, 3);
    assert_eq!(bus.metrics().lagging, 1);
    drop(release);
    wait_for("the tap to drain", || seen.lock().unwrap().len() == 3);
    wait_for("on_lag", || lost.load(Ordering::SeqCst) == 3);
    let orders: Vec<u64> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| {
            serde_json::from_slice::<serde_json::Value>(t.payload().bytes().unwrap()).unwrap()
                ["order"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(orders, [0, 4, 5], "the newest kept");
}

#[test]
fn a_full_block_tap_refuses_try_publish_and_holds_blocking_publish_until_room() {
    let bus = Bus::new();
    let (tap, release, seen, _) = held_tap(&bus, 1, Overflow::Block);
    bus.try_publish(Paid { order: 0, cents: 0 }).unwrap();
    wait_for("the worker to take it", || tap.metrics().pending == 0);
    bus.try_publish(Paid { order: 1, cents: 0 }).unwrap();
    assert!(matches!(
        bus.try_publish(Paid { order: 2, cents: 0 }),
        Err(PublishError::Full(_))
    ));
    let b = bus.clone();
    let blocked = std::thread::spawn(move || b.blocking_publish(Paid { order: 3, cents: 0 }));
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !blocked.is_finished(),
        "a Block tap makes the publisher wait"
    );
    drop(release);
    assert_eq!(blocked.join().unwrap().unwrap(), 0);
    wait_for("the tap to drain", || seen.lock().unwrap().len() == 3);
}

#[test]
fn shutdown_reports_what_a_tap_left() {
    let bus = Bus::new();
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let _tap = bus
        .tap(">")
        .unwrap()
        .name("slow-audit")
        .capacity(100)
        .queued(move |_| {
            std::thread::sleep(Duration::from_millis(20));
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    for order in 0..50 {
        bus.blocking_publish(Paid { order, cents: 0 }).unwrap();
    }
    let report = bus.blocking_shutdown(Duration::from_millis(100));
    assert!(!report.drained);
    let left = report
        .undelivered
        .iter()
        .find(|u| u.subscription == "slow-audit")
        .expect("the tap is reported");
    assert_eq!(left.pattern.as_str(), ">");
    assert!(left.count > 0, "{report:?}");
    assert_eq!(
        left.count as u64 + handled.load(Ordering::SeqCst),
        50,
        "every event handled or reported: {report:?}"
    );
    assert!(matches!(
        bus.tap(">"),
        Err(syncbus_core::SubscribeError::Closed)
    ));
}

#[test]
fn shutdown_drains_a_tap() {
    let bus = Bus::new();
    let (seen, record) = recorder();
    let _tap = bus.tap(">").unwrap().queued(record).unwrap();
    for order in 0..200 {
        bus.blocking_publish(Paid { order, cents: 0 }).unwrap();
    }
    assert!(bus.blocking_shutdown(Duration::from_secs(10)).is_clean());
    assert_eq!(seen.lock().unwrap().len(), 200);
}

#[test]
fn an_inline_tap_sees_an_event_before_the_follow_up_its_handler_publishes() {
    let bus = Bus::new();
    let (seen, record) = recorder();
    let _tap = bus.tap(">").unwrap().inline(record).unwrap();
    let b = bus.clone();
    let _follow = bus
        .subscribe::<Placed>("orders.placed")
        .unwrap()
        .inline(move |env| {
            let order = env.payload().order;
            b.blocking_publish(Paid { order, cents: 1 }).unwrap();
        })
        .unwrap();
    bus.blocking_publish(Placed { order: 9, rev: 1 }).unwrap();
    assert_eq!(
        event_types(&seen),
        ["shop.order.placed", "shop.payment.received"]
    );
}

#[test]
fn a_tap_handler_failure_is_counted_and_handed_to_on_failure() {
    let bus = Bus::new();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let f = failures.clone();
    let tap = bus
        .tap(">")
        .unwrap()
        .on_failure(move |t, failure| {
            f.lock()
                .unwrap()
                .push((t.meta().event_type().to_string(), failure.is_panic()))
        })
        .queued(|t| -> Result<(), String> {
            if t.meta().event_type().as_str() == "shop.order.placed" {
                panic!("audit sink panicked");
            }
            Err("audit sink is down".into())
        })
        .unwrap();
    bus.blocking_publish(Placed { order: 1, rev: 1 }).unwrap();
    bus.blocking_publish(Paid { order: 1, cents: 1 }).unwrap();
    wait_for("two failures", || failures.lock().unwrap().len() == 2);
    assert_eq!(
        *failures.lock().unwrap(),
        [
            ("shop.order.placed".to_owned(), true),
            ("shop.payment.received".to_owned(), false)
        ]
    );
    let m = tap.metrics();
    assert_eq!((m.failed, m.panicked, m.delivered), (2, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_tap_on_a_small_queue_gets_every_async_publish_in_order() {
    let bus = Bus::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let _tap = bus
        .tap("payments.>")
        .unwrap()
        .capacity(2)
        .queued_async(move |t: Tapped| {
            let s = s.clone();
            async move {
                tokio::time::sleep(Duration::from_micros(200)).await;
                let v: serde_json::Value =
                    serde_json::from_slice(t.payload().bytes().unwrap()).unwrap();
                s.lock().unwrap().push(v["order"].as_u64().unwrap());
            }
        })
        .unwrap();
    for order in 0..100 {
        // A full Block queue is awaited, never refused.
        assert_eq!(bus.publish(Paid { order, cents: 0 }).await.unwrap(), 0);
    }
    for order in 100..110 {
        let env = Envelope::from_event(Paid { order, cents: 0 });
        bus.publish_envelope(env).await.unwrap();
    }
    assert!(bus.shutdown(Duration::from_secs(10)).await.is_clean());
    assert_eq!(*seen.lock().unwrap(), (0..110).collect::<Vec<u64>>());
}

#[test]
fn tap_settings_are_checked_and_a_closed_bus_refuses_a_tap() {
    let bus = Bus::new();
    assert!(matches!(
        bus.tap("orders..x"),
        Err(syncbus_core::SubscribeError::InvalidPattern(_))
    ));
    assert!(matches!(
        bus.tap(">").unwrap().capacity(0).queued(|_| {}),
        Err(syncbus_core::SubscribeError::InvalidConfig(_))
    ));
    assert!(matches!(
        bus.tap(">").unwrap().queued_async(|_| async {}),
        Err(syncbus_core::SubscribeError::NoRuntime)
    ));
    let builder = bus.tap(">").unwrap();
    bus.blocking_shutdown(Duration::from_secs(1));
    assert!(matches!(
        builder.inline(|_| {}),
        Err(syncbus_core::SubscribeError::Closed)
    ));
}

/// Records where and how often it was encoded.
#[derive(Clone, Debug, Serialize)]
struct Traced(u64);

static ENCODED_ON: Mutex<Vec<std::thread::ThreadId>> = Mutex::new(Vec::new());

impl Event for Traced {
    const TYPE: &'static str = "traced.event";
    fn encode(&self) -> Option<Result<Encoded, EncodeError>> {
        ENCODED_ON.lock().unwrap().push(std::thread::current().id());
        Some(Encoded::json(self))
    }
}

#[test]
fn encoding_happens_only_for_a_tap_and_on_its_worker_never_on_the_publisher() {
    let bus = Bus::new();
    let publisher = std::thread::current().id();
    let _typed = bus
        .subscribe::<Traced>(">")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    // No tap: typed dispatch never encodes.
    for i in 0..10 {
        bus.blocking_publish(Traced(i)).unwrap();
    }
    assert!(ENCODED_ON.lock().unwrap().is_empty());

    let (seen, record) = recorder();
    let tap = bus.tap("traced.*").unwrap().queued(record).unwrap();
    bus.blocking_publish(Traced(10)).unwrap();
    wait_for("the tap", || seen.lock().unwrap().len() == 1);
    let on = ENCODED_ON.lock().unwrap().clone();
    assert_eq!(on.len(), 1, "encoded once, for the tap");
    assert_ne!(on[0], publisher, "a queued tap encodes on its worker");
    drop(tap);

    // An inline tap encodes where inline handlers run: on the publisher's thread.
    let _inline = bus.tap("traced.*").unwrap().inline(|_| {}).unwrap();
    bus.blocking_publish(Traced(11)).unwrap();
    assert_eq!(ENCODED_ON.lock().unwrap()[1], publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_waits_for_a_queued_tap_and_names_it_when_it_does_not_settle() {
    let bus = Bus::new();
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let _tap = bus
        .tap(">")
        .unwrap()
        .name("slow-audit")
        .queued(move |_| {
            std::thread::sleep(Duration::from_millis(5));
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    for order in 0..20 {
        bus.publish(Paid { order, cents: 0 }).await.unwrap();
    }
    let unsettled = bus
        .settled_within(Duration::from_millis(1))
        .await
        .unwrap_err();
    assert!(
        unsettled.busy().iter().any(|b| b.name == "slow-audit"),
        "{unsettled}"
    );
    bus.settled_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(handled.load(Ordering::SeqCst), 20);
}
