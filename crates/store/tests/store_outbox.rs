//! The SQLite outbox with its relay: events commit or roll back with the business write, and
//! the relay publishes them in commit order without skipping one whose transaction commits
//! after a later-started one.

mod support;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{env, num};
use syncbus_core::{Bus, Bytes, Envelope};
use syncbus_storage::{MemoryStore, Outbox, Relay, RelayError};
use syncbus_store::SqliteStore;

fn app_connection(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// A bus with one subscriber recording the numbers of what it receives.
fn recording_bus() -> (Bus, Arc<Mutex<Vec<u64>>>, syncbus_core::Subscription) {
    let bus = Bus::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let sub = bus
        .subscribe::<Bytes>("out.>")
        .unwrap()
        .inline(move |e| s.lock().unwrap().push(num(e)))
        .unwrap();
    (bus, seen, sub)
}

#[tokio::test]
async fn events_commit_and_roll_back_with_the_business_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let mut conn = app_connection(&path);
    conn.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        .unwrap();

    let tx = conn.transaction().unwrap();
    tx.execute("INSERT INTO orders (id) VALUES (1)", [])
        .unwrap();
    SqliteStore::enqueue(&tx, &env("out.orders", 1)).unwrap();
    tx.rollback().unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute("INSERT INTO orders (id) VALUES (2)", [])
        .unwrap();
    SqliteStore::enqueue(&tx, &env("out.orders", 2)).unwrap();
    tx.commit().unwrap();

    let orders: Vec<i64> = conn
        .prepare("SELECT id FROM orders")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(orders, [2]);
    let pending = store.pending(10).await.unwrap();
    assert_eq!(
        pending.iter().map(|r| num(&r.envelope)).collect::<Vec<_>>(),
        [2]
    );

    let (bus, seen, _sub) = recording_bus();
    let relay = Relay::new(Arc::new(store.clone()), bus);
    assert_eq!(relay.run_once().await.unwrap(), 1);
    assert_eq!(
        relay.run_once().await.unwrap(),
        0,
        "sent events are not sent again"
    );
    assert_eq!(*seen.lock().unwrap(), [2]);
}

/// The gap bug: transaction A enqueues first, B second; the relay runs while A is still
/// open. A relay that kept an "id > last sent" cursor could publish B and then skip A when A
/// commits. Here B cannot even take its id before A commits (SQLite has one writer), and
/// the relay works on unsent rows, so both arrive, in commit order.
#[tokio::test]
async fn a_relay_round_during_open_transactions_skips_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let (bus, seen, _sub) = recording_bus();
    let relay = Relay::new(Arc::new(store.clone()), bus);

    let mut a = app_connection(&path);
    let tx_a = a.transaction().unwrap();
    SqliteStore::enqueue(&tx_a, &env("out.x", 1)).unwrap();

    // B starts in another thread and blocks on A's write lock.
    let (started_tx, started) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let b_path = path.clone();
    let b = std::thread::spawn(move || {
        let mut b = app_connection(&b_path);
        let tx_b = b.transaction().unwrap();
        started_tx.send(()).unwrap();
        SqliteStore::enqueue(&tx_b, &env("out.x", 2)).unwrap();
        tx_b.commit().unwrap();
        done_tx.send(()).unwrap();
    });
    started.recv().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        done.try_recv().is_err(),
        "B committed while A held the write lock"
    );

    // A relay round while A is open and B waits: nothing is committed, nothing is sent.
    assert_eq!(relay.run_once().await.unwrap(), 0);
    tx_a.commit().unwrap();
    b.join().unwrap();
    done.recv().unwrap();

    assert_eq!(relay.run_once().await.unwrap(), 2);
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
    assert!(store.pending(10).await.unwrap().is_empty());
}

/// Four writers interleave transactions that hold the write lock for random times while a
/// relay runs continuously: every committed event is published once, in commit order, and
/// rolled-back ones never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_a_running_relay_keep_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let (bus, seen, _sub) = recording_bus();
    let handle = Relay::new(Arc::new(store.clone()), bus.clone())
        .batch_size(7)
        .spawn(Duration::from_millis(1));

    let committed = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (path, committed) = (path.clone(), committed.clone());
            std::thread::spawn(move || {
                let mut conn = app_connection(&path);
                let mut seed = w * 7919 + 1;
                for i in 0..50u64 {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let n = w * 1000 + i;
                    let tx = conn.transaction().unwrap();
                    SqliteStore::enqueue(&tx, &env("out.x", n)).unwrap();
                    std::thread::sleep(Duration::from_micros(seed % 2000));
                    if seed % 5 == 0 {
                        tx.rollback().unwrap();
                        continue;
                    }
                    // Recorded while the write lock is held: the order of commits.
                    committed.lock().unwrap().push(n);
                    tx.commit().unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let expected = committed.lock().unwrap().clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < expected.len() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.stop().await;
    assert!(
        expected.len() > 100 && expected.len() < 200,
        "{}",
        expected.len()
    );
    assert_eq!(*seen.lock().unwrap(), expected);
    assert!(store.pending(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_event_stops_the_round_and_stays_pending() {
    let store = outbox_of(3);
    let bus = Bus::new();
    let _sub = bus
        .subscribe::<Bytes>("out.>")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    bus.shutdown(Duration::from_secs(1)).await;
    let relay = Relay::new(Arc::new(store.clone()), bus);
    let err = relay.run_once().await.unwrap_err();
    assert!(matches!(err, RelayError::Publish { id: 1, .. }), "{err:?}");
    assert_eq!(store.pending(10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_relay_moves_more_than_one_batch() {
    let store = MemoryStore::new();
    for n in 0..25 {
        store.enqueue(env("out.x", n)).unwrap();
    }
    let (bus, seen, _sub) = recording_bus();
    let relay = Relay::new(Arc::new(store.clone()), bus).batch_size(10);
    assert_eq!(relay.run_once().await.unwrap(), 25);
    assert_eq!(*seen.lock().unwrap(), (0..25).collect::<Vec<_>>());
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Shipped {
    order: u64,
}

impl syncbus_core::Event for Shipped {
    const TYPE: &'static str = "out.shipped";
}

#[tokio::test]
async fn a_typed_relay_delivers_typed_events_and_keeps_an_undecodable_one_pending() {
    use syncbus_core::{EventType, Metadata};
    let store = Arc::new(MemoryStore::new());
    store
        .enqueue(
            Envelope::from_event(Shipped { order: 1 })
                .to_bytes_payload()
                .unwrap(),
        )
        .unwrap();
    // Same type name, a payload that is not a `Shipped`.
    let meta = Metadata::new(EventType::new("out.shipped").unwrap())
        .with_topic(syncbus_envelope::Topic::from_static("out.shipped"));
    store
        .enqueue(Envelope::new(
            meta,
            Bytes::from_static(b"{\"order\":\"x\"}"),
        ))
        .unwrap();
    let bus = Bus::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let _sub = bus
        .subscribe::<Shipped>("out.>")
        .unwrap()
        .inline(move |e| s.lock().unwrap().push(e.payload().order))
        .unwrap();
    let relay = Relay::new(store.clone(), bus).typed::<Shipped>();
    let err = relay.run_once().await.unwrap_err();
    assert!(
        matches!(&err, RelayError::Undecodable { id, event_type, reason }
            if *id == 2 && event_type == "out.shipped" && reason.contains("not a out.shipped")),
        "{err}"
    );
    assert!(err.to_string().contains("stays pending"), "{err}");
    assert_eq!(*seen.lock().unwrap(), vec![1]);
    let pending = store.pending(10).await.unwrap();
    assert_eq!(pending.len(), 1, "the bad one stays pending");
    assert_eq!(pending[0].id, 2);
    // Every round that meets it says so again, and counts it.
    assert!(matches!(
        relay.run_once().await,
        Err(RelayError::Undecodable { id: 2, .. })
    ));
    let stats = relay.stats();
    assert_eq!((stats.sent, stats.undecodable), (1, 2), "{stats:?}");
}

/// A memory outbox holding events 1..=`n` on `out.x`.
fn outbox_of(n: u64) -> MemoryStore {
    let store = MemoryStore::new();
    for n in 1..=n {
        store.enqueue(env("out.x", n)).unwrap();
    }
    store
}

// ---- nobody received it -------------------------------------------------------------------

#[tokio::test]
async fn an_event_no_subscription_takes_stays_pending() {
    let store = outbox_of(3);
    let bus = Bus::new();
    let relay = Relay::new(Arc::new(store.clone()), bus.clone());
    // Before any subscription exists: nothing leaves the outbox.
    let err = relay.run_once().await.unwrap_err();
    assert!(
        matches!(&err, RelayError::Unreceived { id: 1, event_type, topic }
            if event_type == "test.event" && topic == "out.x"),
        "{err:?}"
    );
    assert_eq!(store.pending(10).await.unwrap().len(), 3);
    assert_eq!(relay.stats().unreceived, 1);

    // A subscription of the wrong payload type (an untyped relay publishes bytes) takes
    // nothing either.
    let _typed = bus
        .subscribe::<Shipped>("out.>")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    assert!(matches!(
        relay.run_once().await,
        Err(RelayError::Unreceived { id: 1, .. })
    ));
    assert_eq!(store.pending(10).await.unwrap().len(), 3);

    // Once a subscription takes them, they leave, in order.
    let (seen, _sub) = {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let sub = bus
            .subscribe::<Bytes>("out.>")
            .unwrap()
            .inline(move |e| s.lock().unwrap().push(num(e)))
            .unwrap();
        (seen, sub)
    };
    assert_eq!(relay.run_once().await.unwrap(), 3);
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
    assert!(store.pending(10).await.unwrap().is_empty());
    assert_eq!(relay.stats().sent, 3);
}

#[tokio::test]
async fn a_typed_relay_keeps_an_event_pending_until_its_subscription_exists() {
    let store = Arc::new(MemoryStore::new());
    store
        .enqueue(
            Envelope::from_event(Shipped { order: 9 })
                .to_bytes_payload()
                .unwrap(),
        )
        .unwrap();
    let bus = Bus::new();
    let relay = Relay::new(store.clone(), bus.clone()).typed::<Shipped>();
    assert!(matches!(
        relay.run_once().await,
        Err(RelayError::Unreceived { id: 1, .. })
    ));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let _sub = bus
        .subscribe::<Shipped>("out.>")
        .unwrap()
        .inline(move |e| s.lock().unwrap().push(e.payload().order))
        .unwrap();
    assert_eq!(relay.run_once().await.unwrap(), 1);
    assert_eq!(*seen.lock().unwrap(), vec![9]);
}

#[tokio::test]
async fn drop_unreceived_is_the_opt_in_to_let_them_go() {
    let store = outbox_of(2);
    let relay = Relay::new(Arc::new(store.clone()), Bus::new()).drop_unreceived();
    assert_eq!(relay.run_once().await.unwrap(), 0, "none was received");
    assert!(store.pending(10).await.unwrap().is_empty());
    let stats = relay.stats();
    assert_eq!((stats.sent, stats.dropped), (0, 2), "{stats:?}");
}

#[tokio::test]
async fn an_event_some_subscriptions_refused_is_sent_once_not_again() {
    use syncbus_core::{ConsumerConfig, Overflow};
    let store = outbox_of(2);
    let bus = Bus::new();
    let roomy = bus
        .consumer::<Bytes>("out.>", ConsumerConfig::default())
        .unwrap();
    let tight = bus
        .consumer::<Bytes>(
            "out.>",
            ConsumerConfig::default()
                .max_pending(1)
                .overflow(Overflow::Reject),
        )
        .unwrap();
    let relay = Relay::new(Arc::new(store.clone()), bus.clone());
    assert_eq!(relay.run_once().await.unwrap(), 2, "both went out");
    assert!(store.pending(10).await.unwrap().is_empty());
    let stats = relay.stats();
    assert_eq!((stats.sent, stats.partial), (2, 1), "{stats:?}");
    assert_eq!(roomy.pending(), 2, "the roomy consumer has each event once");
    assert_eq!(tight.pending(), 1, "the full one refused the second");
    assert_eq!(relay.run_once().await.unwrap(), 0, "nothing goes out twice");
    assert_eq!(roomy.pending(), 2);
}

// ---- the durable path: outbox into the event log -----------------------------------------

#[tokio::test]
async fn sqlite_moves_outbox_events_into_the_log_in_one_transaction() {
    use syncbus_storage::EventLog;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let mut conn = app_connection(&path);
    let tx = conn.transaction().unwrap();
    for n in 1..=5 {
        SqliteStore::enqueue(&tx, &env("out.x", n)).unwrap();
    }
    tx.commit().unwrap();

    // No bus and no subscription needed: the log keeps them for any consumer.
    assert_eq!(store.move_outbox_to_log(3).await.unwrap(), 3);
    assert_eq!(store.pending(10).await.unwrap().len(), 2);
    assert_eq!(store.move_outbox_to_log(3).await.unwrap(), 2);
    assert_eq!(store.move_outbox_to_log(3).await.unwrap(), 0);
    assert!(store.pending(10).await.unwrap().is_empty());
    let log = store.read(0, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|r| num(&r.envelope)).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );

    // One transaction: if the append fails, the events stay in the outbox.
    let tx = conn.transaction().unwrap();
    SqliteStore::enqueue(&tx, &env("out.x", 6)).unwrap();
    tx.commit().unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON syncbus_log BEGIN SELECT RAISE(ABORT, 'no'); END",
    )
    .unwrap();
    assert!(store.move_outbox_to_log(10).await.is_err());
    assert_eq!(store.pending(10).await.unwrap().len(), 1, "rolled back");
    assert_eq!(store.read(0, 10).await.unwrap().len(), 5);
    conn.execute_batch("DROP TRIGGER refuse").unwrap();
    assert_eq!(store.move_outbox_to_log(10).await.unwrap(), 1);
    let log = store.read(0, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|r| num(&r.envelope)).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
}
