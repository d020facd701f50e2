//! Event-time windows: tumbling, hopping and session, with a grace period and a side output
//! for what comes too late.
//!
//! # Boundaries
//!
//! A window is the half-open interval `[start, end)` of event time in unix milliseconds: an
//! event exactly on a boundary belongs to the window that starts there. Tumbling windows of
//! size `s` start at multiples of `s` (from the unix epoch); hopping windows of size `s`
//! and advance `a` start at multiples of `a`, so each event is in `s / a` of them (rounded
//! up). A session window is `[first event, last event + gap)`: an event that falls inside
//! an open session (or whose own `[t, t + gap)` overlaps one) joins it, and one that
//! bridges two sessions merges them.
//!
//! # Closing and lateness
//!
//! A window closes when the watermark reaches `end + grace`. Until then an event for it is
//! added, even behind the watermark (late, but within grace). An event all of whose windows
//! are closed is **too late**: it is counted ([`TopologyMetrics::late`](crate::TopologyMetrics))
//! and handed to the window's side output ([`WindowedStream::on_late`]), never dropped
//! silently. An event without an event time cannot be placed in a window: it is counted as
//! untimed and handed to the side output with [`LateReason::NoEventTime`].
//!
//! # Emitting
//!
//! [`Emit::OnClose`] (the default) hands on one final result per key and window when the
//! window closes, in key order. [`Emit::Updates`] hands on the running result after every
//! event that changes it (and nothing more at close).

pub(crate) mod aggregator;
pub(crate) mod stage;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::time::{non_negative_millis, positive_millis};

/// When a window hands on its results.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_stream::{Emit, Windows};
/// let w = Windows::tumbling(Duration::from_secs(60))?.emit(Emit::Updates);
/// assert_eq!(w.emits(), Emit::Updates);
/// # Ok::<(), syncbus_stream::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Emit {
    /// Once per key and window, when the window closes (watermark ≥ end + grace).
    #[default]
    OnClose,
    /// After each event that changes a result: running updates.
    Updates,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Tumbling { size: i64 },
    Hopping { size: i64, advance: i64 },
    Session { gap: i64 },
}

/// How to cut event time into windows, how long to wait for late events, when to emit.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_stream::{Window, Windows};
///
/// let minutes = Windows::tumbling(Duration::from_secs(60))?.grace(Duration::from_secs(10));
/// assert_eq!(minutes.grace_ms(), 10_000);
/// let mut got = vec![];
/// minutes.windows_of(61_000, &mut got);
/// assert_eq!(got, [Window::new(60_000, 120_000)]);
///
/// let hopping = Windows::hopping(Duration::from_secs(60), Duration::from_secs(30))?;
/// got.clear();
/// hopping.windows_of(61_000, &mut got);
/// assert_eq!(got, [Window::new(60_000, 120_000), Window::new(30_000, 90_000)]);
/// # Ok::<(), syncbus_stream::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub(crate) kind: Kind,
    pub(crate) grace: i64,
    pub(crate) emit: Emit,
}

impl Windows {
    /// Back-to-back windows of `size`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = syncbus_stream::Windows::tumbling(Duration::from_millis(100))?;
    /// # Ok::<(), syncbus_stream::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Zero`] for a size under a millisecond, [`ConfigError::TooLong`].
    pub fn tumbling(size: Duration) -> Result<Windows, ConfigError> {
        Ok(Windows::of(Kind::Tumbling {
            size: positive_millis(size, "window size")?,
        }))
    }

    /// Windows of `size` starting every `advance` (overlapping when `advance < size`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_stream::{ConfigError, Windows};
    /// assert!(Windows::hopping(Duration::from_secs(10), Duration::from_secs(5)).is_ok());
    /// assert!(matches!(
    ///     Windows::hopping(Duration::from_secs(5), Duration::from_secs(10)),
    ///     Err(ConfigError::AdvanceExceedsSize { .. })
    /// ));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Zero`], [`ConfigError::TooLong`], and
    /// [`ConfigError::AdvanceExceedsSize`] when `advance > size`.
    pub fn hopping(size: Duration, advance: Duration) -> Result<Windows, ConfigError> {
        let size_ms = positive_millis(size, "window size")?;
        let advance_ms = positive_millis(advance, "window advance")?;
        if advance_ms > size_ms {
            return Err(ConfigError::AdvanceExceedsSize {
                size_ms,
                advance_ms,
            });
        }
        Ok(Windows::of(Kind::Hopping {
            size: size_ms,
            advance: advance_ms,
        }))
    }

    /// Sessions per key: a session ends after `gap` without an event.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = syncbus_stream::Windows::session(Duration::from_secs(300))?;
    /// # Ok::<(), syncbus_stream::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Zero`], [`ConfigError::TooLong`].
    pub fn session(gap: Duration) -> Result<Windows, ConfigError> {
        Ok(Windows::of(Kind::Session {
            gap: positive_millis(gap, "session gap")?,
        }))
    }

    fn of(kind: Kind) -> Windows {
        Windows {
            kind,
            grace: 0,
            emit: Emit::OnClose,
        }
    }

    /// How long after a window's end it still takes late events (default zero). A duration
    /// too long for milliseconds is held at the longest one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let w = syncbus_stream::Windows::tumbling(Duration::from_secs(1))?.grace(Duration::from_millis(250));
    /// assert_eq!(w.grace_ms(), 250);
    /// # Ok::<(), syncbus_stream::ConfigError>(())
    /// ```
    pub fn grace(mut self, grace: Duration) -> Windows {
        self.grace = non_negative_millis(grace, "grace").unwrap_or(i64::MAX / 4);
        self
    }

    /// The grace period in milliseconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(syncbus_stream::Windows::session(Duration::from_secs(1))?.grace_ms(), 0);
    /// # Ok::<(), syncbus_stream::ConfigError>(())
    /// ```
    pub fn grace_ms(&self) -> i64 {
        self.grace
    }

    /// When results are handed on (default [`Emit::OnClose`]).
    ///
    /// # Examples
    ///
    /// See [`Emit`].
    pub fn emit(mut self, emit: Emit) -> Windows {
        self.emit = emit;
        self
    }

    /// When results are handed on.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_stream::{Emit, Windows};
    /// assert_eq!(Windows::tumbling(Duration::from_secs(1))?.emits(), Emit::OnClose);
    /// # Ok::<(), syncbus_stream::ConfigError>(())
    /// ```
    pub fn emits(&self) -> Emit {
        self.emit
    }

    /// Whether these are session windows.
    pub(crate) fn is_session(&self) -> bool {
        matches!(self.kind, Kind::Session { .. })
    }

    /// Appends the fixed (tumbling or hopping) windows holding event time `t`, latest start
    /// first; for session windows, the session `[t, t + gap)` of that event alone.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_stream::{Window, Windows};
    /// let mut got = vec![];
    /// Windows::tumbling(Duration::from_millis(10))?.windows_of(20, &mut got);
    /// assert_eq!(got, [Window::new(20, 30)]); // on a boundary: the window starting there
    /// got.clear();
    /// Windows::tumbling(Duration::from_millis(10))?.windows_of(-1, &mut got);
    /// assert_eq!(got, [Window::new(-10, 0)]);
    /// # Ok::<(), syncbus_stream::ConfigError>(())
    /// ```
    pub fn windows_of(&self, t: i64, out: &mut Vec<Window>) {
        match self.kind {
            Kind::Tumbling { size } => {
                let start = t.div_euclid(size).saturating_mul(size);
                out.push(Window::new(start, start.saturating_add(size)));
            }
            Kind::Hopping { size, advance } => {
                let mut start = t.div_euclid(advance).saturating_mul(advance);
                while start > t.saturating_sub(size) {
                    out.push(Window::new(start, start.saturating_add(size)));
                    start = match start.checked_sub(advance) {
                        Some(s) => s,
                        None => break,
                    };
                }
            }
            Kind::Session { gap } => out.push(Window::new(t, t.saturating_add(gap))),
        }
    }
}

/// A window of event time: `[start, end)` in unix milliseconds.
///
/// # Examples
///
/// ```
/// use syncbus_stream::Window;
/// let w = Window::new(0, 60_000);
/// assert!(w.contains(0) && w.contains(59_999) && !w.contains(60_000));
/// assert_eq!(w.to_string(), "[1970-01-01T00:00:00Z, 1970-01-01T00:01:00Z)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// The first millisecond in it.
    pub start: i64,
    /// The first millisecond after it.
    pub end: i64,
}

impl Window {
    /// The window `[start, end)`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(syncbus_stream::Window::new(5, 10).end, 10);
    /// ```
    pub const fn new(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    /// Whether event time `t` falls in it.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(syncbus_stream::Window::new(5, 10).contains(5));
    /// ```
    pub const fn contains(&self, t: i64) -> bool {
        self.start <= t && t < self.end
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ts =
            |ms: i64| syncbus_envelope::Timestamp::from_unix_nanos(ms.saturating_mul(1_000_000));
        write!(f, "[{}, {})", ts(self.start), ts(self.end))
    }
}

/// One result of a windowed aggregation: the key, its window, the value.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Window, Windowed};
/// let r = Windowed { key: "eu", window: Window::new(0, 60_000), value: 3u64 };
/// assert_eq!(r.value, 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windowed<K, A> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: Window,
    /// The aggregate of the key's events in the window.
    pub value: A,
}

/// Why an event went to a window's side output.
///
/// # Examples
///
/// ```
/// use syncbus_stream::LateReason;
/// assert_ne!(LateReason::TooLate, LateReason::NoEventTime);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LateReason {
    /// Every window it belongs to had closed (watermark ≥ end + grace).
    TooLate,
    /// It had no event time, so it belongs to no window.
    NoEventTime,
}

/// An event set aside by a window: its key, value, event time and the watermark then.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Late, LateReason};
/// let l = Late { key: "eu", value: 1, time: Some(5), watermark: 100, reason: LateReason::TooLate };
/// assert_eq!(l.reason, LateReason::TooLate);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Late<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Its event time in unix milliseconds, if it had one.
    pub time: Option<i64>,
    /// The watermark when it arrived.
    pub watermark: i64,
    /// Why it was set aside.
    pub reason: LateReason,
}

pub use aggregator::{Aggregator, Count, Fold, Sum};
pub use stage::{WindowAggregate, WindowedStream};
