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
    assert_eq!(seen.len(), 16);
}
