//! The reader SIGKILLed mid-stream again and again (`SYNCBUS_CDC_KILLS`, default 5) while
//! writes go on, and restarted on the same checkpoint: no change is lost, and what came again
//! (the changes after the last checkpoint, with the ids they had) is dropped by the dedup
//! layer, so every change has its effect exactly once (effect and dedup key commit together).
//! For PostgreSQL (a slot) and SQLite (capture triggers).

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use syncbus_cdc::{Change, PgCdc, PgCdcConfig, SqliteCdc, SqliteCdcConfig};
use syncbus_core::{Bus, Envelope};
use syncbus_store::{rusqlite, PgStore, SqliteStore};
use syncbus_workflow::{Context, DedupConfig, ResultExt, Workflow};

fn kills() -> usize {
    std::env::var("SYNCBUS_CDC_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

#[allow(clippy::zombie_processes)] // the caller kills and waits
fn spawn(test: &str, env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn kill(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// The PostgreSQL child: serves the slot into `effects`, recording the dedup key in the
/// effect's transaction; every delivery is logged in `attempts` first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_child() {
    let (Ok(url), Ok(name)) = (
        std::env::var("CDC_CHILD_URL"),
        std::env::var("CDC_CHILD_NAME"),
    ) else {
        return; // only as the child of pg_reader_killed_and_restarted
    };
    let store = PgStore::builder(&url)
        .schema(format!("{name}_store"))
        .connect()
        .await
        .unwrap();
    let config = PgCdcConfig::new(&url, [format!("{name}.src")])
        .unwrap()
        .transport(transport())
        .slot(&name)
        .unwrap()
        .page(50)
        .poll(Duration::from_millis(20));
    let source = loop {
        // the killed predecessor's backend may hold the slot for a moment
        match PgCdc::connect(config.clone(), store.clone()).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let client = Arc::new(tokio::sync::Mutex::new(client));
    let bus = Bus::new();
    let s = store.clone();
    let _served = Workflow::new(&bus)
        .serve(source)
        .fetch_wait(Duration::from_millis(50))
        .dedup(DedupConfig::new(store.dedup()).lease(Duration::from_millis(500)))
        .handle(move |env: Envelope<Change>, ctx: Context| {
            let (client, store, name) = (client.clone(), s.clone(), name.clone());
            async move {
                let entry = ctx.inbox().cloned().unwrap();
                let id = env.id().to_string();
                let entity = env.meta().entity_id().unwrap().as_str().to_owned();
                let mut c = client.lock().await;
                c.execute(&format!("INSERT INTO {name}.attempts VALUES ($1)"), &[&id])
                    .await
                    .retryable()?;
                let tx = c.transaction().await.retryable()?;
                tx.execute(
                    &format!("INSERT INTO {name}.effects VALUES ($1, $2)"),
                    &[&id, &entity],
                )
                .await
                .retryable()?;
                store.record_done(&tx, &entry).await.retryable()?;
                tx.commit().await.retryable()
            }
        })
        .unwrap();
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_reader_killed_and_restarted() {
    if std::env::var("CDC_CHILD_URL").is_ok() {
        return;
    }
    let Some(s) = Scratch::new(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, v int);
         CREATE TABLE {s}.effects (event_id text NOT NULL, entity text NOT NULL);
         CREATE TABLE {s}.attempts (event_id text NOT NULL);",
    )
    .await
    else {
        return;
    };
    let (url, name, app) = (s.url.clone(), s.name.clone(), &s.app);
    // Slot and publication exist before the first write, so nothing is before the stream.
    let store = PgStore::builder(&url)
        .schema(format!("{name}_store"))
        .connect()
        .await
        .unwrap();
    drop(
        PgCdc::connect(
            PgCdcConfig::new(&url, [format!("{name}.src")])
                .unwrap()
                .transport(transport())
                .slot(&name)
                .unwrap(),
            store,
        )
        .await
        .unwrap(),
    );

    let env = [
        ("CDC_CHILD_URL", url.as_str()),
        ("CDC_CHILD_NAME", name.as_str()),
    ];
    let writer = {
        let app = client(&url).await;
        let name = name.clone();
        tokio::spawn(async move {
            let mut n = 0;
            for _ in 0..60 {
                let mut sql = String::from("BEGIN;");
                for _ in 0..20 {
                    sql += &format!("INSERT INTO {name}.src VALUES ({n}, 0);");
                    n += 1;
                }
                sql += "COMMIT;";
                app.batch_execute(&sql).await.unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            n
        })
    };
    for round in 0..kills() {
        let child = spawn("pg_child", &env);
        tokio::time::sleep(Duration::from_millis(400 + 150 * (round as u64 % 3))).await;
        kill(child);
    }
    let total = writer.await.unwrap();
    let child = spawn("pg_child", &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let effects = loop {
        let rows = app
            .query(
                &format!("SELECT entity, count(*) FROM {name}.effects GROUP BY entity"),
                &[],
            )
            .await
            .unwrap();
        let map: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if map.len() >= total as usize || Instant::now() > deadline {
            break map;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    kill(child);
    for i in 0..total {
        assert_eq!(
            effects.get(&i.to_string()),
            Some(&1),
            "change of row {i}: effects {:?}",
            effects.get(&i.to_string())
        );
    }
    let attempts: i64 = app
        .query_one(&format!("SELECT count(*) FROM {name}.attempts"), &[])
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "pg: {total} changes, {attempts} deliveries ({} again after a kill, dropped by dedup)",
        attempts - i64::from(total)
    );
}

/// The SQLite child: the same, on a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_child() {
    let Ok(db) = std::env::var("CDC_CHILD_DB") else {
        return;
    };
    let store = SqliteStore::open(&db).await.unwrap();
    let source = SqliteCdc::open(
        store.clone(),
        SqliteCdcConfig::new(["src"])
            .unwrap()
            .poll(Duration::from_millis(5)),
    )
    .await
    .unwrap();
    let bus = Bus::new();
    let s = store.clone();
    let _served = Workflow::new(&bus)
        .serve(source)
        .fetch_wait(Duration::from_millis(20))
        .dedup(DedupConfig::new(store.dedup()).lease(Duration::from_millis(500)))
        .handle(move |env: Envelope<Change>, ctx: Context| {
            let store = s.clone();
            async move {
                let entry = ctx.inbox().cloned().unwrap();
                let id = env.id().to_string();
                let entity = env.meta().entity_id().unwrap().as_str().to_owned();
                store
                    .with_connection(move |c| {
                        c.execute("INSERT INTO attempts VALUES (?1)", [&id])?;
                        let tx = c.transaction()?;
                        tx.execute("INSERT INTO effects VALUES (?1, ?2)", [&id, &entity])?;
                        SqliteStore::record_done(&tx, &entry)?;
                        tx.commit()?;
                        Ok(())
                    })
                    .await
                    .retryable()
            }
        })
        .unwrap();
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reader_killed_and_restarted() {
    if std::env::var("CDC_CHILD_DB").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db").to_string_lossy().into_owned();
    let store = SqliteStore::open(&db).await.unwrap();
    store
        .with_connection(|c| {
            Ok(c.execute_batch(
                "CREATE TABLE src (id INTEGER PRIMARY KEY, v INTEGER);
                 CREATE TABLE effects (event_id TEXT NOT NULL, entity TEXT NOT NULL);
                 CREATE TABLE attempts (event_id TEXT NOT NULL);",
            )?)
        })
        .await
        .unwrap();
    // Triggers in place before the first write.
    drop(
        SqliteCdc::open(store.clone(), SqliteCdcConfig::new(["src"]).unwrap())
            .await
            .unwrap(),
    );
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch("PRAGMA busy_timeout = 10000").unwrap();
            let mut n = 0;
            for _ in 0..60 {
                let mut sql = String::from("BEGIN IMMEDIATE;");
                for _ in 0..20 {
                    sql += &format!("INSERT INTO src VALUES ({n}, 0);");
                    n += 1;
                }
                sql += "COMMIT;";
                c.execute_batch(&sql).unwrap();
                std::thread::sleep(Duration::from_millis(30));
            }
            n
        })
    };
    let env = [("CDC_CHILD_DB", db.as_str())];
    for round in 0..kills() {
        let child = spawn("sqlite_child", &env);
        tokio::time::sleep(Duration::from_millis(400 + 150 * (round as u64 % 3))).await;
        kill(child);
    }
    let total: i64 = writer.join().unwrap();
    let child = spawn("sqlite_child", &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let effects = loop {
        let map: HashMap<String, i64> = store
            .with_connection(|c| {
                let mut s = c.prepare("SELECT entity, count(*) FROM effects GROUP BY entity")?;
                let rows = s
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await
            .unwrap();
        if map.len() >= total as usize || Instant::now() > deadline {
            break map;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    kill(child);
    for i in 0..total {
        assert_eq!(effects.get(&i.to_string()), Some(&1), "change of row {i}");
    }
    let attempts: i64 = store
        .with_connection(|c| Ok(c.query_row("SELECT count(*) FROM attempts", [], |r| r.get(0))?))
        .await
        .unwrap();
    eprintln!(
        "sqlite: {total} changes, {attempts} deliveries ({} again after a kill, dropped by dedup)",
        attempts - total
    );
}
