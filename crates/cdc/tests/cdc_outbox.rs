//! The outbox read through CDC: events enqueued in the business transaction (the store's
//! `enqueue`, beside the business write) come out in commit order, as the envelopes that
//! were written: their own id (for dedup), type, topic and entity id. A rolled-back
//! transaction's events never come out; the relay's deletes are skipped.

mod support;

use std::time::{Duration, Instant};

use support::*;
use syncbus_cdc::{PgCdc, PgCdcConfig, SqliteCdc, SqliteCdcConfig};
use syncbus_core::{Settle, Source};
use syncbus_envelope::{Bytes, EntityId, Envelope, EventId, EventType, Metadata, Topic};
use syncbus_storage::MemoryStore;
use syncbus_store::{PgStore, SqliteStore};

fn event(n: u64) -> Envelope<Bytes> {
    let meta = Metadata::new(EventType::from_static("order.placed"))
        .with_topic(Topic::from_static("orders.placed"))
        .with_entity_id(Some(EntityId::new(format!("order-{n}")).unwrap()))
        .with_version(Some(n));
    Envelope::new(meta, Bytes::from(format!("{{\"n\":{n}}}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_outbox_through_cdc() {
    let Some(url) = url() else { return };
    let name = unique();
    let _guard = Guard {
        url: url.clone(),
        name: name.clone(),
    };
    let store = PgStore::builder(&url)
        .schema(format!("{name}_store"))
        .connect()
        .await
        .unwrap();
    let app = client(&url).await;
    app.batch_execute(&format!(
        "CREATE SCHEMA {name}; CREATE TABLE {name}.orders (id int PRIMARY KEY)"
    ))
    .await
    .unwrap();
    let outbox = format!("{name}_store.outbox");
    let config = PgCdcConfig::new(&url, [outbox.as_str()])
        .unwrap()
        .transport(transport())
        .outbox(&outbox)
        .unwrap()
        .slot(&name)
        .unwrap()
        .poll(Duration::from_millis(20));
    let source = PgCdc::connect(config, MemoryStore::new()).await.unwrap();

    let mut app = app;
    let mut written: Vec<EventId> = Vec::new();
    for n in 0..6u64 {
        let tx = app.transaction().await.unwrap();
        tx.execute(
            &format!("INSERT INTO {name}.orders VALUES ($1)"),
            &[&(n as i32)],
        )
        .await
        .unwrap();
        let env = event(n);
        store.enqueue(&tx, &env).await.unwrap();
        if n == 3 {
            tx.rollback().await.unwrap();
        } else {
            tx.commit().await.unwrap();
            written.push(env.id().clone());
        }
    }
    app.batch_execute(&format!("DELETE FROM {outbox}"))
        .await
        .unwrap(); // clean-up: skipped
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < written.len() && Instant::now() < deadline {
        for d in source.fetch(100, Duration::from_millis(200)).await.unwrap() {
            got.push(d.envelope().clone());
            d.ack().await.unwrap();
        }
    }
    assert!(
        source
            .fetch(100, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "deletes are skipped"
    );
    let ids: Vec<EventId> = got.iter().map(|e| e.id().clone()).collect();
    assert_eq!(ids, written);
    assert_eq!(got[0].meta().event_type().as_str(), "order.placed");
    assert_eq!(got[0].meta().topic().unwrap().as_str(), "orders.placed");
    assert_eq!(got[4].meta().entity_id().unwrap().as_str(), "order-5");
    assert_eq!(got[4].payload().as_bytes(), br#"{"n":5}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_outbox_through_cdc() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("app.db")).await.unwrap();
    store
        .with_connection(|c| Ok(c.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY)")?))
        .await
        .unwrap();
    let config = SqliteCdcConfig::new(["syncbus_outbox"])
        .unwrap()
        .outbox("syncbus_outbox")
        .unwrap();
    let source = SqliteCdc::open(store.clone(), config).await.unwrap();
    let written: Vec<EventId> = store
        .with_connection(|c| {
            let mut ids = Vec::new();
            for n in 0..6u64 {
                let tx = c.transaction()?;
                tx.execute("INSERT INTO orders VALUES (?1)", [n as i64])?;
                let env = event(n);
                SqliteStore::enqueue(&tx, &env)?;
                if n == 3 {
                    tx.rollback()?;
                } else {
                    tx.commit()?;
                    ids.push(env.id().clone());
                }
            }
            c.execute("DELETE FROM syncbus_outbox", [])?;
            Ok(ids)
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < written.len() && Instant::now() < deadline {
        for d in source.fetch(100, Duration::from_millis(100)).await.unwrap() {
            got.push(d.envelope().clone());
            d.ack().await.unwrap();
        }
    }
    assert!(source
        .fetch(100, Duration::from_millis(100))
        .await
        .unwrap()
        .is_empty());
    let ids: Vec<EventId> = got.iter().map(|e| e.id().clone()).collect();
    assert_eq!(ids, written);
    assert_eq!(got[4].meta().entity_id().unwrap().as_str(), "order-5");
    assert_eq!(got[0].meta().event_type().as_str(), "order.placed");
}
