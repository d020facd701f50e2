//! The bridge against a real NATS server: duplicate publishes, nak → term → dead letter,
//! stream warnings, and a private server killed and restarted mid-run.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use support::*;
use syncbus_core::{
    Bus, Bytes, Envelope, Event, EventId, EventType, Metadata, Settle, Source, Topic,
};
use syncbus_nats::{
    ConnectionState, NatsBridge, NatsConfig, PublishErrorKind, SetupError, Storage,
};
use syncbus_storage::{DeadLetterStore, MemoryDeadLetterStore};
use syncbus_workflow::{HandlerError, RetryPolicy, Workflow};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Job {
    n: u64,
}

impl Event for Job {
    const TYPE: &'static str = "test.job";
    const TOPIC: &'static str = "jobs.new";
}

fn env(n: u64) -> Envelope<Bytes> {
    Envelope::from_event(Job { n }).to_bytes_payload().unwrap()
}

async fn messages(bridge: &NatsBridge) -> u64 {
    let mut stream = bridge
        .jetstream()
        .get_stream(bridge.config().stream())
        .await
        .unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test]
async fn a_retried_publish_is_one_message() {
    let Some(url) = url("a_retried_publish_is_one_message") else {
        return;
    };
    let config = NatsConfig::new(&url, unique("dup"));
    let bridge = NatsBridge::connect(config.clone()).await.unwrap();
    assert_eq!(bridge.state(), ConnectionState::Connected);
    assert!(bridge.warnings().is_empty(), "{:?}", bridge.warnings());
    let e = env(1);
    let first = bridge.publisher().publish(e.clone()).await.unwrap();
    assert!(!first.duplicate);
    let again = bridge.publisher().publish(e.clone()).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    // Another process (a new connection) retrying the same event id.
    let other = NatsBridge::connect(config).await.unwrap();
    assert!(other.publisher().publish(e).await.unwrap().duplicate);
    assert_eq!(messages(&bridge).await, 1);

    // Through the bus: a typed event forwarded, then the same envelope forwarded again.
    let bus = Bus::new();
    let out = bridge.forward(&bus, "jobs.>").unwrap();
    let twice = env(2);
    bus.publish_envelope(twice.clone()).await.unwrap();
    bus.publish_envelope(twice).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.published() + out.duplicates() < 2 {
        assert!(Instant::now() < deadline, "forwarding stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!((out.published(), out.duplicates(), out.failed()), (1, 1, 0));
    assert_eq!(messages(&bridge).await, 2);
}

#[tokio::test]
async fn a_failing_handler_is_nakd_with_delay_then_termed_and_dead_lettered() {
    let Some(url) = url("a_failing_handler_is_nakd_with_delay_then_termed_and_dead_lettered")
    else {
        return;
    };
    let retry = RetryPolicy::new()
        .max_attempts(3)
        .initial(Duration::from_millis(300))
        .jitter(syncbus_workflow::Jitter::None);
    let bridge = NatsBridge::connect(NatsConfig::new(&url, unique("dlq")).retry(&retry))
        .await
        .unwrap();
    assert_eq!(bridge.config().get_max_deliver(), 4);
    bridge.publisher().publish(env(7)).await.unwrap();
    let dead = Arc::new(MemoryDeadLetterStore::new(100));
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let a = attempts.clone();
    let bus = Bus::new();
    let served = Workflow::new(&bus)
        .serve(bridge.source(None).await.unwrap())
        .retry(retry)
        .fetch_wait(Duration::from_millis(100))
        .dead_letters(dead.clone())
        .handle(move |env: Envelope<Job>, ctx| {
            a.lock()
                .unwrap()
                .push((ctx.attempt(), Instant::now(), env.payload().n));
            async { Err::<(), _>(HandlerError::retryable("the downstream is down")) }
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while served.settles().termed < 1 {
        assert!(
            Instant::now() < deadline,
            "never termed: {}",
            served.settles()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settles = served.stop().await;
    assert_eq!(
        (settles.nakd, settles.termed, settles.acked),
        (2, 1, 0),
        "{settles}"
    );
    let seen = attempts.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    for pair in seen.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap >= Duration::from_millis(250),
            "nak'd with the retry delay, came back after {gap:?}"
        );
    }
    let letters = dead
        .list(&syncbus_storage::DeadLetterFilter::new())
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    assert!(letters[0]
        .error_chain
        .iter()
        .any(|e| e.contains("downstream is down")));
    // Termed: nothing pending or waiting for an ack.
    let source = bridge.source(None).await.unwrap();
    let info = source.consumer().clone().info().await.unwrap().clone();
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
    assert!(source
        .fetch(10, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_unsafe_stream_is_warned_about_and_bad_settings_are_typed_errors() {
    let Some(url) = url("an_unsafe_stream_is_warned_about_and_bad_settings_are_typed_errors")
    else {
        return;
    };
    let bridge = NatsBridge::connect(NatsConfig::new(&url, unique("mem")).storage(Storage::Memory))
        .await
        .unwrap();
    assert!(
        bridge.warnings().iter().any(|w| w.contains("memory")),
        "{:?}",
        bridge.warnings()
    );
    let bad = NatsBridge::connect(NatsConfig::new(&url, "has.dot")).await;
    assert!(matches!(bad, Err(SetupError::Invalid(_))));
    let no_topic = Envelope::new(Metadata::new(EventType::new("x.y").unwrap()), Bytes::new());
    let err = bridge.publisher().publish(no_topic).await.unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::Encode);
    // An undecodable body is dead-lettered and termed, never handed out.
    let subject = format!("{}.jobs.new", bridge.config().subject_root());
    bridge
        .jetstream()
        .publish(subject, Bytes::from_static(b"\x00garbage"))
        .await
        .unwrap()
        .await
        .unwrap();
    let dead = Arc::new(MemoryDeadLetterStore::new(10));
    let source = bridge.source_with(dead.clone()).await.unwrap();
    assert!(source
        .fetch(10, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(source.counts().undecodable, 1);
    assert_eq!(
        dead.list(&syncbus_storage::DeadLetterFilter::new())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_server_killed_and_restarted_loses_nothing_acknowledged() {
    let Some(bin) = nats_server() else {
        println!("skipped a_private_server_killed_and_restarted_loses_nothing_acknowledged: no nats-server binary");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start_server(&bin, port, dir.path());
    let url = format!("nats://127.0.0.1:{port}");
    let config = NatsConfig::new(&url, "FAULT")
        .publish_timeout(Duration::from_secs(1))
        .publish_retry_span(Duration::from_secs(60));
    let bridge = NatsBridge::connect(config).await.unwrap();
    let publisher = bridge.publisher();
    let total = 2_000u64;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    for chunk in 0..20u64 {
        let (publisher, acked) = (publisher.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for n in chunk * 100..(chunk + 1) * 100 {
                let e = Envelope::new(
                    Metadata::new(EventType::new("fault.event").unwrap())
                        .with_topic(Topic::from_static("fault.events"))
                        .with_id(EventId::from_u128(
                            0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(n),
                        )),
                    Bytes::from(n.to_string()),
                );
                match publisher.publish(e).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(n);
                    }
                    Err(e) => panic!("publish {n} failed: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    while acked.lock().unwrap().len() < (total / 4) as usize {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill(&mut server);
    eprintln!(
        "killed the server with {} acknowledged",
        acked.lock().unwrap().len()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while bridge.state() == ConnectionState::Connected {
        assert!(Instant::now() < deadline, "the disconnect was never seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Acks the server sent before it died may still be read up to the disconnect; after it,
    // nothing counts as sent while the server is down, though publishes go on being tried.
    let at_disconnect = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        acked.lock().unwrap().len(),
        at_disconnect,
        "nothing counts as sent while the server is down"
    );
    let mut server = start_server(&bin, port, dir.path());
    for t in tasks {
        t.await.unwrap();
    }
    assert!(bridge.disconnects() >= 1);
    assert_eq!(bridge.state(), ConnectionState::Connected);
    // Every acknowledged event is in the stream, once.
    let source = bridge.source(None).await.unwrap();
    let mut seen = HashSet::new();
    loop {
        let batch = source.fetch(500, Duration::from_millis(500)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for d in batch {
            let n: u64 = std::str::from_utf8(d.envelope().payload())
                .unwrap()
                .parse()
                .unwrap();
            assert!(seen.insert(n), "event {n} twice in the stream");
            d.ack().await.unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, total);
    assert!(
        acked.is_subset(&seen),
        "{} acknowledged events missing",
        acked.difference(&seen).count()
    );
    assert_eq!(messages(&bridge).await, total);
    kill(&mut server);
}

/// Serves one message whose handler takes `hold` on a consumer with a 1 s ack wait, while a
/// second reader of the same durable consumer (another process would be one) keeps pulling.
/// Returns how often the handler ran, how many deliveries the second reader got, and the
/// runner's acks.
async fn serve_long_handler(
    url: &str,
    name: &str,
    hold: Duration,
    progress: Option<Duration>,
) -> (usize, usize, u64) {
    let bridge = NatsBridge::connect(
        NatsConfig::new(url, unique(name))
            .ack_wait(Duration::from_secs(1))
            .max_deliver(5),
    )
    .await
    .unwrap();
    bridge.publisher().publish(env(9)).await.unwrap();
    let runs = Arc::new(Mutex::new(0usize));
    let r = runs.clone();
    let bus = Bus::new();
    let served = Workflow::new(&bus)
        .serve(bridge.source(None).await.unwrap())
        .fetch_wait(Duration::from_millis(100))
        .in_progress_every(progress)
        .handle(move |_env: Envelope<Job>, _ctx| {
            *r.lock().unwrap() += 1;
            async move {
                tokio::time::sleep(hold).await;
                Ok::<(), HandlerError>(())
            }
        })
        .unwrap();
    // Wait until the runner holds the message, then pull beside it until it is acked.
    let deadline = Instant::now() + hold * 3 + Duration::from_secs(10);
    while *runs.lock().unwrap() == 0 {
        assert!(Instant::now() < deadline, "never handled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let other = bridge.source(None).await.unwrap();
    let mut stolen = 0;
    while served.settles().acked + served.settles().settle_errors < 1 {
        assert!(
            Instant::now() < deadline,
            "never settled: {}",
            served.settles()
        );
        stolen += other
            .fetch(10, Duration::from_millis(200))
            .await
            .unwrap()
            .len();
    }
    let settles = served.stop().await;
    let runs = *runs.lock().unwrap();
    (runs, stolen, settles.acked)
}

#[tokio::test]
async fn in_progress_ticks_keep_a_long_handlers_message_from_coming_back() {
    let Some(url) = url("in_progress_ticks_keep_a_long_handlers_message_from_coming_back") else {
        return;
    };
    // The handler runs 3.5 ack waits; the runner says "in progress" every 300 ms, so the
    // server never hands the message to the other reader.
    let (runs, stolen, acked) = serve_long_handler(
        &url,
        "wpi",
        Duration::from_millis(3500),
        Some(Duration::from_millis(300)),
    )
    .await;
    assert_eq!((runs, stolen, acked), (1, 0, 1), "runs, redeliveries, acks");

    // The control: without the ticks the ack wait runs out and the other reader gets the
    // message while the handler still runs, so the test above would catch ticks that stop
    // working.
    let (_, stolen, _) = serve_long_handler(&url, "nowpi", Duration::from_millis(2500), None).await;
    assert!(stolen >= 1, "without in-progress the message came back");
}
