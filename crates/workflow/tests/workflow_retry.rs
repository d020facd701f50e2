//! Retry: the observed schedule equals the configured one within jitter bounds.

mod support;

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use support::*;
use syncbus_core::{Bus, Envelope};
use syncbus_workflow::{
    handler_fn, ErrorKind, Handler, HandlerError, Jitter, Layer, RetryPolicy, Stack,
};
use tokio::time::Instant;

/// Fails `fails` times with `err()`, recording when each attempt started.
fn flaky(fails: u32, times: Log<Instant>, err: fn() -> HandlerError) -> impl Handler<Job> {
    let n = Arc::new(AtomicU32::new(0));
    handler_fn(move |_env: Envelope<Job>, _ctx| {
        let (n, times) = (n.clone(), times.clone());
        async move {
            times.push(Instant::now());
            if n.fetch_add(1, SeqCst) < fails {
                Err(err())
            } else {
                Ok(())
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn default_schedule_within_jitter_bounds() {
    let bus = Bus::new();
    let policy = RetryPolicy::default();
    let times = Log::default();
    let h = policy
        .clone()
        .layer()
        .layer(flaky(7, times.clone(), || HandlerError::retryable("503")));
    let e = env(Job { n: 1 });
    let ctx = ctx_for(&bus, &e);
    h.call(e, ctx.clone()).await.unwrap();
    assert_eq!(ctx.attempt(), 8);
    let t = times.get();
    assert_eq!(t.len(), 8);
    for (i, w) in t.windows(2).enumerate() {
        let gap = w[1] - w[0];
        let (lo, hi) = policy.bounds(i as u32 + 1, Duration::ZERO);
        // 100 ms × 2^i, ±50 %: the paused clock makes the sleep exact.
        assert_eq!(lo, Duration::from_millis(100 << i).mul_f64(0.5));
        assert!(
            gap >= lo && gap <= hi,
            "retry {i}: {gap:?} not in [{lo:?}, {hi:?}]"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn exhausted_attempts_return_the_last_error() {
    let bus = Bus::new();
    let times = Log::default();
    let policy = RetryPolicy::default().max_attempts(3).jitter(Jitter::None);
    let h = policy
        .layer()
        .layer(flaky(10, times.clone(), || HandlerError::retryable("down")));
    let e = env(Job { n: 1 });
    let start = Instant::now();
    let err = h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Retryable);
    assert_eq!(times.len(), 3);
    // 100 ms + 200 ms, exactly, without jitter.
    assert_eq!(Instant::now() - start, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let bus = Bus::new();
    let times = Log::default();
    let h = RetryPolicy::default()
        .layer()
        .layer(flaky(10, times.clone(), || {
            HandlerError::permanent("bad data")
        }));
    let e = env(Job { n: 1 });
    let err = h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(times.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let bus = Bus::new();
    let times = Log::default();
    let h = RetryPolicy::default()
        .layer()
        .layer(flaky(1, times.clone(), || {
            HandlerError::retryable("429").retry_after(Duration::from_secs(7))
        }));
    let e = env(Job { n: 1 });
    h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap();
    let t = times.get();
    assert_eq!(t[1] - t[0], Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_stops_retrying() {
    let bus = Bus::new();
    let times = Log::default();
    let policy = RetryPolicy::default()
        .jitter(Jitter::None)
        .max_attempts(100)
        .max_elapsed(Duration::from_millis(1000));
    let h = policy.layer().layer(flaky(100, times.clone(), || {
        HandlerError::retryable("down")
    }));
    let e = env(Job { n: 1 });
    h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap_err();
    // Starts at 0, 100, 300, 700 ms; the next would start at 1500 ms > 1 s.
    assert_eq!(times.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn panics_are_permanent_failures() {
    let bus = Bus::new();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let h = Stack::new()
        .layer(RetryPolicy::default().layer())
        .handler(handler_fn(move |_e: Envelope<Job>, _ctx| {
            c.fetch_add(1, SeqCst);
            async move {
                if true {
                    panic!("boom");
                }
                Ok(())
            }
        }));
    let e = env(Job { n: 1 });
    let err = h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(err.message().contains("boom"));
    assert_eq!(calls.load(SeqCst), 1);
}

proptest! {
    /// Every drawn delay lies in the policy's bounds, and the bounds follow the formula.
    #[test]
    fn delays_stay_in_bounds(
        initial_ms in 1u64..10_000,
        mult in 1.0f64..4.0,
        cap_s in 1u64..600,
        n in 1u32..40,
        jitter in prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Decorrelated),
            (0.0f64..=1.0).prop_map(Jitter::Proportional),
        ],
        prev_ms in 0u64..100_000,
    ) {
        let p = RetryPolicy::default()
            .initial(Duration::from_millis(initial_ms))
            .multiplier(mult)
            .max_delay(Duration::from_secs(cap_s))
            .jitter(jitter);
        let base = p.base_delay(n);
        let expect = (initial_ms as f64 / 1000.0 * mult.powi(n as i32 - 1)).min(cap_s as f64);
        prop_assert!((base.as_secs_f64() - expect).abs() < 1e-6 * expect.max(1.0));
        let prev = Duration::from_millis(prev_ms);
        let (lo, hi) = p.bounds(n, prev);
        prop_assert!(lo <= hi);
        prop_assert!(hi <= Duration::from_secs(cap_s).max(lo));
        for _ in 0..8 {
            let d = p.delay(n, prev);
            prop_assert!(d >= lo && d <= hi, "{:?} not in [{:?}, {:?}]", d, lo, hi);
        }
    }
}

#[test]
fn nonsense_settings_are_clamped_not_a_panic() {
    let p = RetryPolicy::default()
        .multiplier(f64::NAN)
        .jitter(Jitter::Proportional(f64::INFINITY))
        .max_attempts(0)
        .max_delay(Duration::from_secs(1));
    assert_eq!(p.attempt_limit(), 1);
    assert_eq!(
        p.base_delay(u32::MAX),
        Duration::from_millis(100),
        "multiplier 1"
    );
    let (lo, hi) = p.bounds(3, Duration::MAX);
    assert_eq!(
        (lo, hi),
        (Duration::from_millis(100), Duration::from_millis(100)),
        "no jitter"
    );
    let huge = RetryPolicy::default()
        .multiplier(1e300)
        .jitter(Jitter::Decorrelated);
    assert_eq!(huge.base_delay(1000), Duration::from_secs(300));
    let d = huge.delay(1000, Duration::MAX);
    assert!(d <= Duration::from_secs(300));
}

#[tokio::test(start_paused = true)]
async fn a_schedule_replaces_the_exponential_delays() {
    let bus = Bus::new();
    let times = Log::default();
    let ms = Duration::from_millis;
    // Hours are not capped by max_delay: a schedule means what it says.
    let schedule = [ms(0), ms(5_000), ms(300_000), ms(36_000_000)];
    let policy = RetryPolicy::default()
        .schedule(schedule)
        .jitter(Jitter::None);
    assert_eq!(policy.attempt_limit(), 5);
    let h = policy
        .layer()
        .layer(flaky(10, times.clone(), || HandlerError::retryable("down")));
    let e = env(Job { n: 1 });
    let err = h.call(e.clone(), ctx_for(&bus, &e)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Retryable);
    let t = times.get();
    assert_eq!(t.len(), 5);
    let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, schedule);
}

proptest! {
    /// A scheduled delay with proportional jitter stays within ±f of its entry; past the
    /// end of the schedule the last entry repeats.
    #[test]
    fn scheduled_delays_stay_in_bounds(
        delays in proptest::collection::vec(0u64..100_000_000, 1..10),
        f in 0.0f64..=1.0,
        n in 1u32..20,
    ) {
        let delays: Vec<Duration> = delays.into_iter().map(Duration::from_millis).collect();
        let p = RetryPolicy::default().schedule(delays.clone()).jitter(Jitter::Proportional(f));
        prop_assert_eq!(p.attempt_limit() as usize, delays.len() + 1);
        let base = delays[(n as usize - 1).min(delays.len() - 1)];
        prop_assert_eq!(p.base_delay(n), base);
        let d = p.delay(n, Duration::ZERO);
        prop_assert!(d >= base.mul_f64(1.0 - f) && d <= base.mul_f64(1.0 + f));
    }
}

#[test]
fn an_empty_schedule_is_one_attempt() {
    let p = RetryPolicy::default().schedule([]);
    assert_eq!(p.attempt_limit(), 1);
    assert_eq!(p.base_delay(1), Duration::ZERO);
}
