//! The storage contract, written once against the traits and run for every backend. A
//! backend's test file calls each function with a fresh, empty store.

use std::time::Duration;

use syncbus_core::{Bytes, Envelope};
use syncbus_store::{Checkpoints, EventLog, Outbox, Retention, StoreError, StoreFuture};

use super::{env, num};

const LONG: Duration = Duration::from_secs(3600);

/// Appending, reading, head, batches and envelope round trips.
pub async fn log_append_read(log: &dyn EventLog) {
    assert_eq!(log.head().await.unwrap(), None);
    assert!(log.read(0, 10).await.unwrap().is_empty());

    let original = env("orders.placed", 1);
    let first = log.append(original.clone()).await.unwrap();
    assert!(first > 0, "offsets are positive");
    let batch = log
        .append_batch((2..=5).map(|n| env("orders.placed", n)).collect())
        .await
        .unwrap();
    assert_eq!(batch.len(), 4);
    assert!(batch.windows(2).all(|w| w[0] < w[1]), "{batch:?}");
    assert!(batch[0] > first);
    assert_eq!(log.head().await.unwrap(), Some(batch[3]));
    assert!(log.append_batch(Vec::new()).await.unwrap().is_empty());

    let all = log.read(0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|r| num(&r.envelope)).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        all[0].envelope, original,
        "every metadata field survives storage"
    );
    assert_eq!(all[0].offset, first);

    let page = log.read(batch[1], 2).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.offset).collect::<Vec<_>>(),
        &batch[1..3]
    );
    assert!(log.read(batch[3] + 1, 10).await.unwrap().is_empty());
    assert!(log.read(0, 0).await.unwrap().is_empty());
}

/// Explicit commits: set, read back, move back for a replay.
pub async fn log_commit(log: &dyn EventLog) {
    assert_eq!(log.committed("indexer").await.unwrap(), None);
    log.commit("indexer", 10).await.unwrap();
    assert_eq!(log.committed("indexer").await.unwrap(), Some(10));
    log.commit("indexer", 3).await.unwrap();
    assert_eq!(log.committed("indexer").await.unwrap(), Some(3));
    assert_eq!(
        log.committed("other").await.unwrap(),
        None,
        "consumers are separate"
    );
    assert!(matches!(
        log.commit("", 1).await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        log.committed("").await,
        Err(StoreError::InvalidInput(_))
    ));
    let long = "x".repeat(300);
    assert!(matches!(
        log.committed(&long).await,
        Err(StoreError::InvalidInput(_))
    ));
}

/// Claims are leased to one member at a time, in offset order; acks advance the committed
/// offset over the contiguous prefix only.
pub async fn log_claim_ack(log: &dyn EventLog) {
    let offsets = log
        .append_batch((1..=6).map(|n| env("a", n)).collect())
        .await
        .unwrap();
    let first = log.claim("c", "m1", 2, LONG).await.unwrap();
    assert_eq!(
        first.iter().map(|c| c.record.offset).collect::<Vec<_>>(),
        &offsets[..2]
    );
    assert!(first.iter().all(|c| c.deliveries == 1));
    let second = log.claim("c", "m2", 10, LONG).await.unwrap();
    assert_eq!(
        second.iter().map(|c| c.record.offset).collect::<Vec<_>>(),
        &offsets[2..],
        "a leased record goes to nobody else"
    );
    assert!(log.claim("c", "m3", 10, LONG).await.unwrap().is_empty());
    assert_eq!(
        log.claim("other", "m1", 10, LONG).await.unwrap().len(),
        6,
        "another consumer has its own claims"
    );

    // Acks out of order: the committed offset waits for the gap.
    log.ack("c", &[offsets[1], offsets[2]]).await.unwrap();
    assert_eq!(log.committed("c").await.unwrap(), None);
    log.ack("c", &[offsets[0]]).await.unwrap();
    assert_eq!(log.committed("c").await.unwrap(), Some(offsets[2]));
    // Acking again, acking below the committed offset, acking what is not in the log.
    log.ack("c", &[offsets[0], offsets[5] + 100]).await.unwrap();
    assert_eq!(log.committed("c").await.unwrap(), Some(offsets[2]));

    log.ack("c", &offsets[3..]).await.unwrap();
    assert_eq!(log.committed("c").await.unwrap(), Some(offsets[5]));
    assert!(log.claim("c", "m1", 10, LONG).await.unwrap().is_empty());

    // New records after everything was acked are claimed from the committed offset.
    let more = log.append(env("a", 7)).await.unwrap();
    let got = log.claim("c", "m1", 10, LONG).await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.record.offset).collect::<Vec<_>>(),
        [more]
    );
    assert_eq!(num(&got[0].record.envelope), 7);
    assert!(log.claim("c", "m1", 0, LONG).await.unwrap().is_empty());
    assert!(matches!(
        log.claim("c", "", 1, LONG).await,
        Err(StoreError::InvalidInput(_))
    ));
}

/// Acked records past an unacked one are not delivered again; the unacked one is.
pub async fn log_ack_skips_acked(log: &dyn EventLog) {
    let offsets = log
        .append_batch((1..=3).map(|n| env("a", n)).collect())
        .await
        .unwrap();
    log.claim("c", "m", 10, Duration::from_millis(50))
        .await
        .unwrap();
    log.ack("c", &[offsets[1]]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let again = log.claim("c", "m", 10, LONG).await.unwrap();
    assert_eq!(
        again
            .iter()
            .map(|c| (c.record.offset, c.deliveries))
            .collect::<Vec<_>>(),
        [(offsets[0], 2), (offsets[2], 2)]
    );
}

/// Leases expire; a release (nack) makes a record claimable after its delay; a member's
/// claims can be released at once after its restart.
pub async fn log_leases(log: &dyn EventLog) {
    let offsets = log
        .append_batch((1..=3).map(|n| env("a", n)).collect())
        .await
        .unwrap();
    let short = Duration::from_millis(50);
    assert_eq!(log.claim("c", "m1", 1, short).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let retaken = log.claim("c", "m2", 1, LONG).await.unwrap();
    assert_eq!(
        retaken[0].record.offset, offsets[0],
        "an expired lease is claimable"
    );
    assert_eq!(retaken[0].deliveries, 2);

    // Nack with a delay: not before the delay, then yes.
    log.release("c", &[offsets[0]], Duration::from_millis(150))
        .await
        .unwrap();
    let next = log.claim("c", "m2", 1, LONG).await.unwrap();
    assert_eq!(
        next[0].record.offset, offsets[1],
        "a delayed record is not due yet"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let due = log.claim("c", "m2", 1, LONG).await.unwrap();
    assert_eq!((due[0].record.offset, due[0].deliveries), (offsets[0], 3));
    // Release of something never claimed is ignored.
    log.release("c", &[offsets[2] + 50], Duration::ZERO)
        .await
        .unwrap();

    // m2 holds offsets[0] and offsets[1]; after "restarting" it gets them back at once.
    assert!(log.claim("c", "m2", 10, LONG).await.unwrap().len() == 1);
    assert_eq!(log.release_member("c", "m2").await.unwrap(), 3);
    assert_eq!(log.release_member("c", "m2").await.unwrap(), 0);
    let back = log.claim("c", "m3", 10, LONG).await.unwrap();
    assert_eq!(back.len(), 3);
}

/// Retention by count and by age; a consumer behind it resumes at the oldest record left.
pub async fn log_retention(log: &dyn EventLog) {
    let offsets = log
        .append_batch((1..=5).map(|n| env("a", n)).collect())
        .await
        .unwrap();
    assert_eq!(log.retain(Retention::default()).await.unwrap(), 0);
    let removed = log
        .retain(Retention {
            max_records: Some(2),
            ..Retention::default()
        })
        .await
        .unwrap();
    assert_eq!(removed, 3);
    let left = log.read(0, 10).await.unwrap();
    assert_eq!(
        left.iter().map(|r| r.offset).collect::<Vec<_>>(),
        &offsets[3..]
    );
    let claimed = log.claim("late", "m", 10, LONG).await.unwrap();
    assert_eq!(claimed[0].record.offset, offsets[3]);

    tokio::time::sleep(Duration::from_millis(30)).await;
    let fresh = log.append(env("a", 6)).await.unwrap();
    let removed = log
        .retain(Retention {
            max_age: Some(Duration::from_millis(20)),
            ..Retention::default()
        })
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(log.read(0, 10).await.unwrap()[0].offset, fresh);
    // Offsets are never reused, even when the log was emptied.
    log.retain(Retention {
        max_records: Some(0),
        ..Retention::default()
    })
    .await
    .unwrap();
    assert_eq!(log.head().await.unwrap(), None);
    assert!(log.append(env("a", 7)).await.unwrap() > fresh);
}

/// Named cursors.
pub async fn checkpoints(store: &dyn Checkpoints) {
    assert_eq!(store.get("poller").await.unwrap(), None);
    store.put("poller", b"etag-1".to_vec()).await.unwrap();
    store.put("cdc", vec![0, 255]).await.unwrap();
    assert_eq!(store.get("poller").await.unwrap(), Some(b"etag-1".to_vec()));
    store.put("poller", b"etag-2".to_vec()).await.unwrap();
    assert_eq!(
        store.get_str("poller").await.unwrap().as_deref(),
        Some("etag-2")
    );
    assert!(matches!(
        store.get_str("cdc").await,
        Err(StoreError::Codec(_))
    ));
    store.put_str("empty", "").await.unwrap();
    assert_eq!(store.get("empty").await.unwrap(), Some(Vec::new()));
    assert!(store.remove("poller").await.unwrap());
    assert!(!store.remove("poller").await.unwrap());
    assert_eq!(store.get("poller").await.unwrap(), None);
    assert_eq!(store.get("cdc").await.unwrap(), Some(vec![0, 255]));
    assert!(matches!(
        store.put("", vec![]).await,
        Err(StoreError::InvalidInput(_))
    ));
}

/// How a backend enqueues one outbox event outside any application transaction.
pub type Enqueue<'a> = &'a (dyn Fn(Envelope<Bytes>) -> StoreFuture<'static, u64> + Sync);

/// Pending events come in enqueue (commit) order until marked sent.
pub async fn outbox(outbox: &dyn Outbox, enqueue: Enqueue<'_>) {
    assert!(outbox.pending(10).await.unwrap().is_empty());
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(enqueue(env("out", n)).await.unwrap());
    }
    let pending = outbox.pending(10).await.unwrap();
    assert_eq!(pending.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    assert_eq!(pending[2].envelope, env_like(&pending[2].envelope, 3));
    assert_eq!(outbox.pending(2).await.unwrap().len(), 2);
    outbox.mark_sent(&ids[..2]).await.unwrap();
    let rest = outbox.pending(10).await.unwrap();
    assert_eq!(
        rest.iter().map(|r| num(&r.envelope)).collect::<Vec<_>>(),
        [3, 4]
    );
    outbox.mark_sent(&ids).await.unwrap();
    outbox.mark_sent(&[9_999]).await.unwrap();
    assert!(outbox.pending(10).await.unwrap().is_empty());

    // An event the relay could never publish is refused up front.
    let (meta, payload) = env("out", 5).into_parts();
    let no_topic = Envelope::new(
        syncbus_core::Metadata::new(meta.event_type().clone()),
        payload,
    );
    assert!(matches!(
        enqueue(no_topic).await,
        Err(StoreError::InvalidInput(_))
    ));
    let bad = Envelope::new(meta.with_topic("orders..x"), Bytes::new());
    assert!(matches!(
        enqueue(bad).await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(outbox.pending(10).await.unwrap().is_empty());
}

fn env_like(stored: &Envelope<Bytes>, n: u64) -> Envelope<Bytes> {
    // Same metadata as env(n), with the stored id (ids are fresh per call).
    let fresh = env("out", n);
    let (mut meta, payload) = fresh.into_parts();
    meta.set_id(stored.id().clone());
    Envelope::new(meta, payload)
}
