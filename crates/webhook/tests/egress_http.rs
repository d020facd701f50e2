//! Egress against a local axum receiver that fails in scripted ways: the attempt times
//! follow the schedule, signatures verify on the receiver, 410 disables, 429 honours
//! Retry-After, a 3xx is a failure, disable and replay survive a restart, FIFO keeps order.

mod support;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use parking_lot::Mutex;
use support::*;
use syncbus_core::{
    Bus, Bytes, EntityId, Envelope, EventType, Metadata, Pattern, Timestamp, Topic,
};
use syncbus_storage::{DeadLetterFilter, DeadLetterStore, EventLog};
use syncbus_store::SqliteStore;
use syncbus_webhook::{Egress, Endpoint, EndpointConfig, Verifier};
use syncbus_workflow::Workflow;

#[derive(Clone, Debug)]
struct Hit {
    at: Instant,
    id: String,
    verified: bool,
    body: serde_json::Value,
}

/// A scripted answer: status, `Retry-After`, and how long to wait before answering.
type Answer = (u16, Option<&'static str>, Duration);

#[derive(Clone, Default)]
struct Receiver {
    /// Answers to give, in order; then 200.
    script: Arc<Mutex<VecDeque<Answer>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

async fn receiver(r: Receiver) -> String {
    let verifier = Verifier::new([secret()]);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (r, verifier) = (r.clone(), verifier.clone());
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let verified = verifier
                    .verify(
                        &h("webhook-id"),
                        &h("webhook-timestamp"),
                        &h("webhook-signature"),
                        &body,
                    )
                    .is_ok();
                r.hits.lock().push(Hit {
                    at: Instant::now(),
                    id: h("webhook-id"),
                    verified,
                    body: serde_json::from_slice(&body).unwrap_or_default(),
                });
                let next = r.script.lock().pop_front();
                let (status, retry_after, delay) = next.unwrap_or((200, None, Duration::ZERO));
                tokio::time::sleep(delay).await;
                let mut resp =
                    (StatusCode::from_u16(status).unwrap(), "scripted answer").into_response();
                if let Some(ra) = retry_after {
                    resp.headers_mut()
                        .insert("retry-after", ra.parse().unwrap());
                }
                if status / 100 == 3 {
                    resp.headers_mut()
                        .insert("location", "/elsewhere".parse().unwrap());
                }
                resp
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn event(n: u64, entity: Option<&str>) -> Envelope<Bytes> {
    let meta = Metadata::new(EventType::from_static("shop.order.placed"))
        .with_topic(Topic::from_static("orders.placed"))
        .with_entity_id(entity.map(|e| EntityId::new(e).unwrap()));
    Envelope::new(meta, Bytes::from(format!("{{\"n\":{n}}}")))
}

async fn setup(dir: &std::path::Path) -> (SqliteStore, Workflow, Egress) {
    let store = SqliteStore::open(dir.join("out.db")).await.unwrap();
    let bus = Bus::new();
    let wf = Workflow::builder(&bus)
        .dead_letters(store.dead_letters())
        .build();
    let egress = Egress::new(&wf, store.clone(), store.clone()).unwrap();
    (store, wf, egress)
}

fn config(url: &str, schedule_ms: &[u64]) -> EndpointConfig {
    EndpointConfig::new("crm", url, secret())
        .unwrap()
        .subscribe(Pattern::new("orders.>").unwrap())
        .schedule(schedule_ms.iter().map(|&ms| Duration::from_millis(ms)))
        .jitter(0.0)
        .timeout(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(10))
}

async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn dead_letters(store: &SqliteStore, e: &Endpoint) -> Vec<syncbus_storage::DeadLetterRecord> {
    let filter = DeadLetterFilter::new().subscription(e.subscription());
    store.dead_letters().list(&filter).await.unwrap()
}

#[tokio::test]
async fn failures_retry_on_the_schedule_with_a_stable_signed_id() {
    let r = Receiver::default();
    // 500, a timeout, a 302 (not followed), then 200.
    r.script.lock().extend([
        (500, None, Duration::ZERO),
        (200, None, Duration::from_millis(800)),
        (302, None, Duration::ZERO),
    ]);
    let url = receiver(r.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (store, _wf, egress) = setup(dir.path()).await;
    store.append(event(1, None)).await.unwrap();
    let e = egress
        .endpoint(config(&url, &[0, 200, 400, 600, 800]))
        .await
        .unwrap();
    until("delivery", 20, || e.delivered() == 1).await;
    let hits = r.hits.lock().clone();
    assert_eq!(hits.len(), 4);
    assert!(hits.iter().all(|h| h.verified), "every attempt is signed");
    assert!(
        hits.iter().all(|h| h.id == hits[0].id),
        "one webhook-id across retries"
    );
    assert_eq!(
        hits[0].body["data"]["n"], 1,
        "the event as CloudEvents JSON"
    );
    let gaps: Vec<Duration> = hits.windows(2).map(|w| w[1].at - w[0].at).collect();
    // The waits are 200, 400, 600 ms after each failure (the timeout adds its 300 ms).
    let expected = [200u64, 400 + 300, 600];
    for (gap, want) in gaps.iter().zip(expected) {
        let want = Duration::from_millis(want);
        assert!(
            *gap >= want && *gap < want + Duration::from_millis(400),
            "{gaps:?}"
        );
    }
    assert!(!e.state().disabled);
    assert!(
        e.state().failing_since.is_none(),
        "the success ended the streak"
    );
    e.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_and_exhaustion_dead_letters_the_last_status() {
    let r = Receiver::default();
    r.script.lock().extend([
        (429, Some("1"), Duration::ZERO),
        (503, None, Duration::ZERO),
        (500, None, Duration::ZERO),
    ]);
    let url = receiver(r.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (store, _wf, egress) = setup(dir.path()).await;
    store.append(event(1, None)).await.unwrap();
    let e = egress.endpoint(config(&url, &[0, 50, 50])).await.unwrap();
    until("three attempts", 20, || r.hits.lock().len() == 3).await;
    let hits = r.hits.lock().clone();
    assert!(
        hits[1].at - hits[0].at >= Duration::from_secs(1),
        "Retry-After: 1 waited"
    );
    let store2 = store.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let d = dead_letters(&store2, &e).await;
        if !d.is_empty() || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    let chain = dead[0].error_chain.join(" ");
    assert!(
        chain.contains("status 500") && chain.contains("scripted answer"),
        "{chain}"
    );
    e.stop().await;
}

#[tokio::test]
async fn gone_disables_across_a_restart_and_replay_delivers_after_enable() {
    let r = Receiver::default();
    r.script.lock().push_back((410, None, Duration::ZERO));
    let url = receiver(r.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let since = Timestamp::now();
    {
        let (store, _wf, egress) = setup(dir.path()).await;
        store.append(event(1, None)).await.unwrap();
        let e = egress.endpoint(config(&url, &[0, 50])).await.unwrap();
        until("the 410", 10, || e.state().disabled).await;
        store.append(event(2, None)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while dead_letters(&store, &e).await.len() < 2 {
            assert!(Instant::now() < deadline, "both dead-lettered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(r.hits.lock().len(), 1, "nothing sent while disabled");
        e.stop().await;
    }
    // A new process on the same store: still disabled; enable, then replay.
    let (store, _wf, egress) = setup(dir.path()).await;
    let e = egress.endpoint(config(&url, &[0, 50])).await.unwrap();
    assert!(e.state().disabled, "disabled survives a restart");
    assert_eq!(e.state().reason.as_deref(), Some("410 Gone"));
    e.enable().await.unwrap();
    let report = e.replay(since).await.unwrap();
    assert_eq!(report.succeeded, 2);
    assert!(dead_letters(&store, &e).await.is_empty());
    let ns: Vec<_> = r
        .hits
        .lock()
        .iter()
        .skip(1)
        .map(|h| h.body["data"]["n"].clone())
        .collect();
    assert_eq!(ns.len(), 2);
    e.stop().await;
}

#[tokio::test]
async fn failing_longer_than_disable_after_disables() {
    let r = Receiver::default();
    r.script.lock().extend([(500, None, Duration::ZERO); 3]);
    let url = receiver(r.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (store, _wf, egress) = setup(dir.path()).await;
    store.append(event(1, None)).await.unwrap();
    let e = egress
        .endpoint(config(&url, &[0, 1100, 1100]).disable_after(Duration::from_secs(1)))
        .await
        .unwrap();
    until("auto-disable", 15, || e.state().disabled).await;
    assert!(e.state().failing_since.is_some());
    e.stop().await;
}

#[tokio::test]
async fn fifo_keeps_per_entity_order_through_retries() {
    let r = Receiver::default();
    r.script
        .lock()
        .extend([(500, None, Duration::ZERO), (500, None, Duration::ZERO)]);
    let url = receiver(r.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (store, _wf, egress) = setup(dir.path()).await;
    let events: Vec<_> = (0..6)
        .map(|n| event(n, Some(if n % 2 == 0 { "a" } else { "b" })))
        .collect();
    store.append_batch(events).await.unwrap();
    let e = egress
        .endpoint(config(&url, &[0, 100, 100, 100]).fifo(true))
        .await
        .unwrap();
    until("six deliveries", 20, || e.delivered() == 6).await;
    let hits = r.hits.lock().clone();
    // Only successful hits count for order: the last hit of each id.
    let mut order: Vec<u64> = Vec::new();
    for (i, h) in hits.iter().enumerate() {
        let last_of_id = hits[i + 1..].iter().all(|later| later.id != h.id);
        if last_of_id {
            order.push(h.body["data"]["n"].as_u64().unwrap());
        }
    }
    let a: Vec<_> = order.iter().filter(|n| *n % 2 == 0).copied().collect();
    let b: Vec<_> = order.iter().filter(|n| *n % 2 == 1).copied().collect();
    assert_eq!(a, [0, 2, 4]);
    assert_eq!(b, [1, 3, 5]);
    e.stop().await;
}
