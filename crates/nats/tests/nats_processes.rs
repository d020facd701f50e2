//! Two OS processes, each with its own bus, exchange events through JetStream (the
//! `nats_bridge` example in both roles): the consumer SIGKILLed twice mid-stream and
//! restarted still applies every event once; two consumers on one durable consumer keep
//! each entity's order. `SYNCBUS_NATS_EVENTS` sets the count (default 2,000; 100,000 for the
//! long run).

mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn consumer_killed_twice_applies_every_event_once() {
    let Some(url) = url("consumer_killed_twice_applies_every_event_once") else {
        return;
    };
    let count = event_count();
    let stream = unique("crash");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("consumer.db");
    let db_s = db.to_str().unwrap().to_owned();
    let count_s = count.to_string();
    let mut publisher = spawn(
        &[
            "--url", &url, "--stream", &stream, "--role", "publish", "--count", &count_s,
        ],
        None,
    );
    let consumer_args = [
        "--url",
        &url,
        "--stream",
        &stream,
        "--role",
        "consume",
        "--db",
        &db_s,
        "--expect",
        &count_s,
        "--ack-wait-ms",
        "1500",
    ];
    let limit = Duration::from_secs(60 + count / 100);
    let deadline = Instant::now() + limit;
    let mut kills = 0;
    for threshold in [count / 5, count * 3 / 5] {
        let mut consumer = spawn(&consumer_args, None);
        while applied(&db) < threshold {
            assert!(Instant::now() < deadline, "stuck below {threshold} applied");
            if let Some(status) = consumer.try_wait().unwrap() {
                panic!("consumer exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        kill(&mut consumer);
        kills += 1;
        eprintln!("killed the consumer at {} applied", applied(&db));
    }
    assert_eq!(kills, 2);
    let mut consumer = spawn(&consumer_args, Some(&dir.path().join("out.jsonl")));
    wait_ok(&mut consumer, "the last consumer", limit);
    wait_ok(&mut publisher, "the publisher", limit);
    check_applied(&db, count);
    // The restarted consumer printed one CloudEvents JSON line per event it applied.
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["type"], "bridge.event");
    }
}

#[test]
fn two_consumer_processes_keep_each_entitys_order() {
    let Some(url) = url("two_consumer_processes_keep_each_entitys_order") else {
        return;
    };
    let count = event_count();
    let stream = unique("order");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let db_s = db.to_str().unwrap().to_owned();
    let count_s = count.to_string();
    let consumer_args = [
        "--url",
        &url,
        "--stream",
        &stream,
        "--role",
        "consume",
        "--db",
        &db_s,
        "--expect",
        &count_s,
        "--fail-every",
        "50",
    ];
    let mut publisher = spawn(
        &[
            "--url", &url, "--stream", &stream, "--role", "publish", "--count", &count_s,
        ],
        None,
    );
    wait_ok(&mut publisher, "the publisher", Duration::from_secs(120));
    let (a_out, b_out) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let mut a = spawn(&consumer_args, Some(&a_out));
    let mut b = spawn(&consumer_args, Some(&b_out));
    let limit = Duration::from_secs(120 + count / 50);
    wait_ok(&mut a, "consumer a", limit);
    wait_ok(&mut b, "consumer b", limit);
    check_applied(&db, count);
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
    let (na, nb) = (lines(&a_out), lines(&b_out));
    eprintln!("consumer a applied {na}, b applied {nb}");
    assert_eq!((na + nb) as u64, count, "each applied event printed once");
    assert!(
        na > 0 && nb > 0,
        "both processes shared the durable consumer"
    );
}
