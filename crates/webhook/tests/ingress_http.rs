//! Ingress over real HTTP on loopback: every refusal has its status and stores nothing;
//! duplicates are answered 2xx without a second append; 1,000 concurrent requests of 100
//! ids are 100 events; processing retries, dead-letters and redrives.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use support::*;
use syncbus_core::{Bus, Envelope};
use syncbus_storage::{
    DeadLetterFilter, DeadLetterStore, DurableConfig, DurableConsumer, EventLog,
};
use syncbus_webhook::{unix_now, IngressConfig, RawEvent, Secret, SourceConfig, DUPLICATE_HEADER};
use syncbus_workflow::{HandlerError, Redrive, RetryPolicy, Workflow};

fn shop() -> SourceConfig {
    SourceConfig::new("shop", [secret()])
        .unwrap()
        .max_body(1024)
}

#[tokio::test]
async fn each_bad_request_gets_its_status_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_ingress, addr, store) = ingress(dir.path(), IngressConfig::new(), vec![shop()]).await;
    let url = format!("http://{addr}/webhooks/shop");
    let c = client();
    let now = unix_now();
    let body = r#"{"order":1}"#;
    let wrong = Secret::new("whsec_d3Jvbmc=").unwrap();

    let status = |r: reqwest::Response| r.status().as_u16();
    // Tampered body: signed one body, sent another.
    let sig = secret().sign("m1", now, body.as_bytes());
    let tampered = c
        .post(&url)
        .header("content-type", "application/json")
        .header("webhook-id", "m1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", sig)
        .body(r#"{"order":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(status(tampered), 401);
    assert_eq!(status(send(&c, &url, &wrong, "m2", now, body).await), 401);
    assert_eq!(
        status(send(&c, &url, &secret(), "m3", now - 301, body).await),
        401,
        "stale"
    );
    assert_eq!(
        status(send(&c, &url, &secret(), "m4", now + 301, body).await),
        401,
        "future"
    );
    let missing = |drop: &'static str| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let mut r = c.post(&url).header("content-type", "application/json");
            for (h, v) in [
                ("webhook-id", "m5".to_owned()),
                ("webhook-timestamp", now.to_string()),
                (
                    "webhook-signature",
                    secret().sign("m5", now, body.as_bytes()),
                ),
            ] {
                if h != drop {
                    r = r.header(h, v);
                }
            }
            r.body(body).send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(missing("webhook-id").await, 400);
    assert_eq!(missing("webhook-timestamp").await, 400);
    assert_eq!(missing("webhook-signature").await, 401);
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2048));
    let r = send(&c, &url, &secret(), "m6", now, &big).await;
    assert_eq!(r.status().as_u16(), 413);
    // Refused before the handler (over every source's limit), still a small JSON reason.
    let reason: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(reason["error"], "body too large", "{reason}");
    assert_eq!(
        status(send(&c, &url, &secret(), "m7", now, "{not json").await),
        400
    );
    let r = c
        .post(&url)
        .header("content-type", "text/plain")
        .header("webhook-id", "m8")
        .header("webhook-timestamp", now.to_string())
        .header(
            "webhook-signature",
            secret().sign("m8", now, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 415);
    let other = format!("http://{addr}/webhooks/nobody");
    let r = send(&c, &other, &secret(), "m9", now, body).await;
    assert_eq!(r.status().as_u16(), 404);
    let reason: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(reason["error"].is_string(), "a small JSON reason: {reason}");
    assert!(!reason.to_string().contains("whsec_"));

    assert_eq!(
        store.head().await.unwrap(),
        None,
        "nothing stored for a rejected request"
    );
    // And a good one is stored, once.
    let ok = send(&c, &url, &secret(), "m10", now, body).await;
    assert_eq!(ok.status().as_u16(), 200);
    assert!(ok.headers().get(DUPLICATE_HEADER).is_none());
    let again = send(&c, &url, &secret(), "m10", now, body).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(again.headers()[DUPLICATE_HEADER], "true");
    assert_eq!(store.read(0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn rotated_secrets_both_pass_and_the_vector_verifies() {
    let old = Secret::new("whsec_b2xkIHNlY3JldA==").unwrap();
    let source = SourceConfig::new("shop", [secret(), old.clone()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_ingress, addr, store) = ingress(dir.path(), IngressConfig::new(), vec![source]).await;
    let url = format!("http://{addr}/webhooks/shop");
    let c = client();
    assert_eq!(
        send(&c, &url, &old, "r1", unix_now(), "{}").await.status(),
        200
    );
    assert_eq!(
        send(&c, &url, &secret(), "r2", unix_now(), "{}")
            .await
            .status(),
        200
    );
    // A header carrying a bad and a good signature passes.
    let now = unix_now();
    let header = format!("v1,AAAA {}", old.sign("r3", now, b"{}"));
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .header("webhook-id", "r3")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", header)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(store.read(0, 10).await.unwrap().len(), 3);

    let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    let v = syncbus_webhook::Verifier::new([secret()]);
    let sig = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    assert_eq!(
        secret().sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body),
        sig
    );
    v.verify_at(
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        "1649367553",
        sig,
        body,
        1649367553,
    )
    .unwrap();
    // Extreme timestamps are refused, never an overflow.
    assert!(v
        .verify_at("m", &i64::MAX.to_string(), sig, body, i64::MIN)
        .is_err());
    assert!(v
        .verify_at("m", &i64::MIN.to_string(), sig, body, i64::MAX)
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_of_a_hundred_ids_are_a_hundred_events() {
    let dir = tempfile::tempdir().unwrap();
    let config = IngressConfig::new().queue(2048);
    let (ingress, addr, store) = ingress(dir.path(), config, vec![shop()]).await;
    let url = format!("http://{addr}/webhooks/shop");
    let c = client();
    let now = unix_now();
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("evt-{}", i % 100);
            let body = format!(r#"{{"n":{}}}"#, i % 100);
            send(&c, &url, &secret(), &id, now, &body)
                .await
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let m = ingress.metrics();
    assert_eq!((m.accepted, m.duplicates), (100, 900));

    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let consumer = DurableConsumer::open(store.clone(), "p", DurableConfig::new())
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let served = wf
        .serve(consumer)
        .handle(move |env: Envelope<RawEvent>, _ctx| {
            let s = s.clone();
            async move {
                s.lock()
                    .push(env.meta().headers().get("webhookid").unwrap().to_owned());
                Ok(())
            }
        })
        .unwrap();
    served.settled().await;
    served.stop().await;
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 100);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 100);
}

#[tokio::test]
async fn failing_twice_is_processed_once_always_failing_is_dead_lettered_then_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let (_ingress, addr, store) = ingress(dir.path(), IngressConfig::new(), vec![shop()]).await;
    let url = format!("http://{addr}/webhooks/shop");
    let c = client();
    assert_eq!(
        send_now(&c, &url, "flaky", r#"{"kind":"flaky"}"#)
            .await
            .status(),
        200
    );
    assert_eq!(
        send_now(&c, &url, "broken", r#"{"kind":"broken"}"#)
            .await
            .status(),
        200
    );

    let bus = Bus::new();
    let wf = Workflow::builder(&bus)
        .dead_letters(store.dead_letters())
        .build();
    let consumer = DurableConsumer::open(store.clone(), "p", DurableConfig::new())
        .await
        .unwrap();
    let flaky_calls = Arc::new(AtomicU32::new(0));
    let done = Arc::new(Mutex::new(Vec::<String>::new()));
    let healed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f, d, h) = (flaky_calls.clone(), done.clone(), healed.clone());
    let served = wf
        .serve(consumer)
        .name("processor")
        .fetch_wait(Duration::from_millis(20))
        .retry(
            RetryPolicy::new()
                .initial(Duration::from_millis(20))
                .max_attempts(3),
        )
        .handle(move |env: Envelope<RawEvent>, _ctx| {
            let (f, d, h) = (f.clone(), d.clone(), h.clone());
            async move {
                let body: serde_json::Value =
                    serde_json::from_slice(env.payload().as_bytes()).unwrap();
                let kind = body["kind"].as_str().unwrap().to_owned();
                if kind == "flaky" && f.fetch_add(1, SeqCst) < 2 {
                    return Err(HandlerError::retryable("not yet"));
                }
                if kind == "broken" && !h.load(SeqCst) {
                    return Err(HandlerError::retryable("always"));
                }
                d.lock().push(kind);
                Ok(())
            }
        })
        .unwrap();
    let dead = store.dead_letters();
    let filter = DeadLetterFilter::new().subscription("processor");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while dead.list(&filter).await.unwrap().is_empty() || done.lock().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no dead letter / no success in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(flaky_calls.load(SeqCst), 3, "two failures, then success");
    assert_eq!(done.lock().clone(), ["flaky"], "processed once");
    let records = dead.list(&filter).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].attempts, 3);

    healed.store(true, SeqCst);
    let report = wf.redrive(Redrive::new(filter.clone())).await.unwrap();
    assert_eq!(report.succeeded, 1);
    assert_eq!(done.lock().clone(), ["flaky", "broken"]);
    assert!(dead.list(&filter).await.unwrap().is_empty());
    served.stop().await;
}

#[tokio::test]
async fn full_intake_is_429_with_retry_after_and_shutdown_is_503() {
    let dir = tempfile::tempdir().unwrap();
    let (ingress, addr, store) =
        ingress(dir.path(), IngressConfig::new().queue(1), vec![shop()]).await;
    let url = format!("http://{addr}/webhooks/shop");
    let c = client();
    // Hold the store's only connection so the intake cannot commit; the queue fills.
    let (hold, release) = std::sync::mpsc::channel::<()>();
    let blocker = store.with_connection(move |_conn| {
        let _ = release.recv();
        Ok(())
    });
    let blocked = tokio::spawn(blocker);
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = send_now(&c, &url, &format!("q{i}"), "{}").await;
            (r.status().as_u16(), r.headers().get("retry-after").cloned())
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    hold.send(()).unwrap();
    blocked.await.unwrap().unwrap();
    let results: Vec<_> = futures_join(tasks).await;
    assert!(
        results.iter().any(|(s, ra)| *s == 429 && ra.is_some()),
        "{results:?}"
    );
    assert!(results.iter().any(|(s, _)| *s == 200), "{results:?}");
    let stored = store.read(0, 10).await.unwrap().len();
    assert_eq!(stored, results.iter().filter(|(s, _)| *s == 200).count());

    // The router mounted in an application's own server answers 503 once shutting down.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mounted = format!("http://{}/webhooks/shop", listener.local_addr().unwrap());
    let router = ingress.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    assert_eq!(
        send_now(&c, &mounted, "early", "{}")
            .await
            .status()
            .as_u16(),
        200
    );
    ingress.shutdown();
    let r = send_now(&c, &mounted, "late", "{}").await;
    assert_eq!(r.status().as_u16(), 503);
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
