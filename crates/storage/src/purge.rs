//! Purging expired dedup keys in the background.

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
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                match store.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(purged = n, "expired dedup keys purged"),
                    Err(e) => tracing::warn!(error = %e, "purging expired dedup keys failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        DedupPurger { stop, task }
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
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
