//! Helpers for the tests against a real NATS server.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server's URL, or `None` after printing one line saying the test is skipped.
pub fn url(test: &str) -> Option<String> {
    match std::env::var("SYNCBUS_NATS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            println!("skipped {test}: SYNCBUS_NATS_URL is not set");
            None
        }
    }
}

/// A stream name no other test (or run) uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("T_{name}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

/// Events a multi-process run exchanges (`SYNCBUS_NATS_EVENTS`, default 2,000).
pub fn event_count() -> u64 {
    std::env::var("SYNCBUS_NATS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// The `nats_bridge` example, which `cargo test` builds beside the test binaries.
pub fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join("nats_bridge");
    assert!(
        path.exists(),
        "{} is missing: run the tests with cargo test, which builds the examples",
        path.display()
    );
    path
}

/// Starts the example with `args`, its stdout into `stdout` (or nowhere).
pub fn spawn(args: &[&str], stdout: Option<&std::path::Path>) -> Child {
    let mut cmd = Command::new(example());
    cmd.args(args).stderr(Stdio::inherit());
    match stdout {
        Some(p) => cmd.stdout(std::fs::File::create(p).unwrap()),
        None => cmd.stdout(Stdio::null()),
    };
    cmd.spawn().unwrap()
}

/// SIGKILLs `child` (no destructors, no flush, no chance to ack).
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for `child` to exit successfully.
pub fn wait_ok(child: &mut Child, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what} failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            kill(child);
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Distinct events applied in the consumer's database so far (0 before its schema exists).
pub fn applied(db: &std::path::Path) -> u64 {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    let _ = conn.busy_timeout(Duration::from_secs(5));
    conn.query_row("SELECT COUNT(DISTINCT id) FROM applied", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
    .unwrap_or(0)
}

/// Checks the consumer's database: `count` events applied, each once, and each entity's
/// versions applied 1, 2, 3, ... in that order.
pub fn check_applied(db: &std::path::Path, count: u64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let (rows, distinct): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT id) FROM applied",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(distinct as u64, count, "every event applied");
    assert_eq!(rows, distinct, "no event applied twice");
    let mut stmt = conn
        .prepare("SELECT entity, version FROM applied ORDER BY seq")
        .unwrap();
    let mut last = std::collections::HashMap::<String, i64>::new();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap();
    for row in rows {
        let (entity, version) = row.unwrap();
        let prev = last.insert(entity.clone(), version).unwrap_or(0);
        assert_eq!(
            version,
            prev + 1,
            "entity {entity}: version {version} after {prev}"
        );
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `nats-server` binary, if installed.
pub fn nats_server() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// A private JetStream server on `port` storing in `dir`.
pub fn start_server(bin: &std::path::Path, port: u16, dir: &std::path::Path) -> Child {
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}
