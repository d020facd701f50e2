//! Workflow subscriptions end to end: dead letters after max attempts, list filters,
//! redrive (dry run, rate limit, dedup not swallowing it), chains of follow-up events.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use syncbus_core::{Bus, Envelope, Pattern, Timestamp};
use syncbus_storage::DeadLetterFilter;
use syncbus_workflow::{
    handler_fn, Context, DedupConfig, ErrorKind, HandlerError, Jitter, RateLimitConfig, Redrive,
    RedriveError, RetryPolicy, SkipReason, Workflow, REDRIVE_HEADER,
};

fn quick_retry() -> RetryPolicy {
    RetryPolicy::default()
        .initial(Duration::from_millis(10))
        .max_attempts(3)
        .jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn dead_letter_after_max_attempts_then_redrive_succeeds() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let down = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicU32::new(0));
    let seen: Log<Envelope<Job>> = Log::default();
    let (d, c, s) = (down.clone(), calls.clone(), seen.clone());
    let sub = wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .name("billing")
        .handler_name("charge-card")
        .retry(quick_retry())
        .dedup(DedupConfig::memory(1000))
        .handle(move |e: Envelope<Job>, _ctx| {
            c.fetch_add(1, SeqCst);
            s.push(e);
            let down = d.load(SeqCst);
            async move {
                if down {
                    Err(HandlerError::retryable("card processor unavailable")
                        .with_source(std::io::Error::other("connection refused")))
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    let before = Timestamp::now();
    bus.publish(Job { n: 42 }).await.unwrap();
    assert!(until(10, || sub.metrics().dead_lettered == 1).await);
    assert_eq!(calls.load(SeqCst), 3);
    let m = sub.metrics();
    assert_eq!((m.attempts, m.retries, m.failed, m.succeeded), (3, 2, 1, 0));

    let all = wf
        .dead_letters()
        .list(&DeadLetterFilter::new())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let r = &all[0];
    assert_eq!(r.subscription, "billing");
    assert_eq!(r.handler, "charge-card");
    assert_eq!(r.attempts, 3);
    assert_eq!(r.error_kind, ErrorKind::Retryable);
    assert_eq!(
        r.error_chain,
        vec!["card processor unavailable", "connection refused"]
    );
    assert!(r.first_failure <= r.last_failure && r.first_failure >= before);
    assert_eq!(r.envelope.meta().id(), seen.get()[0].meta().id());
    assert_eq!(
        r.envelope.decode_payload::<Job>().unwrap().payload(),
        &Job { n: 42 }
    );

    // Filters.
    let f = |f: DeadLetterFilter| {
        let wf = wf.clone();
        async move { wf.dead_letters().list(&f).await.unwrap().len() }
    };
    assert_eq!(
        f(DeadLetterFilter::new().topic(Pattern::new("test.*").unwrap())).await,
        1
    );
    assert_eq!(
        f(DeadLetterFilter::new().topic(Pattern::new("orders.>").unwrap())).await,
        0
    );
    assert_eq!(f(DeadLetterFilter::new().event_type("test.job")).await, 1);
    assert_eq!(f(DeadLetterFilter::new().event_type("test.other")).await, 0);
    assert_eq!(
        f(DeadLetterFilter::new().error_contains("refused")).await,
        1
    );
    assert_eq!(
        f(DeadLetterFilter::new().error_contains("timeout")).await,
        0
    );
    assert_eq!(
        f(DeadLetterFilter::new().between(before, Timestamp::now())).await,
        1
    );
    assert_eq!(
        f(DeadLetterFilter::new().between(Timestamp::from_unix_millis(0), before)).await,
        0
    );

    // A dry run changes nothing.
    let dry = wf
        .redrive(Redrive::new(DeadLetterFilter::new()).dry_run())
        .await
        .unwrap();
    assert_eq!((dry.matched, dry.redriven.len(), dry.succeeded), (1, 1, 0));
    assert_eq!(calls.load(SeqCst), 3);
    assert!(wf.dead_letters().get(&r.id).await.is_ok());

    // The downstream is back: redrive delivers again, dedup does not swallow it.
    down.store(false, SeqCst);
    let report = wf.redrive_one(&r.id).await.unwrap();
    assert_eq!((report.matched, report.succeeded, report.failed), (1, 1, 0));
    assert_eq!(calls.load(SeqCst), 4);
    let replay = &seen.get()[3];
    assert_ne!(replay.meta().id(), r.envelope.meta().id(), "a fresh id");
    assert_eq!(
        replay.meta().headers().get(REDRIVE_HEADER),
        Some(r.envelope.meta().id().to_string().as_str()),
        "a link to the original"
    );
    assert!(wf
        .dead_letters()
        .get(&r.id)
        .await
        .is_err_and(|e| e.kind() == syncbus_storage::StoreErrorKind::NotFound));
    assert_eq!(sub.metrics().succeeded, 1);
}

#[tokio::test(start_paused = true)]
async fn redrive_is_rate_limited_and_skips_unknown_subscriptions() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let down = Arc::new(AtomicBool::new(true));
    let d = down.clone();
    let sub = wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .name("jobs")
        .no_retry()
        .handle(move |_e: Envelope<Job>, _c| {
            let down = d.load(SeqCst);
            async move {
                if down {
                    Err(HandlerError::permanent("no"))
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    for n in 0..5 {
        bus.publish(Job { n }).await.unwrap();
    }
    assert!(until(10, || sub.metrics().dead_lettered == 5).await);
    down.store(false, SeqCst);
    let start = tokio::time::Instant::now();
    let report = wf
        .redrive(
            Redrive::new(DeadLetterFilter::new().limit(4))
                .rate_limit(RateLimitConfig::per_second(2).burst(1)),
        )
        .await
        .unwrap();
    assert_eq!((report.matched, report.succeeded), (4, 4));
    // 1 at once, then one every 500 ms.
    assert_eq!(
        tokio::time::Instant::now() - start,
        Duration::from_millis(1500)
    );

    drop(sub);
    let report = wf
        .redrive(Redrive::new(DeadLetterFilter::new()))
        .await
        .unwrap();
    assert_eq!(
        (report.matched, report.skipped.len(), report.succeeded),
        (1, 1, 0)
    );
    // Every skip says why: the subscription is not running.
    assert_eq!(
        report.skipped[0].reason,
        SkipReason::NotRunning("jobs".into())
    );
    // The record's subscription is known (it has a dead letter), so naming it is no error.
    let named = wf
        .redrive(Redrive::new(DeadLetterFilter::new().subscription("jobs")))
        .await
        .unwrap();
    assert_eq!(named.skipped.len(), 1);
    assert_eq!(
        wf.dead_letters()
            .list(&DeadLetterFilter::new())
            .await
            .unwrap()
            .len(),
        1,
        "kept"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_dead_lettered_not_retried() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let sub = wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .handle(|e: Envelope<Job>, _c| async move {
            assert!(e.payload().n != 13, "unlucky job");
            Ok(())
        })
        .unwrap();
    bus.publish(Job { n: 13 }).await.unwrap();
    bus.publish(Job { n: 14 }).await.unwrap();
    assert!(
        until(10, || sub.metrics().succeeded == 1
            && sub.metrics().dead_lettered == 1)
        .await
    );
    let m = sub.metrics();
    assert_eq!((m.panicked, m.attempts), (1, 2));
    let dead = wf
        .dead_letters()
        .list(&DeadLetterFilter::new())
        .await
        .unwrap();
    assert_eq!(dead[0].error_kind, ErrorKind::Panicked);
    assert!(dead[0].error().contains("unlucky job"));
}

#[tokio::test]
async fn names_are_unique_within_a_workflow() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let h = || handler_fn(|_e: Envelope<Job>, _c| async { Ok(()) });
    let _a = wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .name("a")
        .handle_with(h())
        .unwrap();
    assert!(wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .name("a")
        .handle_with(h())
        .is_err());
    assert!(wf.subscribe::<Job>("bad..pattern").is_err());
    // A subscription the bus refuses does not keep its name.
    let refused = wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .name("b")
        .capacity(0)
        .handle_with(h());
    assert!(refused.is_err());
    assert!(wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .name("b")
        .handle_with(h())
        .is_ok());
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Step(u32);
impl syncbus_core::Event for Step {
    const TYPE: &'static str = "test.step";
}

#[tokio::test]
async fn follow_ups_form_a_queryable_chain() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let fails_once = Arc::new(AtomicBool::new(true));
    let f = fails_once.clone();
    // job → step(1) → step(2), step(3); the first attempt of the job handler emits and then
    // fails: its follow-up must not be published.
    let _jobs = wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .retry(RetryPolicy::default().initial(Duration::from_millis(1)))
        .handle(move |_e: Envelope<Job>, ctx: Context| {
            ctx.emit(Step(1));
            let fail = f.swap(false, SeqCst);
            async move {
                if fail {
                    Err(HandlerError::retryable("first try"))
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    let steps = wf
        .subscribe::<Step>("test.step")
        .unwrap()
        .handle(|e: Envelope<Step>, ctx: Context| async move {
            if e.payload().0 == 1 {
                ctx.emit(Step(2));
                ctx.emit(Step(3));
            }
            Ok(())
        })
        .unwrap();
    let root = syncbus_core::Envelope::from_event(Job { n: 1 });
    let root_id = root.meta().id().clone();
    bus.publish_envelope(root).await.unwrap();
    assert!(until(10, || steps.metrics().succeeded == 3).await);
    let tree = wf.chain(&root_id).expect("retained");
    assert_eq!(
        tree.types(),
        vec!["test.job", "test.step", "test.step", "test.step"]
    );
    let step1 = &tree.children[0];
    assert_eq!(
        tree.children.len(),
        1,
        "the failed attempt's follow-up was discarded"
    );
    assert_eq!(step1.children.len(), 2);
    for n in tree.iter().skip(1) {
        assert_eq!(
            n.correlation_id.as_ref(),
            Some(&root_id),
            "correlation inherited"
        );
    }
    assert_eq!(tree.handled.len(), 1);
    assert!(tree.handled[0].outcome.is_ok());
    assert_eq!(
        wf.chains().unwrap().root_of(&step1.children[1].id),
        Some(root_id)
    );
}

#[tokio::test]
async fn an_undecodable_dead_letter_is_kept_not_lost() {
    use syncbus_core::{Bytes, EventType, Metadata, Timestamp};
    use syncbus_storage::DeadLetterRecord;
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let _sub = wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .name("jobs")
        .handle(|_e: Envelope<Job>, _c| async { Ok(()) })
        .unwrap();
    let meta = Metadata::new(EventType::new("test.job").unwrap())
        .with_topic(syncbus_core::Topic::from_static("test.job"));
    let id = syncbus_storage::DeadLetterId::new();
    wf.dead_letters()
        .put(DeadLetterRecord {
            id: id.clone(),
            envelope: Envelope::new(meta, Bytes::from_static(b"{\"n\":\"not a number\"}")),
            subscription: "jobs".into(),
            handler: "jobs".into(),
            error_kind: ErrorKind::Permanent,
            error_chain: vec!["bad".into()],
            attempts: 1,
            first_failure: Timestamp::now(),
            last_failure: Timestamp::now(),
        })
        .await
        .unwrap();
    let report = wf
        .redrive(Redrive::new(DeadLetterFilter::new()))
        .await
        .unwrap();
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].id, id);
    assert!(
        matches!(&report.skipped[0].reason, SkipReason::Undecodable(e) if e.contains("redriven event")),
        "{:?}",
        report.skipped[0]
    );
    assert!(wf.dead_letters().get(&id).await.is_ok(), "kept");
}

#[tokio::test]
async fn redrive_one_redrives_that_record_only() {
    use syncbus_core::Timestamp;
    use syncbus_storage::DeadLetterRecord;
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let _sub = wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .name("jobs")
        .handle(move |_e: Envelope<Job>, _c| {
            r.fetch_add(1, SeqCst);
            async { Ok(()) }
        })
        .unwrap();
    // Two records failed at the very same instant in the same subscription.
    let at = Timestamp::now();
    let mut ids = Vec::new();
    for n in 0..2 {
        let id = syncbus_storage::DeadLetterId::new();
        ids.push(id.clone());
        wf.dead_letters()
            .put(DeadLetterRecord {
                id,
                envelope: Envelope::from_event(Job { n }).to_bytes_payload().unwrap(),
                subscription: "jobs".into(),
                handler: "jobs".into(),
                error_kind: ErrorKind::Retryable,
                error_chain: vec!["down".into()],
                attempts: 3,
                first_failure: at,
                last_failure: at,
            })
            .await
            .unwrap();
    }
    let report = wf.redrive_one(&ids[1]).await.unwrap();
    assert_eq!((report.matched, report.succeeded), (1, 1));
    assert_eq!(runs.load(SeqCst), 1);
    assert!(wf.dead_letters().get(&ids[0]).await.is_ok());
    assert!(wf
        .dead_letters()
        .get(&ids[1])
        .await
        .is_err_and(|e| e.kind() == syncbus_storage::StoreErrorKind::NotFound));
}

/// Unknown ids and subscriptions are typed errors, not an empty success.
#[tokio::test]
async fn unknown_ids_and_subscriptions_are_errors() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let _sub = wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .name("jobs")
        .handle(|_e: Envelope<Job>, _c| async { Ok(()) })
        .unwrap();
    let id = syncbus_storage::DeadLetterId::new();
    assert!(matches!(
        wf.redrive_one(&id).await,
        Err(RedriveError::UnknownDeadLetter(unknown)) if unknown == id
    ));
    assert!(matches!(
        wf.redrive(Redrive::new(DeadLetterFilter::new().subscription("jbos"))).await,
        Err(RedriveError::UnknownSubscription(name)) if name == "jbos"
    ));
    // A running subscription with no dead letters matches nothing, and that is no error.
    let report = wf
        .redrive(Redrive::new(DeadLetterFilter::new().subscription("jobs")))
        .await
        .unwrap();
    assert_eq!(report.matched, 0);
}
