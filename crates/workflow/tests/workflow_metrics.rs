//! Workflow counters reach the `metrics` facade, labelled by subscription.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use syncbus_workflow::WorkflowMetrics;

#[derive(Default)]
struct Capture(Arc<Mutex<HashMap<String, u64>>>);

struct Cell(String, Arc<Mutex<HashMap<String, u64>>>);

impl CounterFn for Cell {
    fn increment(&self, v: u64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += v;
    }
    fn absolute(&self, v: u64) {
        self.1.lock().unwrap().insert(self.0.clone(), v);
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let label: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), label.join(","));
        Counter::from_arc(Arc::new(Cell(name, self.0.clone())))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn metrics_are_exported_with_the_subscription_label() {
    let capture = Capture::default();
    let seen = capture.0.clone();
    let mut m = WorkflowMetrics::default();
    m.succeeded = 5;
    m.dead_lettered = 2;
    m.duplicates = 7;
    metrics::with_local_recorder(&capture, || m.record("billing"));
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen["syncbus_workflow_succeeded_total{subscription=billing}"],
        5
    );
    assert_eq!(
        seen["syncbus_workflow_dead_lettered_total{subscription=billing}"],
        2
    );
    assert_eq!(
        seen["syncbus_workflow_duplicates_total{subscription=billing}"],
        7
    );
    assert_eq!(
        seen["syncbus_workflow_failed_total{subscription=billing}"],
        0
    );
    assert_eq!(seen.len(), 17, "{:?}", seen.keys());
}

/// Each outcome is counted once: held and stale deliveries are not successes, a released
/// one is, once; a duplicate is a duplicate only; `no_retry` still counts attempts; the
/// held-now gauge goes up and back down (before: succeeded was 6 here, attempts 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outcome_is_counted_once() {
    use serde::{Deserialize, Serialize};
    use syncbus_core::{Bus, EntityId, Envelope, Event};
    use syncbus_workflow::{DedupConfig, ResequenceConfig, Workflow};

    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Moved {
        v: u64,
    }
    impl Event for Moved {
        const TYPE: &'static str = "moved";
        fn entity_id(&self) -> Option<EntityId> {
            Some(EntityId::from(1u64))
        }
        fn version(&self) -> Option<u64> {
            Some(self.v)
        }
    }
    async fn until(mut f: impl FnMut() -> bool) {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while !f() {
            assert!(std::time::Instant::now() < end, "timed out");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let sub = wf
        .subscribe::<Moved>("moved")
        .unwrap()
        .no_retry()
        .dedup(DedupConfig::memory(100))
        .resequence(ResequenceConfig::new())
        .handle(|_e: Envelope<Moved>, _c| async { Ok(()) })
        .unwrap();
    bus.publish(Moved { v: 1 }).await.unwrap();
    bus.publish(Moved { v: 3 }).await.unwrap(); // held
    until(|| sub.metrics().held == 1).await;
    assert_eq!(sub.metrics().held_now, 1);
    bus.publish(Moved { v: 2 }).await.unwrap(); // applied, releases 3
    bus.publish(Moved { v: 2 }).await.unwrap(); // stale
    let again = Envelope::from_event(Moved { v: 4 });
    bus.publish_envelope(again.clone()).await.unwrap();
    bus.publish_envelope(again).await.unwrap(); // the same event id: a duplicate
    bus.shutdown(std::time::Duration::from_secs(2)).await;
    let m = sub.metrics();
    assert_eq!(
        (m.succeeded, m.failed, m.stale, m.duplicates),
        (4, 0, 1, 1),
        "{m:?}"
    );
    assert_eq!((m.held, m.released, m.held_now), (1, 1, 0), "{m:?}");
    assert_eq!(m.attempts, 4, "{m:?}");
}
