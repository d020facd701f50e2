//! Across crates: a workflow subscription whose dead letters and dedup keys live in an SQLite
//! file. A failure recorded before a restart is redriven after it, into the new process's
//! subscription of the same name, and succeeds; an event handled before the restart is still
//! a duplicate after it.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncbus::store::DeadLetterFilter;
use syncbus::store::SqliteStore;
use syncbus::{Bus, DedupConfig, Envelope, Event, HandlerError, Redrive, Workflow};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Invoice {
    order: u64,
}

impl Event for Invoice {
    const TYPE: &'static str = "billing.invoice";
}

/// One "process": a bus, a workflow on the store, the `invoices` subscription.
async fn start(
    path: &std::path::Path,
    healthy: bool,
    runs: Arc<AtomicU32>,
) -> (Bus, Workflow, syncbus::WorkflowSubscription) {
    let store = SqliteStore::open(path).await.unwrap();
    let bus = Bus::new();
    let wf = Workflow::builder(&bus)
        .dead_letters(Arc::new(store.dead_letters()))
        .build();
    let sub = wf
        .subscribe::<Invoice>("billing.invoice")
        .unwrap()
        .name("invoices")
        .dedup(DedupConfig::new(Arc::new(store.dedup())))
        .no_retry()
        .handle(move |e: Envelope<Invoice>, _ctx| {
            runs.fetch_add(1, SeqCst);
            async move {
                if !healthy && e.payload().order == 2 {
                    return Err(HandlerError::retryable("mail server down"));
                }
                Ok(())
            }
        })
        .unwrap();
    (bus, wf, sub)
}

async fn settle(sub: &syncbus::WorkflowSubscription, done: u64) {
    for _ in 0..1000 {
        let m = sub.metrics();
        if m.succeeded + m.failed + m.duplicates >= done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("deliveries did not settle: {:?}", sub.metrics());
}

#[tokio::test]
async fn dead_letters_and_dedup_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let runs = Arc::new(AtomicU32::new(0));

    // Before the restart: invoice 1 succeeds, invoice 2 fails and is dead-lettered.
    let first = Envelope::from_event(Invoice { order: 1 });
    let (bus, _wf, sub) = start(&path, false, runs.clone()).await;
    bus.publish_envelope(first.clone()).await.unwrap();
    bus.publish(Invoice { order: 2 }).await.unwrap();
    settle(&sub, 2).await;
    assert_eq!(sub.metrics().dead_lettered, 1);
    bus.shutdown(Duration::from_secs(5)).await;
    drop(sub);

    // After: the new process sees the dead letter, redelivery of invoice 1 is a duplicate,
    // and the redrive of invoice 2 succeeds.
    let (bus, wf, sub) = start(&path, true, runs.clone()).await;
    let dead = wf
        .dead_letters()
        .list(&DeadLetterFilter::new())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].subscription, "invoices");
    assert_eq!(dead[0].error(), "mail server down");

    bus.publish_envelope(first).await.unwrap();
    settle(&sub, 1).await;
    assert_eq!(sub.metrics().duplicates, 1, "handled before the restart");

    let report = wf
        .redrive(Redrive::new(DeadLetterFilter::new()))
        .await
        .unwrap();
    assert_eq!((report.matched, report.succeeded, report.failed), (1, 1, 0));
    assert!(wf
        .dead_letters()
        .list(&DeadLetterFilter::new())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(runs.load(SeqCst), 3, "1 and 2 before, the redriven 2 after");
    bus.shutdown(Duration::from_secs(5)).await;
}
