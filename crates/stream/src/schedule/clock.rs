//! Where a scheduler reads the time: the system's, or one tests control.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The wall clock a [`Job`](crate::Job) reads. The job sleeps on tokio's timer until the
/// next run, reading this clock again at least every [`recheck`](Self::recheck), so a wall
/// clock that jumps (NTP, a suspended laptop) is noticed.
///
/// [`SystemClock`] is the real one; [`TestClock`] follows tokio's clock, so a test on a
/// paused runtime (`#[tokio::test(start_paused = true)]`) runs days of schedule at once.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Clock, SystemClock};
/// assert!(SystemClock.now() > chrono::DateTime::UNIX_EPOCH);
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The time now.
    fn now(&self) -> DateTime<Utc>;

    /// The longest a job sleeps before reading the clock again.
    fn recheck(&self) -> Duration {
        Duration::from_secs(30)
    }
}

/// The system's wall clock (`Utc::now`).
///
/// # Examples
///
/// See [`Clock`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that starts at a given time and moves with tokio's clock: pause tokio's
/// time (`start_paused`, `tokio::time::pause`) and it moves only with
/// `tokio::time::advance` or auto-advance, exactly.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// use syncbus_stream::{Clock, TestClock};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let start = Utc.with_ymd_and_hms(2026, 3, 8, 0, 0, 0).unwrap();
/// let clock = TestClock::new(start);
/// tokio::time::sleep(Duration::from_secs(3_600)).await; // instant on a paused clock
/// assert_eq!(clock.now(), start + chrono::Duration::hours(1));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TestClock {
    start: DateTime<Utc>,
    at: tokio::time::Instant,
}

impl TestClock {
    /// A clock reading `start` now (by tokio's clock).
    ///
    /// # Examples
    ///
    /// See [`TestClock`].
    pub fn new(start: DateTime<Utc>) -> Self {
        TestClock {
            start,
            at: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed =
            chrono::Duration::from_std(self.at.elapsed()).unwrap_or(chrono::Duration::MAX);
        self.start + elapsed
    }

    fn recheck(&self) -> Duration {
        // It moves with tokio's timer, so it cannot drift from it.
        Duration::from_secs(366 * 24 * 3_600)
    }
}
