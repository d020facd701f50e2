//! Watermarks: how far event time has got, from the event times seen.
//!
//! Each input partition's watermark is the latest event time seen on it minus the
//! out-of-orderness bound: events up to that much behind the latest are expected and are not
//! late. The stream's watermark is the minimum over the partitions, so a slow partition holds
//! windows open until its events arrive. A partition with no event for the idle timeout (on
//! tokio's clock) stops counting, so a quiet partition does not stall the others; it counts
//! again with its next event. When every partition is idle the watermark is the largest of
//! theirs: input has paused, and what is complete can close. The watermark never goes back.
//!
//! An event without an event time leaves the watermark where it is.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::ConfigError;
use crate::time::non_negative_millis;

/// The settings of [`Watermarks`]: the out-of-orderness bound and the idle timeout.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_stream::WatermarkConfig;
///
/// let config = WatermarkConfig::new()
///     .out_of_orderness(Duration::from_secs(5))?
///     .idle_timeout(Duration::from_secs(30));
/// assert_eq!(config.bound_ms(), 5_000);
/// # Ok::<(), syncbus_stream::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatermarkConfig {
    bound: i64,
    idle: Option<Duration>,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        WatermarkConfig::new()
    }
}

impl WatermarkConfig {
    /// No out-of-orderness allowed, no idle timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_stream::WatermarkConfig::new().bound_ms(), 0);
    /// ```
    pub fn new() -> Self {
        WatermarkConfig {
            bound: 0,
            idle: None,
        }
    }

    /// How far behind the latest event time an event may be and still not be late.
    ///
    /// # Examples
    ///
    /// See [`WatermarkConfig`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::TooLong`] for a bound too long to count in milliseconds.
    pub fn out_of_orderness(mut self, bound: Duration) -> Result<Self, ConfigError> {
        self.bound = non_negative_millis(bound, "out-of-orderness bound")?;
        Ok(self)
    }

    /// After how long without an event a partition stops holding the watermark back.
    ///
    /// # Examples
    ///
    /// See [`WatermarkConfig`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle = Some(timeout);
        self
    }

    /// The out-of-orderness bound in milliseconds.
    ///
    /// # Examples
    ///
    /// See [`WatermarkConfig`].
    pub fn bound_ms(&self) -> i64 {
        self.bound
    }
}

#[derive(Clone, Debug)]
struct Partition {
    max: i64,
    seen: Instant,
}

/// The watermark over the partitions of an input.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_stream::{WatermarkConfig, Watermarks};
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), syncbus_stream::ConfigError> {
/// let config = WatermarkConfig::new().out_of_orderness(Duration::from_millis(100))?.idle_timeout(Duration::from_secs(1));
/// let mut wm = Watermarks::new(config);
/// wm.observe("eu", 1_000, Instant::now());
/// wm.observe("us", 5_000, Instant::now());
/// assert_eq!(wm.current(Instant::now()), 900); // the minimum: eu holds it back
/// tokio::time::sleep(Duration::from_millis(500)).await;
/// wm.observe("us", 6_000, Instant::now());
/// tokio::time::sleep(Duration::from_millis(600)).await;
/// assert_eq!(wm.current(Instant::now()), 5_900); // eu idle for 1.1 s: no longer counted
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Watermarks {
    config: WatermarkConfig,
    partitions: HashMap<String, Partition>,
    current: i64,
}

/// What a checkpoint keeps of the watermarks.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SavedWatermarks {
    pub(crate) partitions: Vec<(String, i64)>,
    pub(crate) current: i64,
}

impl Watermarks {
    /// No partition seen, the watermark at `i64::MIN`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut wm = syncbus_stream::Watermarks::new(Default::default());
    /// assert_eq!(wm.current(tokio::time::Instant::now()), i64::MIN);
    /// ```
    pub fn new(config: WatermarkConfig) -> Self {
        Watermarks {
            config,
            partitions: HashMap::new(),
            current: i64::MIN,
        }
    }

    /// Records an event at `time` (unix milliseconds) on `partition`, seen at `now`.
    ///
    /// # Examples
    ///
    /// See [`Watermarks`].
    pub fn observe(&mut self, partition: &str, time: i64, now: Instant) {
        match self.partitions.get_mut(partition) {
            Some(p) => {
                p.max = p.max.max(time);
                p.seen = now;
            }
            None => {
                self.partitions.insert(
                    partition.to_owned(),
                    Partition {
                        max: time,
                        seen: now,
                    },
                );
            }
        }
    }

    /// The watermark at `now`: the minimum over the partitions not idle, never lower than
    /// before.
    ///
    /// # Examples
    ///
    /// See [`Watermarks`].
    pub fn current(&mut self, now: Instant) -> i64 {
        let bound = self.config.bound;
        let of = |p: &Partition| p.max.saturating_sub(bound);
        let active = self.partitions.values().filter(|p| match self.config.idle {
            Some(idle) => now.saturating_duration_since(p.seen) < idle,
            None => true,
        });
        let next = match active.map(of).min() {
            Some(min) => Some(min),
            None => self.partitions.values().map(of).max(),
        };
        if let Some(next) = next {
            self.current = self.current.max(next);
        }
        self.current
    }

    pub(crate) fn save(&self) -> SavedWatermarks {
        SavedWatermarks {
            partitions: self
                .partitions
                .iter()
                .map(|(k, p)| (k.clone(), p.max))
                .collect(),
            current: self.current,
        }
    }

    pub(crate) fn load(&mut self, saved: SavedWatermarks, now: Instant) {
        self.current = saved.current;
        self.partitions = saved
            .partitions
            .into_iter()
            .map(|(k, max)| (k, Partition { max, seen: now }))
            .collect();
    }
}
