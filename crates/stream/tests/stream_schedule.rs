//! Scheduled jobs on a controllable clock (tokio's, paused): daylight-saving changes in a
//! named zone, each missed-run policy from the stored last run, no overlap, failures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use syncbus_storage::{Checkpoints, MemoryStore};
use syncbus_store::SqliteStore;
use syncbus_stream::{Job, JobRun, Missed, Schedule, ScheduleError, TestClock};

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

type Runs = Arc<Mutex<Vec<JobRun>>>;

fn recorder(
    runs: &Runs,
) -> impl Fn(JobRun) -> std::future::Ready<Result<(), std::io::Error>> + Send + Sync + 'static {
    let runs = runs.clone();
    move |run| {
        runs.lock().unwrap().push(run);
        std::future::ready(Ok(()))
    }
}

fn times(runs: &Runs) -> Vec<DateTime<Utc>> {
    runs.lock().unwrap().iter().map(|r| r.scheduled).collect()
}

/// Runs `expr` in `zone` from `start` for `hours` of (paused) time; the scheduled times.
async fn run_for(expr: &str, zone: &str, start: DateTime<Utc>, hours: u64) -> Vec<DateTime<Utc>> {
    let runs = Runs::default();
    let job = Job::new("dst", Schedule::cron(expr).unwrap().in_zone(zone).unwrap())
        .unwrap()
        .clock(TestClock::new(start))
        .spawn(recorder(&runs));
    tokio::time::sleep(Duration::from_secs(hours * 3600)).await;
    job.stop().await.unwrap();
    // each run happened at its scheduled time, by the job's clock
    times(&runs)
}

#[tokio::test(start_paused = true)]
async fn spring_forward_loses_no_run() {
    // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT.
    let start = utc(2026, 3, 7, 5, 0); // 00:00 EST on the 7th
                                       // 02:30 does not exist on the 8th: it runs at 03:00 EDT, once
    assert_eq!(
        run_for("30 2 * * *", "America/New_York", start, 72).await,
        [
            utc(2026, 3, 7, 7, 30),
            utc(2026, 3, 8, 7, 0),
            utc(2026, 3, 9, 6, 30)
        ]
    );
    // a time that exists runs as always, once a day
    assert_eq!(
        run_for("30 3 * * *", "America/New_York", start, 72).await,
        [
            utc(2026, 3, 7, 8, 30),
            utc(2026, 3, 8, 7, 30),
            utc(2026, 3, 9, 7, 30)
        ]
    );
    assert_eq!(
        run_for("59 23 * * *", "America/New_York", start, 72).await,
        [
            utc(2026, 3, 8, 4, 59),
            utc(2026, 3, 9, 3, 59),
            utc(2026, 3, 10, 3, 59)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn fall_back_runs_a_repeated_time_once() {
    // New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    let start = utc(2026, 10, 31, 4, 0); // 00:00 EDT on the 31st
    assert_eq!(
        run_for("30 1 * * *", "America/New_York", start, 72).await,
        [
            utc(2026, 10, 31, 5, 30),
            utc(2026, 11, 1, 5, 30),
            utc(2026, 11, 2, 6, 30)
        ]
    );
    assert_eq!(
        run_for("59 23 * * *", "America/New_York", start, 73).await,
        [
            utc(2026, 11, 1, 3, 59),
            utc(2026, 11, 2, 4, 59),
            utc(2026, 11, 3, 4, 59)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn end_of_day_in_paris_across_both_changes() {
    // 2026-03-29 and 2026-10-25: one run a day at 23:59 Paris time, no more, no less.
    for (start, offset_before, offset_after) in [
        (utc(2026, 3, 27, 12, 0), 1, 2),
        (utc(2026, 10, 23, 12, 0), 2, 1),
    ] {
        let got = run_for("59 23 * * *", "Europe/Paris", start, 96).await;
        assert_eq!(got.len(), 4, "{got:?}");
        for (i, t) in got.iter().enumerate() {
            let local = t.with_timezone(&chrono_tz::Europe::Paris);
            assert_eq!(local.format("%H:%M").to_string(), "23:59");
            let offset = if i < 2 { offset_before } else { offset_after };
            assert_eq!(t.format("%H:%M").to_string(), format!("{}:59", 23 - offset));
        }
    }
}

async fn with_stored_last_run(
    policy: Missed,
    max: usize,
) -> (Vec<JobRun>, syncbus_stream::JobStatus, MemoryStore) {
    let store = MemoryStore::new();
    // the last run stored: 2026-06-01 23:59 in Paris (21:59 UTC)
    store
        .put_str("schedule.eod", "2026-06-01T21:59:00+00:00")
        .await
        .unwrap();
    let runs = Runs::default();
    let job = Job::new(
        "eod",
        Schedule::cron("59 23 * * *")
            .unwrap()
            .in_zone("Europe/Paris")
            .unwrap(),
    )
    .unwrap()
    .missed(policy)
    .max_catch_up(max)
    .checkpoints(store.clone())
    .clock(TestClock::new(utc(2026, 6, 5, 12, 0))) // down since: June 2, 3, 4 missed
    .spawn(recorder(&runs));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let status = job.stop().await.unwrap();
    let runs = runs.lock().unwrap().clone();
    (runs, status, store)
}

#[tokio::test(start_paused = true)]
async fn missed_runs_skip() {
    let (runs, status, store) = with_stored_last_run(Missed::Skip, 100).await;
    assert!(runs.is_empty(), "{runs:?}");
    assert_eq!((status.skipped_missed, status.caught_up), (3, 0));
    assert_eq!(status.last_run, Some(utc(2026, 6, 1, 21, 59)));
    assert_eq!(
        store.get_str("schedule.eod").await.unwrap().as_deref(),
        Some("2026-06-01T21:59:00+00:00")
    );
}

#[tokio::test(start_paused = true)]
async fn missed_runs_run_once() {
    let (runs, status, store) = with_stored_last_run(Missed::RunOnce, 100).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].scheduled, utc(2026, 6, 4, 21, 59));
    assert!(runs[0].catch_up);
    assert_eq!(
        (status.skipped_missed, status.caught_up, status.runs),
        (2, 1, 1)
    );
    assert_eq!(status.last_run, Some(utc(2026, 6, 4, 21, 59)));
    assert_eq!(
        store.get_str("schedule.eod").await.unwrap().as_deref(),
        Some("2026-06-04T21:59:00+00:00")
    );
}

#[tokio::test(start_paused = true)]
async fn missed_runs_run_all_in_order_within_the_limit() {
    let (runs, status, _) = with_stored_last_run(Missed::RunAll, 100).await;
    let got: Vec<_> = runs.iter().map(|r| (r.scheduled, r.catch_up)).collect();
    assert_eq!(
        got,
        [
            (utc(2026, 6, 2, 21, 59), true),
            (utc(2026, 6, 3, 21, 59), true),
            (utc(2026, 6, 4, 21, 59), true)
        ]
    );
    assert_eq!((status.skipped_missed, status.caught_up), (0, 3));

    let (runs, status, _) = with_stored_last_run(Missed::RunAll, 2).await;
    let got: Vec<_> = runs.iter().map(|r| r.scheduled).collect();
    assert_eq!(
        got,
        [utc(2026, 6, 3, 21, 59), utc(2026, 6, 4, 21, 59)],
        "the latest ones"
    );
    assert_eq!((status.skipped_missed, status.caught_up), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn after_catching_up_the_schedule_goes_on_and_next_run_is_visible() {
    let store = MemoryStore::new();
    store
        .put_str("schedule.eod", "2026-06-03T21:59:00+00:00")
        .await
        .unwrap();
    let runs = Runs::default();
    let job = Job::new(
        "eod",
        Schedule::cron("59 23 * * *")
            .unwrap()
            .in_zone("Europe/Paris")
            .unwrap(),
    )
    .unwrap()
    .checkpoints(store.clone())
    .clock(TestClock::new(utc(2026, 6, 5, 12, 0)))
    .spawn(recorder(&runs));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = job.status();
    assert_eq!(s.last_run, Some(utc(2026, 6, 4, 21, 59)));
    assert_eq!(s.next_run, Some(utc(2026, 6, 5, 21, 59)));
    assert!(!s.running);
    tokio::time::sleep(Duration::from_secs(10 * 3600)).await; // 22:00 UTC on the 5th
    let s = job.stop().await.unwrap();
    assert_eq!(
        times(&runs),
        [utc(2026, 6, 4, 21, 59), utc(2026, 6, 5, 21, 59)]
    );
    assert_eq!(s.next_run, None, "stopped");
    assert_eq!((s.runs, s.caught_up), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_first_start_has_nothing_missed_and_a_bad_stored_value_is_an_error() {
    let store = MemoryStore::new();
    let runs = Runs::default();
    let job = Job::new("eod", Schedule::cron("59 23 * * *").unwrap())
        .unwrap()
        .missed(Missed::RunAll)
        .checkpoints(store.clone())
        .clock(TestClock::new(utc(2026, 6, 5, 12, 0)))
        .spawn(recorder(&runs));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(job.stop().await.unwrap().runs == 0);
    assert!(runs.lock().unwrap().is_empty());

    store.put_str("schedule.eod", "yesterday").await.unwrap();
    let job = Job::new("eod", Schedule::cron("59 23 * * *").unwrap())
        .unwrap()
        .checkpoints(store)
        .clock(TestClock::new(utc(2026, 6, 5, 12, 0)))
        .spawn(recorder(&runs));
    let err = job.stop().await.unwrap_err();
    assert!(
        matches!(&err, ScheduleError::Checkpoint { job, value } if job == "eod" && value == "yesterday"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_never_overlaps_itself() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let runs = Runs::default();
    let f = {
        let (in_flight, most, runs) = (in_flight.clone(), most.clone(), runs.clone());
        move |run: JobRun| {
            let (in_flight, most, runs) = (in_flight.clone(), most.clone(), runs.clone());
            async move {
                let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                runs.lock().unwrap().push(run);
                tokio::time::sleep(Duration::from_millis(2_500)).await; // longer than the period
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), std::io::Error>(())
            }
        }
    };
    let start = utc(2026, 1, 1, 0, 0);
    let job = Job::new("every-second", Schedule::cron("* * * * * *").unwrap())
        .unwrap()
        .clock(TestClock::new(start))
        .spawn(f);
    tokio::time::sleep(Duration::from_millis(20_500)).await;
    let s = job.stop().await.unwrap();
    assert_eq!(most.load(Ordering::SeqCst), 1);
    // runs at 1 s, then each at the first whole second after the previous ended: 1, 4, 7, ...
    let got = times(&runs);
    let secs: Vec<i64> = got.iter().map(|t| (*t - start).num_seconds()).collect();
    assert_eq!(secs, [1, 4, 7, 10, 13, 16, 19]);
    assert_eq!(s.runs, 7);
    // 2 seconds skipped during each of the first 6 runs, and 2 during the last (stopped at 20.5 s + finishing)
    assert_eq!(s.skipped_overlap, 7 * 2);
}

#[tokio::test(start_paused = true)]
async fn failing_and_panicking_runs_are_counted_and_the_job_goes_on() {
    let calls = Arc::new(AtomicUsize::new(0));
    let f = {
        let calls = calls.clone();
        move |_run: JobRun| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Err(std::io::Error::other("upstream down")),
                    1 => panic!("a bug in the job"),
                    _ => Ok(()),
                }
            }
        }
    };
    let store = MemoryStore::new();
    let job = Job::new("hourly", Schedule::cron("0 * * * *").unwrap())
        .unwrap()
        .checkpoints(store.clone())
        .clock(TestClock::new(utc(2026, 1, 1, 0, 30)))
        .spawn(f);
    tokio::time::sleep(Duration::from_secs(3600)).await; // 01:00 fails
    let s = job.status();
    assert_eq!((s.runs, s.failures), (1, 1));
    assert_eq!(s.last_error.as_deref(), Some("upstream down"));
    tokio::time::sleep(Duration::from_secs(3600)).await; // 02:00 panics
    assert_eq!(job.status().last_error.as_deref(), Some("the run panicked"));
    tokio::time::sleep(Duration::from_secs(3600)).await; // 03:00 ok
    let s = job.stop().await.unwrap();
    assert_eq!((s.runs, s.failures, s.last_error), (3, 2, None));
    assert_eq!(
        store.get_str("schedule.hourly").await.unwrap().as_deref(),
        Some("2026-01-01T03:00:00+00:00")
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_on_the_same_sqlite_file_catches_up_from_the_stored_last_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let runs = Runs::default();
    {
        let store = SqliteStore::open(&path).await.unwrap();
        let job = Job::new(
            "eod",
            Schedule::cron("59 23 * * *")
                .unwrap()
                .in_zone("Europe/Paris")
                .unwrap(),
        )
        .unwrap()
        .checkpoints(store)
        .clock(TestClock::new(utc(2026, 6, 1, 12, 0)))
        .spawn(recorder(&runs));
        // SQLite answers from its own thread, and a paused clock auto-advances while the
        // runtime waits for it: wait (in real time, yielding) until the job has read its
        // last run and sleeps, then let a day pass.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while job.status().next_run.is_none() && std::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await; // runs June 1 (21:59 UTC)
        job.stop().await.unwrap();
    }
    // down from June 2 12:00 until June 4 12:00: June 2 and June 3 missed
    let store = SqliteStore::open(&path).await.unwrap();
    let job = Job::new(
        "eod",
        Schedule::cron("59 23 * * *")
            .unwrap()
            .in_zone("Europe/Paris")
            .unwrap(),
    )
    .unwrap()
    .missed(Missed::RunAll)
    .checkpoints(store)
    .clock(TestClock::new(utc(2026, 6, 4, 12, 0)))
    .spawn(recorder(&runs));
    // the same: wait for the catch-up runs in real time
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while job.status().runs < 2 && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    let s = job.stop().await.unwrap();
    assert_eq!((s.caught_up, s.skipped_missed), (2, 0));
    assert_eq!(
        times(&runs),
        [
            utc(2026, 6, 1, 21, 59),
            utc(2026, 6, 2, 21, 59),
            utc(2026, 6, 3, 21, 59)
        ]
    );
}

#[test]
fn bad_names_are_refused() {
    let s = Schedule::cron("* * * * *").unwrap();
    assert!(matches!(
        Job::new("", s.clone()),
        Err(ScheduleError::Name(_))
    ));
    assert!(matches!(
        Job::new("x".repeat(300), s),
        Err(ScheduleError::Name(_))
    ));
}
