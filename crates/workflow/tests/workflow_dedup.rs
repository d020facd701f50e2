//! Dedup: one handler run per key, even under concurrent deliveries.

mod support;

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use support::*;
use syncbus_core::{Bus, Envelope};
use syncbus_storage::{Claim, DedupKey, DedupStore, KeyState, MemoryDedupStore, Outcome};
use syncbus_workflow::{handler_fn, DedupConfig, Handler, HandlerError, Layer};

fn counting(runs: Arc<AtomicU32>, fail_first: bool) -> impl Handler<Job> {
    handler_fn(move |_e: Envelope<Job>, _ctx| {
        let runs = runs.clone();
        async move {
            let n = runs.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if fail_first && n == 0 {
                Err(HandlerError::permanent("first run fails"))
            } else {
                Ok(())
            }
        }
    })
}

/// Hands the same envelope to `h` from 8 tasks at once; their results.
async fn deliver_8_at_once(
    h: &Arc<impl Handler<Job>>,
    bus: &Bus,
    e: &Envelope<Job>,
) -> Vec<Result<(), HandlerError>> {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (h, e, bus) = (h.clone(), e.clone(), bus.clone());
            tokio::spawn(async move {
                let ctx = ctx_for(&bus, &e);
                h.call(e, ctx).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_deliveries_run_the_handler_once() {
    let bus = Bus::new();
    let runs = Arc::new(AtomicU32::new(0));
    let h = Arc::new(
        DedupConfig::memory(1000)
            .layer()
            .layer(counting(runs.clone(), false)),
    );
    let e = env(Job { n: 1 });
    for r in deliver_8_at_once(&h, &bus, &e).await {
        r.unwrap();
    }
    assert_eq!(runs.load(SeqCst), 1);
    // A later redelivery is a duplicate too.
    h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap();
    assert_eq!(runs.load(SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_releases_the_key_to_one_waiter() {
    let bus = Bus::new();
    let runs = Arc::new(AtomicU32::new(0));
    let h = Arc::new(
        DedupConfig::memory(1000)
            .layer()
            .layer(counting(runs.clone(), true)),
    );
    let e = env(Job { n: 1 });
    let errors = deliver_8_at_once(&h, &bus, &e)
        .await
        .iter()
        .filter(|r| r.is_err())
        .count();
    assert_eq!(errors, 1, "only the failed run reports the failure");
    assert_eq!(
        runs.load(SeqCst),
        2,
        "one failed run, then one successful run"
    );
}

#[tokio::test]
async fn a_derived_key_dedups_across_event_ids() {
    let bus = Bus::new();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let dedup = DedupConfig::memory(100)
        .key(|m| DedupKey::new(&format!("{}@{}", m.entity_id()?, m.version()?)).ok());
    let h = dedup
        .layer()
        .layer(handler_fn(move |_e: Envelope<Change>, _c| {
            r.fetch_add(1, SeqCst);
            async { Ok(()) }
        }));
    for _ in 0..3 {
        // Fresh event ids, same entity and version.
        let e = env(Change {
            entity: 7,
            version: 2,
        });
        h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap();
    }
    let e = env(Change {
        entity: 7,
        version: 3,
    });
    h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap();
    assert_eq!(runs.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_lets_another_delivery_take_over() {
    let store = MemoryDedupStore::new(100);
    let k = DedupKey::new("k").unwrap();
    assert_eq!(
        store.claim(&k, Duration::from_secs(5)).await.unwrap(),
        Claim::Acquired
    );
    assert_eq!(
        store.claim(&k, Duration::from_secs(5)).await.unwrap(),
        Claim::InFlight
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(
        store.claim(&k, Duration::from_secs(5)).await.unwrap(),
        Claim::Acquired
    );
    store
        .finish(&k, Outcome::Failed, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.state(&k).await.unwrap(), Some(KeyState::Failed));
    assert_eq!(
        store.claim(&k, Duration::from_secs(5)).await.unwrap(),
        Claim::Acquired
    );
}

#[tokio::test(start_paused = true)]
async fn the_store_is_bounded_by_count_and_purges_by_time() {
    let store = MemoryDedupStore::new(160);
    for i in 0..2000 {
        let k = DedupKey::new(&format!("k{i}")).unwrap();
        store.claim(&k, Duration::from_secs(5)).await.unwrap();
        store
            .finish(&k, Outcome::Done, Duration::from_secs(60))
            .await
            .unwrap();
    }
    assert!(store.len() <= 160, "{} keys held", store.len());
    // The newest key is still known.
    let newest = DedupKey::new("k1999").unwrap();
    assert_eq!(
        store.claim(&newest, Duration::from_secs(5)).await.unwrap(),
        Claim::Duplicate
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    let before = store.len();
    assert_eq!(store.purge_expired().await.unwrap() as usize, before);
    assert!(store.is_empty());
}

proptest! {
    /// Against a model: a key is a duplicate exactly when it was done less than `ttl` ago.
    #[test]
    fn dedup_window_matches_a_model(ops in prop::collection::vec((0u8..6, 0u64..3000), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let ttl = Duration::from_millis(1000);
            let store = MemoryDedupStore::new(100_000);
            let mut done_at: std::collections::HashMap<u8, tokio::time::Instant> = Default::default();
            for (key, advance) in ops {
                tokio::time::advance(Duration::from_millis(advance)).await;
                let k = DedupKey::new(&format!("key-{key}")).unwrap();
                let now = tokio::time::Instant::now();
                let expect_dup = done_at.get(&key).is_some_and(|t| now < *t + ttl);
                let claim = store.claim(&k, Duration::from_millis(10)).await.unwrap();
                if expect_dup {
                    prop_assert_eq!(claim, Claim::Duplicate);
                } else {
                    prop_assert_eq!(claim, Claim::Acquired);
                    store.finish(&k, Outcome::Done, ttl).await.unwrap();
                    done_at.insert(key, now);
                }
            }
            Ok(())
        })?;
    }
}

/// A claim left by a consumer that died holding it (claimed, never renewed, never finished)
/// stalls its key for one lease at most, and the stall shows: `dedup_waits`, the
/// `dedup_waiting_now` gauge. (Before: the default lease was 5 minutes and the wait left no
/// trace.)
#[tokio::test(start_paused = true)]
async fn a_claim_whose_holder_died_stalls_its_key_one_lease_at_most_and_shows() {
    let bus = Bus::new();
    let wf = syncbus_workflow::Workflow::new(&bus);
    let store = Arc::new(MemoryDedupStore::new(100));
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let sub = wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .name("billing")
        .dedup(DedupConfig::new(store.clone()))
        .handle(move |_e: Envelope<Job>, _ctx| {
            r.fetch_add(1, SeqCst);
            async { Ok(()) }
        })
        .unwrap();
    let e = env(Job { n: 1 });
    // The dead holder's claim, with the default lease.
    let key = DedupKey::new(&format!("billing:{}", e.meta().id())).unwrap();
    assert_eq!(
        store.claim(&key, Duration::from_secs(30)).await.unwrap(),
        Claim::Acquired
    );
    bus.publish_envelope(e).await.unwrap();
    tokio::time::sleep(Duration::from_secs(29)).await;
    let m = sub.metrics();
    assert_eq!(runs.load(SeqCst), 0, "ran while the claim was live");
    assert_eq!((m.dedup_waits, m.dedup_waiting_now), (1, 1), "{m:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs.load(SeqCst), 1, "still stalled after the lease");
    let m = sub.metrics();
    assert_eq!(
        (m.dedup_waits, m.dedup_waiting_now, m.succeeded),
        (1, 0, 1),
        "{m:?}"
    );
}

/// A handler slower than the lease keeps its claim: the layer renews it, so a second
/// delivery of the key waits and is acknowledged as a duplicate instead of running again
/// (without renewal it took over once the first lease lapsed, and the handler ran twice).
#[tokio::test(start_paused = true)]
async fn a_slow_handler_keeps_its_claim_by_renewing_it() {
    let bus = Bus::new();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let lease = Duration::from_secs(3);
    let h = Arc::new(
        DedupConfig::memory(100)
            .lease(lease)
            .layer()
            .layer(handler_fn(move |_e: Envelope<Job>, _ctx| {
                r.fetch_add(1, SeqCst);
                async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok(())
                }
            })),
    );
    let e = env(Job { n: 1 });
    let (h1, e1, b1) = (h.clone(), e.clone(), bus.clone());
    let first = tokio::spawn(async move { h1.call(e1.clone(), ctx_for(&b1, &e1)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (h2, e2, b2) = (h.clone(), e.clone(), bus.clone());
    let second = tokio::spawn(async move { h2.call(e2.clone(), ctx_for(&b2, &e2)).await });
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(runs.load(SeqCst), 1, "the second delivery ran too");
}

/// A handler whose transaction finds its inbox key done already (another delivery committed
/// the effect first) returns an error, however it classified it; the delivery is a duplicate:
/// acknowledged, counted as one, not retried, not dead-lettered.
#[tokio::test(start_paused = true)]
async fn a_handler_that_finds_its_inbox_key_done_is_a_duplicate() {
    use syncbus_workflow::{ResultExt, RetryPolicy};
    let bus = Bus::new();
    let wf = syncbus_workflow::Workflow::new(&bus);
    let runs = Arc::new(AtomicU32::new(0));
    let seen_key = Arc::new(std::sync::Mutex::new(None));
    let (r, k) = (runs.clone(), seen_key.clone());
    let sub = wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .name("billing")
        .retry(RetryPolicy::new().max_attempts(5))
        .dedup(DedupConfig::memory(100))
        .handle(move |_e: Envelope<Job>, ctx: syncbus_workflow::Context| {
            r.fetch_add(1, SeqCst);
            let inbox = ctx.inbox().cloned();
            *k.lock().unwrap() = inbox.as_ref().map(|i| i.key().to_string());
            async move {
                let inbox = inbox.expect("no inbox entry under a dedup layer");
                Err(inbox.duplicate_error()).retryable()
            }
        })
        .unwrap();
    let e = env(Job { n: 1 });
    let id = e.meta().id().clone();
    bus.publish_envelope(e).await.unwrap();
    assert!(until(10, || sub.metrics().duplicates == 1).await);
    let m = sub.metrics();
    assert_eq!(runs.load(SeqCst), 1, "retried");
    assert_eq!(
        (m.attempts, m.failed, m.dead_lettered, m.succeeded),
        (1, 0, 0, 0),
        "{m:?}"
    );
    assert_eq!(
        seen_key.lock().unwrap().as_deref(),
        Some(format!("billing:{id}").as_str()),
        "the inbox key is the scoped key the layer claimed"
    );
}

/// Without a dedup layer there is no inbox entry.
#[tokio::test]
async fn no_dedup_layer_no_inbox_entry() {
    let bus = Bus::new();
    let e = env(Job { n: 1 });
    let ctx = ctx_for(&bus, &e);
    assert!(ctx.inbox().is_none());
}
