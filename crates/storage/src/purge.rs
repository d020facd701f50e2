//! Purging expired dedup keys in the background.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::into_arc::IntoArc;
use crate::DedupStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A tokio task that calls [`DedupStore::purge_expired`] every `interval`, so expired keys
/// do not pile up in a persistent store. Failures are logged at WARN and retried next time.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use syncbus_storage::{DedupPurger, MemoryDedupStore};
///
/// let store = MemoryDedupStore::new(100_000);
/// let purger = DedupPurger::spawn(store, Duration::from_secs(60));
/// purger.stop().await;
/// # Ok::<(), syncbus_storage::StoreError>(())
/// # }).unwrap();
/// ```
///
/// Dropping the handle stops purging after the current round, so it is `#[must_use]`:
///
/// ```compile_fail
/// # #![deny(unused_must_use)]
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// # use syncbus_storage::{DedupPurger, MemoryDedupStore};
/// DedupPurger::spawn(MemoryDedupStore::new(10), Duration::from_secs(60)); // error: unused
/// # });
/// ```
#[derive(Debug)]
#[must_use = "dropping a DedupPurger stops purging; keep it and call .stop() at shutdown"]
pub struct DedupPurger {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    rounds: AtomicU64,
    purged: AtomicU64,
    failed: AtomicU64,
}

/// What a [`DedupPurger`] did: rounds run, keys purged, rounds that failed (each logged).
///
/// # Examples
///
/// ```
/// let s = syncbus_storage::PurgeStats::default();
/// assert_eq!(s.to_string(), "rounds 0, purged 0, failed 0");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeStats {
    /// Purge rounds run.
    pub rounds: u64,
    /// Expired keys removed.
    pub purged: u64,
    /// Rounds the store failed (each logged at WARN; the next round tries again).
    pub failed: u64,
}

impl fmt::Display for PurgeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rounds {}, purged {}, failed {}",
            self.rounds, self.purged, self.failed
        )
    }
}

impl Counters {
    fn snapshot(&self) -> PurgeStats {
        PurgeStats {
            rounds: self.rounds.load(Ordering::Relaxed),
            purged: self.purged.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

impl DedupPurger {
    /// Starts purging `store` every `interval` (the first purge runs at once).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use syncbus_storage::DedupPurger;
    /// use syncbus_storage::MemoryDedupStore;
    /// let purger = DedupPurger::spawn(MemoryDedupStore::new(1_000), Duration::from_secs(30));
    /// purger.stop().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn`).
    pub fn spawn(store: impl IntoArc<dyn DedupStore>, interval: Duration) -> DedupPurger {
        let store = store.into_arc();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                c.rounds.fetch_add(1, Ordering::Relaxed);
                match store.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => {
                        c.purged.fetch_add(n, Ordering::Relaxed);
                        tracing::debug!(purged = n, "expired dedup keys purged");
                    }
                    Err(e) => {
                        c.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "purging expired dedup keys failed");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        DedupPurger {
            stop,
            task,
            counters,
        }
    }

    /// What it did so far.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use syncbus_storage::{DedupKey, DedupPurger, DedupStore, MemoryDedupStore, Outcome};
    /// let store = std::sync::Arc::new(MemoryDedupStore::new(100));
    /// store.finish(&DedupKey::new("k")?, Outcome::Done, Duration::ZERO).await?;
    /// let purger = DedupPurger::spawn(store.clone(), Duration::from_millis(5));
    /// while purger.stats().purged == 0 {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// let last = purger.stop().await; // the counters of the whole run
    /// assert_eq!((last.purged, last.failed), (1, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn stats(&self) -> PurgeStats {
        self.counters.snapshot()
    }

    /// Stops purging and waits for the task to end.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use syncbus_storage::DedupPurger;
    /// use syncbus_storage::MemoryDedupStore;
    /// let purger = DedupPurger::spawn(MemoryDedupStore::new(1_000), Duration::from_millis(5));
    /// tokio::time::sleep(Duration::from_millis(20)).await;
    /// purger.stop().await; // returns once the task has ended
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Cancel safety
    ///
    /// If dropped, the task still stops after its current purge.
    pub async fn stop(self) -> PurgeStats {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.counters.snapshot()
    }
}
