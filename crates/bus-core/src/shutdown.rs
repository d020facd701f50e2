//! Shutting a bus down: stop intake, let workers drain until a deadline, then report what
//! was left undelivered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use syncbus_envelope::Pattern;

use crate::hub::Hub;
use crate::router::SubEntry;

/// After the deadline, how long workers get to put down what they hold and report it.
/// A handler still running after that finishes on its own; its leftovers are logged.
const ABORT_GRACE: Duration = Duration::from_millis(200);

/// Closes `hub` and waits up to `timeout` for its workers, blocking the thread.
pub(crate) fn blocking_shutdown(hub: &Hub, timeout: Duration) -> ShutdownReport {
    let deadline = Instant::now() + timeout;
    let entries = hub.close();
    let drained = hub.completion.wait(Some(deadline));
    if !drained {
        for e in &entries {
            e.sink.abort();
        }
        hub.completion.wait(Some(Instant::now() + ABORT_GRACE));
    }
    finish(hub, drained, entries)
}

/// Closes `hub` and awaits its workers for up to `timeout`.
pub(crate) async fn shutdown(hub: &Hub, timeout: Duration) -> ShutdownReport {
    let entries = hub.close();
    let drained = tokio::time::timeout(timeout, hub.completion.wait_async())
        .await
        .is_ok();
    if !drained {
        for e in &entries {
            e.sink.abort();
        }
        let _ = tokio::time::timeout(ABORT_GRACE, hub.completion.wait_async()).await;
    }
    finish(hub, drained, entries)
}

/// Drops what the subscriptions still hold, counting it per subscription.
fn finish(hub: &Hub, drained: bool, entries: Vec<Arc<SubEntry>>) -> ShutdownReport {
    let mut undelivered = Vec::new();
    for e in &entries {
        let count = e.sink.discard();
        if count > 0 {
            tracing::warn!(subscription = %e.name, count, "undelivered at shutdown");
            undelivered.push(Undelivered {
                subscription: e.name.to_string(),
                pattern: e.pattern.clone(),
                count,
            });
        }
    }
    hub.retire(entries);
    ShutdownReport {
        drained,
        undelivered,
    }
}

/// What [`Bus::shutdown`](crate::Bus::shutdown) left behind.
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// let report = syncbus_core::Bus::new().blocking_shutdown(Duration::from_millis(10));
/// assert!(report.drained && report.undelivered.is_empty() && report.is_clean());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Every worker finished before the deadline.
    pub drained: bool,
    /// Subscriptions that still held events at the deadline (they were dropped), and
    /// pull consumers' events that were never acked.
    pub undelivered: Vec<Undelivered>,
}

impl ShutdownReport {
    /// Drained in time and nothing left behind; see [`ShutdownReport`] for an example.
    pub fn is_clean(&self) -> bool {
        self.drained && self.undelivered.is_empty()
    }

    /// Events left behind, over all subscriptions.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncbus_core::{Bus, ConsumerConfig};
    /// # #[derive(Clone, Debug)] struct Job;
    /// # impl syncbus_core::Event for Job { const TYPE: &'static str = "jobs.new"; }
    /// let bus = Bus::new();
    /// let _jobs = bus.consumer::<Job>("jobs.*", ConsumerConfig::default().name("billing"))?;
    /// bus.try_publish(Job)?; // never fetched
    /// let report = bus.blocking_shutdown(Duration::from_millis(10));
    /// assert_eq!(report.total_undelivered(), 1);
    /// assert_eq!(report.undelivered[0].subscription, "billing");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn total_undelivered(&self) -> usize {
        self.undelivered.iter().map(|u| u.count).sum()
    }
}

/// Events one subscription did not deliver before shutdown; see
/// [`ShutdownReport::total_undelivered`] for an example.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Undelivered {
    /// The subscription's name.
    pub subscription: String,
    /// Its pattern.
    pub pattern: Pattern,
    /// How many events it did not deliver.
    pub count: usize,
}
