//! Scheduled jobs: a cron [`Schedule`] in a time zone, a missed-run policy after downtime
//! computed from the last run stored in [`Checkpoints`], no overlap of a job with itself,
//! and its last and next run in [`JobStatus`] and in metrics.

mod clock;
mod cron;
mod error;

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use parking_lot::Mutex;
use syncbus_envelope::{check_plain_name, NameKind};
use syncbus_storage::{Checkpoints, IntoArc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use clock::{Clock, SystemClock, TestClock};
pub use cron::Schedule;
pub use error::ScheduleError;

use crate::error::BoxError;

/// What to do at start with the runs missed while the job was not running.
///
/// # Examples
///
/// ```
/// use syncbus_stream::Missed;
/// assert_eq!(Missed::default(), Missed::RunOnce);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Missed {
    /// Run none of them: wait for the next scheduled time.
    Skip,
    /// Run once, for the latest missed time, then go on with the schedule. The default: an
    /// end-of-day job that missed three days reconciles once.
    #[default]
    RunOnce,
    /// Run once for each missed time, oldest first (at most [`Job::max_catch_up`]).
    RunAll,
}

/// One run of a job, handed to its function.
///
/// # Examples
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use syncbus_stream::JobRun;
/// # fn show(run: JobRun) {
/// println!("run for {} (local {}), catch-up: {}", run.scheduled, run.local(), run.catch_up);
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobRun {
    /// The time the schedule fired for this run (in the past for a catch-up run).
    pub scheduled: DateTime<Utc>,
    /// The schedule's zone.
    pub zone: Tz,
    /// Whether this run makes up for a time missed while the job was not running.
    pub catch_up: bool,
}

impl JobRun {
    /// The scheduled time in the schedule's zone.
    ///
    /// # Examples
    ///
    /// See [`JobRun`].
    pub fn local(&self) -> DateTime<Tz> {
        self.scheduled.with_timezone(&self.zone)
    }
}

/// What a job has done and will do next.
///
/// # Examples
///
/// ```
/// let s = syncbus_stream::JobStatus::default();
/// assert!(s.next_run.is_none() && s.last_run.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobStatus {
    /// The job's name.
    pub name: String,
    /// The schedule (`expression (zone)`).
    pub schedule: String,
    /// The scheduled time of the last finished run (as stored).
    pub last_run: Option<DateTime<Utc>>,
    /// When the last run started, by the job's clock.
    pub last_started: Option<DateTime<Utc>>,
    /// When the last run finished, by the job's clock.
    pub last_finished: Option<DateTime<Utc>>,
    /// The last run's error, if it failed.
    pub last_error: Option<String>,
    /// The next scheduled time; `None` before start, after stop, or if it never fires again.
    pub next_run: Option<DateTime<Utc>>,
    /// Whether a run is in progress.
    pub running: bool,
    /// Runs finished (catch-up runs included).
    pub runs: u64,
    /// Runs that failed (an error or a panic).
    pub failures: u64,
    /// Catch-up runs made for missed times.
    pub caught_up: u64,
    /// Missed times not run (by [`Missed`] or the catch-up limit).
    pub skipped_missed: u64,
    /// Scheduled times skipped because the previous run was still going.
    pub skipped_overlap: u64,
    /// Last runs that could not be stored.
    pub store_failures: u64,
}

/// A scheduled job: a name, a [`Schedule`], a [`Missed`] policy, a store for its last run
/// and a [`Clock`].
///
/// # Runs
///
/// A job runs on its own tokio task, one run at a time: a run that lasts past the next
/// scheduled time makes that time (and any other passed during the run) be skipped, counted
/// in [`JobStatus::skipped_overlap`], never run on top of it. Each run is spawned on a task
/// of its own, so a panicking run is a failed run, not a dead scheduler.
///
/// After a run (failed or not) its scheduled time is stored as the job's last run under
/// `schedule.<name>` in the checkpoint store. A crash during a run leaves the previous
/// value, so a restart counts that run as missed: runs are at-least-once, make the job
/// idempotent.
///
/// # Missed runs
///
/// At start, the times the schedule fired between the stored last run and now were missed.
/// [`Missed`] decides: skip them, run once (for the latest; the default), or run each in
/// order (at most [`Job::max_catch_up`], the latest ones). With no store, or nothing
/// stored yet, nothing was missed.
///
/// # Metrics
///
/// Through the `metrics` facade, labelled `job`: gauges `syncbus_job_last_run_seconds`
/// and `syncbus_job_next_run_seconds` (unix seconds), counters `syncbus_job_runs_total`
/// (label `outcome`: `ok` or `failed`) and `syncbus_job_skipped_total` (label `reason`:
/// `missed` or `overlap`).
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// use syncbus_storage::MemoryStore;
/// use syncbus_stream::{Job, Missed, Schedule, TestClock};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runs = Arc::new(AtomicU32::new(0));
/// let counted = runs.clone();
/// let start = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
/// let job = Job::new("end-of-day", Schedule::cron("59 23 * * *")?.in_zone("Europe/Paris")?)?
///     .missed(Missed::RunOnce)
///     .checkpoints(MemoryStore::new())
///     .clock(TestClock::new(start))
///     .spawn(move |run| {
///         counted.fetch_add(1, Ordering::SeqCst);
///         async move { println!("reconciling the day of {}", run.local().date_naive()); Ok::<(), std::io::Error>(()) }
///     });
/// tokio::time::sleep(Duration::from_secs(3 * 24 * 3600)).await; // three days, at once
/// assert_eq!(runs.load(Ordering::SeqCst), 3);
/// let status = job.stop().await?;
/// assert_eq!(status.last_run, Some(Utc.with_ymd_and_hms(2026, 6, 3, 21, 59, 0).unwrap())); // 23:59 CEST
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Job {
    name: String,
    schedule: Schedule,
    missed: Missed,
    max_catch_up: usize,
    checkpoints: Option<Arc<dyn Checkpoints>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("schedule", &self.schedule.to_string())
            .field("missed", &self.missed)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// A job named `name` on `schedule`: [`Missed::RunOnce`], at most 100 catch-up runs, no
    /// store (nothing missed at start), the [`SystemClock`].
    ///
    /// # Examples
    ///
    /// See [`Job`].
    ///
    /// # Errors
    ///
    /// [`ScheduleError::Name`] if `schedule.<name>` is not a checkpoint name (empty, or over
    /// 256 bytes).
    pub fn new(name: impl Into<String>, schedule: Schedule) -> Result<Self, ScheduleError> {
        let name = name.into();
        check_plain_name(NameKind::Checkpoint, &name).map_err(ScheduleError::Name)?;
        check_plain_name(NameKind::Checkpoint, &checkpoint_name(&name))
            .map_err(ScheduleError::Name)?;
        Ok(Job {
            name,
            schedule,
            missed: Missed::default(),
            max_catch_up: 100,
            checkpoints: None,
            clock: Arc::new(SystemClock),
        })
    }

    /// What to do with runs missed while the job was not running.
    ///
    /// # Examples
    ///
    /// See [`Job`].
    pub fn missed(mut self, policy: Missed) -> Self {
        self.missed = policy;
        self
    }

    /// The most catch-up runs [`Missed::RunAll`] makes (the latest missed times; older
    /// ones are skipped and counted). At least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_stream::{Job, Schedule};
    /// let job = Job::new("hourly", Schedule::cron("0 * * * *")?)?.max_catch_up(24);
    /// # Ok::<(), syncbus_stream::ScheduleError>(())
    /// ```
    pub fn max_catch_up(mut self, n: usize) -> Self {
        self.max_catch_up = n.max(1);
        self
    }

    /// Stores the last run here (under `schedule.<name>`), so missed runs are known after a
    /// restart.
    ///
    /// # Examples
    ///
    /// See [`Job`].
    pub fn checkpoints(mut self, store: impl IntoArc<dyn Checkpoints>) -> Self {
        self.checkpoints = Some(store.into_arc());
        self
    }

    /// Reads the time from `clock` ([`TestClock`] in tests).
    ///
    /// # Examples
    ///
    /// See [`Job`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The job's name.
    ///
    /// # Examples
    ///
    /// ```
    /// # use syncbus_stream::{Job, Schedule};
    /// assert_eq!(Job::new("eod", Schedule::cron("59 23 * * *")?)?.name(), "eod");
    /// # Ok::<(), syncbus_stream::ScheduleError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on the schedule, on a tokio task, until [`RunningJob::stop`].
    ///
    /// # Examples
    ///
    /// See [`Job`].
    pub fn spawn<F, Fut, E>(self, f: F) -> RunningJob
    where
        F: Fn(JobRun) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let status = Arc::new(Mutex::new(JobStatus {
            name: self.name.clone(),
            schedule: self.schedule.to_string(),
            ..JobStatus::default()
        }));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(
            Runner {
                job: self,
                f: Arc::new(f),
                status: status.clone(),
            }
            .run(stop_rx),
        );
        RunningJob { stop, status, task }
    }
}

fn checkpoint_name(job: &str) -> String {
    format!("schedule.{job}")
}

/// A job running on its task: its [`status`](Self::status), and [`stop`](Self::stop).
#[derive(Debug)]
pub struct RunningJob {
    stop: watch::Sender<bool>,
    status: Arc<Mutex<JobStatus>>,
    task: JoinHandle<Result<(), ScheduleError>>,
}

impl RunningJob {
    /// The job's status now: last and next run, counters.
    ///
    /// # Examples
    ///
    /// See [`Job`].
    pub fn status(&self) -> JobStatus {
        self.status.lock().clone()
    }

    /// Whether the job's task has ended (it stopped on an error: see [`stop`](Self::stop)).
    ///
    /// # Examples
    ///
    /// See [`Job`].
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the job: a run in progress finishes first (and is stored). Returns the final
    /// status.
    ///
    /// # Examples
    ///
    /// See [`Job`].
    ///
    /// # Errors
    ///
    /// What stopped the job: [`ScheduleError::Store`] or [`ScheduleError::Checkpoint`] when
    /// its last run could not be read at start.
    pub async fn stop(self) -> Result<JobStatus, ScheduleError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result.map(|()| self.status.lock().clone()),
            Err(e) => Err(ScheduleError::Task(e.to_string())),
        }
    }
}

struct Runner<F> {
    job: Job,
    f: Arc<F>,
    status: Arc<Mutex<JobStatus>>,
}

impl<F, Fut, E> Runner<F>
where
    F: Fn(JobRun) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    async fn run(self, mut stop: watch::Receiver<bool>) -> Result<(), ScheduleError> {
        let key = checkpoint_name(&self.job.name);
        let last = self.load(&key).await?;
        self.status.lock().last_run = last;
        self.gauge_last(last);
        let now = self.job.clock.now();
        if let Some(last) = last {
            let (missed, total) = self.missed_between(last, now);
            let skipped = total - missed.len() as u64;
            if skipped > 0 {
                self.status.lock().skipped_missed += skipped;
                self.count_skipped("missed", skipped);
            }
            if total > 0 {
                tracing::info!(job = %self.job.name, missed = total, running = missed.len(), "runs missed while stopped");
            }
            for scheduled in missed {
                if *stop.borrow() {
                    return Ok(());
                }
                self.run_one(&key, scheduled, true).await;
            }
        }
        let mut cursor = last.map_or(now, |l| l.max(now));
        loop {
            let Some(next) = self.job.schedule.next_after(cursor) else {
                tracing::warn!(job = %self.job.name, schedule = %self.job.schedule, "the schedule fires no more: the job waits for stop");
                self.set_next(None);
                let _ = stop.wait_for(|s| *s).await;
                return Ok(());
            };
            self.set_next(Some(next));
            loop {
                if *stop.borrow_and_update() {
                    self.set_next(None);
                    return Ok(());
                }
                let now = self.job.clock.now();
                if now >= next {
                    break;
                }
                let wait = (next - now)
                    .to_std()
                    .unwrap_or_default()
                    .min(self.job.clock.recheck());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
            self.run_one(&key, next, false).await;
            let now = self.job.clock.now();
            // Times that came while the run was going are skipped: no overlap.
            let mut overlapped = 0;
            let mut t = next;
            while let Some(n) = self.job.schedule.next_after(t).filter(|n| *n <= now) {
                overlapped += 1;
                t = n;
            }
            if overlapped > 0 {
                tracing::warn!(job = %self.job.name, skipped = overlapped, "the run outlasted the next scheduled time: skipped, not overlapped");
                self.status.lock().skipped_overlap += overlapped;
                self.count_skipped("overlap", overlapped);
            }
            cursor = now.max(next);
        }
    }

    async fn load(&self, key: &str) -> Result<Option<DateTime<Utc>>, ScheduleError> {
        let Some(store) = &self.job.checkpoints else {
            return Ok(None);
        };
        let Some(value) = store.get_str(key).await? else {
            return Ok(None);
        };
        DateTime::parse_from_rfc3339(&value)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| ScheduleError::Checkpoint {
                job: self.job.name.clone(),
                value,
            })
    }

    /// The times to catch up on in `(last, now]` by the policy, and how many there were.
    fn missed_between(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> (Vec<DateTime<Utc>>, u64) {
        let keep = match self.job.missed {
            Missed::Skip => 0,
            Missed::RunOnce => 1,
            Missed::RunAll => self.job.max_catch_up,
        };
        let mut latest = std::collections::VecDeque::with_capacity(keep.min(1024));
        let mut total = 0u64;
        let mut t = last;
        while let Some(n) = self.job.schedule.next_after(t).filter(|n| *n <= now) {
            total += 1;
            if keep > 0 {
                if latest.len() == keep {
                    latest.pop_front();
                }
                latest.push_back(n);
            }
            t = n;
        }
        (latest.into(), total)
    }

    async fn run_one(&self, key: &str, scheduled: DateTime<Utc>, catch_up: bool) {
        let started = self.job.clock.now();
        {
            let mut s = self.status.lock();
            s.running = true;
            s.last_started = Some(started);
        }
        let run = JobRun {
            scheduled,
            zone: self.job.schedule.zone(),
            catch_up,
        };
        let fut = (self.f)(run);
        let outcome = match tokio::spawn(fut).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.into().to_string()),
            Err(e) if e.is_panic() => Some("the run panicked".to_owned()),
            Err(e) => Some(e.to_string()),
        };
        let finished = self.job.clock.now();
        let stored = match &self.job.checkpoints {
            Some(store) => store.put_str(key, &scheduled.to_rfc3339()).await,
            None => Ok(()),
        };
        let mut s = self.status.lock();
        s.running = false;
        s.last_finished = Some(finished);
        s.last_run = Some(scheduled);
        s.runs += 1;
        if catch_up {
            s.caught_up += 1;
        }
        match &outcome {
            None => {
                metrics::counter!("syncbus_job_runs_total", "job" => self.job.name.clone(), "outcome" => "ok").increment(1);
            }
            Some(e) => {
                s.failures += 1;
                tracing::warn!(job = %self.job.name, %scheduled, error = %e, "the run failed");
                metrics::counter!("syncbus_job_runs_total", "job" => self.job.name.clone(), "outcome" => "failed").increment(1);
            }
        }
        s.last_error = outcome;
        if let Err(e) = stored {
            s.store_failures += 1;
            tracing::error!(job = %self.job.name, %scheduled, error = %e, "the last run could not be stored: a restart may run it again");
        }
        drop(s);
        self.gauge_last(Some(scheduled));
    }

    fn set_next(&self, next: Option<DateTime<Utc>>) {
        self.status.lock().next_run = next;
        let g = metrics::gauge!("syncbus_job_next_run_seconds", "job" => self.job.name.clone());
        match next {
            Some(t) => g.set(t.timestamp() as f64),
            None => g.set(f64::NAN),
        }
    }

    fn gauge_last(&self, last: Option<DateTime<Utc>>) {
        if let Some(t) = last {
            metrics::gauge!("syncbus_job_last_run_seconds", "job" => self.job.name.clone())
                .set(t.timestamp() as f64);
        }
    }

    fn count_skipped(&self, reason: &'static str, n: u64) {
        metrics::counter!("syncbus_job_skipped_total", "job" => self.job.name.clone(), "reason" => reason)
            .increment(n);
    }
}
