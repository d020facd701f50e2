//! What a poller exports through the `metrics` facade: the poll rate by outcome, items,
//! last success, lag and paused, read back from a debugging recorder.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use syncbus_core::{Bus, Envelope};
use syncbus_envelope::{Bytes, EventType, Metadata};
use syncbus_poll::{Cursor, Page, PollConfig, PollError, PollSource, Poller, RawEvent};
use syncbus_storage::MemoryStore;
use syncbus_workflow::Workflow;

/// Poll 1: three items; poll 2: throttled; then nothing new.
struct Scripted(AtomicU32);

impl PollSource for Scripted {
    async fn poll(&self, _cursor: Option<&Cursor>) -> Result<Page, PollError> {
        match self.0.fetch_add(1, Relaxed) {
            0 => {
                let items = (0..3)
                    .map(|i| {
                        let meta = Metadata::new(EventType::from_static("m.item"));
                        Envelope::new(meta, Bytes::from(format!("{i}")))
                    })
                    .collect();
                Ok(Page::new(items).next(Cursor::from("3")))
            }
            1 => Err(PollError::Throttled {
                status: 429,
                retry_after: Some(Duration::from_millis(10)),
            }),
            _ => Ok(Page::new(Vec::new())),
        }
    }
}

#[test]
fn polls_items_last_success_lag_and_paused_reach_the_metrics_facade() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cfg = PollConfig::new()
                .interval(Duration::from_millis(10))
                .idle_max(Duration::from_millis(10))
                .error_initial(Duration::from_millis(10));
            let poller = Poller::open("m", Scripted(AtomicU32::new(0)), MemoryStore::new(), cfg)
                .await
                .unwrap();
            let bus = Bus::new();
            let served = Workflow::new(&bus)
                .serve(poller.clone())
                .fetch_wait(Duration::from_millis(5))
                .handle(|_env: Envelope<RawEvent>, _ctx| async { Ok(()) })
                .unwrap();
            while poller.metrics().polls < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            poller.pause();
            served.stop().await;
        });
    });
    let mut counters = std::collections::HashMap::new();
    let mut gauges = std::collections::HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        assert!(
            key.labels()
                .any(|l| l.key() == "poller" && l.value() == "m"),
            "{key:?}"
        );
        let outcome = key
            .labels()
            .find(|l| l.key() == "outcome")
            .map(|l| l.value().to_owned());
        match value {
            DebugValue::Counter(n) => {
                counters.insert((key.name().to_owned(), outcome), n);
            }
            DebugValue::Gauge(g) => {
                gauges.insert(key.name().to_owned(), g.into_inner());
            }
            DebugValue::Histogram(_) => {}
        }
    }
    let polls =
        |o: &str| counters.get(&("syncbus_poll_polls_total".to_owned(), Some(o.to_owned())));
    assert_eq!(polls("items"), Some(&1));
    assert_eq!(polls("throttled"), Some(&1));
    assert!(polls("empty").is_some_and(|n| *n >= 2), "{counters:?}");
    assert_eq!(
        counters.get(&("syncbus_poll_items_total".to_owned(), None)),
        Some(&3)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = gauges["syncbus_poll_last_success_timestamp_seconds"];
    assert!(last > now - 60.0 && last <= now, "{last}");
    assert!(gauges["syncbus_poll_lag_seconds"] < 1.0, "{gauges:?}");
    assert_eq!(gauges["syncbus_poll_paused"], 1.0);
}
