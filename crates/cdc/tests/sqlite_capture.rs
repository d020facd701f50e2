//! SQLite capture on a real file: every kind of change (REPLACE and a whole-table DELETE
//! among them, a WITHOUT ROWID table, a composite key) in commit order; transactions of two
//! connections in commit order; a rolled-back write is never seen; the checkpoint resumes a
//! new reader and the change rows behind it are cleaned up.

use std::time::{Duration, Instant};

use serde_json::json;
use syncbus_cdc::{Change, SqliteCdc, SqliteCdcConfig};
use syncbus_core::{Settle, Source};
use syncbus_envelope::Envelope;
use syncbus_store::{rusqlite, SqliteStore};

async fn take(source: &SqliteCdc, n: usize) -> Vec<Envelope<Change>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        for d in source.fetch(100, Duration::from_millis(100)).await.unwrap() {
            out.push(d.envelope().clone());
            d.ack().await.unwrap();
        }
    }
    source.flush().await.unwrap();
    out
}

fn types(got: &[Envelope<Change>]) -> Vec<String> {
    got.iter()
        .map(|e| e.meta().event_type().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_come_in_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store
        .with_connection(|c| {
            Ok(c.execute_batch(
                "CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT, price REAL, raw BLOB);
                 CREATE TABLE lines (a INTEGER, b TEXT, qty INTEGER, PRIMARY KEY (a, b)) WITHOUT ROWID;",
            )?)
        })
        .await
        .unwrap();
    let config = SqliteCdcConfig::new(["items", "lines"])
        .unwrap()
        .poll(Duration::from_millis(5));
    let source = SqliteCdc::open(store.clone(), config.clone())
        .await
        .unwrap();
    store
        .with_connection(|c| {
            let tx = c.transaction()?;
            tx.execute_batch(
                "INSERT INTO items VALUES (1, 'a', 1.5, x'00ff');
                 UPDATE items SET label = 'b' WHERE id = 1;
                 INSERT INTO lines VALUES (1, 'x', 5);
                 UPDATE lines SET qty = 6 WHERE a = 1;
                 INSERT OR REPLACE INTO lines VALUES (1, 'x', 7);
                 DELETE FROM lines;
                 INSERT INTO items (id) VALUES (2);
                 DELETE FROM items;",
            )?;
            tx.commit()?;
            // rolled back: never seen
            let tx = c.transaction()?;
            tx.execute("INSERT INTO items (id) VALUES (99)", [])?;
            tx.rollback()?;
            Ok(())
        })
        .await
        .unwrap();
    let got = take(&source, 10).await;
    assert_eq!(
        types(&got),
        [
            "main.items.insert",
            "main.items.update",
            "main.lines.insert",
            "main.lines.update",
            // REPLACE: the old row's delete, then the insert
            "main.lines.delete",
            "main.lines.insert",
            "main.lines.delete",
            "main.items.insert",
            // a whole-table DELETE: one delete per row
            "main.items.delete",
            "main.items.delete",
        ]
    );
    let first = got[0].payload().json().unwrap();
    assert_eq!(
        first["new"],
        json!({"id": 1, "label": "a", "price": 1.5, "raw": "00FF"})
    );
    assert_eq!(got[0].meta().entity_id().unwrap().as_str(), "1");
    assert_eq!(got[2].meta().entity_id().unwrap().as_str(), r#"[1,"x"]"#);
    assert_eq!(
        got[3].payload().json().unwrap()["old"],
        json!({"a": 1, "b": "x", "qty": 5})
    );
    let versions: Vec<u64> = got.iter().map(|e| e.meta().version().unwrap()).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");

    // Two connections: the transaction that commits first comes first.
    let mut a = rusqlite::Connection::open(&path).unwrap();
    a.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA recursive_triggers = ON")
        .unwrap();
    let ta = a
        .transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)
        .unwrap();
    ta.query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0))
        .unwrap();
    store
        .with_connection(|c| Ok(c.execute("INSERT INTO items (id) VALUES (11)", [])?))
        .await
        .unwrap();
    ta.commit().unwrap();
    a.execute("INSERT INTO items (id) VALUES (10)", []).unwrap();
    let got = take(&source, 2).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|e| e.meta().entity_id().unwrap().as_str())
        .collect();
    assert_eq!(ids, ["11", "10"]);

    // Cleaned up behind the checkpoint; a new reader resumes after it.
    let left: i64 = store
        .with_connection(|c| {
            Ok(c.query_row("SELECT count(*) FROM syncbus_cdc_changes", [], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(left, 0);
    drop(source);
    a.execute("INSERT INTO items (id) VALUES (20)", []).unwrap();
    let source = SqliteCdc::open(store.clone(), config).await.unwrap();
    let got = take(&source, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].meta().entity_id().unwrap().as_str(), "20");
    assert!(source
        .fetch(10, Duration::from_millis(50))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_nak_reads_the_change_again_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("app.db")).await.unwrap();
    store
        .with_connection(|c| Ok(c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)")?))
        .await
        .unwrap();
    let source = SqliteCdc::open(store.clone(), SqliteCdcConfig::new(["t"]).unwrap())
        .await
        .unwrap();
    store
        .with_connection(|c| {
            Ok(c.execute_batch(
                "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); INSERT INTO t VALUES (3);",
            )?)
        })
        .await
        .unwrap();
    let mut first = source
        .fetch(10, Duration::from_millis(100))
        .await
        .unwrap()
        .into_iter();
    let (one, two, three) = (
        first.next().unwrap(),
        first.next().unwrap(),
        first.next().unwrap(),
    );
    one.ack().await.unwrap();
    two.nak(Duration::from_millis(20)).await.unwrap();
    three.ack().await.unwrap(); // handed out before the rewind: comes again
    let again = source.fetch(10, Duration::from_millis(100)).await.unwrap();
    let ids: Vec<&str> = again
        .iter()
        .map(|d| d.envelope().meta().entity_id().unwrap().as_str())
        .collect();
    assert_eq!(ids, ["2", "3"]);
    assert_eq!(again[0].deliveries(), 2);
    assert_eq!(again[1].deliveries(), 1);
}

#[tokio::test]
async fn setup_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("app.db")).await.unwrap();
    store
        .with_connection(|c| Ok(c.execute_batch("CREATE TABLE nokey (v TEXT)")?))
        .await
        .unwrap();
    let err = SqliteCdc::open(store.clone(), SqliteCdcConfig::new(["nokey"]).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no primary key"), "{err}");
    let err = SqliteCdc::open(store, SqliteCdcConfig::new(["missing"]).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}
