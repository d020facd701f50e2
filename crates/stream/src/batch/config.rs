//! How a batch runner groups deliveries and what it does with a batch that fails.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use syncbus_storage::{DeadLetterStore, IntoArc};
use syncbus_workflow::RetryPolicy;

use crate::error::ConfigError;

/// What happens to a batch whose handler still fails after the retries of
/// [`BatchConfig::retry`].
#[derive(Clone)]
#[non_exhaustive]
pub enum OnBatchFailure {
    /// The whole batch is nak'ed with this delay: the source hands it out again. Nothing is
    /// dead-lettered and nothing is lost; a poison event blocks the batches it lands in.
    /// The default (1 s).
    Redeliver(Duration),
    /// The batch is split in halves, each handled (and retried) on its own, left first,
    /// recursively, until the events that fail alone are found: each of those is written to
    /// the dead-letter store alone and termed; every other event is handled and acked. If
    /// the store refuses the record, the event is nak'ed instead (nothing lost).
    Isolate(Arc<dyn DeadLetterStore>),
}

impl fmt::Debug for OnBatchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnBatchFailure::Redeliver(d) => f.debug_tuple("Redeliver").field(d).finish(),
            OnBatchFailure::Isolate(_) => f.write_str("Isolate(..)"),
        }
    }
}

/// The settings of a [`BatchRunner`](crate::BatchRunner): a batch is handed to the handler
/// when it holds `max_size` events or its first event has waited `max_wait`, whichever
/// comes first, and at shutdown.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use syncbus_storage::MemoryDeadLetterStore;
/// use syncbus_stream::BatchConfig;
/// use syncbus_workflow::RetryPolicy;
///
/// let config = BatchConfig::new("ledger-export")
///     .max_size(500)
///     .max_wait(Duration::from_millis(200))
///     .retry(RetryPolicy::new().max_attempts(3))
///     .isolate(MemoryDeadLetterStore::new(1_000));
/// assert_eq!(config.name(), "ledger-export");
/// ```
#[derive(Clone, Debug)]
pub struct BatchConfig {
    pub(crate) name: String,
    pub(crate) max_size: usize,
    pub(crate) max_wait: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) on_failure: OnBatchFailure,
    pub(crate) in_progress_every: Option<Duration>,
}

impl BatchConfig {
    /// Batches of up to 100 events or 1 s, one attempt more after a retryable failure
    /// (`RetryPolicy::new().max_attempts(2)`), then [`OnBatchFailure::Redeliver`] after 1 s;
    /// leases extended every 10 s while a batch is handled.
    /// `name` goes into logs and dead-letter records (as the subscription).
    ///
    /// # Examples
    ///
    /// See [`BatchConfig`].
    pub fn new(name: impl Into<String>) -> Self {
        BatchConfig {
            name: name.into(),
            max_size: 100,
            max_wait: Duration::from_secs(1),
            retry: RetryPolicy::new().max_attempts(2),
            on_failure: OnBatchFailure::Redeliver(Duration::from_secs(1)),
            in_progress_every: Some(Duration::from_secs(10)),
        }
    }

    /// The runner's name.
    ///
    /// # Examples
    ///
    /// See [`BatchConfig`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The most events in a batch (at least 1; checked by
    /// [`BatchRunner::spawn`](crate::BatchRunner::spawn)).
    ///
    /// # Examples
    ///
    /// See [`BatchConfig`].
    pub fn max_size(mut self, n: usize) -> Self {
        self.max_size = n;
        self
    }

    /// The longest the first event of a batch waits for more (at least 1 ms). Keep it well
    /// under the source's ack timeout: the leases of deliveries held while a batch forms are
    /// not extended (while it is handled they are: [`in_progress_every`](Self::in_progress_every)).
    ///
    /// # Examples
    ///
    /// See [`BatchConfig`].
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }

    /// How a failing batch (or, with [`isolate`](Self::isolate), a slice of it) is retried
    /// before [`OnBatchFailure`] applies: attempts in all and the delays between them. Only
    /// [retryable](syncbus_workflow::HandlerError::is_retryable) errors are retried.
    ///
    /// # Examples
    ///
    /// See [`BatchConfig`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// While a batch is handled (and between its retries), marks its deliveries
    /// `in_progress` this often, so the source does not hand them out again meanwhile
    /// (default 10 s; keep it under the source's ack timeout). `None`: never.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = syncbus_stream::BatchConfig::new("b").in_progress_every(Some(Duration::from_secs(2)));
    /// ```
    pub fn in_progress_every(mut self, every: Option<Duration>) -> Self {
        self.in_progress_every = every;
        self
    }

    /// [`OnBatchFailure::Redeliver`] with this delay.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = syncbus_stream::BatchConfig::new("b").redeliver(Duration::from_secs(5));
    /// ```
    pub fn redeliver(mut self, delay: Duration) -> Self {
        self.on_failure = OnBatchFailure::Redeliver(delay);
        self
    }

    /// [`OnBatchFailure::Isolate`] into this dead-letter store.
    ///
    /// # Examples
    ///
    /// See [`BatchConfig`].
    pub fn isolate(mut self, dead_letters: impl IntoArc<dyn DeadLetterStore>) -> Self {
        self.on_failure = OnBatchFailure::Isolate(dead_letters.into_arc());
        self
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.max_size == 0 {
            return Err(ConfigError::ZeroCount { what: "batch size" });
        }
        crate::time::positive_millis(self.max_wait, "batch wait")?;
        if let Some(every) = self.in_progress_every {
            crate::time::positive_millis(every, "in-progress interval")?;
        }
        Ok(())
    }
}
