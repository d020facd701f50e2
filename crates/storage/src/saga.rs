//! Saga instances: where each running workflow is, persisted after every step.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use syncbus_envelope::Timestamp;

use crate::{StoreError, StoreFuture};

/// Where a saga instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SagaStatus {
    /// Steps are running forward.
    Running,
    /// A step failed for good; completed steps are being compensated in reverse.
    Compensating,
    /// Every step succeeded.
    Completed,
    /// A step failed and every completed step was compensated.
    FailedCompensated,
    /// A compensation failed too: the instance needs an operator.
    Failed,
}

impl SagaStatus {
    /// Whether the instance will not move any more.
    ///
    /// # Examples
    ///
    /// ```
    /// use syncbus_storage::SagaStatus;
    /// assert!(SagaStatus::Completed.is_final());
    /// assert!(!SagaStatus::Compensating.is_final());
    /// ```
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SagaStatus::Completed | SagaStatus::FailedCompensated | SagaStatus::Failed
        )
    }

    /// The stored name: `running`, `compensating`, `completed`, `failed_compensated`, `failed`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::SagaStatus;
    /// assert_eq!(SagaStatus::FailedCompensated.as_str(), "failed_compensated");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStatus::Running => "running",
            SagaStatus::Compensating => "compensating",
            SagaStatus::Completed => "completed",
            SagaStatus::FailedCompensated => "failed_compensated",
            SagaStatus::Failed => "failed",
        }
    }

    /// Parses [`as_str`](Self::as_str) back; `None` for an unknown name.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_storage::SagaStatus;
    /// assert_eq!(SagaStatus::parse("running"), Some(SagaStatus::Running));
    /// ```
    pub fn parse(s: &str) -> Option<SagaStatus> {
        Some(match s {
            "running" => SagaStatus::Running,
            "compensating" => SagaStatus::Compensating,
            "completed" => SagaStatus::Completed,
            "failed_compensated" => SagaStatus::FailedCompensated,
            "failed" => SagaStatus::Failed,
            _ => return None,
        })
    }
}

/// Whether a history entry ran a step forward or compensated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    /// The step's action.
    Run,
    /// The step's compensation.
    Compensate,
}

/// One entry of an instance's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaStepRecord {
    /// The step's name.
    pub step: String,
    /// Forward or compensation.
    pub action: StepAction,
    /// Whether it succeeded.
    pub ok: bool,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Attempts it took.
    pub attempts: u32,
    /// When it ended.
    pub at: Timestamp,
}

/// One run of a saga, keyed by the saga's name and the instance id (the correlation id of
/// the event that started it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaInstance {
    /// The saga's name.
    pub saga: String,
    /// The instance id.
    pub id: String,
    /// Where it is.
    pub status: SagaStatus,
    /// Index of the step running (forward) or being compensated (backward).
    pub step: u32,
    /// The saga's data, as JSON.
    pub data: serde_json::Value,
    /// The error that made it compensate, if any.
    pub error: Option<String>,
    /// Every step run and compensation, in order.
    pub history: Vec<SagaStepRecord>,
    /// When it started.
    pub started: Timestamp,
    /// When it last changed.
    pub updated: Timestamp,
    /// Bumped by every save, for the optimistic check in [`SagaStore::save`].
    pub version: u64,
}

/// Where saga instances are kept.
///
/// # Examples
///
/// ```
/// use syncbus_storage::{MemorySagaStore, SagaStore};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemorySagaStore::new();
/// assert!(store.load("order", "o-1").await?.is_none());
/// # Ok(()) }
/// ```
pub trait SagaStore: Send + Sync + 'static {
    /// Stores a new instance (its `version` is 1); `false` if one with the same saga and id
    /// exists already (a redelivered start event), which is left as it was.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the backend fails.
    fn create<'a>(&'a self, instance: &'a SagaInstance) -> StoreFuture<'a, bool>;

    /// Replaces an instance. `instance.version` must be the stored version plus one, else a
    /// [`StoreErrorKind::Conflict`](crate::StoreErrorKind::Conflict) error (someone else
    /// saved it first) and nothing changes.
    ///
    /// # Errors
    ///
    /// A conflict as above, or a [`StoreError`] when the backend fails or the instance does
    /// not exist.
    fn save<'a>(&'a self, instance: &'a SagaInstance) -> StoreFuture<'a, ()>;

    /// One instance.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the backend fails or the stored instance cannot be decoded.
    fn load<'a>(&'a self, saga: &'a str, id: &'a str) -> StoreFuture<'a, Option<SagaInstance>>;

    /// The instances of `saga`, optionally only those with `status`, oldest first.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the backend fails or a stored instance cannot be decoded.
    fn list<'a>(
        &'a self,
        saga: &'a str,
        status: Option<SagaStatus>,
    ) -> StoreFuture<'a, Vec<SagaInstance>>;
}

/// The in-memory [`SagaStore`].
///
/// # Examples
///
/// ```
/// let store = syncbus_storage::MemorySagaStore::new();
/// # let _ = store;
/// ```
#[derive(Debug, Default)]
pub struct MemorySagaStore {
    instances: Mutex<HashMap<(String, String), SagaInstance>>,
}

impl MemorySagaStore {
    /// An empty store.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = syncbus_storage::MemorySagaStore::new();
    /// # let _ = store;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl SagaStore for MemorySagaStore {
    fn create<'a>(&'a self, instance: &'a SagaInstance) -> StoreFuture<'a, bool> {
        let key = (instance.saga.clone(), instance.id.clone());
        let mut map = self.instances.lock();
        let created = match map.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(instance.clone());
                true
            }
        };
        Box::pin(std::future::ready(Ok(created)))
    }

    fn save<'a>(&'a self, instance: &'a SagaInstance) -> StoreFuture<'a, ()> {
        let key = (instance.saga.clone(), instance.id.clone());
        let mut map = self.instances.lock();
        let result = match map.get_mut(&key) {
            None => Err(StoreError::new(
                crate::StoreErrorKind::Invalid,
                format!(
                    "saga {} instance {} does not exist",
                    instance.saga, instance.id
                ),
            )),
            Some(stored) if stored.version + 1 != instance.version => {
                Err(StoreError::conflict(format!(
                    "saga {} instance {} is at version {}, the save expected {}",
                    instance.saga,
                    instance.id,
                    stored.version,
                    instance.version.saturating_sub(1)
                )))
            }
            Some(stored) => {
                *stored = instance.clone();
                Ok(())
            }
        };
        Box::pin(std::future::ready(result))
    }

    fn load<'a>(&'a self, saga: &'a str, id: &'a str) -> StoreFuture<'a, Option<SagaInstance>> {
        let found = self
            .instances
            .lock()
            .get(&(saga.to_owned(), id.to_owned()))
            .cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn list<'a>(
        &'a self,
        saga: &'a str,
        status: Option<SagaStatus>,
    ) -> StoreFuture<'a, Vec<SagaInstance>> {
        let mut out: Vec<SagaInstance> = self
            .instances
            .lock()
            .values()
            .filter(|i| i.saga == saga && status.is_none_or(|s| i.status == s))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.started, &a.id).cmp(&(b.started, &b.id)));
        Box::pin(std::future::ready(Ok(out)))
    }
}
