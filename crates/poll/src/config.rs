//! [`PollConfig`]: when the poller polls, and how it backs off.

use std::time::Duration;

/// A setting out of range (a zero interval, a multiplier below 1, jitter outside 0..=1).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_poll::PollConfig;
/// let e = PollConfig::new().interval(Duration::ZERO).check().unwrap_err();
/// assert_eq!(e.to_string(), "interval must be more than zero");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub(crate) String);

/// When a poller polls and how it backs off.
///
/// | after | the next poll waits |
/// | --- | --- |
/// | a page that says more is waiting | nothing: the poller drains |
/// | a page with items, nothing more waiting | `interval` (every backoff resets) |
/// | the n-th empty or unchanged (304) poll in a row | `interval × idle_multiplier^(n-1)`, at most `idle_max` |
/// | the n-th failure in a row | `error_initial × error_multiplier^(n-1)`, at most `error_max`, and never less than the upstream's `Retry-After` |
///
/// Every wait but the drain is stretched by a random factor in `[1, 1 + jitter]`, so
/// pollers started together drift apart and none polls sooner than configured.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_poll::PollConfig;
/// let cfg = PollConfig::new()
///     .interval(Duration::from_secs(10))
///     .jitter(0.2)
///     .idle_multiplier(1.5)
///     .idle_max(Duration::from_secs(60))
///     .error_initial(Duration::from_secs(1))
///     .error_multiplier(2.0)
///     .error_max(Duration::from_secs(300));
/// cfg.check()?;
/// # Ok::<(), syncbus_poll::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PollConfig {
    pub(crate) interval: Duration,
    pub(crate) jitter: f64,
    pub(crate) idle_multiplier: f64,
    pub(crate) idle_max: Duration,
    pub(crate) error_initial: Duration,
    pub(crate) error_multiplier: f64,
    pub(crate) error_max: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig::new()
    }
}

impl PollConfig {
    /// Every 30 s, 10 % jitter; idle backoff ×2 up to 5 min; failures from 1 s, ×2, up to
    /// 5 min.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(syncbus_poll::PollConfig::new().get_interval(), Duration::from_secs(30));
    /// ```
    pub fn new() -> PollConfig {
        PollConfig {
            interval: Duration::from_secs(30),
            jitter: 0.1,
            idle_multiplier: 2.0,
            idle_max: Duration::from_secs(300),
            error_initial: Duration::from_secs(1),
            error_multiplier: 2.0,
            error_max: Duration::from_secs(300),
        }
    }

    /// The wait between polls when all is well.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = syncbus_poll::PollConfig::new().interval(Duration::from_millis(500));
    /// assert_eq!(cfg.get_interval(), Duration::from_millis(500));
    /// ```
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
        self
    }

    /// The fraction (0 to 1) by which a wait may be stretched at random.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_poll::PollConfig::new().jitter(0.0).check().is_ok());
    /// assert!(syncbus_poll::PollConfig::new().jitter(1.5).check().is_err());
    /// ```
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// How much longer each idle poll in a row waits (at least 1; 1 means no backoff).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_poll::PollConfig::new().idle_multiplier(0.5).check().is_err());
    /// ```
    pub fn idle_multiplier(mut self, m: f64) -> Self {
        self.idle_multiplier = m;
        self
    }

    /// The longest wait after idle polls.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert!(syncbus_poll::PollConfig::new().idle_max(Duration::from_secs(60)).check().is_ok());
    /// ```
    pub fn idle_max(mut self, d: Duration) -> Self {
        self.idle_max = d;
        self
    }

    /// The wait after the first failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert!(syncbus_poll::PollConfig::new().error_initial(Duration::from_millis(100)).check().is_ok());
    /// ```
    pub fn error_initial(mut self, d: Duration) -> Self {
        self.error_initial = d;
        self
    }

    /// How much longer each failure in a row waits (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_poll::PollConfig::new().error_multiplier(f64::NAN).check().is_err());
    /// ```
    pub fn error_multiplier(mut self, m: f64) -> Self {
        self.error_multiplier = m;
        self
    }

    /// The longest wait after failures (a `Retry-After` may ask for longer, and gets it).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert!(syncbus_poll::PollConfig::new().error_max(Duration::from_secs(60)).check().is_ok());
    /// ```
    pub fn error_max(mut self, d: Duration) -> Self {
        self.error_max = d;
        self
    }

    /// The interval.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!syncbus_poll::PollConfig::new().get_interval().is_zero());
    /// ```
    pub fn get_interval(&self) -> Duration {
        self.interval
    }

    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a zero interval or error wait, jitter outside `0..=1`, a
    /// multiplier below 1 or not finite, a maximum below its start.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_poll::PollConfig;
    /// let e = PollConfig::new().idle_max(Duration::from_secs(1)).check().unwrap_err();
    /// assert!(e.to_string().contains("idle_max"));
    /// ```
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_owned()));
        if self.interval.is_zero() {
            return bad("interval must be more than zero");
        }
        if self.error_initial.is_zero() {
            return bad("error_initial must be more than zero");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return bad("jitter must be between 0 and 1");
        }
        for (name, m) in [
            ("idle_multiplier", self.idle_multiplier),
            ("error_multiplier", self.error_multiplier),
        ] {
            if !m.is_finite() || m < 1.0 {
                return Err(ConfigError(format!(
                    "{name} must be a finite number of at least 1"
                )));
            }
        }
        if self.idle_max < self.interval {
            return bad("idle_max must be at least the interval");
        }
        if self.error_max < self.error_initial {
            return bad("error_max must be at least error_initial");
        }
        Ok(())
    }
}

/// The backoff state: how many idle polls and failures in a row. The waits before jitter.
#[derive(Debug, Default, Clone)]
pub(crate) struct Schedule {
    idle: u32,
    errors: u32,
}

fn grow(start: Duration, m: f64, n: u32, max: Duration) -> Duration {
    let f = m.powi(n.saturating_sub(1).min(1024) as i32);
    let secs = start.as_secs_f64() * f;
    if !secs.is_finite() || secs >= max.as_secs_f64() {
        max
    } else {
        Duration::from_secs_f64(secs)
    }
}

impl Schedule {
    /// After a page was handled: drain, or the interval, or an idle backoff.
    pub(crate) fn after_page(&mut self, cfg: &PollConfig, items: usize, more: bool) -> Duration {
        self.errors = 0;
        if more {
            self.idle = 0;
            return Duration::ZERO;
        }
        if items > 0 {
            self.idle = 0;
            return cfg.interval;
        }
        self.idle = self.idle.saturating_add(1);
        grow(cfg.interval, cfg.idle_multiplier, self.idle, cfg.idle_max)
    }

    /// After a failed poll.
    pub(crate) fn after_error(
        &mut self,
        cfg: &PollConfig,
        retry_after: Option<Duration>,
    ) -> Duration {
        self.errors = self.errors.saturating_add(1);
        let d = grow(
            cfg.error_initial,
            cfg.error_multiplier,
            self.errors,
            cfg.error_max,
        );
        retry_after.map_or(d, |r| r.max(d))
    }

    pub(crate) fn reset(&mut self) {
        *self = Schedule::default();
    }

    pub(crate) fn failures(&self) -> u32 {
        self.errors
    }
}

/// `d` stretched by a random factor in `[1, 1 + jitter]`.
pub(crate) fn jittered(d: Duration, jitter: f64) -> Duration {
    if d.is_zero() || jitter == 0.0 {
        return d;
    }
    d.mul_f64(1.0 + jitter * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PollConfig {
        PollConfig::new()
            .interval(Duration::from_secs(1))
            .idle_multiplier(2.0)
            .idle_max(Duration::from_secs(5))
            .error_initial(Duration::from_millis(100))
            .error_multiplier(3.0)
            .error_max(Duration::from_secs(1))
    }

    #[test]
    fn idle_backoff_grows_caps_and_resets() {
        let (c, mut s) = (cfg(), Schedule::default());
        let waits: Vec<_> = (0..5)
            .map(|_| s.after_page(&c, 0, false).as_millis())
            .collect();
        assert_eq!(waits, [1000, 2000, 4000, 5000, 5000]);
        assert_eq!(s.after_page(&c, 3, false), Duration::from_secs(1));
        assert_eq!(s.after_page(&c, 0, false), Duration::from_secs(1));
        assert_eq!(s.after_page(&c, 3, true), Duration::ZERO);
    }

    #[test]
    fn error_backoff_grows_caps_honours_retry_after_and_resets() {
        let (c, mut s) = (cfg(), Schedule::default());
        let waits: Vec<_> = (0..4)
            .map(|_| s.after_error(&c, None).as_millis())
            .collect();
        assert_eq!(waits, [100, 300, 900, 1000]);
        assert_eq!(
            s.after_error(&c, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(s.after_page(&c, 1, false), Duration::from_secs(1));
        assert_eq!(
            s.after_error(&c, Some(Duration::from_millis(1))),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let d = Duration::from_secs(10);
        for _ in 0..10_000 {
            let j = jittered(d, 0.25);
            assert!(j >= d && j <= d.mul_f64(1.25), "{j:?}");
        }
        assert_eq!(jittered(d, 0.0), d);
    }
}
