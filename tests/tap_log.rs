//! A tap feeding a SQLite event log: every event on `>` is stored whatever its type, typed
//! events through `Event::encode`, bytes as they are, and a durable consumer reads them back
//! in publish order after the store is reopened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use syncbus::store::{DurableConfig, DurableConsumer, EventLog, LogFeed, SqliteStore};
use syncbus::{Bus, Bytes, EncodeError, Encoded, Envelope, Event, EventType, Metadata, Topic};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order: u64,
    total_cents: u64,
}

impl Event for OrderPlaced {
    const TYPE: &'static str = "shop.order.placed";
    const TOPIC: &'static str = "orders.placed";
    fn encode(&self) -> Option<Result<Encoded, EncodeError>> {
        Some(Encoded::json(self))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct StockReserved {
    sku: String,
    qty: u32,
}

impl Event for StockReserved {
    const TYPE: &'static str = "shop.stock.reserved";
    const TOPIC: &'static str = "stock.reserved";
    fn encode(&self) -> Option<Result<Encoded, EncodeError>> {
        Some(Encoded::json(self))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_feed_stores_every_type_in_sqlite_for_a_durable_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let log: Arc<dyn EventLog> = Arc::new(store.clone());
    let bus = Bus::new();
    let feed = LogFeed::tap(&bus, ">", log).unwrap();

    bus.publish(OrderPlaced {
        order: 1,
        total_cents: 999,
    })
    .await
    .unwrap();
    let meta = Metadata::new(EventType::new("psp.charge.settled").unwrap())
        .with_topic(Topic::new("payments.settled").unwrap())
        .with_content_type("application/json");
    let settled = Envelope::new(meta, Bytes::from_static(br#"{"psp":"x","cents":999}"#));
    bus.publish_envelope(settled.clone()).await.unwrap();
    bus.publish(StockReserved {
        sku: "sku-7".into(),
        qty: 2,
    })
    .await
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while feed.appended() < 3 {
        assert!(
            Instant::now() < deadline,
            "the feed appended {}",
            feed.appended()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(feed.stop(Duration::from_secs(5)));
    bus.shutdown(Duration::from_secs(5)).await;
    drop(store);

    // Reopened: what the tap stored is in the file, in publish order.
    let store = SqliteStore::open(&path).await.unwrap();
    let log: Arc<dyn EventLog> = Arc::new(store);
    let audit = DurableConsumer::open(log, "audit", DurableConfig::new())
        .await
        .unwrap();
    let batch = audit.fetch(10, Duration::from_secs(1)).await.unwrap();
    let types: Vec<&str> = batch
        .iter()
        .map(|d| d.envelope().meta().event_type().as_str())
        .collect();
    assert_eq!(
        types,
        [
            "shop.order.placed",
            "psp.charge.settled",
            "shop.stock.reserved"
        ]
    );
    let placed = batch[0].envelope().decode_payload::<OrderPlaced>().unwrap();
    assert_eq!(placed.payload().total_cents, 999);
    assert_eq!(
        placed.meta().topic().map(Topic::as_str),
        Some("orders.placed")
    );
    assert_eq!(batch[1].envelope(), &settled);
    let reserved = batch[2]
        .envelope()
        .decode_payload::<StockReserved>()
        .unwrap();
    assert_eq!(reserved.payload().sku, "sku-7");
    for d in batch {
        d.ack().await.unwrap();
    }
}
