//! What a schedule refuses, and what stops a job.

use syncbus_storage::StoreError;

/// A cron expression or zone that cannot be used, or what stopped a job.
///
/// # Examples
///
/// ```
/// use syncbus_stream::{Schedule, ScheduleError};
///
/// let err = Schedule::cron("* * *").unwrap_err();
/// assert!(matches!(err, ScheduleError::Cron { .. }));
/// assert!(err.to_string().starts_with("\"* * *\" is not a cron expression"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// croner does not accept the expression.
    #[error("{expression:?} is not a cron expression: {reason}")]
    Cron {
        /// The expression.
        expression: String,
        /// croner's reason.
        reason: String,
    },
    /// A time zone name the compiled-in database does not have.
    #[error("{0:?} is not a known time zone (an IANA name such as Europe/Paris)")]
    Zone(String),
    /// A job name that cannot name its checkpoint (`schedule.<name>`, 1 to 256 bytes).
    #[error("bad job name: {0}")]
    Name(#[source] syncbus_envelope::NameError),
    /// The checkpoint store failed (reading or writing the last run).
    #[error("the checkpoint store failed")]
    Store(#[from] StoreError),
    /// The stored last run is not a time this job wrote.
    #[error("the stored last run of {job:?} is not a time: {value:?}")]
    Checkpoint {
        /// The job.
        job: String,
        /// What was stored.
        value: String,
    },
    /// The job's task ended abnormally (it panicked outside a run).
    #[error("the job's task failed: {0}")]
    Task(String),
}
