//! Batch subscriptions: size and time triggers (paused clock), flush at shutdown, poison
//! isolation with a dead letter for the poison alone, redelivery, order within a batch,
//! and a durable SQLite log as the source.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncbus_core::{Bus, ConsumerConfig, EntityId, Envelope, Event, Source};
use syncbus_envelope::{Bytes, EventType, Metadata};
use syncbus_storage::{
    DeadLetterFilter, DeadLetterStore, DurableConfig, DurableConsumer, EventLog,
    MemoryDeadLetterStore,
};
use syncbus_store::SqliteStore;
use syncbus_stream::{BatchConfig, BatchRunner};
use syncbus_workflow::{ErrorKind, HandlerError, Jitter, RetryPolicy};
use tokio::time::Instant;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Sale {
    shop: u32,
    seq: u32,
}

impl Event for Sale {
    const TYPE: &'static str = "shop.sale";
    const TOPIC: &'static str = "shop.sales";
    fn entity_id(&self) -> Option<EntityId> {
        Some(EntityId::from(self.shop))
    }
    fn version(&self) -> Option<u64> {
        Some(u64::from(self.seq))
    }
    fn encode(&self) -> Option<Result<syncbus_envelope::Encoded, syncbus_envelope::EncodeError>> {
        Some(syncbus_envelope::Encoded::json(self))
    }
}

type Seen = Arc<Mutex<Vec<(Instant, Vec<Sale>)>>>;

/// A handler recording each successful batch (its time and events); a batch holding a sale
/// with `seq == poison` fails with `err`.
fn recording(
    seen: &Seen,
    poison: Option<u32>,
    err: fn() -> HandlerError,
) -> impl Fn(Vec<Envelope<Sale>>) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + 'static
{
    let seen = seen.clone();
    move |batch| {
        let sales: Vec<Sale> = batch.iter().map(|e| e.payload().clone()).collect();
        if poison.is_some_and(|p| sales.iter().any(|s| s.seq == p)) {
            return std::future::ready(Err(err()));
        }
        seen.lock().unwrap().push((Instant::now(), sales));
        std::future::ready(Ok(()))
    }
}

fn seqs(seen: &Seen) -> Vec<Vec<u32>> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b.iter().map(|s| s.seq).collect())
        .collect()
}

fn consumer(bus: &Bus) -> syncbus_core::Consumer<Sale> {
    bus.consumer::<Sale>("shop.sales", ConsumerConfig::default())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_at_once_and_the_rest_at_shutdown() {
    let bus = Bus::new();
    let sales = consumer(&bus);
    let seen = Seen::default();
    let config = BatchConfig::new("sales")
        .max_size(3)
        .max_wait(Duration::from_secs(3600));
    let runner =
        BatchRunner::spawn(sales, config, recording(&seen, None, || unreachable!())).unwrap();
    for seq in 0..7 {
        bus.publish(Sale { shop: 1, seq }).await.unwrap();
    }
    // well before max_wait: only the full ones
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(seqs(&seen), [vec![0, 1, 2], vec![3, 4, 5]]);
    assert_eq!(runner.metrics().by_size, 2);
    let m = runner.stop().await.unwrap();
    assert_eq!(seqs(&seen), [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    assert_eq!((m.batches, m.by_size, m.by_time, m.flushed), (3, 2, 0, 1));
    assert_eq!((m.events, m.acked, m.failed_attempts), (7, 7, 0));
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_goes_when_its_first_event_has_waited_max_wait() {
    let bus = Bus::new();
    let sales = consumer(&bus);
    let seen = Seen::default();
    let config = BatchConfig::new("sales")
        .max_size(100)
        .max_wait(Duration::from_millis(500));
    let runner =
        BatchRunner::spawn(sales, config, recording(&seen, None, || unreachable!())).unwrap();
    tokio::time::sleep(Duration::from_millis(1234)).await; // idle rounds first
    let first = Instant::now();
    bus.publish(Sale { shop: 1, seq: 0 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    bus.publish(Sale { shop: 1, seq: 1 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(199)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "handed over before max_wait"
    );
    tokio::time::sleep(Duration::from_millis(2)).await;
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0 - first, Duration::from_millis(500));
        assert_eq!(seen[0].1.len(), 2);
    }
    // the next batch's wait starts at its own first event
    tokio::time::sleep(Duration::from_secs(10)).await;
    let second = Instant::now();
    bus.publish(Sale { shop: 1, seq: 2 }).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        seen.lock().unwrap()[1].0 - second,
        Duration::from_millis(500)
    );
    let m = runner.stop().await.unwrap();
    assert_eq!((m.by_time, m.by_size, m.flushed, m.acked), (2, 0, 0, 3));
}

#[tokio::test(start_paused = true)]
async fn stop_flushes_and_acks_what_is_held() {
    let bus = Bus::new();
    let sales = Arc::new(consumer(&bus));
    let seen = Seen::default();
    let config = BatchConfig::new("sales")
        .max_size(1000)
        .max_wait(Duration::from_secs(3600));
    let runner = BatchRunner::spawn(
        sales.clone(),
        config,
        recording(&seen, None, || unreachable!()),
    )
    .unwrap();
    for seq in 0..10 {
        bus.publish(Sale { shop: seq % 3, seq }).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(seen.lock().unwrap().is_empty());
    let m = runner.stop().await.unwrap();
    assert_eq!(seqs(&seen), [(0..10).collect::<Vec<_>>()]);
    assert_eq!((m.flushed, m.acked), (1, 10));
    // acked: nothing comes back
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(sales.fetch(100, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_poison_event_is_isolated_and_dead_lettered_alone() {
    let bus = Bus::new();
    let sales = Arc::new(consumer(&bus));
    let seen = Seen::default();
    let dead = Arc::new(MemoryDeadLetterStore::new(100));
    let config = BatchConfig::new("sales")
        .max_size(8)
        .max_wait(Duration::from_secs(3600))
        .retry(
            RetryPolicy::new()
                .max_attempts(2)
                .initial(Duration::from_millis(10))
                .jitter(Jitter::None),
        )
        .isolate(dead.clone());
    let runner = BatchRunner::spawn(
        sales.clone(),
        config,
        recording(&seen, Some(5), || {
            HandlerError::retryable("ledger rejected the batch")
        }),
    )
    .unwrap();
    let mut ids = vec![];
    for seq in 0..8 {
        let env = Envelope::from_event(Sale { shop: seq % 2, seq });
        ids.push(env.id().clone());
        bus.publish_envelope(env).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // [0..8) fails -> [0..4) ok, [4..8) fails -> [4,5] fails -> [4] ok, [5] dead, [6,7] ok
    assert_eq!(seqs(&seen), [vec![0, 1, 2, 3], vec![4], vec![6, 7]]);
    let records = dead.list(&DeadLetterFilter::new()).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r.envelope.meta().id(), &ids[5]);
    assert_eq!(
        r.envelope.decode_payload::<Sale>().unwrap().payload(),
        &Sale { shop: 1, seq: 5 }
    );
    assert_eq!(r.subscription, "sales");
    assert!(r.handler.starts_with("batch handler over"), "{}", r.handler);
    assert_eq!(r.error_kind, ErrorKind::Retryable);
    assert_eq!(r.error(), "ledger rejected the batch");
    assert_eq!(r.attempts, 2);
    let m = runner.stop().await.unwrap();
    assert_eq!(
        (m.splits, m.dead_lettered, m.acked, m.redelivered),
        (3, 1, 7, 0)
    );
    // batch of 8, 2 halves of 4, 2 of 2, 2 singles; the failing ones twice each:
    // [0..8) [4..8) [4,5] [5] failed 2 attempts each
    assert_eq!(m.failed_attempts, 8);
    // the poison was termed, the rest acked: nothing comes back
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(sales.fetch(100, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_not_retried_and_two_poisons_are_both_isolated() {
    let bus = Bus::new();
    let sales = consumer(&bus);
    let seen = Seen::default();
    let dead = Arc::new(MemoryDeadLetterStore::new(100));
    let handler = {
        let seen = seen.clone();
        move |batch: Vec<Envelope<Sale>>| {
            let sales: Vec<Sale> = batch.iter().map(|e| e.payload().clone()).collect();
            let bad = sales.iter().any(|s| s.seq == 2 || s.seq == 3);
            if !bad {
                seen.lock().unwrap().push((Instant::now(), sales));
            }
            async move {
                if bad {
                    Err(HandlerError::permanent("bad sale"))
                } else {
                    Ok(())
                }
            }
        }
    };
    let config = BatchConfig::new("sales")
        .max_size(5)
        .retry(RetryPolicy::new().max_attempts(5))
        .isolate(dead.clone());
    let runner = BatchRunner::spawn(sales, config, handler).unwrap();
    for seq in 0..5 {
        bus.publish(Sale { shop: 9, seq }).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m = runner.stop().await.unwrap();
    let mut dead_seqs: Vec<u32> = dead
        .list(&DeadLetterFilter::new())
        .await
        .unwrap()
        .iter()
        .map(|r| r.envelope.decode_payload::<Sale>().unwrap().payload().seq)
        .collect();
    dead_seqs.sort();
    assert_eq!(dead_seqs, [2, 3]);
    assert_eq!(seqs(&seen).concat(), [0, 1, 4]);
    assert_eq!((m.dead_lettered, m.acked), (2, 3));
    // [0..5) fails -> [0,1] ok, [2,3,4] fails -> [2] dead, [3,4] fails -> [3] dead, [4] ok;
    // permanent: one attempt per slice (5 attempts each would be 25)
    assert_eq!((m.splits, m.failed_attempts), (3, 5));
}

#[tokio::test(start_paused = true)]
async fn redeliver_hands_the_whole_batch_out_again() {
    let bus = Bus::new();
    let sales = consumer(&bus);
    let seen = Seen::default();
    let calls = Arc::new(Mutex::new(0u32));
    let handler = {
        let (seen, calls) = (seen.clone(), calls.clone());
        move |batch: Vec<Envelope<Sale>>| {
            let mut n = calls.lock().unwrap();
            *n += 1;
            let ok = *n > 3; // the first three calls fail
            if ok {
                seen.lock().unwrap().push((
                    Instant::now(),
                    batch.iter().map(|e| e.payload().clone()).collect(),
                ));
            }
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(HandlerError::retryable("down"))
                }
            }
        }
    };
    let config = BatchConfig::new("sales")
        .max_size(4)
        .retry(
            RetryPolicy::new()
                .max_attempts(3)
                .initial(Duration::from_millis(5))
                .jitter(Jitter::None),
        )
        .redeliver(Duration::from_millis(100));
    let runner = BatchRunner::spawn(sales, config, handler).unwrap();
    for seq in 0..4 {
        bus.publish(Sale { shop: 1, seq }).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m = runner.stop().await.unwrap();
    assert_eq!(seqs(&seen), [vec![0, 1, 2, 3]]);
    assert_eq!(
        (m.failed_attempts, m.redelivered, m.acked, m.dead_lettered),
        (3, 4, 4, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn events_keep_their_order_inside_batches_and_per_entity() {
    let bus = Bus::new();
    let sales = consumer(&bus);
    let seen = Seen::default();
    let dead = Arc::new(MemoryDeadLetterStore::new(100));
    let config = BatchConfig::new("sales")
        .max_size(7)
        .max_wait(Duration::from_millis(50))
        .retry(RetryPolicy::never())
        .isolate(dead.clone());
    let runner = BatchRunner::spawn(
        sales,
        config,
        recording(&seen, Some(40), || HandlerError::permanent("no")),
    )
    .unwrap();
    for seq in 0..100 {
        bus.publish(Sale {
            shop: seq * 7 % 5,
            seq,
        })
        .await
        .unwrap();
        if seq % 13 == 0 {
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    let m = runner.stop().await.unwrap();
    let all: Vec<Sale> = seen
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, b)| b.clone())
        .collect();
    assert_eq!(
        all.iter().map(|s| s.seq).collect::<Vec<_>>(),
        (0..100).filter(|s| *s != 40).collect::<Vec<_>>()
    );
    for (_, batch) in seen.lock().unwrap().iter() {
        assert!(batch.len() <= 7);
        for shop in 0..5 {
            let v: Vec<u32> = batch
                .iter()
                .filter(|s| s.shop == shop)
                .map(|s| s.seq)
                .collect();
            assert!(v.windows(2).all(|w| w[0] < w[1]), "shop {shop}: {v:?}");
        }
    }
    assert_eq!((m.dead_lettered, m.acked), (1, 99));
    assert!(m.by_time > 0 && m.by_size > 0, "{m:?}");
}

#[tokio::test]
async fn over_a_durable_sqlite_log_with_bytes_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("batch.db"))
        .await
        .unwrap();
    for i in 0..25u32 {
        let meta = Metadata::new(EventType::from_static("raw.row"))
            .with_entity_id(Some(EntityId::from(i % 4)));
        store
            .append(Envelope::new(meta, Bytes::from(format!("row-{i}"))))
            .await
            .unwrap();
    }
    let consumer = DurableConsumer::open(store.clone(), "rows", DurableConfig::new())
        .await
        .unwrap();
    let dead = Arc::new(MemoryDeadLetterStore::new(10));
    let got = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
    let handler = {
        let got = got.clone();
        move |batch: Vec<Envelope<Bytes>>| {
            let rows: Vec<String> = batch
                .iter()
                .map(|e| String::from_utf8(e.payload().to_vec()).unwrap())
                .collect();
            let bad = rows.iter().any(|r| r == "row-13");
            if !bad {
                got.lock().unwrap().push(rows);
            }
            async move {
                if bad {
                    Err(HandlerError::permanent("unparseable row"))
                } else {
                    Ok(())
                }
            }
        }
    };
    let config = BatchConfig::new("rows")
        .max_size(10)
        .max_wait(Duration::from_millis(20))
        .isolate(dead.clone());
    let runner = BatchRunner::spawn(consumer, config, handler).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while runner.metrics().acked + runner.metrics().dead_lettered < 25 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            runner.metrics()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runner.stop().await.unwrap();
    let rows: Vec<String> = got.lock().unwrap().concat();
    let expected: Vec<String> = (0..25)
        .filter(|i| *i != 13)
        .map(|i| format!("row-{i}"))
        .collect();
    assert_eq!(rows, expected);
    let records = dead.list(&DeadLetterFilter::new()).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].envelope.payload().as_ref(), b"row-13");
    // every delivery settled: a new consumer of the same name gets nothing
    let again = DurableConsumer::open(store, "rows", DurableConfig::new())
        .await
        .unwrap();
    assert!(again
        .fetch(100, Duration::from_millis(50))
        .await
        .unwrap()
        .is_empty());
}

#[test]
fn bad_settings_are_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bus = Bus::new();
        let err = BatchRunner::spawn(
            consumer(&bus),
            BatchConfig::new("x").max_size(0),
            |_: Vec<Envelope<Sale>>| async { Ok(()) },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "batch size must be at least one");
        let err = BatchRunner::spawn(
            consumer(&bus),
            BatchConfig::new("x").max_wait(Duration::ZERO),
            |_: Vec<Envelope<Sale>>| async { Ok(()) },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "batch wait must be at least one millisecond"
        );
    });
}

#[tokio::test(start_paused = true)]
async fn stop_also_hands_over_what_the_source_has_ready() {
    let bus = Bus::new();
    let sales = Arc::new(consumer(&bus));
    let seen = Seen::default();
    let config = BatchConfig::new("sales")
        .max_size(4)
        .max_wait(Duration::from_secs(3600));
    let runner = BatchRunner::spawn(
        sales.clone(),
        config,
        recording(&seen, None, || unreachable!()),
    )
    .unwrap();
    // published, and stopped at once: the runner may not have fetched any of it yet
    for seq in 0..10 {
        bus.publish(Sale { shop: 1, seq }).await.unwrap();
    }
    let m = runner.stop().await.unwrap();
    assert_eq!(seqs(&seen).concat(), (0..10).collect::<Vec<_>>());
    assert!(seqs(&seen).iter().all(|b| b.len() <= 4));
    assert_eq!(m.acked, 10);
    assert!(sales.fetch(100, Duration::ZERO).await.unwrap().is_empty());
}

/// While a slow batch is handled, its leases are extended: another member of the same
/// durable consumer gets none of its events; with the ticks off, it does.
async fn other_member_during_slow_batch(every: Option<Duration>) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("lease.db"))
        .await
        .unwrap();
    for i in 0..5u32 {
        let meta = Metadata::new(EventType::from_static("raw.row"));
        store
            .append(Envelope::new(meta, Bytes::from(format!("row-{i}"))))
            .await
            .unwrap();
    }
    let lease = Duration::from_millis(400);
    let open = |member: &'static str| {
        let store = store.clone();
        async move {
            DurableConsumer::open(
                store,
                "rows",
                DurableConfig::new().member(member).ack_timeout(lease),
            )
            .await
            .unwrap()
        }
    };
    let (a, b) = (open("a").await, open("b").await);
    let started = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let started = started.clone();
        move |_: Vec<Envelope<Bytes>>| {
            started.notify_one();
            async {
                tokio::time::sleep(Duration::from_millis(1_200)).await; // three leases long
                Ok::<(), HandlerError>(())
            }
        }
    };
    let config = BatchConfig::new("rows")
        .max_size(5)
        .in_progress_every(every);
    let runner = BatchRunner::spawn(a, config, handler).unwrap();
    started.notified().await;
    tokio::time::sleep(Duration::from_millis(700)).await; // past the first lease
    let stolen = b.fetch(10, Duration::ZERO).await.unwrap();
    let n = stolen.len();
    for d in stolen {
        d.ack().await.unwrap();
    }
    runner.stop().await.unwrap();
    n
}

#[tokio::test]
async fn a_slow_batch_keeps_its_leases() {
    assert_eq!(
        other_member_during_slow_batch(Some(Duration::from_millis(50))).await,
        0
    );
    assert_eq!(
        other_member_during_slow_batch(None).await,
        5,
        "without ticks the leases run out"
    );
}
