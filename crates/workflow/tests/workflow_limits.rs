//! Circuit breaker, timeout, concurrency limit and rate limit.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use syncbus_core::{Bus, Envelope};
use syncbus_workflow::{
    handler_fn, CircuitBreakerConfig, CircuitState, ConcurrencyLimitLayer, ErrorKind, Handler,
    HandlerError, Layer, RateLimitConfig, RetryPolicy, Stack, TimeoutLayer, WhenOpen,
};
use tokio::time::Instant;

async fn call(h: &impl Handler<Job>, bus: &Bus) -> Result<(), HandlerError> {
    let e = env(Job { n: 0 });
    let ctx = ctx_for(bus, &e);
    h.call(e, ctx).await
}

fn switchable(down: Arc<AtomicBool>, calls: Arc<AtomicU32>) -> impl Handler<Job> {
    handler_fn(move |_e: Envelope<Job>, _c| {
        calls.fetch_add(1, SeqCst);
        let down = down.load(SeqCst);
        async move {
            if down {
                Err(HandlerError::retryable("downstream 503"))
            } else {
                Ok(())
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn the_circuit_opens_and_recovers() {
    let bus = Bus::new();
    let down = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicU32::new(0));
    let h = CircuitBreakerConfig::new()
        .min_calls(4)
        .failure_ratio(0.5)
        .open_for(Duration::from_secs(10))
        .when_open(WhenOpen::DeadLetter)
        .layer()
        .layer(switchable(down.clone(), calls.clone()));
    for _ in 0..4 {
        assert_eq!(
            call(&h, &bus).await.unwrap_err().kind(),
            ErrorKind::Retryable
        );
    }
    assert_eq!(h.state(), CircuitState::Open);
    let err = call(&h, &bus).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert!(!err.is_retryable());
    assert_eq!(
        calls.load(SeqCst),
        4,
        "an open circuit does not call the handler"
    );

    // Half-open after `open_for`: a failing probe opens it again.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(h.state(), CircuitState::HalfOpen);
    assert_eq!(
        call(&h, &bus).await.unwrap_err().kind(),
        ErrorKind::Retryable
    );
    assert_eq!(h.state(), CircuitState::Open);

    // The downstream is back: the next probe closes it.
    down.store(false, SeqCst);
    tokio::time::advance(Duration::from_secs(10)).await;
    call(&h, &bus).await.unwrap();
    assert_eq!(h.state(), CircuitState::Closed);
    call(&h, &bus).await.unwrap();
    assert_eq!(calls.load(SeqCst), 7);
}

#[tokio::test(start_paused = true)]
async fn waiting_policy_holds_attempts_until_the_probe_succeeds() {
    let bus = Bus::new();
    let down = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicU32::new(0));
    let h = CircuitBreakerConfig::new()
        .min_calls(2)
        .open_for(Duration::from_secs(30))
        .layer()
        .layer(switchable(down.clone(), calls.clone()));
    call(&h, &bus).await.unwrap_err();
    call(&h, &bus).await.unwrap_err();
    assert_eq!(h.state(), CircuitState::Open);
    down.store(false, SeqCst);
    let start = Instant::now();
    call(&h, &bus).await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_secs(30));
    assert_eq!(h.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_do_not_open_the_circuit() {
    let bus = Bus::new();
    let h = CircuitBreakerConfig::new()
        .min_calls(2)
        .layer()
        .layer(handler_fn(|_e: Envelope<Job>, _c| async {
            Err(HandlerError::permanent("bad row"))
        }));
    for _ in 0..10 {
        call(&h, &bus).await.unwrap_err();
    }
    assert_eq!(h.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_times_out_and_is_retried() {
    let bus = Bus::new();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let h = Stack::new()
        .layer(RetryPolicy::default().max_attempts(3).layer())
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .handler(handler_fn(move |_e: Envelope<Job>, _c| {
            let n = c.fetch_add(1, SeqCst);
            async move {
                if n < 2 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok(())
            }
        }));
    call(&h, &bus).await.unwrap();
    assert_eq!(calls.load(SeqCst), 3);

    let h = TimeoutLayer::new(Duration::from_millis(5)).layer(handler_fn(
        |_e: Envelope<Job>, _c| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        },
    ));
    let err = call(&h, &bus).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_n_attempts_run_at_once() {
    let bus = Bus::new();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n, p) = (now.clone(), peak.clone());
    let h = Arc::new(ConcurrencyLimitLayer::new(2).layer(handler_fn(
        move |_e: Envelope<Job>, _c| {
            let (n, p) = (n.clone(), p.clone());
            async move {
                let cur = n.fetch_add(1, SeqCst) + 1;
                p.fetch_max(cur, SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                n.fetch_sub(1, SeqCst);
                Ok(())
            }
        },
    )));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (h, bus) = (h.clone(), bus.clone());
            tokio::spawn(async move { call(&*h, &bus).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(peak.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_spaces_attempts() {
    let bus = Bus::new();
    let times: Log<Instant> = Log::default();
    let t = times.clone();
    let h = RateLimitConfig::per_second(10)
        .burst(2)
        .layer()
        .layer(handler_fn(move |_e: Envelope<Job>, _c| {
            t.push(Instant::now());
            async { Ok(()) }
        }));
    let start = Instant::now();
    for _ in 0..22 {
        call(&h, &bus).await.unwrap();
    }
    // A burst of 2, then one every 100 ms: the 22nd starts at 2 s.
    let t = times.get();
    assert_eq!(t[1] - start, Duration::ZERO);
    assert!(
        t[21] - start >= Duration::from_millis(1999),
        "{:?}",
        t[21] - start
    );
    assert!(
        t[21] - start <= Duration::from_millis(2010),
        "{:?}",
        t[21] - start
    );
}
