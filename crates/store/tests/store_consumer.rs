//! Durable pull consumers: resuming after a restart, redelivery after the ack timeout,
//! groups, and feeding the log from the bus.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use support::{env, num};
use syncbus_core::{Bus, Bytes, Envelope};
use syncbus_storage::{
    Claimed, DurableConfig, DurableConsumer, EventLog, LogFeed, LogRecord, MemoryStore, Retention,
    StoreError, StoreErrorKind, StoreFuture,
};
use syncbus_store::SqliteStore;

#[tokio::test]
async fn a_restarted_consumer_gets_back_everything_not_acked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    support::contract::durable_consumer_restart(|| async {
        Arc::new(SqliteStore::open(&path).await.unwrap()) as Arc<dyn EventLog>
    })
    .await;
}

async fn redelivers_after_the_ack_timeout(log: Arc<dyn EventLog>) {
    log.append(env("a", 1)).await.unwrap();
    // Leases and delays above a store stall on a loaded machine (one SQLite call was seen
    // to wait 336 ms), so none runs out between two calls.
    let config = DurableConfig::new().ack_timeout(Duration::from_millis(1000));
    let c = DurableConsumer::open(log, "c", config).await.unwrap();
    let first = c.fetch(10, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        c.fetch(10, Duration::ZERO).await.unwrap().is_empty(),
        "leased"
    );
    let again = c.fetch(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!((num(again[0].envelope()), again[0].deliveries()), (1, 2));
    let deliveries = again.into_iter().map(|d| d.nak(Duration::from_millis(600)));
    for nak in deliveries {
        nak.await.unwrap();
    }
    assert!(
        c.fetch(10, Duration::ZERO).await.unwrap().is_empty(),
        "nacked with a delay"
    );
    let third = c.fetch(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(third[0].deliveries(), 3);
}

#[tokio::test]
async fn redelivery_after_the_ack_timeout_memory() {
    redelivers_after_the_ack_timeout(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn redelivery_after_the_ack_timeout_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("c.db")).await.unwrap();
    redelivers_after_the_ack_timeout(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_members_on_one_file_handles_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let writer = SqliteStore::open(&path).await.unwrap();
    writer
        .append_batch((0..300).map(|n| env("a", n)).collect())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    let start = Arc::new(tokio::sync::Barrier::new(3));
    for m in 0..3 {
        // Each member has its own connection, as separate processes would.
        let log: Arc<dyn EventLog> = Arc::new(SqliteStore::open(&path).await.unwrap());
        let c = DurableConsumer::open(log, "g", DurableConfig::new().member(format!("m{m}")))
            .await
            .unwrap();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut handled = Vec::new();
            loop {
                let batch = c.fetch(10, Duration::ZERO).await.unwrap();
                if batch.is_empty() {
                    return handled;
                }
                handled.extend(batch.iter().map(|d| num(d.envelope())));
                // Some work, so the other members get to claim meanwhile.
                tokio::time::sleep(Duration::from_millis(3)).await;
                c.ack_all(batch).await.unwrap();
            }
        }));
    }
    let mut all = Vec::new();
    let mut members_that_worked = 0;
    for t in tasks {
        let handled = t.await.unwrap();
        members_that_worked += usize::from(!handled.is_empty());
        all.extend(handled);
    }
    assert!(members_that_worked >= 2, "the work was not shared");
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), 300, "an event was handled twice");
    assert_eq!(unique.len(), 300);
    assert_eq!(
        writer.committed("g").await.unwrap(),
        writer.head().await.unwrap()
    );
}

#[tokio::test]
async fn bad_consumer_settings_are_typed_errors() {
    let log: Arc<dyn EventLog> = Arc::new(MemoryStore::new());
    let zero = DurableConfig::new().ack_timeout(Duration::ZERO);
    assert!(matches!(
        DurableConsumer::open(log.clone(), "c", zero).await,
        Err(e) if e.kind() == StoreErrorKind::Invalid
    ));
    assert!(matches!(
        DurableConsumer::open(log.clone(), "", DurableConfig::new()).await,
        Err(e) if e.kind() == StoreErrorKind::Invalid
    ));
    assert!(matches!(
        DurableConsumer::open(log.clone(), "c", DurableConfig::new().member("")).await,
        Err(e) if e.kind() == StoreErrorKind::Invalid
    ));
    let nowhere = DurableConsumer::open(log, "c", DurableConfig::new().max_deliver(3)).await;
    assert!(
        matches!(&nowhere, Err(e) if e.kind() == StoreErrorKind::Invalid && e.to_string().contains("dead-letter store")),
        "a delivery limit without a dead-letter store is refused: {nowhere:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_records_bus_events_in_publish_order() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> =
        Arc::new(SqliteStore::open(dir.path().join("f.db")).await.unwrap());
    let bus = Bus::new();
    let feed = LogFeed::bytes(&bus, "orders.>", log.clone()).unwrap();
    for n in 0..50 {
        bus.blocking_publish_envelope(env("orders.placed", n))
            .unwrap();
    }
    bus.blocking_publish_envelope(env("users.renamed", 99))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while feed.appended() < 50 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        tokio::task::spawn_blocking(move || feed.stop(Duration::from_secs(5)))
            .await
            .unwrap()
    );
    let stored: Vec<u64> = log
        .read(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| num(&r.envelope))
        .collect();
    assert_eq!(stored, (0..50).collect::<Vec<_>>());
}

/// A log whose appends always fail.
#[derive(Debug)]
struct Broken;

impl EventLog for Broken {
    fn append(&self, _: Envelope<Bytes>) -> StoreFuture<'_, u64> {
        Box::pin(async { Err(StoreError::backend("append", "disk on fire")) })
    }
    fn append_batch(&self, _: Vec<Envelope<Bytes>>) -> StoreFuture<'_, Vec<u64>> {
        Box::pin(async { Err(StoreError::backend("append", "disk on fire")) })
    }
    fn read(&self, _: u64, _: usize) -> StoreFuture<'_, Vec<LogRecord>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn head(&self) -> StoreFuture<'_, Option<u64>> {
        Box::pin(async { Ok(None) })
    }
    fn commit<'a>(&'a self, _: &'a str, _: u64) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    fn committed<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async { Ok(None) })
    }
    fn claim<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: usize,
        _: Duration,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn ack<'a>(&'a self, _: &'a str, _: &'a [u64]) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    fn extend<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a [u64],
        _: Duration,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async { Ok(0) })
    }
    fn release<'a>(&'a self, _: &'a str, _: &'a [u64], _: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    fn release_member<'a>(&'a self, _: &'a str, _: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async { Ok(0) })
    }
    fn retain(&self, _: Retention) -> StoreFuture<'_, u64> {
        Box::pin(async { Ok(0) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_feed_append_is_counted_not_silent() {
    let bus = Bus::new();
    let feed = LogFeed::bytes(&bus, "a.>", Arc::new(Broken)).unwrap();
    for n in 0..3 {
        bus.blocking_publish_envelope(env("a.b", n)).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while feed.failed() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!((feed.appended(), feed.failed()), (0, 3));
    assert_eq!(feed.subscription().metrics().failed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_feed_stores_json_payloads() {
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Shipped {
        order: u64,
    }
    impl syncbus_core::Event for Shipped {
        const TYPE: &'static str = "order.shipped";
        const TOPIC: &'static str = "orders.shipped";
    }
    let log = Arc::new(MemoryStore::new());
    let bus = Bus::new();
    let feed = LogFeed::typed::<Shipped>(&bus, "orders.*", log.clone()).unwrap();
    bus.publish(Shipped { order: 7 }).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while feed.appended() < 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stored = log.read(0, 10).await.unwrap();
    let back = stored[0].envelope.decode_payload::<Shipped>().unwrap();
    assert_eq!(back.payload(), &Shipped { order: 7 });
}

#[tokio::test]
async fn a_poison_record_goes_to_dead_letters_after_max_deliveries() {
    use syncbus_storage::{DeadLetterFilter, DeadLetterStore, MemoryDeadLetterStore};
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> =
        Arc::new(SqliteStore::open(dir.path().join("p.db")).await.unwrap());
    let dl = Arc::new(MemoryDeadLetterStore::new(100));
    let offsets = log
        .append_batch(vec![env("pay.in", 1), env("pay.in", 2)])
        .await
        .unwrap();
    let config = DurableConfig::new().max_deliver(2).dead_letters(dl.clone());
    let c = DurableConsumer::open(log.clone(), "payments", config)
        .await
        .unwrap();
    for round in 1..=2 {
        let batch = c.fetch(10, Duration::ZERO).await.unwrap();
        assert_eq!(batch.len(), 2 - usize::from(round > 1), "round {round}");
        for d in batch {
            if num(d.envelope()) == 1 {
                d.nak(Duration::ZERO).await.unwrap(); // record 1 always fails
            } else {
                d.ack().await.unwrap();
            }
        }
    }
    // A third delivery of record 1 would exceed the limit: it is dead-lettered instead.
    assert!(c.fetch(10, Duration::ZERO).await.unwrap().is_empty());
    let dead = dl.list(&DeadLetterFilter::new()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].subscription, "payments");
    assert_eq!(dead[0].attempts, 2);
    assert!(
        dead[0].error().contains("delivered 2 times"),
        "{}",
        dead[0].error()
    );
    assert_eq!(log.committed("payments").await.unwrap(), Some(offsets[1]));
}
