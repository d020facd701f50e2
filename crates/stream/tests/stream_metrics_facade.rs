//! Batch runners and jobs report to the `metrics` facade: counts by runner and job, and a
//! job's last and next run as gauges. One test: a global recorder is set once per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use syncbus_core::{Bus, ConsumerConfig, Envelope, Event};
use syncbus_storage::MemoryDeadLetterStore;
use syncbus_stream::{BatchConfig, BatchRunner, Job, Schedule, TestClock};
use syncbus_workflow::{HandlerError, RetryPolicy};

type Seen = Arc<Mutex<HashMap<String, f64>>>;

#[derive(Default)]
struct Capture(Seen);

struct Cell(String, Seen);

impl CounterFn for Cell {
    fn increment(&self, v: u64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += v as f64;
    }
    fn absolute(&self, v: u64) {
        self.1.lock().unwrap().insert(self.0.clone(), v as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, v: f64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += v;
    }
    fn decrement(&self, v: f64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() -= v;
    }
    fn set(&self, v: f64) {
        self.1.lock().unwrap().insert(self.0.clone(), v);
    }
}

fn name(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Cell(name(key), self.0.clone())))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Cell(name(key), self.0.clone())))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[derive(Clone, Debug)]
struct Sale(u32);

impl Event for Sale {
    const TYPE: &'static str = "shop.sale";
    const TOPIC: &'static str = "shop.sales";
}

#[tokio::test(start_paused = true)]
async fn batch_runners_and_jobs_report_to_the_metrics_facade() {
    let capture = Capture::default();
    let seen = capture.0.clone();
    metrics::set_global_recorder(capture).expect("the only recorder of this test binary");

    // a batch of 4 with a poison: split twice, one dead letter, 3 acked
    let bus = Bus::new();
    let sales = bus
        .consumer::<Sale>("shop.sales", ConsumerConfig::default())
        .unwrap();
    let config = BatchConfig::new("sales")
        .max_size(4)
        .retry(RetryPolicy::never())
        .isolate(MemoryDeadLetterStore::new(10));
    let runner = BatchRunner::spawn(sales, config, |batch: Vec<Envelope<Sale>>| {
        let bad = batch.iter().any(|e| e.payload().0 == 2);
        async move {
            if bad {
                Err(HandlerError::permanent("bad"))
            } else {
                Ok(())
            }
        }
    })
    .unwrap();
    for i in 0..4 {
        bus.publish(Sale(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    runner.stop().await.unwrap();

    // a job that runs twice
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 30, 0).unwrap();
    let job = Job::new("hourly", Schedule::cron("0 * * * *").unwrap())
        .unwrap()
        .clock(TestClock::new(start))
        .spawn(|_| async { Ok::<(), std::io::Error>(()) });
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await; // 01:00 and 02:00
    let next = {
        let s = seen.lock().unwrap();
        s["syncbus_job_next_run_seconds{job=hourly}"]
    };
    assert_eq!(
        next,
        Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0)
            .unwrap()
            .timestamp() as f64
    );
    job.stop().await.unwrap();

    let s = seen.lock().unwrap();
    let get = |k: &str| {
        s.get(k)
            .copied()
            .unwrap_or_else(|| panic!("no {k} in {:?}", s.keys()))
    };
    assert_eq!(
        get("syncbus_batch_batches_total{batch=sales,trigger=size}"),
        1.0
    );
    assert_eq!(get("syncbus_batch_events_total{batch=sales}"), 4.0);
    assert_eq!(get("syncbus_batch_acked_total{batch=sales}"), 3.0);
    assert_eq!(get("syncbus_batch_dead_lettered_total{batch=sales}"), 1.0);
    assert_eq!(get("syncbus_batch_splits_total{batch=sales}"), 2.0);
    assert_eq!(get("syncbus_batch_failed_attempts_total{batch=sales}"), 3.0);
    assert_eq!(get("syncbus_job_runs_total{job=hourly,outcome=ok}"), 2.0);
    assert_eq!(
        get("syncbus_job_last_run_seconds{job=hourly}"),
        Utc.with_ymd_and_hms(2026, 1, 1, 2, 0, 0)
            .unwrap()
            .timestamp() as f64
    );
    assert!(
        get("syncbus_job_next_run_seconds{job=hourly}").is_nan(),
        "stopped: no next run"
    );
}
