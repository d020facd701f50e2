//! The resequencer: per entity, versions reach the handler in order.

mod support;

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use support::*;
use syncbus_core::{Bus, Envelope};
use syncbus_storage::{DeadLetterFilter, DeadLetterStore, MemoryDeadLetterStore};
use syncbus_workflow::{
    handler_fn, Handler, HandlerError, Layer, OnExpiry, ResequenceConfig, StartAt,
};

fn recording(log: Log<(u64, u64)>) -> impl Handler<Change> {
    handler_fn(move |e: Envelope<Change>, _c| {
        let log = log.clone();
        async move {
            log.push((e.payload().entity, e.payload().version));
            Ok::<(), HandlerError>(())
        }
    })
}

async fn deliver(
    h: &impl Handler<Change>,
    bus: &Bus,
    entity: u64,
    version: u64,
) -> Result<(), HandlerError> {
    let e = env(Change { entity, version });
    let ctx = ctx_for(bus, &e);
    h.call(e, ctx).await
}

proptest! {
    /// Any arrival order of versions 1..=N, with duplicates, within the hold bound: the
    /// handler sees 1..=N in order, each once.
    #[test]
    fn any_arrival_order_is_applied_in_order(
        order in (1u64..40).prop_flat_map(|n| Just((1..=n).collect::<Vec<u64>>()).prop_shuffle()),
        dups in prop::collection::vec(0usize..40, 0..10),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let bus = Bus::new();
            let log = Log::default();
            let h = ResequenceConfig::new().start_at(StartAt::Version(1)).hold_for(Duration::from_secs(60)).layer().layer(recording(log.clone()));
            let n = order.len() as u64;
            let mut arrivals = order.clone();
            for d in &dups {
                let v = order[d % order.len()];
                let at = (d * 7) % (arrivals.len() + 1);
                arrivals.insert(at, v);
            }
            for v in arrivals {
                deliver(&h, &bus, 1, v).await.unwrap();
            }
            let seen: Vec<u64> = log.get().into_iter().map(|(_, v)| v).collect();
            prop_assert_eq!(seen, (1..=n).collect::<Vec<_>>());
            prop_assert_eq!(h.held(), 0);
            Ok(())
        })?;
    }
}

#[tokio::test(start_paused = true)]
async fn entities_are_ordered_independently_and_first_seen_starts_anywhere() {
    let bus = Bus::new();
    let log = Log::default();
    let h = ResequenceConfig::new()
        .layer()
        .layer(recording(log.clone()));
    deliver(&h, &bus, 1, 5).await.unwrap(); // first seen: applied
    deliver(&h, &bus, 2, 1).await.unwrap();
    deliver(&h, &bus, 1, 4).await.unwrap(); // stale
    deliver(&h, &bus, 1, 5).await.unwrap(); // duplicate
    deliver(&h, &bus, 2, 3).await.unwrap(); // held
    deliver(&h, &bus, 1, 6).await.unwrap();
    deliver(&h, &bus, 2, 2).await.unwrap(); // fills the gap: 2 then 3
    assert_eq!(log.get(), vec![(1, 5), (2, 1), (1, 6), (2, 2), (2, 3)]);
}

#[tokio::test(start_paused = true)]
async fn an_expired_hold_releases_by_default() {
    let bus = Bus::new();
    let log = Log::default();
    let h = ResequenceConfig::new()
        .hold_for(Duration::from_secs(5))
        .layer()
        .layer(recording(log.clone()));
    deliver(&h, &bus, 1, 1).await.unwrap();
    deliver(&h, &bus, 1, 3).await.unwrap();
    deliver(&h, &bus, 1, 4).await.unwrap();
    assert_eq!(h.held(), 2);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(log.len(), 1, "still holding before the deadline");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(log.get(), vec![(1, 1), (1, 3), (1, 4)]);
    // The missing version, late, is stale now.
    deliver(&h, &bus, 1, 2).await.unwrap();
    deliver(&h, &bus, 1, 5).await.unwrap();
    assert_eq!(log.get(), vec![(1, 1), (1, 3), (1, 4), (1, 5)]);
}

#[tokio::test(start_paused = true)]
async fn an_expired_hold_dead_letters_when_told() {
    let bus = Bus::new();
    let log = Log::default();
    let dl = Arc::new(MemoryDeadLetterStore::new(100));
    let h = ResequenceConfig::new()
        .hold_for(Duration::from_secs(5))
        .on_expiry(OnExpiry::DeadLetter)
        .dead_letters(dl.clone())
        .layer()
        .layer(recording(log.clone()));
    deliver(&h, &bus, 1, 1).await.unwrap();
    deliver(&h, &bus, 1, 3).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(log.get(), vec![(1, 1)]);
    let dead = dl.list(&DeadLetterFilter::new()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].envelope.meta().version(), Some(3));
    assert!(
        dead[0].error().contains("missing earlier version"),
        "{}",
        dead[0].error()
    );
    // Strict: the entity still waits for 2; when it comes, 2 applies, and 3 redelivered too.
    deliver(&h, &bus, 1, 2).await.unwrap();
    deliver(&h, &bus, 1, 3).await.unwrap();
    assert_eq!(log.get(), vec![(1, 1), (1, 2), (1, 3)]);
}

#[tokio::test(start_paused = true)]
async fn too_many_held_follow_the_policy() {
    let bus = Bus::new();
    let log = Log::default();
    let strict = ResequenceConfig::new()
        .max_held(2)
        .on_expiry(OnExpiry::DeadLetter)
        .layer()
        .layer(recording(log.clone()));
    deliver(&strict, &bus, 1, 1).await.unwrap();
    deliver(&strict, &bus, 1, 3).await.unwrap();
    deliver(&strict, &bus, 1, 4).await.unwrap();
    let err = deliver(&strict, &bus, 1, 5).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(strict.held(), 2);

    let log = Log::default();
    let lenient = ResequenceConfig::new()
        .max_held(2)
        .layer()
        .layer(recording(log.clone()));
    for v in [1, 3, 4, 5] {
        deliver(&lenient, &bus, 1, v).await.unwrap();
    }
    assert_eq!(log.get(), vec![(1, 1), (1, 3), (1, 4), (1, 5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_of_one_entity_apply_in_order() {
    let bus = Bus::new();
    let log = Log::default();
    let l = log.clone();
    let h = Arc::new(
        ResequenceConfig::new()
            .start_at(StartAt::Version(1))
            .layer()
            .layer(handler_fn(move |e: Envelope<Change>, _c| {
                let l = l.clone();
                async move {
                    tokio::task::yield_now().await;
                    l.push((e.payload().entity, e.payload().version));
                    Ok::<(), HandlerError>(())
                }
            })),
    );
    let mut tasks = Vec::new();
    for v in (1..=200u64).rev() {
        let (h, bus) = (h.clone(), bus.clone());
        tasks.push(tokio::spawn(async move { deliver(&*h, &bus, 9, v).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let seen: Vec<u64> = log.get().into_iter().map(|(_, v)| v).collect();
    assert_eq!(seen, (1..=200).collect::<Vec<_>>());
}

#[tokio::test]
async fn events_without_entity_or_version_pass_through() {
    let bus = Bus::new();
    let log: Log<u64> = Log::default();
    let l = log.clone();
    let h = ResequenceConfig::new()
        .layer()
        .layer(handler_fn(move |e: Envelope<Job>, _c| {
            l.push(e.payload().n);
            async { Ok::<(), HandlerError>(()) }
        }));
    for n in [3, 1, 2] {
        let e = env(Job { n });
        h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap();
    }
    assert_eq!(log.get(), vec![3, 1, 2]);
}

/// Waits (real time, bounded) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while !f() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// v3 expires to dead letters, v2 arrives, v3 is redriven: the entity moves past 3, so v4
/// and v5 flow at once, and a late copy of v3 is stale (before: the entity still waited for
/// 3, held and dead-lettered v4 on, and applied the late copy again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_version_moves_the_entity_on() {
    use syncbus_workflow::{Redrive, Workflow};
    let bus = Bus::new();
    let dl = Arc::new(MemoryDeadLetterStore::new(100));
    let wf = Workflow::builder(&bus).dead_letters(dl.clone()).build();
    let log = Log::default();
    let sub = wf
        .subscribe::<Change>("test.change")
        .unwrap()
        .name("changes")
        .no_retry()
        .resequence(
            ResequenceConfig::new()
                .hold_for(Duration::from_millis(100))
                .on_expiry(OnExpiry::DeadLetter),
        )
        .handle_with(recording(log.clone()))
        .unwrap();
    let publish = |version| bus.publish(Change { entity: 1, version });
    publish(1).await.unwrap();
    publish(3).await.unwrap();
    until("v3 dead-lettered", || dl.len() == 1).await;
    publish(2).await.unwrap();
    until("v2 applied", || log.get().len() == 2).await;
    let report = wf
        .redrive(Redrive::new(
            DeadLetterFilter::new().subscription("changes"),
        ))
        .await
        .unwrap();
    assert_eq!((report.matched, report.succeeded), (1, 1));
    publish(4).await.unwrap();
    publish(5).await.unwrap();
    // Well inside the hold: were 4 and 5 held, they would not be applied yet.
    until("v4 and v5 applied", || log.get().len() == 5).await;
    publish(3).await.unwrap(); // a late copy of 3
    publish(6).await.unwrap();
    until("v6 applied", || log.get().len() >= 6).await;
    assert_eq!(
        log.get(),
        vec![(1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6)]
    );
    assert!(
        dl.is_empty(),
        "{:?}",
        dl.list(&DeadLetterFilter::new()).await
    );
    assert_eq!(sub.metrics().stale, 1);
}
