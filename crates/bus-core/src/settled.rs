//! What [`Bus::settled_within`](crate::Bus::settled_within) reports when the bus did not
//! settle in time.

use std::fmt;
use std::time::Duration;

/// A push subscription with work in flight: events queued, or handlers running.
///
/// # Examples
///
/// ```
/// let b = syncbus_core::Busy::new("billing", 2, 1);
/// assert_eq!(b.to_string(), "billing: 2 queued, 1 running");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Busy {
    /// The subscription's name (its pattern when it has none).
    pub name: String,
    /// Events waiting in its queues.
    pub queued: usize,
    /// Handlers running now.
    pub running: usize,
}

impl Busy {
    /// A busy subscription, for tests of code that reports one.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = syncbus_core::Busy::new("billing", 2, 1);
    /// assert_eq!((b.queued, b.running), (2, 1));
    /// ```
    pub fn new(name: impl Into<String>, queued: usize, running: usize) -> Busy {
        Busy {
            name: name.into(),
            queued,
            running,
        }
    }
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} queued, {} running",
            self.name, self.queued, self.running
        )
    }
}

/// The bus did not settle within the time asked: which subscriptions still had work.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{Bus, Event};
/// # #[derive(Clone, Debug)] struct Ping;
/// # impl Event for Ping { const TYPE: &'static str = "ping"; }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::new();
/// let _slow = bus.subscribe::<Ping>("ping")?.name("slow").queued_async(|_| async {
///     tokio::time::sleep(Duration::from_secs(60)).await;
/// })?;
/// bus.publish(Ping).await?;
/// let e = bus.settled_within(Duration::from_millis(50)).await.unwrap_err();
/// assert_eq!(e.busy()[0].name, "slow");
/// assert!(e.to_string().contains("slow: 0 queued, 1 running"), "{e}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled {
    waited: Duration,
    busy: Vec<Busy>,
}

impl Unsettled {
    /// What a runner of its own (a served source, a connector) reports when it did not
    /// settle within `waited`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use syncbus_core::{Busy, Unsettled};
    /// let e = Unsettled::new(Duration::from_secs(1), vec![Busy::new("mailer", 0, 2)]);
    /// assert_eq!(e.busy().len(), 1);
    /// ```
    pub fn new(waited: Duration, busy: Vec<Busy>) -> Unsettled {
        Unsettled { waited, busy }
    }

    /// How long the bus was waited for.
    ///
    /// # Examples
    ///
    /// See [`Unsettled`].
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The subscriptions that still had work when the time ran out.
    ///
    /// # Examples
    ///
    /// See [`Unsettled`].
    pub fn busy(&self) -> &[Busy] {
        &self.busy
    }
}

impl fmt::Display for Unsettled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queued: usize = self.busy.iter().map(|b| b.queued).sum();
        let running: usize = self.busy.iter().map(|b| b.running).sum();
        write!(
            f,
            "the bus did not settle within {:?}: {queued} events queued and {running} handlers running (",
            self.waited
        )?;
        for (i, b) in self.busy.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{b}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for Unsettled {}

/// Looks at `check` every millisecond, on tokio's clock, until it answers `Ok` (settled), or
/// until `timeout` (if any) passes: then the last `Err` (who was busy) becomes [`Unsettled`].
/// [`Bus::settled`](crate::Bus::settled) and `Served::settled` in the workflow crate wait with
/// it; a runner of your own can too.
///
/// # Errors
///
/// [`Unsettled`] when `timeout` passed first.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_core::{wait_settled, Busy};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut left = 3;
/// let done = wait_settled(Some(Duration::from_secs(5)), || {
///     left -= 1;
///     if left == 0 { Ok("done") } else { Err(vec![Busy::new("mine", left, 0)]) }
/// })
/// .await;
/// assert_eq!(done.unwrap(), "done");
/// let never = wait_settled(Some(Duration::from_millis(5)), || Err::<(), _>(vec![Busy::new("stuck", 1, 0)]));
/// assert_eq!(never.await.unwrap_err().busy()[0].name, "stuck");
/// # }
/// ```
pub async fn wait_settled<T>(
    timeout: Option<Duration>,
    mut check: impl FnMut() -> Result<T, Vec<Busy>>,
) -> Result<T, Unsettled> {
    let start = tokio::time::Instant::now();
    loop {
        match check() {
            Ok(done) => return Ok(done),
            Err(busy) => {
                if let Some(timeout) = timeout.filter(|t| start.elapsed() >= *t) {
                    return Err(Unsettled::new(timeout, busy));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
