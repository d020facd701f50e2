//! The ingress SIGKILLed while requests are in flight, again and again, and restarted on the
//! same file: every request that got a 2xx is processed exactly once (the effect row and the
//! dedup key commit in one transaction), and none that got no 2xx is lost once the sender
//! retries. Rounds: `SYNCBUS_WEBHOOK_KILLS` (default 5); requests per round:
//! `SYNCBUS_WEBHOOK_KILL_REQUESTS` (default 60).

mod support;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use syncbus_core::{Bus, Envelope};
use syncbus_storage::{DurableConfig, DurableConsumer};
use syncbus_store::SqliteStore;
use syncbus_webhook::{Ingress, IngressConfig, RawEvent, SourceConfig};
use syncbus_workflow::{Context, DedupConfig, ResultExt, Workflow};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The child: ingress + processor on `SYNCBUS_WEBHOOK_CHILD_DB`, port written to a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child() {
    let Ok(db) = std::env::var("SYNCBUS_WEBHOOK_CHILD_DB") else {
        return; // only runs as the child of the kill test
    };
    let store = SqliteStore::open(&db).await.unwrap();
    store
        .with_connection(|c| {
            c.execute_batch("CREATE TABLE IF NOT EXISTS effects (webhook_id TEXT NOT NULL)")?;
            Ok(())
        })
        .await
        .unwrap();
    let bus = Bus::new();
    let wf = Workflow::builder(&bus)
        .dead_letters(store.dead_letters())
        .build();
    let consumer = DurableConsumer::open(store.clone(), "kill", DurableConfig::new())
        .await
        .unwrap();
    let s = store.clone();
    let _served = wf
        .serve(consumer)
        .name("kill")
        .fetch_wait(Duration::from_millis(10))
        .dedup(DedupConfig::new(Arc::new(store.dedup())).lease(Duration::from_millis(500)))
        .handle(move |env: Envelope<RawEvent>, ctx: Context| {
            let store = s.clone();
            let id = env.meta().headers().get("webhookid").unwrap().to_owned();
            let entry = ctx.inbox().cloned().unwrap();
            async move {
                store
                    .with_connection(move |conn| {
                        let tx = conn.transaction()?;
                        tx.execute("INSERT INTO effects (webhook_id) VALUES (?1)", [&id])?;
                        SqliteStore::record_done(&tx, &entry)?;
                        tx.commit()?;
                        Ok(())
                    })
                    .await
                    .retryable()
            }
        })
        .unwrap();
    let source = SourceConfig::new("shop", [secret()]).unwrap();
    let ingress = Ingress::new(store, IngressConfig::new(), [source]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    std::fs::write(format!("{db}.port.tmp"), port.to_string()).unwrap();
    std::fs::rename(format!("{db}.port.tmp"), format!("{db}.port")).unwrap();
    ingress.serve(listener).await.unwrap();
}

// The caller kills and waits for the child (`kill`); on a failed start the test fails.
#[allow(clippy::zombie_processes)]
fn spawn(db: &str) -> (Child, u16) {
    let _ = std::fs::remove_file(format!("{db}.port"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("SYNCBUS_WEBHOOK_CHILD_DB", db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(p) = std::fs::read_to_string(format!("{db}.port")) {
            return (child, p.trim().parse().unwrap());
        }
        assert!(Instant::now() < deadline, "the child did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(mut child: Child) {
    // SIGKILL: no destructor, no flush, no graceful anything.
    child.kill().unwrap();
    child.wait().unwrap();
}

async fn effects(db: &str) -> HashMap<String, usize> {
    let conn = rusqlite_open(db);
    let mut out = HashMap::new();
    let mut stmt = conn.prepare("SELECT webhook_id FROM effects").unwrap();
    for id in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        *out.entry(id.unwrap()).or_insert(0) += 1;
    }
    out
}

fn rusqlite_open(db: &str) -> syncbus_store::rusqlite::Connection {
    syncbus_store::rusqlite::Connection::open(db).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_2xx_is_processed_exactly_once_across_kills() {
    if std::env::var("SYNCBUS_WEBHOOK_CHILD_DB").is_ok() {
        return;
    }
    let rounds = env_num("SYNCBUS_WEBHOOK_KILLS", 5);
    let per_round = env_num("SYNCBUS_WEBHOOK_KILL_REQUESTS", 60);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kill.db").to_string_lossy().into_owned();
    let c = client();
    let mut ok: HashSet<String> = HashSet::new();
    let mut all: Vec<String> = Vec::new();
    for round in 0..rounds {
        let (child, port) = spawn(&db);
        let url = format!("http://127.0.0.1:{port}/webhooks/shop");
        // New ids, and every id sent before that got no 2xx (the sender's retry).
        let fresh: Vec<String> = (0..per_round).map(|i| format!("r{round}-{i}")).collect();
        all.extend(fresh.iter().cloned());
        let pending: Vec<String> = all.iter().filter(|id| !ok.contains(*id)).cloned().collect();
        let mut tasks = Vec::new();
        for id in pending {
            let (c, url) = (c.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let r = c
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", syncbus_webhook::unix_now().to_string())
                    .header(
                        "webhook-signature",
                        secret().sign(&id, syncbus_webhook::unix_now(), b"{}"),
                    )
                    .body("{}")
                    .send()
                    .await;
                (id, r.map(|r| r.status().is_success()).unwrap_or(false))
            }));
        }
        // Kill while requests are in flight.
        tokio::time::sleep(Duration::from_millis(20 + (round as u64 * 37) % 80)).await;
        tokio::task::spawn_blocking(move || kill(child))
            .await
            .unwrap();
        for t in tasks {
            let (id, success) = t.await.unwrap();
            if success {
                ok.insert(id);
            }
        }
    }
    // A last run: everything not yet 2xx'd is retried, then processing catches up.
    let (child, port) = spawn(&db);
    let url = format!("http://127.0.0.1:{port}/webhooks/shop");
    for id in all
        .iter()
        .filter(|id| !ok.contains(*id))
        .cloned()
        .collect::<Vec<_>>()
    {
        let r = send_now(&c, &url, &id, "{}").await;
        assert!(r.status().is_success());
        ok.insert(id);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = effects(&db).await;
        if ok.iter().all(|id| done.contains_key(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not everything processed: {} of {}",
            done.len(),
            ok.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(child);
    let done = effects(&db).await;
    assert_eq!(ok.len(), all.len(), "every request got its 2xx in the end");
    for id in &all {
        assert_eq!(done.get(id), Some(&1), "{id} processed exactly once");
    }
    assert_eq!(done.len(), all.len(), "nothing processed that was not sent");
}
