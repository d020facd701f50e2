//! A handling future dropped part way (a shutdown deadline, a caller's timeout) leaves no
//! layer stuck: the dedup key is released, the entity is not busy forever, the half-open
//! probe slot is freed.

mod support;

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use syncbus_core::{Bus, Envelope};
use syncbus_workflow::{
    handler_fn, CircuitBreakerConfig, CircuitState, DedupConfig, Handler, HandlerError, Layer,
    ResequenceConfig, StartAt, WhenOpen,
};

/// Hangs on its first call, succeeds after.
fn hangs_once<P: Send + Sync + 'static>(calls: Arc<AtomicU32>) -> impl Handler<P> {
    handler_fn(move |_e: Envelope<P>, _c| {
        let n = calls.fetch_add(1, SeqCst);
        async move {
            if n == 0 {
                std::future::pending::<()>().await;
            }
            Ok::<(), HandlerError>(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_dropped_delivery_releases_its_dedup_key() {
    let bus = Bus::new();
    let calls = Arc::new(AtomicU32::new(0));
    let h = DedupConfig::memory(100)
        .layer()
        .layer(hangs_once::<Job>(calls.clone()));
    let e = env(Job { n: 1 });
    let cut =
        tokio::time::timeout(Duration::from_secs(1), h.call(e.clone(), ctx_for(&bus, &e))).await;
    assert!(cut.is_err());
    tokio::task::yield_now().await; // the release runs on a task
                                    // Redelivered at once, not after the 5-minute lease.
    let start = tokio::time::Instant::now();
    h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap();
    assert!(tokio::time::Instant::now() - start < Duration::from_secs(1));
    assert_eq!(calls.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_delivery_does_not_leave_its_entity_busy() {
    let bus = Bus::new();
    let calls = Arc::new(AtomicU32::new(0));
    let h = ResequenceConfig::new()
        .start_at(StartAt::Version(1))
        .layer()
        .layer(hangs_once::<Change>(calls.clone()));
    let e = env(Change {
        entity: 1,
        version: 1,
    });
    let cut =
        tokio::time::timeout(Duration::from_secs(1), h.call(e.clone(), ctx_for(&bus, &e))).await;
    assert!(cut.is_err());
    // Version 1 again (redelivered) runs, then 2.
    h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap();
    let e2 = env(Change {
        entity: 1,
        version: 2,
    });
    h.call(e2.clone(), ctx_for(&bus, &e2)).await.unwrap();
    assert_eq!(calls.load(SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_the_half_open_slot() {
    let bus = Bus::new();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let h = CircuitBreakerConfig::new()
        .min_calls(1)
        .open_for(Duration::from_secs(5))
        .when_open(WhenOpen::DeadLetter)
        .layer()
        .layer(handler_fn(move |_e: Envelope<Job>, _c| {
            let n = c.fetch_add(1, SeqCst);
            async move {
                match n {
                    0 => Err(HandlerError::retryable("down")),
                    1 => std::future::pending().await,
                    _ => Ok(()),
                }
            }
        }));
    let e = env(Job { n: 1 });
    h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap_err();
    assert_eq!(h.state(), CircuitState::Open);
    tokio::time::advance(Duration::from_secs(5)).await;
    let cut =
        tokio::time::timeout(Duration::from_secs(1), h.call(e.clone(), ctx_for(&bus, &e))).await;
    assert!(cut.is_err(), "the probe hung and was dropped");
    h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap();
    assert_eq!(h.state(), CircuitState::Closed);
}
