//! The poller against a real HTTP upstream on loopback, on tokio's paused clock: the
//! requests run on a runtime on the real clock (`support::RealClock`), the poller's waits
//! on the paused one, so each poll's start time is exact and the assertions compare it
//! with the configuration. No test here waits on a timer of its own: paused time jumps to
//! the next timer, and a timer of the test's would be reached while a request is in flight.

mod support;

use std::time::Duration;

use support::{http_source, item, RealClock, Scripted, Upstream};
use syncbus_core::{Bus, Envelope};
use syncbus_poll::{PollConfig, Poller, RawEvent};
use syncbus_storage::{Checkpoints, MemoryStore};
use syncbus_workflow::{Served, Workflow};
use tokio::sync::mpsc;

const MS: Duration = Duration::from_millis(1);

fn config() -> PollConfig {
    PollConfig::new()
        .interval(Duration::from_secs(10))
        .jitter(0.2)
        .idle_multiplier(2.0)
        .idle_max(Duration::from_secs(35))
        .error_initial(Duration::from_secs(1))
        .error_multiplier(3.0)
        .error_max(Duration::from_secs(20))
}

struct Run {
    poller: Poller<RealClock>,
    source: RealClock,
    served: Served,
    handled: mpsc::UnboundedReceiver<(String, u64)>,
    store: MemoryStore,
}

async fn run(up: &Upstream, cfg: PollConfig) -> Run {
    let source = RealClock::new(http_source(&up.url));
    let store = MemoryStore::new();
    let poller = Poller::open("up", source.clone(), store.clone(), cfg)
        .await
        .unwrap();
    let (tx, handled) = mpsc::unbounded_channel();
    let bus = Bus::new();
    let served = Workflow::new(&bus)
        .serve(poller.clone())
        .fetch_wait(Duration::from_secs(3600))
        .handle(move |env: Envelope<RawEvent>, _ctx| {
            let tx = tx.clone();
            async move {
                let m = env.meta();
                let _ = tx.send((m.entity_id().unwrap().to_string(), m.version().unwrap()));
                Ok(())
            }
        })
        .unwrap();
    Run {
        poller,
        source,
        served,
        handled,
        store,
    }
}

/// Waits (on no timer) until the source has finished `n` polls.
async fn polls(r: &RealClock, n: usize) {
    r.finished(n).await;
}

fn within(d: Duration, base: Duration, jitter: f64) -> bool {
    d >= base && d <= base.mul_f64(1.0 + jitter) + MS
}

#[tokio::test(start_paused = true)]
async fn drains_pages_at_once_then_polls_on_the_interval_within_jitter() {
    let up = Upstream::start(10);
    up.push((0..25).map(|i| item(&format!("e{i}"), 1)));
    let mut r = run(&up, config()).await;
    for _ in 0..25 {
        r.handled.recv().await.unwrap();
    }
    // 3 pages and the empty poll that finds the upstream drained, all at once.
    polls(&r.source, 4).await;
    up.push([item("late", 1)]);
    // The drained poll made the first idle wait: "late" is found one interval later.
    assert_eq!(r.handled.recv().await.unwrap(), ("late".into(), 1));
    polls(&r.source, 6).await;
    let t = r.source.times();
    let cursors: Vec<_> = t.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(
        cursors[..6],
        [
            None,
            Some("10".into()),
            Some("20".into()),
            Some("25".into()),
            Some("25".into()),
            Some("26".into())
        ]
    );
    for (d, _) in &t[..4] {
        assert!(*d < MS * 5, "a drain waited {d:?}");
    }
    // The empty poll is the first idle one: the interval, stretched by at most 20 %.
    let gap = t[4].0 - t[3].0;
    assert!(within(gap, Duration::from_secs(10), 0.2), "{gap:?}");
    // After a page with items and nothing more: right away (more = the new cursor).
    assert!(t[5].0 - t[4].0 < MS * 5);
    assert_eq!(r.store.get_str("up").await.unwrap().as_deref(), Some("26"));
    r.served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn idle_polls_back_off_to_the_cap_and_a_change_resets_the_backoff() {
    let up = Upstream::start(10);
    up.push([item("a", 1)]);
    let mut r = run(&up, config()).await;
    r.handled.recv().await.unwrap();
    // poll 1 (a), poll 2 (empty, +0), then idle waits 10, 20, 35 (cap), 35.
    polls(&r.source, 6).await;
    let t = r.source.times();
    let gaps: Vec<_> = t.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps[0] < MS * 5, "{gaps:?}");
    for (gap, base) in gaps[1..].iter().zip([10, 20, 35, 35]) {
        assert!(within(*gap, Duration::from_secs(base), 0.2), "{gaps:?}");
    }
    // Each idle poll after the first was a 304 (the same URL, the ETag sent back).
    let reqs = up.requests();
    assert!(
        reqs[2..6]
            .iter()
            .all(|q| q.if_none_match.as_deref() == Some("\"1-1\"")),
        "{reqs:?}"
    );
    let m = r.poller.metrics();
    assert_eq!((m.not_modified, m.items, m.pages), (4, 1, 1));
    assert_eq!(
        m.cursor
            .and_then(|c| c.as_str().map(str::to_owned))
            .as_deref(),
        Some("1")
    );
    // A change: handled, then the backoff starts over from the interval.
    up.push([item("b", 1)]);
    assert_eq!(r.handled.recv().await.unwrap(), ("b".into(), 1));
    polls(&r.source, 9).await;
    let t = r.source.times();
    // poll 7 found b (more: a new cursor), poll 8 at once found nothing, poll 9 after the interval.
    assert!(t[7].0 - t[6].0 < MS * 5);
    assert!(
        within(t[8].0 - t[7].0, Duration::from_secs(10), 0.2),
        "{t:?}"
    );
    r.served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_429_retry_after_is_honoured_and_success_resets() {
    let up = Upstream::start(10);
    up.push([item("a", 1)]);
    up.script(Scripted::Status(500));
    up.script(Scripted::Status(502));
    up.script(Scripted::Throttle(429, Some("30".into())));
    up.script(Scripted::Throttle(503, Some("0".into())));
    up.script(Scripted::Status(500));
    let mut r = run(&up, config()).await;
    // Five failures, about 75 s: the lag (since the last drained, handled poll) shows it.
    polls(&r.source, 5).await;
    let m = r.poller.metrics();
    assert!(m.lag >= Duration::from_secs(55), "{m:?}");
    assert_eq!((m.last_success, m.consecutive_failures), (None, 5));
    assert_eq!(r.handled.recv().await.unwrap(), ("a".into(), 1));
    polls(&r.source, 6).await;
    let t = r.source.times();
    let gaps: Vec<_> = t.windows(2).map(|w| w[1].0 - w[0].0).collect();
    // failures 1..5: waits 1 s, 3 s, max(9 s, Retry-After 30 s), max(20 s cap, 0), 20 s cap.
    for (gap, base) in gaps.iter().zip([1, 3, 30, 20, 20]) {
        assert!(within(*gap, Duration::from_secs(base), 0.2), "{gaps:?}");
    }
    let m = r.poller.metrics();
    assert_eq!((m.errors, m.throttled, m.consecutive_failures), (5, 2, 0));
    assert!(m.last_success.is_some());
    // Success reset the failure backoff: the next failure waits error_initial again.
    polls(&r.source, 7).await; // poll 7: after=1, empty; the next in 10 s
    up.script(Scripted::Status(500));
    up.push([item("b", 1)]);
    polls(&r.source, 9).await;
    let t = r.source.times();
    assert!(
        within(t[7].0 - t[6].0, Duration::from_secs(10), 0.2),
        "{t:?}"
    );
    assert!(
        within(t[8].0 - t[7].0, Duration::from_secs(1), 0.2),
        "{t:?}"
    );
    assert_eq!(r.handled.recv().await.unwrap(), ("b".into(), 1));
    // Caught up again: the lag drops to (about) nothing.
    while r.poller.metrics().lag > Duration::from_secs(1) {
        tokio::time::sleep(MS).await;
    }
    assert!(r.poller.metrics().since_success.unwrap() < Duration::from_secs(1));
    r.served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn pause_stops_polling_and_resume_polls_at_once_with_backoff_reset() {
    let up = Upstream::start(10);
    up.push([item("a", 1)]);
    let mut r = run(&up, config()).await;
    r.handled.recv().await.unwrap();
    polls(&r.source, 4).await; // a, empty, 304 after 10 s, 304 after 20 s
    r.poller.pause();
    assert!(r.poller.metrics().paused);
    let before = r.source.polls.lock().len();
    assert_eq!(before, 4);
    let paused_at = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(r.source.polls.lock().len(), before, "polled while paused");
    up.push([item("b", 1)]);
    r.poller.resume();
    assert_eq!(r.handled.recv().await.unwrap(), ("b".into(), 1));
    let t = r.source.polls.lock().clone();
    let resumed = t[before].0 - paused_at;
    assert!(resumed >= Duration::from_secs(600) && resumed < Duration::from_secs(600) + MS * 5);
    // Backoff reset: after b (more) and the empty poll, the next waits the interval again.
    polls(&r.source, before + 3).await;
    let t = r.source.times();
    let g = t[before + 2].0 - t[before + 1].0;
    assert!(within(g, Duration::from_secs(10), 0.2), "{t:?}");
    r.served.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_long_run_of_failures_keeps_to_the_configured_cap() {
    let up = Upstream::start(10);
    up.push([item("a", 1)]);
    for _ in 0..8 {
        up.script(Scripted::Status(500));
    }
    let cfg = config()
        .jitter(0.0)
        .error_initial(Duration::from_millis(100))
        .error_multiplier(2.0)
        .error_max(Duration::from_millis(200));
    let mut r = run(&up, cfg).await;
    assert_eq!(r.handled.recv().await.unwrap(), ("a".into(), 1));
    let t = r.source.times();
    let gaps: Vec<_> = t
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_millis())
        .collect();
    // 100, then the 200 ms cap, however long the run of failures (not the runner's pause).
    assert_eq!(
        gaps[..8],
        [100, 200, 200, 200, 200, 200, 200, 200],
        "{gaps:?}"
    );
    r.served.stop().await;
}
