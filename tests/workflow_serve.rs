//! `Workflow::serve` over the two sources the project has: the bus's pull consumer and an
//! SQLite durable consumer. The same scenarios run on both and must end the same way.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use syncbus::store::{
    DeadLetterFilter, DeadLetterStore, DurableConfig, DurableConsumer, EventLog,
    MemoryDeadLetterStore, SqliteStore,
};
use syncbus::{
    handler_fn, Bus, Bytes, ConsumerConfig, Envelope, ErrorKind, Event, EventType, HandlerError,
    Metadata, OtherTypes, RetryPolicy, ServeError, Served, Source, Topic, Workflow,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Mail {
    to: u64,
}

impl Event for Mail {
    const TYPE: &'static str = "mail.send";
}

/// The follow-up a handler emits.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sent {
    to: u64,
}

impl Event for Sent {
    const TYPE: &'static str = "mail.sent";
}

/// Each mail's handler calls: when, and the attempt the context said.
type Calls = HashMap<u64, Vec<(Instant, u32)>>;

/// Well above a store stall: on a loaded machine one SQLite call was seen to wait 336 ms
/// (a claim and an `in_progress` alike), and a lease shorter than that runs out whatever the
/// runner does, so the event comes back and a test counting handler runs fails.
const ACK_TIMEOUT: Duration = Duration::from_millis(1000);
const RETRY_AFTER: Duration = Duration::from_millis(150);

fn mail(to: u64) -> Envelope<Bytes> {
    let mut env = Envelope::from_event(Mail { to })
        .to_bytes_payload()
        .unwrap();
    env.meta_mut().set_topic(Topic::from_static("mail.send"));
    env
}

fn undecodable() -> Envelope<Bytes> {
    let mut env = mail(0);
    *env.payload_mut() = Bytes::from_static(b"{\"to\":\"nobody\"}");
    env
}

fn other_type() -> Envelope<Bytes> {
    let meta = Metadata::new(EventType::from_static("mail.bounced"))
        .with_topic(Topic::from_static("mail.bounced"));
    Envelope::new(meta, Bytes::from_static(b"{}"))
}

/// Where the scenario's events come from, and how to see what is left in it.
trait Harness {
    type S: Source<Payload = Bytes> + 'static;
    /// A fresh source holding `events`.
    async fn open(&mut self, events: Vec<Envelope<Bytes>>) -> Self::S;
    /// After a stop: the source reopened as after a restart, everything it still holds
    /// taken out and acked; returns the `to` of each.
    async fn leftovers(&mut self) -> Vec<u64>;
}

struct BusHarness {
    bus: Bus,
    consumer: Option<Arc<syncbus::Consumer<Bytes>>>,
}

impl BusHarness {
    fn new() -> Self {
        BusHarness {
            bus: Bus::new(),
            consumer: None,
        }
    }
}

impl Harness for BusHarness {
    // A shared consumer is a source too, so the test keeps a handle on it while it is served.
    type S = Arc<syncbus::Consumer<Bytes>>;

    async fn open(&mut self, events: Vec<Envelope<Bytes>>) -> Self::S {
        let config = ConsumerConfig::default()
            .name("mailer")
            .ack_timeout(ACK_TIMEOUT)
            .max_deliver(100);
        let consumer = Arc::new(self.bus.consumer::<Bytes>("mail.>", config).unwrap());
        for env in events {
            self.bus.publish_envelope(env).await.unwrap();
        }
        self.consumer = Some(consumer.clone());
        consumer
    }

    async fn leftovers(&mut self) -> Vec<u64> {
        let consumer = self.consumer.as_ref().unwrap();
        let mut left = Vec::new();
        loop {
            let batch = consumer
                .as_ref()
                .fetch(100, Duration::from_millis(50))
                .await;
            if batch.is_empty() {
                break;
            }
            for d in batch {
                left.push(to_of(d.envelope()));
                d.ack().unwrap();
            }
        }
        assert_eq!(
            consumer.pending(),
            0,
            "the consumer holds nothing unsettled"
        );
        left
    }
}

struct SqliteHarness {
    dir: tempfile::TempDir,
}

impl SqliteHarness {
    fn new() -> Self {
        SqliteHarness {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn consumer(&self) -> (Arc<dyn EventLog>, DurableConsumer) {
        let store = SqliteStore::open(self.dir.path().join("serve.db"))
            .await
            .unwrap();
        let log: Arc<dyn EventLog> = Arc::new(store);
        let config = DurableConfig::new()
            .poll_interval(Duration::from_millis(5))
            .ack_timeout(ACK_TIMEOUT);
        let consumer = DurableConsumer::open(log.clone(), "mailer", config)
            .await
            .unwrap();
        (log, consumer)
    }
}

impl Harness for SqliteHarness {
    type S = DurableConsumer;

    async fn open(&mut self, events: Vec<Envelope<Bytes>>) -> DurableConsumer {
        let (log, consumer) = self.consumer().await;
        log.append_batch(events).await.unwrap();
        consumer
    }

    async fn leftovers(&mut self) -> Vec<u64> {
        // A new store on the same file: what a restarted process sees.
        let (log, consumer) = self.consumer().await;
        let mut left = Vec::new();
        loop {
            let batch = consumer.fetch(100, Duration::ZERO).await.unwrap();
            if batch.is_empty() {
                break;
            }
            for d in batch {
                left.push(to_of(d.envelope()));
                d.ack().await.unwrap();
            }
        }
        assert_eq!(
            consumer.committed().await.unwrap(),
            log.head().await.unwrap(),
            "every record is settled"
        );
        left
    }
}

fn to_of(env: &Envelope<Bytes>) -> u64 {
    env.decode_payload::<Mail>().map_or(0, |m| m.payload().to)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Success acked (and its follow-up published); a retryable failure nak'd with its delay,
/// then succeeding; a permanent failure dead-lettered and termed; an undecodable record
/// dead-lettered and termed; an event of another type dead-lettered with the reason, never
/// acked unhandled.
async fn outcomes<H: Harness>(mut h: H) {
    let source = h
        .open(vec![mail(1), mail(2), mail(3), undecodable(), other_type()])
        .await;
    let bus = Bus::new();
    let dead = Arc::new(MemoryDeadLetterStore::new(100));
    let wf = Workflow::builder(&bus).dead_letters(dead.clone()).build();
    let followups = Arc::new(AtomicU32::new(0));
    let f = followups.clone();
    let _sent = bus
        .subscribe::<Sent>("mail.sent")
        .unwrap()
        .inline(move |env| {
            assert_eq!(env.payload().to, 1);
            f.fetch_add(1, SeqCst);
        })
        .unwrap();
    let calls: Arc<Mutex<Calls>> = Arc::default();
    let c = calls.clone();
    let served = wf
        .serve(source)
        .fetch_wait(Duration::from_millis(20))
        .retry(RetryPolicy::default().max_attempts(3))
        .handle(move |env: Envelope<Mail>, ctx| {
            let to = env.payload().to;
            let attempt = {
                let mut calls = c.lock().unwrap();
                let seen = calls.entry(to).or_default();
                seen.push((Instant::now(), ctx.attempt()));
                seen.len()
            };
            if to == 1 {
                ctx.emit(Sent { to });
            }
            async move {
                match (to, attempt) {
                    (2, 1) => Err(HandlerError::retryable("smtp busy").retry_after(RETRY_AFTER)),
                    (3, _) => Err(HandlerError::permanent("no such mailbox")),
                    _ => Ok(()),
                }
            }
        })
        .unwrap();

    wait_for("two handled, three dead letters", || {
        served.metrics().succeeded == 2 && served.settles().termed == 3
    })
    .await;
    // Long enough for a lost settle to come back after the ack timeout.
    tokio::time::sleep(ACK_TIMEOUT * 2).await;
    let settled = served.stop().await;

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls[&1].len(), 1, "a success runs once");
    assert_eq!(calls[&2].len(), 2, "a retryable failure runs again");
    assert!(
        calls[&2][1].0 - calls[&2][0].0 >= RETRY_AFTER,
        "the nak carried the error's retry_after: {:?}",
        calls[&2][1].0 - calls[&2][0].0
    );
    assert_eq!(
        (calls[&2][0].1, calls[&2][1].1),
        (1, 2),
        "the attempt is the delivery count"
    );
    assert_eq!(calls[&3].len(), 1, "a permanent failure is not retried");
    assert!(
        !calls.contains_key(&0),
        "the undecodable record never reached the handler"
    );
    assert_eq!(followups.load(SeqCst), 1, "the follow-up reached the bus");
    assert_eq!(
        settled.acked, 2,
        "mail 1, mail 2's second attempt: {settled:?}"
    );
    assert_eq!(settled.nakd, 1, "{settled:?}");
    assert_eq!(settled.termed, 3, "{settled:?}");
    assert_eq!(
        (settled.skipped, settled.undecodable),
        (1, 1),
        "{settled:?}"
    );
    assert_eq!(settled.settle_errors, 0, "{settled:?}");

    let letters = dead.list(&DeadLetterFilter::new()).await.unwrap();
    let mut kinds: Vec<(ErrorKind, String)> = letters
        .iter()
        .map(|l| (l.error_kind, l.subscription.clone()))
        .collect();
    kinds.sort_by_key(|(k, _)| k.as_str());
    assert_eq!(
        kinds,
        [
            (ErrorKind::Decode, "mailer".to_owned()),
            (ErrorKind::Decode, "mailer".to_owned()),
            (ErrorKind::Permanent, "mailer".to_owned())
        ]
    );
    let other = letters
        .iter()
        .find(|l| l.envelope.meta().event_type().as_str() == "mail.bounced")
        .unwrap();
    assert!(
        other.error().contains("not the handler's"),
        "{}",
        other.error()
    );
    let permanent = letters
        .iter()
        .find(|l| l.error_kind == ErrorKind::Permanent)
        .unwrap();
    assert!(permanent.error().contains("no such mailbox"));
    assert_eq!(to_of(&permanent.envelope), 3);

    assert!(h.leftovers().await.is_empty(), "everything was settled");
}

/// Stopping while 100 deliveries are in flight: each is acked (handled) or handed back, and
/// the handed-back ones are all there after reopening. None lost, none handled twice.
async fn stop_in_flight<H: Harness>(mut h: H, lanes: usize) {
    let all: BTreeSet<u64> = (100..200).collect();
    let source = h.open(all.iter().map(|&n| mail(n)).collect()).await;
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let handled: Arc<Mutex<Vec<u64>>> = Arc::default();
    let started = Arc::new(AtomicU32::new(0));
    let (hd, st) = (handled.clone(), started.clone());
    let served = wf
        .serve(source)
        .keyed(lanes)
        .batch(100)
        .fetch_wait(Duration::from_millis(20))
        .handle(move |env: Envelope<Mail>, _ctx| {
            let (hd, st) = (hd.clone(), st.clone());
            async move {
                st.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                hd.lock().unwrap().push(env.payload().to);
                Ok::<(), HandlerError>(())
            }
        })
        .unwrap();
    wait_for("a few handlers to start", || {
        started.load(SeqCst) >= 2 * lanes as u32
    })
    .await;
    let settled = served.stop().await;

    let handled = handled.lock().unwrap().clone();
    assert!(
        !handled.is_empty() && handled.len() < 100,
        "the stop came mid-way: {} handled",
        handled.len()
    );
    assert_eq!(settled.fetched, 100, "{settled:?}");
    assert_eq!(
        settled.acked + settled.handed_back,
        settled.fetched,
        "every fetched delivery was acked or handed back: {settled:?}"
    );
    assert_eq!(settled.acked as usize, handled.len(), "{settled:?}");

    let left = h.leftovers().await;
    let handled_set: BTreeSet<u64> = handled.iter().copied().collect();
    let left_set: BTreeSet<u64> = left.iter().copied().collect();
    assert_eq!(handled_set.len(), handled.len(), "none handled twice");
    assert!(
        handled_set.is_disjoint(&left_set),
        "an acked delivery did not come back"
    );
    let union: BTreeSet<u64> = handled_set.union(&left_set).copied().collect();
    assert_eq!(union, all, "none lost");
}

/// A handler that runs longer than the ack timeout keeps its delivery with in-progress
/// signals: it is not handed out again meanwhile.
async fn long_handler<H: Harness>(mut h: H) {
    let source = h.open(vec![mail(7)]).await;
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let served = wf
        .serve(source)
        .keyed(2)
        .fetch_wait(Duration::from_millis(20))
        // Ticks well inside the lease, which runs from the fetch, before the handler starts.
        .in_progress_every(Some(ACK_TIMEOUT / 10))
        .handle(move |_env: Envelope<Mail>, _ctx| {
            c.fetch_add(1, SeqCst);
            async move {
                tokio::time::sleep(ACK_TIMEOUT * 3).await;
                Ok::<(), HandlerError>(())
            }
        })
        .unwrap();
    wait_for("the long handler", || served.metrics().succeeded == 1).await;
    let settled = served.stop().await;
    assert_eq!(
        calls.load(SeqCst),
        1,
        "not redelivered while in progress: {settled:?}"
    );
    assert_eq!(
        (settled.acked, settled.settle_errors),
        (1, 0),
        "{settled:?}"
    );
    assert!(h.leftovers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_on_the_bus_consumer() {
    outcomes(BusHarness::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_on_an_sqlite_durable_consumer() {
    outcomes(SqliteHarness::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_loses_nothing_on_the_bus_consumer() {
    stop_in_flight(BusHarness::new(), 4).await;
    stop_in_flight(BusHarness::new(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_loses_nothing_on_an_sqlite_durable_consumer() {
    stop_in_flight(SqliteHarness::new(), 4).await;
    stop_in_flight(SqliteHarness::new(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_progress_keeps_a_long_handler_on_the_bus_consumer() {
    long_handler(BusHarness::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_progress_keeps_a_long_handler_on_an_sqlite_durable_consumer() {
    long_handler(SqliteHarness::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_types_are_acked_only_when_asked() {
    let mut h = SqliteHarness::new();
    let source = h.open(vec![other_type(), mail(4)]).await;
    let bus = Bus::new();
    let dead = Arc::new(MemoryDeadLetterStore::new(10));
    let wf = Workflow::builder(&bus).dead_letters(dead.clone()).build();
    let served = wf
        .serve(source)
        .fetch_wait(Duration::from_millis(20))
        .other_types(OtherTypes::Skip)
        .handle(|_env: Envelope<Mail>, _ctx| async { Ok::<(), HandlerError>(()) })
        .unwrap();
    wait_for("both settled", || served.settles().acked == 2).await;
    let settled = served.stop().await;
    assert_eq!((settled.skipped, settled.termed), (1, 0), "{settled:?}");
    assert_eq!(dead.len(), 0, "skipping is the explicit opt-in: no record");
    assert!(h.leftovers().await.is_empty());
}

#[tokio::test]
async fn a_typed_consumer_is_served_without_decoding() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let source = bus
        .consumer::<Mail>("mail.>", ConsumerConfig::default())
        .unwrap();
    let served: Served = wf
        .serve(source)
        .fetch_wait(Duration::from_millis(20))
        .handle(|env: Envelope<Mail>, _ctx| async move {
            assert_eq!(env.payload().to, 5);
            Ok::<(), HandlerError>(())
        })
        .unwrap();
    bus.publish(Mail { to: 5 }).await.unwrap();
    wait_for("the typed event", || served.metrics().succeeded == 1).await;
    let settled = served.stop().await;
    assert_eq!((settled.acked, settled.undecodable), (1, 0));
}

#[tokio::test]
async fn refused_setups_are_typed_errors() {
    #[derive(Clone, Debug)]
    struct Other;
    impl Event for Other {
        const TYPE: &'static str = "other";
    }
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let ok = || handler_fn(|_env: Envelope<Mail>, _ctx| async { Ok::<(), HandlerError>(()) });
    let other = bus
        .consumer::<Other>("other", ConsumerConfig::default())
        .unwrap();
    assert!(matches!(
        wf.serve(other).handle_with(ok()),
        Err(ServeError::PayloadMismatch { .. })
    ));
    let mails = || {
        bus.consumer::<Mail>("mail.>", ConsumerConfig::default())
            .unwrap()
    };
    assert!(matches!(
        wf.serve(mails()).keyed(0).handle_with(ok()),
        Err(ServeError::InvalidConfig(_))
    ));
    let first = wf.serve(mails()).name("mailer").handle_with(ok()).unwrap();
    let twice = wf.serve(mails()).name("mailer").handle_with(ok());
    assert!(
        matches!(&twice, Err(ServeError::NameTaken(n)) if n == "mailer"),
        "{twice:?}"
    );
    first.stop().await;
    // Stopped: the name is free again.
    wf.serve(mails())
        .name("mailer")
        .handle_with(ok())
        .unwrap()
        .stop()
        .await;
}

#[test]
fn outside_a_runtime_serving_is_an_error_not_a_panic() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let source = bus
        .consumer::<Mail>("mail.>", ConsumerConfig::default())
        .unwrap();
    let r = wf
        .serve(source)
        .handle(|_env: Envelope<Mail>, _ctx| async { Ok::<(), HandlerError>(()) });
    assert_eq!(r.err(), Some(ServeError::NoRuntime));
}

/// `Served::settled` waits until every fetched delivery is settled and the source has
/// nothing more: with slow handlers on two lanes, nothing is still running when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_settled_waits_for_every_fetched_delivery() {
    let mut h = BusHarness::new();
    let source = h.open((0..12).map(mail).collect()).await;
    let wf = Workflow::new(&h.bus);
    let handled = Arc::new(AtomicU32::new(0));
    let hd = handled.clone();
    let served = wf
        .serve(source)
        .keyed(2)
        .fetch_wait(Duration::from_millis(20))
        .handle(move |_env: Envelope<Mail>, _ctx| {
            let hd = hd.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(15)).await;
                hd.fetch_add(1, SeqCst);
                Ok(())
            }
        })
        .unwrap();
    let m = served
        .settled_within(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        handled.load(SeqCst),
        12,
        "settled before the handlers were done"
    );
    assert_eq!((m.fetched, m.acked), (12, 12), "{m:?}");
    served.stop().await;
}

/// `Bus::settled` covers workflow subscriptions, their in-process retries included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_settled_waits_for_a_workflow_subscriptions_retries() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let sub = wf
        .subscribe::<Mail>("mail.send")
        .unwrap()
        .retry(
            RetryPolicy::default()
                .initial(Duration::from_millis(20))
                .max_attempts(3),
        )
        .handle(move |_env, _ctx| {
            let n = c.fetch_add(1, SeqCst);
            async move {
                if n < 2 {
                    Err(HandlerError::retryable("not yet"))
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    bus.publish(Mail { to: 1 }).await.unwrap();
    bus.settled_within(Duration::from_secs(30)).await.unwrap();
    let m = sub.metrics();
    assert_eq!((m.attempts, m.succeeded), (3, 1), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_holds_about_two_batches_however_many_lanes() {
    // Held deliveries wait unticked: a runner holding a batch per lane would let a JetStream
    // ack wait run out on hundreds of them under load (each redelivered, wasted work).
    let (lanes, batch, n) = (8, 16, 400);
    let mut h = BusHarness::new();
    let source = h.open((0..n).map(mail).collect()).await;
    let bus = Bus::new();
    let served = Workflow::new(&bus)
        .serve(source)
        .keyed(lanes)
        .batch(batch)
        .fetch_wait(Duration::from_millis(20))
        .handle(|_env: Envelope<Mail>, _ctx| async {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok::<(), HandlerError>(())
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut most = 0;
    while served.metrics().succeeded < n {
        assert!(Instant::now() < deadline, "stalled: {}", served.settles());
        let s = served.settles();
        most = most.max(s.fetched - s.acked - s.nakd - s.termed - s.handed_back);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    served.stop().await;
    let bound = 2 * batch as u64 + lanes as u64;
    assert!(
        most > 0 && most <= bound,
        "{most} in hand at most, bound {bound}"
    );
}
