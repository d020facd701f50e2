//! The SQLite workflow stores plugged into the real workflow layers: a dedup layer runs a
//! handler once under concurrent deliveries, and a saga's state survives reopening the file.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncbus::store::SqliteStore;
use syncbus::store::{SagaStatus, SagaStore};
use syncbus::workflow::{handler_fn, Context, DedupConfig, Handler, Layer, Saga, Workflow};
use syncbus::{Bus, Envelope, Event};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct OrderPlaced {
    order: u64,
}

impl Event for OrderPlaced {
    const TYPE: &'static str = "shop.order.placed";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedup_layer_on_sqlite_runs_the_handler_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("dedup.db"))
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let handler = handler_fn(move |_e: Envelope<OrderPlaced>, _ctx| {
        let r = r.clone();
        async move {
            r.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        }
    });
    let h = Arc::new(
        DedupConfig::new(Arc::new(store.dedup()))
            .layer()
            .layer(handler),
    );
    let bus = Bus::new();
    let e = Envelope::from_event(OrderPlaced { order: 1 });
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (h, e, bus) = (h.clone(), e.clone(), bus.clone());
            tokio::spawn(async move {
                let ctx = Context::new(&bus, e.meta());
                h.call(e, ctx).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(runs.load(SeqCst), 1);

    // A redelivery after a restart is still a duplicate: the key is in the file.
    drop(h);
    let reopened = SqliteStore::open(store.path()).await.unwrap();
    let again = DedupConfig::new(Arc::new(reopened.dedup()))
        .layer()
        .layer(handler_fn(|_e: Envelope<OrderPlaced>, _ctx| async {
            panic!("ran a duplicate")
        }));
    again
        .call(e.clone(), Context::new(&bus, e.meta()))
        .await
        .unwrap();
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Order {
    id: u64,
    reserved: bool,
    charged: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_on_sqlite_keeps_its_state_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let saga = Saga::<Order>::new("fulfilment")
        .store(Arc::new(store.sagas()))
        .step("reserve", |mut o, _ctx| async move {
            o.reserved = true;
            Ok(o)
        })
        .step("charge", |mut o, _ctx| async move {
            o.charged = true;
            Ok(o)
        });
    let _running = saga
        .start_on::<OrderPlaced>(&wf, "shop.order.placed", |e| Order {
            id: e.payload().order,
            ..Order::default()
        })
        .unwrap();
    let env = Envelope::from_event(OrderPlaced { order: 9 });
    let id = env.meta().id().to_string();
    bus.publish_envelope(env).await.unwrap();
    bus.shutdown(Duration::from_secs(5)).await;
    drop(store);

    let reopened = SqliteStore::open(&path).await.unwrap().sagas();
    let inst = reopened.load("fulfilment", &id).await.unwrap().unwrap();
    assert_eq!(inst.status, SagaStatus::Completed);
    assert_eq!(inst.history.len(), 2);
    assert_eq!(inst.data["charged"], serde_json::json!(true));
    let done = reopened
        .list("fulfilment", Some(SagaStatus::Completed))
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
}

/// Two subscriptions sharing one SQLite dedup store with the default key each handle every
/// event: a key belongs to its subscription (before, one ran all 10 and the other none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_sharing_a_sqlite_dedup_store_each_handle_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("dedup.db"))
        .await
        .unwrap();
    let dedup = DedupConfig::new(Arc::new(store.dedup()));
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let counter = |runs: &Arc<AtomicU32>| {
        let r = runs.clone();
        handler_fn(move |_e: Envelope<OrderPlaced>, _ctx| {
            r.fetch_add(1, SeqCst);
            async { Ok(()) }
        })
    };
    let (billing, shipping) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let _b = wf
        .subscribe::<OrderPlaced>("shop.order.placed")
        .unwrap()
        .name("billing")
        .dedup(dedup.clone())
        .handle_with(counter(&billing))
        .unwrap();
    let _s = wf
        .subscribe::<OrderPlaced>("shop.order.placed")
        .unwrap()
        .name("shipping")
        .dedup(dedup.clone())
        .handle_with(counter(&shipping))
        .unwrap();
    for order in 0..10 {
        assert_eq!(bus.publish(OrderPlaced { order }).await.unwrap(), 2);
    }
    bus.shutdown(Duration::from_secs(5)).await;
    assert_eq!((billing.load(SeqCst), shipping.load(SeqCst)), (10, 10));
}

/// With `shared_keys` the two subscriptions share one key space: of both, one runs each key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_keys_let_one_subscription_of_all_run_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("dedup.db"))
        .await
        .unwrap();
    let dedup = DedupConfig::new(Arc::new(store.dedup())).shared_keys();
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let runs = Arc::new(AtomicU32::new(0));
    let mut subs = Vec::new();
    for name in ["eu", "us"] {
        let r = runs.clone();
        subs.push(
            wf.subscribe::<OrderPlaced>("shop.order.placed")
                .unwrap()
                .name(name)
                .dedup(dedup.clone())
                .handle(move |_e: Envelope<OrderPlaced>, _ctx| {
                    r.fetch_add(1, SeqCst);
                    async { Ok(()) }
                })
                .unwrap(),
        );
    }
    for order in 0..10 {
        bus.publish(OrderPlaced { order }).await.unwrap();
    }
    bus.shutdown(Duration::from_secs(5)).await;
    assert_eq!(runs.load(SeqCst), 10);
}
