//! The storage contract, written once against the traits and run for every backend (cargo
//! feature `testing`). A backend's test file calls each function with a fresh, empty store;
//! each one panics, as a test does, when the backend breaks the contract.
//!
//! # Examples
//!
//! The memory backends pass it:
//!
//! ```
//! use syncbus_storage::{testing, MemoryDedupStore, MemoryStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! testing::log_append_read(&MemoryStore::new()).await;
//! testing::checkpoints(&MemoryStore::new()).await;
//! testing::dedup(&MemoryDedupStore::new(10_000)).await;
//! # });
//! ```
//!
//! A new backend's test file runs every function the same way, one `#[tokio::test]` each.

#![allow(clippy::missing_panics_doc)]

use std::time::Duration;

use syncbus_core::{Bytes, EntityId, Envelope, EventType, Metadata, Topic};

use crate::{Checkpoints, EventLog, Outbox, Retention, StoreErrorKind, StoreFuture};

/// An envelope on `topic` whose payload is `n` as text, with an entity id, a version and a
/// header, so a round trip checks more than the payload.
///
/// # Panics
///
/// If `topic` is not a valid topic.
///
/// # Examples
///
/// ```
/// let env = syncbus_storage::testing::env("orders.placed", 7);
/// assert_eq!(syncbus_storage::testing::num(&env), 7);
/// ```
pub fn env(topic: &str, n: u64) -> Envelope<Bytes> {
    let mut meta = Metadata::new(EventType::from_static("test.event"))
        .with_topic(Topic::new(topic).unwrap_or_else(|e| panic!("a test topic: {e}")))
        .with_entity_id(Some(EntityId::from(n % 7)))
        .with_version(Some(n));
    if let Err(e) = meta.headers_mut().insert("n", n.to_string()) {
        panic!("a numeric header is valid: {e}");
    }
    Envelope::new(meta, Bytes::from(n.to_string()))
}

/// The number an [`env()`] carries.
///
/// # Panics
///
/// If the payload is not a number as text (not made by [`env()`]).
///
/// # Examples
///
/// ```
/// let env = syncbus_storage::testing::env("a", 42);
/// assert_eq!(syncbus_storage::testing::num(&env), 42);
/// ```
pub fn num(env: &Envelope<Bytes>) -> u64 {
    std::str::from_utf8(env.payload())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an envelope made by testing::env: {env:?}"))
}

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
        Err(e) if e.kind() == StoreErrorKind::Invalid
    ));
    assert!(matches!(
        log.committed("").await,
        Err(e) if e.kind() == StoreErrorKind::Invalid
    ));
    let long = "x".repeat(300);
    assert!(matches!(
        log.committed(&long).await,
        Err(e) if e.kind() == StoreErrorKind::Invalid
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
        Err(e) if e.kind() == StoreErrorKind::Invalid
    ));
}

/// An "in progress" extends only the holder's own unacked claims; an extended lease keeps a
/// record from other members past its first expiry.
pub async fn log_extend(log: &dyn EventLog) {
    let short = Duration::from_millis(80);
    let offsets = log
        .append_batch((1..=2).map(|n| env("a", n)).collect())
        .await
        .unwrap();
    assert_eq!(log.claim("c", "m1", 10, short).await.unwrap().len(), 2);
    assert_eq!(
        log.extend("c", "m1", &offsets, LONG).await.unwrap(),
        2,
        "both claims held by m1 are extended"
    );
    assert_eq!(
        log.extend("c", "m2", &offsets, LONG).await.unwrap(),
        0,
        "m2 holds nothing"
    );
    tokio::time::sleep(short * 2).await;
    assert!(
        log.claim("c", "m2", 10, LONG).await.unwrap().is_empty(),
        "an extended lease outlives its first expiry"
    );
    log.ack("c", &offsets[..1]).await.unwrap();
    assert_eq!(
        log.extend("c", "m1", &offsets, LONG).await.unwrap(),
        1,
        "an acked claim is not extended"
    );
    assert_eq!(
        log.extend("other", "m1", &offsets, LONG).await.unwrap(),
        0,
        "another consumer's claims are its own"
    );
    assert!(matches!(
        log.extend("c", "", &offsets, LONG).await,
        Err(e) if e.kind() == StoreErrorKind::Invalid
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
        Err(e) if e.kind() == StoreErrorKind::Corrupt
    ));
    store.put_str("empty", "").await.unwrap();
    assert_eq!(store.get("empty").await.unwrap(), Some(Vec::new()));
    assert!(store.remove("poller").await.unwrap());
    assert!(!store.remove("poller").await.unwrap());
    assert_eq!(store.get("poller").await.unwrap(), None);
    assert_eq!(store.get("cdc").await.unwrap(), Some(vec![0, 255]));
    assert!(matches!(
        store.put("", vec![]).await,
        Err(e) if e.kind() == StoreErrorKind::Invalid
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
        Err(e) if e.kind() == StoreErrorKind::Invalid
    ));
    // An invalid topic cannot be built into metadata at all (`Topic::new` refuses it).
    assert!(syncbus_envelope::Topic::new("orders..x").is_err());
    drop(meta);
    assert!(outbox.pending(10).await.unwrap().is_empty());
}

fn env_like(stored: &Envelope<Bytes>, n: u64) -> Envelope<Bytes> {
    // Same metadata as env(n), with the stored id (ids are fresh per call).
    let fresh = env("out", n);
    let (mut meta, payload) = fresh.into_parts();
    meta.set_id(stored.id().clone());
    Envelope::new(meta, payload)
}

// ---------------------------------------------------------------------------------------
// Dedup keys, dead letters and saga instances.

use crate::{
    Claim, DeadLetterFilter, DeadLetterRecord, DeadLetterStore, DedupKey, DedupStore, ErrorKind,
    KeyState, Outcome, SagaInstance, SagaStatus, SagaStepRecord, SagaStore, StepAction, StoreError,
};
use syncbus_core::{Pattern, Timestamp};

/// Claim, finish (a done key stays done), leases and their renewal, time-to-live, purge, and
/// one winner among concurrent claims.
pub async fn dedup(store: &dyn DedupStore) {
    let minute = Duration::from_secs(60);
    let key = DedupKey::new("payment-1").unwrap();
    assert_eq!(store.state(&key).await.unwrap(), None);
    assert_eq!(store.claim(&key, minute).await.unwrap(), Claim::Acquired);
    assert_eq!(store.claim(&key, minute).await.unwrap(), Claim::InFlight);
    assert_eq!(store.state(&key).await.unwrap(), Some(KeyState::InFlight));
    store.finish(&key, Outcome::Done, minute).await.unwrap();
    assert_eq!(store.claim(&key, minute).await.unwrap(), Claim::Duplicate);
    assert_eq!(store.state(&key).await.unwrap(), Some(KeyState::Done));
    // A done key stays done: a late `Failed` (from a run whose lease had expired) does not
    // release it, and it is not in flight to renew.
    store.finish(&key, Outcome::Failed, minute).await.unwrap();
    assert_eq!(store.state(&key).await.unwrap(), Some(KeyState::Done));
    assert_eq!(store.claim(&key, minute).await.unwrap(), Claim::Duplicate);
    assert!(
        !store.renew(&key, minute).await.unwrap(),
        "a done key renewed"
    );

    // A failed run releases the key.
    let failed = DedupKey::new("payment-2").unwrap();
    assert_eq!(store.claim(&failed, minute).await.unwrap(), Claim::Acquired);
    store
        .finish(&failed, Outcome::Failed, minute)
        .await
        .unwrap();
    assert_eq!(store.state(&failed).await.unwrap(), Some(KeyState::Failed));
    assert_eq!(store.claim(&failed, minute).await.unwrap(), Claim::Acquired);

    // An expired lease (its holder died) frees the key; so does an expired Done.
    let short = Duration::from_millis(40);
    let leased = DedupKey::new("payment-3").unwrap();
    let remembered = DedupKey::new("payment-4").unwrap();
    assert_eq!(store.claim(&leased, short).await.unwrap(), Claim::Acquired);
    store
        .finish(&remembered, Outcome::Done, short)
        .await
        .unwrap();
    // A renewed lease outlives the one it was claimed with; an unknown key is not renewed.
    let renewed = DedupKey::new("payment-6").unwrap();
    assert!(
        !store.renew(&renewed, minute).await.unwrap(),
        "an unknown key renewed"
    );
    assert_eq!(store.claim(&renewed, short).await.unwrap(), Claim::Acquired);
    assert!(store.renew(&renewed, minute).await.unwrap());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.claim(&renewed, minute).await.unwrap(),
        Claim::InFlight,
        "the renewed lease expired with the first one"
    );
    assert!(
        !store.renew(&leased, minute).await.unwrap(),
        "an expired lease renewed"
    );
    assert_eq!(store.state(&remembered).await.unwrap(), None);
    assert!(store.purge_expired().await.unwrap() >= 2);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert_eq!(store.claim(&leased, minute).await.unwrap(), Claim::Acquired);
    assert_eq!(
        store.claim(&remembered, minute).await.unwrap(),
        Claim::Acquired
    );
    assert_eq!(
        store.claim(&key, minute).await.unwrap(),
        Claim::Duplicate,
        "not purged"
    );

    // Of concurrent claims of a free key exactly one wins.
    let contested = DedupKey::new("payment-5").unwrap();
    let claims = futures_join_all((0..8).map(|_| store.claim(&contested, minute)).collect()).await;
    let won = claims
        .iter()
        .filter(|c| matches!(c, Ok(Claim::Acquired)))
        .count();
    assert_eq!(won, 1, "{claims:?}");
}

async fn futures_join_all<T>(futs: Vec<StoreFutureAny<'_, T>>) -> Vec<T> {
    let mut handles = Vec::new();
    for f in futs {
        handles.push(f);
    }
    let mut out = Vec::new();
    // Poll them together: start all before awaiting any.
    let mut pinned: Vec<_> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in pinned.iter_mut() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        out.push(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out
}

type StoreFutureAny<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

fn letter(
    n: u64,
    topic: Option<&str>,
    subscription: &str,
    errors: &[&str],
    at_ms: u64,
) -> DeadLetterRecord {
    let envelope = env(topic.unwrap_or("x"), n);
    let envelope = match topic {
        Some(_) => envelope,
        None => {
            let (meta, payload) = envelope.into_parts();
            let bare =
                syncbus_core::Metadata::new(meta.event_type().clone()).with_id(meta.id().clone());
            Envelope::new(bare, payload)
        }
    };
    DeadLetterRecord {
        id: crate::DeadLetterId::from_u128(
            0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(n),
        ),
        envelope,
        subscription: subscription.to_owned(),
        handler: format!("handler-{n}"),
        error_kind: if n.is_multiple_of(2) {
            ErrorKind::Permanent
        } else {
            ErrorKind::Retryable
        },
        error_chain: errors.iter().map(|e| (*e).to_owned()).collect(),
        attempts: n as u32,
        first_failure: Timestamp::from_unix_millis(at_ms - 500),
        last_failure: Timestamp::from_unix_millis(at_ms),
    }
}

/// Put, get, delete, replace, and every filter with its order and limit.
pub async fn dead_letters(store: &dyn DeadLetterStore) {
    let t0 = 1_800_000_000_000;
    let records = [
        letter(
            1,
            Some("orders.eu.placed"),
            "billing",
            &["card declined", "gateway 402"],
            t0 + 30,
        ),
        letter(
            2,
            Some("orders.us.placed"),
            "billing",
            &["timeout"],
            t0 + 10,
        ),
        letter(3, Some("users.renamed"), "search", &["index down"], t0 + 20),
        letter(4, None, "search", &[], t0 + 40),
    ];
    for r in &records {
        store.put(r.clone()).await.unwrap();
    }
    let ids = |v: Vec<DeadLetterRecord>| v.iter().map(|r| r.attempts).collect::<Vec<_>>();
    let all = store.list(&DeadLetterFilter::new()).await.unwrap();
    assert_eq!(ids(all.clone()), [2, 3, 1, 4], "oldest last failure first");
    let one = &all[2];
    assert_eq!(one.envelope, records[0].envelope);
    assert_eq!(one.error_chain, records[0].error_chain);
    assert_eq!(one.error(), "card declined");
    assert_eq!(one.error_kind, ErrorKind::Retryable);
    assert_eq!(
        (one.first_failure, one.last_failure),
        (records[0].first_failure, records[0].last_failure)
    );
    assert_eq!(
        (one.subscription.as_str(), one.handler.as_str()),
        ("billing", "handler-1")
    );

    let f = |filter: DeadLetterFilter| async move { ids(store.list(&filter).await.unwrap()) };
    assert_eq!(
        f(DeadLetterFilter::new().topic(Pattern::new("orders.*.placed").unwrap())).await,
        [2, 1]
    );
    assert_eq!(
        f(DeadLetterFilter::new().topic(Pattern::new("orders.>").unwrap())).await,
        [2, 1]
    );
    assert_eq!(
        f(DeadLetterFilter::new().topic(Pattern::new(">").unwrap())).await,
        [2, 3, 1],
        "no topic never matches"
    );
    assert_eq!(
        f(DeadLetterFilter::new().topic(Pattern::new("orders").unwrap())).await,
        Vec::<u32>::new()
    );
    assert_eq!(
        f(DeadLetterFilter::new().event_type("test.event")).await,
        [2, 3, 1, 4]
    );
    assert_eq!(
        f(DeadLetterFilter::new().event_type("other")).await,
        Vec::<u32>::new()
    );
    assert_eq!(
        f(DeadLetterFilter::new().subscription("search")).await,
        [3, 4]
    );
    assert_eq!(
        f(DeadLetterFilter::new().error_contains("402")).await,
        [1],
        "any error in the chain"
    );
    assert_eq!(
        f(DeadLetterFilter::new().error_contains("e")).await,
        [2, 3, 1]
    );
    let (a, b) = (
        Timestamp::from_unix_millis(t0 + 20),
        Timestamp::from_unix_millis(t0 + 40),
    );
    assert_eq!(
        f(DeadLetterFilter::new().between(a, b)).await,
        [3, 1],
        "since inclusive, until exclusive"
    );
    assert_eq!(f(DeadLetterFilter::new().limit(2)).await, [2, 3]);
    assert_eq!(
        f(DeadLetterFilter::new()
            .subscription("billing")
            .error_contains("timeout")
            .limit(5))
        .await,
        [2]
    );

    let id = records[2].id.clone();
    assert_eq!(store.get(&id).await.unwrap().attempts, 3);
    let mut again = records[2].clone();
    again.attempts = 30;
    store.put(again).await.unwrap();
    assert_eq!(
        store.get(&id).await.unwrap().attempts,
        30,
        "same id replaces"
    );
    assert_eq!(store.list(&DeadLetterFilter::new()).await.unwrap().len(), 4);
    store.delete(&id).await.unwrap();
    // An unknown id is a typed error, not an empty success.
    let kind = |r: Result<_, StoreError>| r.err().map(|e| e.kind());
    assert_eq!(
        kind(store.delete(&id).await),
        Some(StoreErrorKind::NotFound)
    );
    assert_eq!(
        kind(store.get(&id).await.map(|_| ())),
        Some(StoreErrorKind::NotFound)
    );
}

fn saga(id: &str, started_ms: u64, status: SagaStatus) -> SagaInstance {
    SagaInstance {
        saga: "checkout".into(),
        id: id.into(),
        status,
        step: 0,
        data: serde_json::json!({ "order": id, "items": [1, 2] }),
        error: None,
        history: vec![SagaStepRecord {
            step: "reserve".into(),
            action: StepAction::Run,
            ok: true,
            error: None,
            attempts: 1,
            at: Timestamp::from_unix_millis(started_ms),
        }],
        started: Timestamp::from_unix_millis(started_ms),
        updated: Timestamp::from_unix_millis(started_ms),
        version: 1,
    }
}

/// Create once, optimistic saves, load, list by status in start order.
pub async fn sagas(store: &dyn SagaStore) {
    let t0 = 1_800_000_000_000;
    let first = saga("o-1", t0 + 20, SagaStatus::Running);
    assert!(store.create(&first).await.unwrap());
    let mut dup = first.clone();
    dup.step = 9;
    assert!(!store.create(&dup).await.unwrap(), "a redelivered start");
    assert_eq!(
        store.load("checkout", "o-1").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.load("checkout", "o-9").await.unwrap(), None);
    assert_eq!(store.load("other", "o-1").await.unwrap(), None);

    let mut next = first.clone();
    next.step = 1;
    next.status = SagaStatus::Compensating;
    next.error = Some("payment refused".into());
    next.version = 2;
    store.save(&next).await.unwrap();
    assert_eq!(
        store.load("checkout", "o-1").await.unwrap(),
        Some(next.clone())
    );
    let stale = store.save(&next).await.unwrap_err();
    assert_eq!(stale.kind(), StoreErrorKind::Conflict, "{stale}");
    let mut skipped = next.clone();
    skipped.version = 5;
    assert_eq!(
        store.save(&skipped).await.unwrap_err().kind(),
        StoreErrorKind::Conflict
    );
    assert_eq!(
        store.load("checkout", "o-1").await.unwrap(),
        Some(next.clone())
    );
    let missing = store
        .save(&saga("o-404", t0, SagaStatus::Running))
        .await
        .unwrap_err();
    assert_ne!(missing.kind(), StoreErrorKind::Conflict);

    store
        .create(&saga("o-2", t0 + 10, SagaStatus::Running))
        .await
        .unwrap();
    store
        .create(&saga("o-3", t0 + 30, SagaStatus::Completed))
        .await
        .unwrap();
    let ids = |v: Vec<SagaInstance>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list("checkout", None).await.unwrap()),
        ["o-2", "o-1", "o-3"]
    );
    assert_eq!(
        ids(store
            .list("checkout", Some(SagaStatus::Running))
            .await
            .unwrap()),
        ["o-2"]
    );
    assert_eq!(
        ids(store
            .list("checkout", Some(SagaStatus::Compensating))
            .await
            .unwrap()),
        ["o-1"]
    );
    assert!(store.list("refund", None).await.unwrap().is_empty());
}

/// A durable consumer "dies" with records unacked; opened again on a reopened store, it gets
/// back exactly those (delivery 2), then the rest (delivery 1), and can finish.
pub async fn durable_consumer_restart<F, Fut>(reopen: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::sync::Arc<dyn EventLog>>,
{
    use crate::{DurableConfig, DurableConsumer};
    {
        let log = reopen().await;
        log.append_batch((1..=10).map(|n| env("a", n)).collect())
            .await
            .unwrap();
        let c = DurableConsumer::open(log, "billing", DurableConfig::new())
            .await
            .unwrap();
        let batch = c.fetch(6, Duration::ZERO).await.unwrap();
        // Acks 1, 2, 3 and 5; 4 and 6 were handled by nobody when the process died.
        for d in batch
            .into_iter()
            .filter(|d| [1, 2, 3, 5].contains(&num(d.envelope())))
        {
            d.ack().await.unwrap();
        }
    }
    let log = reopen().await;
    let c = DurableConsumer::open(log.clone(), "billing", DurableConfig::new())
        .await
        .unwrap();
    let again = c.fetch(100, Duration::ZERO).await.unwrap();
    let nums: Vec<u64> = again.iter().map(|d| num(d.envelope())).collect();
    assert_eq!(nums, [4, 6, 7, 8, 9, 10]);
    let deliveries: Vec<u32> = again.iter().map(|d| d.deliveries()).collect();
    assert_eq!(deliveries, [2, 2, 1, 1, 1, 1]);
    c.ack_all(again).await.unwrap();
    assert_eq!(c.committed().await.unwrap(), log.head().await.unwrap());
    assert!(c.fetch(100, Duration::ZERO).await.unwrap().is_empty());
}
