//! Counters read from the bus match what happened, and reach the `metrics` facade.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use syncbus_core::{Bus, Event, Overflow};

#[derive(Clone, Debug)]
struct Ping(u64);

impl Event for Ping {
    const TYPE: &'static str = "ping";
}

/// Records the last value of every counter and gauge by name.
#[derive(Default)]
struct Capture(Arc<Mutex<HashMap<String, f64>>>);

struct Cell(String, Arc<Mutex<HashMap<String, f64>>>);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value as f64;
    }
    fn absolute(&self, value: u64) {
        self.1.lock().unwrap().insert(self.0.clone(), value as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value;
    }
    fn decrement(&self, value: f64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() -= value;
    }
    fn set(&self, value: f64) {
        self.1.lock().unwrap().insert(self.0.clone(), value);
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Cell(key.name().to_string(), self.0.clone())))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Cell(key.name().to_string(), self.0.clone())))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn bus_metrics_count_and_export() {
    let bus = Bus::new();
    let _ok = bus
        .subscribe::<Ping>("ping")
        .unwrap()
        .inline(|_| {})
        .unwrap();
    let _bad = bus
        .subscribe::<Ping>("ping")
        .unwrap()
        .inline(|p| -> Result<(), &'static str> {
            if p.payload().0 % 2 == 0 {
                Err("even")
            } else {
                Ok(())
            }
        })
        .unwrap();
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = gate.clone();
    let lagging = bus
        .subscribe::<Ping>("ping")
        .unwrap()
        .capacity(1)
        .overflow(Overflow::DropOldest)
        .queued(move |p| {
            if p.payload().0 == 0 {
                g.wait();
            }
        })
        .unwrap();
    bus.blocking_publish(Ping(0)).unwrap();
    while lagging.metrics().pending > 0 {
        std::thread::yield_now();
    }
    for i in 1..10 {
        bus.blocking_publish(Ping(i)).unwrap();
    }
    bus.blocking_publish_to("nobody", Ping(99)).unwrap();
    let m = bus.metrics();
    assert_eq!(m.published, 11);
    assert_eq!(m.unrouted, 1);
    assert_eq!(m.failed, 5, "pings 0, 2, 4, 6, 8 failed");
    assert_eq!(
        m.dropped, 8,
        "capacity 1: pings 1..=8 were pushed out by the next"
    );
    assert_eq!(m.lagging, 1);
    assert_eq!(m.subscriptions, 3);
    assert_eq!(m.pending, 1);

    let capture = Capture::default();
    let values = capture.0.clone();
    metrics::with_local_recorder(&capture, || m.record());
    let v = values.lock().unwrap();
    assert_eq!(v["syncbus_published_total"], 11.0);
    assert_eq!(v["syncbus_unrouted_total"], 1.0);
    assert_eq!(v["syncbus_failed_total"], 5.0);
    assert_eq!(v["syncbus_dropped_total"], 8.0);
    assert_eq!(v["syncbus_lagging_subscriptions"], 1.0);
    assert_eq!(v["syncbus_subscriptions"], 3.0);
    assert_eq!(v["syncbus_delivered_total"], m.delivered as f64);
    assert_eq!(
        v["syncbus_terminated_total"], 0.0,
        "exported even when zero"
    );
    drop(v);
    gate.wait();
}
