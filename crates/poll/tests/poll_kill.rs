//! The `poll_http` example as a child process, SIGKILLed while a page is half handled, and
//! restarted on the same `--db`: its cursor is never ahead of what it printed, a restart
//! polls the unfinished page again (re-delivery, not a skip), and in the end every change
//! was printed. Rounds: `SYNCBUS_POLL_KILLS` (default 4).
//!
//! To stop the child between printing an event and storing the page's cursor without a hook
//! inside it, the test stops reading its stdout: the pipe fills and the child blocks in the
//! middle of a page, on a print; then it is killed.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use support::{padded_item, Upstream};
use syncbus_storage::Checkpoints;
use syncbus_store::SqliteStore;

const ITEMS: usize = 300;
const PAGE: usize = 25;

/// The example binary beside this test's, built if it is not there yet.
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let bin = profile_dir.join("examples").join("poll_http");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args([
        "build",
        "-q",
        "-p",
        "syncbus-poll",
        "--example",
        "poll_http",
    ]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().unwrap();
    assert!(status.success(), "building the example failed");
    assert!(bin.exists(), "no example binary at {}", bin.display());
    bin
}

// The caller kills and waits for the child.
#[allow(clippy::zombie_processes)]
fn spawn(bin: &PathBuf, url: &str, db: &str) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(bin)
        .args(["--url", url, "--db", db, "--interval-ms", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

fn entity(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["specversion"], "1.0", "{line}");
    assert_eq!(v["type"], "poll.change");
    assert_eq!(v["data"]["v"], 1);
    let id = v["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["entityid"].as_str(), Some(id.as_str()), "{line}");
    id
}

async fn stored_cursor(db: &str) -> usize {
    let store = SqliteStore::open(db).await.unwrap();
    store
        .get_str("poll_http")
        .await
        .unwrap()
        .map_or(0, |c| c.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_print_and_checkpoint_re_delivers_and_never_skips() {
    let bin = tokio::task::spawn_blocking(example).await.unwrap();
    let rounds: usize = std::env::var("SYNCBUS_POLL_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let up = Upstream::start(PAGE);
    // ~1.6 kB per line: the 64 kB pipe holds a few dozen, less than what is left to print.
    up.push((0..ITEMS).map(|i| padded_item(&format!("e{i:04}"), 1, 1500)));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("poll.db").to_string_lossy().into_owned();
    let all: HashSet<String> = (0..ITEMS).map(|i| format!("e{i:04}")).collect();
    let mut printed: HashSet<String> = HashSet::new();
    let mut mid_page_kills = 0;
    let mut prev_cursor = 0;
    for round in 0..rounds {
        let (b, u, d) = (bin.clone(), up.url.clone(), db.clone());
        let requests_before = up.requests().len();
        let (child, lines) = tokio::task::spawn_blocking(move || {
            let (mut child, mut out) = spawn(&b, &u, &d);
            let mut lines = Vec::new();
            let mut line = String::new();
            // Read a few, then stop reading: the child blocks on a full pipe, mid-page.
            for _ in 0..(3 + round * 5) {
                line.clear();
                if out.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                lines.push(line.trim_end().to_owned());
            }
            std::thread::sleep(Duration::from_millis(500));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            // What it printed before it died is still in the pipe.
            for l in out.lines() {
                lines.push(l.unwrap());
            }
            (child, lines)
        })
        .await
        .unwrap();
        drop(child);
        let ids: Vec<String> = lines
            .iter()
            .filter(|l| !l.is_empty())
            .map(|l| entity(l))
            .collect();
        printed.extend(ids.iter().cloned());
        let cursor = stored_cursor(&db).await;
        // Never ahead: every change before the stored cursor was printed (in some run).
        for i in 0..cursor {
            assert!(
                printed.contains(&format!("e{i:04}")),
                "round {round}: cursor {cursor} skipped e{i:04}"
            );
        }
        // The restart's first request asks again for the cursor the last run stored.
        let reqs = up.requests();
        let first = reqs[requests_before]
            .after
            .as_deref()
            .map_or(0, |a| a.parse().unwrap());
        assert_eq!(
            first, prev_cursor,
            "round {round}: did not resume from the stored cursor"
        );
        prev_cursor = cursor;
        let printed_upto = (0..ITEMS)
            .take_while(|i| printed.contains(&format!("e{i:04}")))
            .count();
        if printed_upto > cursor && printed_upto < ITEMS {
            mid_page_kills += 1;
        }
        eprintln!(
            "round {round}: printed {} this run, {} in all, cursor {cursor}",
            ids.len(),
            printed.len()
        );
    }
    assert!(
        mid_page_kills > 0,
        "no kill landed between a print and its page's checkpoint"
    );
    // A last run, read to the end: it picks up from the cursor and prints the rest.
    let (b, u, d) = (bin.clone(), up.url.clone(), db.clone());
    let missing: HashSet<String> = all.difference(&printed).cloned().collect();
    let requests_before = up.requests().len();
    let cursor_before = stored_cursor(&db).await;
    let rest = tokio::task::spawn_blocking(move || {
        let (mut child, out) = spawn(&b, &u, &d);
        let mut want = missing;
        let mut got = Vec::new();
        for l in out.lines() {
            let id = entity(&l.unwrap());
            want.remove(&id);
            got.push(id);
            if want.is_empty() {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        got
    })
    .await
    .unwrap();
    let first = up.requests()[requests_before]
        .after
        .as_deref()
        .map_or(0, |a| a.parse().unwrap());
    assert_eq!(
        first, cursor_before,
        "the restart did not resume from the stored cursor"
    );
    printed.extend(rest.iter().cloned());
    assert_eq!(printed, all, "a change was never printed");
    // What was printed before a kill and recorded is not printed again.
    let again: Vec<_> = rest
        .iter()
        .filter(|id| rest.iter().filter(|x| x == id).count() > 1)
        .collect();
    assert!(again.is_empty(), "printed twice in one run: {again:?}");
}
