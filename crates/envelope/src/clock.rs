//! A cheap wall clock for ids: one relaxed load of a time in milliseconds that a background
//! thread refreshes every millisecond while ids are being made.
//!
//! Why: reading the system clock costs 30-60 ns on virtual machines (where the vDSO may not
//! apply), more than everything else an event costs on the fast path. Caching it per thread
//! for N ids would make the time of a rarely used thread stale by minutes; a shared ticker
//! keeps every thread within about a tick of the real time.
//!
//! The ticker parks itself after [`IDLE_TICKS`] ticks without demand, marks the cached time
//! stale, and is woken by the next reader, who reads the system clock itself meanwhile. So an
//! idle process does not wake up a thousand times a second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix milliseconds as last stored by the ticker; 0 when stale.
static NOW_MS: AtomicU64 = AtomicU64::new(0);
/// Set by readers, cleared by the ticker: somebody still wants the time.
static DEMAND: AtomicBool = AtomicBool::new(false);
static TICKER: OnceLock<Option<Thread>> = OnceLock::new();

const TICK: Duration = Duration::from_millis(1);
/// Ticks without a reader before the ticker parks (100 ms).
const IDLE_TICKS: u32 = 100;

/// The system clock, in unix milliseconds.
pub(crate) fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The current time in unix milliseconds, within about one tick.
#[inline]
pub(crate) fn now_ms() -> u64 {
    if !DEMAND.load(Ordering::Relaxed) {
        DEMAND.store(true, Ordering::Relaxed);
    }
    let ms = NOW_MS.load(Ordering::Acquire);
    if ms != 0 {
        return ms;
    }
    wake_ticker();
    system_ms()
}

#[cold]
fn wake_ticker() {
    let ticker = TICKER.get_or_init(|| {
        std::thread::Builder::new()
            .name("syncbus-clock".into())
            .spawn(run)
            .ok()
            .map(|h| h.thread().clone())
    });
    if let Some(t) = ticker {
        t.unpark();
    }
}

fn run() {
    let mut idle = 0;
    loop {
        NOW_MS.store(system_ms(), Ordering::Release);
        std::thread::sleep(TICK);
        if DEMAND.swap(false, Ordering::Relaxed) {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle >= IDLE_TICKS {
            NOW_MS.store(0, Ordering::Release);
            // A reader that saw the stale mark has set DEMAND and unparked us (a park token
            // is kept if it came first), so this does not sleep through demand.
            while !DEMAND.load(Ordering::Relaxed) {
                std::thread::park();
            }
            idle = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_time_tracks_the_system_clock() {
        for _ in 0..50 {
            let cached = now_ms();
            let real = system_ms();
            assert!(real + 1 >= cached, "cached {cached} ahead of real {real}");
            assert!(
                real.saturating_sub(cached) <= 200,
                "cached {cached} stale vs real {real}"
            );
            std::thread::sleep(Duration::from_millis(3));
        }
    }
}
