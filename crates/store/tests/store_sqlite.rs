//! The storage contract on SQLite files, plus what only a file has: reopening, schema
//! versions, unreadable files, several processes' worth of connections on one file.

mod support;

use std::time::Duration;

use support::{contract, env, num};
use syncbus_storage::StoreErrorKind;
use syncbus_storage::{Checkpoints, EventLog, Outbox, StoreFuture};
use syncbus_store::{SqliteConfig, SqliteError, SqliteStore, Synchronous};
use tempfile::TempDir;

async fn fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("store.db"))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn log_append_read() {
    let (_dir, store) = fresh().await;
    contract::log_append_read(&store).await;
}

#[tokio::test]
async fn log_commit() {
    let (_dir, store) = fresh().await;
    contract::log_commit(&store).await;
}

#[tokio::test]
async fn log_claim_ack() {
    let (_dir, store) = fresh().await;
    contract::log_claim_ack(&store).await;
}

#[tokio::test]
async fn log_ack_skips_acked() {
    let (_dir, store) = fresh().await;
    contract::log_ack_skips_acked(&store).await;
}

#[tokio::test]
async fn log_extend() {
    let (_dir, store) = fresh().await;
    contract::log_extend(&store).await;
}

#[tokio::test]
async fn log_leases() {
    let (_dir, store) = fresh().await;
    contract::log_leases(&store).await;
}

#[tokio::test]
async fn log_retention() {
    let (_dir, store) = fresh().await;
    contract::log_retention(&store).await;
}

#[tokio::test]
async fn checkpoints() {
    let (_dir, store) = fresh().await;
    contract::checkpoints(&store).await;
}

#[tokio::test]
async fn outbox() {
    let (_dir, store) = fresh().await;
    let s = store.clone();
    let enqueue = move |env| -> StoreFuture<'static, u64> {
        s.with_connection(move |conn| SqliteStore::enqueue(conn, &env))
    };
    contract::outbox(&store, &enqueue).await;
}

#[tokio::test]
async fn dedup() {
    let (_dir, store) = fresh().await;
    contract::dedup(&store.dedup()).await;
}

#[tokio::test]
async fn dead_letters() {
    let (_dir, store) = fresh().await;
    contract::dead_letters(&store.dead_letters()).await;
}

#[tokio::test]
async fn sagas() {
    let (_dir, store) = fresh().await;
    contract::sagas(&store.sagas()).await;
}

#[tokio::test]
async fn everything_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let offsets = {
        let store = SqliteStore::open(&path).await.unwrap();
        let offsets = store
            .append_batch((1..=3).map(|n| env("a", n)).collect())
            .await
            .unwrap();
        store
            .claim("c", "m", 10, Duration::from_secs(3600))
            .await
            .unwrap();
        store.ack("c", &offsets[..1]).await.unwrap();
        store.put("cursor", vec![7]).await.unwrap();
        store
            .with_connection(|conn| SqliteStore::enqueue(conn, &env("out", 9)))
            .await
            .unwrap();
        offsets
    };
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.head().await.unwrap(), Some(offsets[2]));
    assert_eq!(store.committed("c").await.unwrap(), Some(offsets[0]));
    assert_eq!(store.get("cursor").await.unwrap(), Some(vec![7]));
    assert_eq!(num(&store.pending(10).await.unwrap()[0].envelope), 9);
    // m's leases survived too: after a restart it releases them to get them back at once.
    assert!(store
        .claim("c", "m", 10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.release_member("c", "m").await.unwrap(), 2);
    let back = store
        .claim("c", "m", 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        back.iter().map(|c| c.record.offset).collect::<Vec<_>>(),
        &offsets[1..]
    );
}

#[tokio::test]
async fn wal_mode_and_synchronous_setting_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    for (sync, expected) in [(Synchronous::Full, 2), (Synchronous::Normal, 1)] {
        let config = SqliteConfig::new().synchronous(sync);
        let store = SqliteStore::open_with(dir.path().join("s.db"), config)
            .await
            .unwrap();
        let (mode, level): (String, i64) = store
            .with_connection(|conn| {
                let mode = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                let level = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
                Ok((mode, level))
            })
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(level, expected, "{sync:?}");
    }
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, b"this is not a database at all, just text that goes on for a while ........................................................................").unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(err.kind() == StoreErrorKind::Corrupt, "{err:?}");
    assert!(err.to_string().contains("garbage.db"), "{err}");
    // Said once, not once by SQLite and again by syncbus.
    let text = err.to_string();
    assert_eq!(text.matches("not an SQLite database").count(), 1, "{text}");
    assert!(
        !text.contains("not a database"),
        "SQLite's own words repeated: {text}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn a_missing_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("data");
    let err = SqliteStore::open(folder.join("shop.db")).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("the folder {} does not exist", folder.display())),
        "{text}"
    );
    std::fs::create_dir(&folder).unwrap();
    SqliteStore::open(folder.join("shop.db")).await.unwrap();
}

#[tokio::test]
async fn a_corrupt_database_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .append_batch((0..200).map(|n| env("a", n)).collect())
            .await
            .unwrap();
        store
            .with_connection(|conn| {
                conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
                Ok(())
            })
            .await
            .unwrap();
    }
    // Keep the header, overwrite every page after the first with garbage.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8192, "{}", bytes.len());
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i * 31 % 251) as u8;
    }
    std::fs::write(&path, &bytes).unwrap();
    let _ = std::fs::remove_file(dir.path().join("corrupt.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("corrupt.db-shm"));
    match SqliteStore::open(&path).await {
        Err(e) => assert!(
            matches!(e.kind(), StoreErrorKind::Corrupt | StoreErrorKind::Backend),
            "{e:?}"
        ),
        // The schema page may survive; then reading the damaged log must fail cleanly.
        Ok(store) => {
            let read = store.read(0, 1_000).await;
            assert!(
                read.is_err(),
                "garbage pages read back as records: {read:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_store_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    drop(SqliteStore::open(&path).await.unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE syncbus_schema SET version = 999", [])
            .unwrap();
    }
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Incompatible, "{err:?}");
    let expected = format!(
        "schema version 999, this build knows up to {}",
        SqliteStore::SCHEMA_VERSION
    );
    assert!(err.to_string().contains(&expected), "{err}");
    // Refusing did not touch the file.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: u32 = conn
        .query_row("SELECT version FROM syncbus_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 999);
}

#[tokio::test]
async fn migrations_run_once_and_record_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    for _ in 0..2 {
        drop(SqliteStore::open(&path).await.unwrap());
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let rows: u32 = conn
        .query_row("SELECT COUNT(*) FROM syncbus_schema", [], |r| r.get(0))
        .unwrap();
    let v: u32 = conn
        .query_row("SELECT version FROM syncbus_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!((rows, v), (1, SqliteStore::SCHEMA_VERSION));
}

#[tokio::test]
async fn the_store_lives_beside_application_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY); INSERT INTO users VALUES (1);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let users: i64 = store
        .with_connection(|c| Ok(c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(users, 1);
}

#[tokio::test]
async fn two_connections_on_one_file_split_a_consumer_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("group.db");
    let a = SqliteStore::open(&path).await.unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    a.append_batch((0..200).map(|n| env("a", n)).collect())
        .await
        .unwrap();
    let lease = Duration::from_secs(3600);
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    loop {
        let (ca, cb) = tokio::join!(a.claim("g", "a", 7, lease), b.claim("g", "b", 5, lease));
        let (ca, cb) = (ca.unwrap(), cb.unwrap());
        if ca.is_empty() && cb.is_empty() {
            break;
        }
        seen_a.extend(ca.iter().map(|c| c.record.offset));
        seen_b.extend(cb.iter().map(|c| c.record.offset));
    }
    assert!(!seen_a.is_empty() && !seen_b.is_empty());
    let mut all: Vec<u64> = seen_a.iter().chain(&seen_b).copied().collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a record was claimed by both members");
    assert_eq!(all.len(), 200);
}

#[tokio::test]
async fn a_dropped_future_still_leaves_the_store_usable() {
    let (_dir, store) = fresh().await;
    drop(store.append(env("a", 1)));
    let err = store
        .with_connection(|_| -> Result<(), SqliteError> { panic!("a bug in a caller's closure") })
        .await
        .unwrap_err();
    assert!(err.kind() == StoreErrorKind::Closed, "{err:?}");
    // The connection thread survived the panic.
    store.append(env("a", 2)).await.unwrap();
    assert!(store.head().await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_claims_are_atomic_across_connections() {
    use syncbus_storage::{Claim, DedupKey, DedupStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dedup.db");
    let a = SqliteStore::open(&path).await.unwrap().dedup();
    let b = SqliteStore::open(&path).await.unwrap().dedup();
    let lease = Duration::from_secs(60);
    for n in 0..100 {
        let key = DedupKey::new(&format!("key-{n}")).unwrap();
        let (x, y) = tokio::join!(a.claim(&key, lease), b.claim(&key, lease));
        let won = [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|c| **c == Claim::Acquired)
            .count();
        assert_eq!(won, 1, "key-{n}");
    }
}

#[tokio::test]
async fn expired_dedup_keys_are_purged_in_the_background() {
    use std::sync::Arc;
    use syncbus_storage::{DedupKey, DedupStore, Outcome};
    let (_dir, store) = fresh().await;
    let dedup = store.dedup();
    for n in 0..10 {
        let key = DedupKey::new(&format!("k{n}")).unwrap();
        dedup
            .finish(&key, Outcome::Done, Duration::from_millis(20))
            .await
            .unwrap();
    }
    let count = |s: SqliteStore| async move {
        s.with_connection(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM syncbus_dedup", [], |r| {
                r.get::<_, i64>(0)
            })?)
        })
        .await
        .unwrap()
    };
    assert_eq!(count(store.clone()).await, 10);
    let purger = syncbus_storage::DedupPurger::spawn(Arc::new(dedup), Duration::from_millis(10));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while count(store.clone()).await > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    purger.stop().await;
    assert_eq!(count(store).await, 0);
}

#[tokio::test]
async fn an_older_store_is_migrated_forward_keeping_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.append(env("a", 1)).await.unwrap();
    }
    // Make it look like a version-1 store: no workflow tables yet.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE syncbus_dedup; DROP TABLE syncbus_dead_letters; DROP TABLE syncbus_sagas;
             UPDATE syncbus_schema SET version = 1;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(num(&store.read(0, 10).await.unwrap()[0].envelope), 1);
    let version: u32 = store
        .with_connection(|c| {
            Ok(c.query_row("SELECT version FROM syncbus_schema", [], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
    use syncbus_storage::{Claim, DedupKey, DedupStore};
    let key = DedupKey::new("k").unwrap();
    assert_eq!(
        store
            .dedup()
            .claim(&key, Duration::from_secs(1))
            .await
            .unwrap(),
        Claim::Acquired
    );
}

#[tokio::test]
async fn a_path_that_cannot_be_opened_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            StoreErrorKind::Backend | StoreErrorKind::Corrupt
        ),
        "{err:?}"
    );
    let missing = dir.path().join("no/such/dir/s.db");
    assert!(SqliteStore::open(missing).await.is_err());
}

/// A duplicate is answered on the caller's thread: it does not wait for a busy writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedup_hit_does_not_wait_for_the_writer() {
    use syncbus_storage::{Claim, DedupKey, DedupStore, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("d.db")).await.unwrap();
    let dedup = store.dedup();
    let key = DedupKey::new("done-before").unwrap();
    let hour = std::time::Duration::from_secs(3600);
    dedup.finish(&key, Outcome::Done, hour).await.unwrap();

    // Hold the connection thread until told.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let busy = store.with_connection(move |_| {
        let _ = hold.recv();
        Ok(())
    });
    let busy = tokio::spawn(busy);
    let claim = tokio::time::timeout(std::time::Duration::from_secs(10), dedup.claim(&key, hour))
        .await
        .expect("a hit must not wait for the writer");
    assert_eq!(claim.unwrap(), Claim::Duplicate);
    release.send(()).unwrap();
    busy.await.unwrap().unwrap();
}

/// The transactional inbox on SQLite: a key recorded in a transaction that rolls back is not
/// done; one that commits is, together with the effect; recording a done key again fails
/// with `Duplicate` and marks the entry; outside a transaction it is refused.
#[tokio::test]
async fn record_done_commits_and_rolls_back_with_the_transaction() {
    use syncbus_storage::{Claim, DedupKey, DedupStore, InboxEntry, KeyState};
    let (_dir, store) = fresh().await;
    let dedup = store.dedup();
    let minute = Duration::from_secs(60);
    let entry = InboxEntry::new(DedupKey::new("billing:pay-1").unwrap(), minute);
    assert_eq!(
        dedup.claim(entry.key(), minute).await.unwrap(),
        Claim::Acquired
    );

    let e = entry.clone();
    store
        .with_connection(move |conn| {
            conn.execute_batch("CREATE TABLE ledger (cents INTEGER NOT NULL)")?;
            let tx = conn.transaction()?;
            tx.execute("INSERT INTO ledger (cents) VALUES (100)", [])?;
            SqliteStore::record_done(&tx, &e)?;
            tx.rollback()?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(
        dedup.state(entry.key()).await.unwrap(),
        Some(KeyState::InFlight),
        "a rolled-back record left the key done"
    );

    let e = entry.clone();
    store
        .with_connection(move |conn| {
            let tx = conn.transaction()?;
            tx.execute("INSERT INTO ledger (cents) VALUES (100)", [])?;
            SqliteStore::record_done(&tx, &e)?;
            tx.commit()?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(
        dedup.claim(entry.key(), minute).await.unwrap(),
        Claim::Duplicate
    );
    assert!(!entry.is_duplicate());

    // A second delivery's transaction: its effect rolls back with the refused key.
    let again = InboxEntry::new(entry.key().clone(), minute);
    let a = again.clone();
    let err = store
        .with_connection(move |conn| {
            let tx = conn.transaction()?;
            tx.execute("INSERT INTO ledger (cents) VALUES (100)", [])?;
            SqliteStore::record_done(&tx, &a)?;
            tx.commit()?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Duplicate, "{err}");
    assert!(again.is_duplicate());
    let effects: i64 = store
        .with_connection(
            |conn| Ok(conn.query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0))?),
        )
        .await
        .unwrap();
    assert_eq!(effects, 1, "the effect happened {effects} times");

    // Outside a transaction the key would not commit with anything: refused.
    let fresh_key = InboxEntry::new(DedupKey::new("billing:pay-2").unwrap(), minute);
    let err = store
        .with_connection(move |conn| SqliteStore::record_done(conn, &fresh_key))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
}

/// `transaction` commits on `Ok`, rolls back on the application's own error, which comes
/// back as itself; a typed event enqueued inside commits or rolls back with it.
#[tokio::test]
async fn transaction_returns_the_applications_error_and_rolls_back() {
    use syncbus_storage::Outbox;
    #[derive(Clone, Debug, serde::Serialize)]
    struct Charged {
        cents: i64,
    }
    impl syncbus_core::Event for Charged {
        const TYPE: &'static str = "shop.charged";
    }
    #[derive(Debug)]
    enum AppError {
        Declined(i64),
        Store(SqliteError),
    }
    impl From<SqliteError> for AppError {
        fn from(e: SqliteError) -> Self {
            AppError::Store(e)
        }
    }
    impl From<rusqlite::Error> for AppError {
        fn from(e: rusqlite::Error) -> Self {
            AppError::Store(e.into())
        }
    }
    let (_dir, store) = fresh().await;
    store
        .with_connection(|conn| {
            conn.execute_batch("CREATE TABLE ledger (cents INTEGER NOT NULL)")?;
            Ok(())
        })
        .await
        .unwrap();
    let charge = |cents: i64| {
        store.transaction(move |tx| -> Result<i64, AppError> {
            tx.execute("INSERT INTO ledger (cents) VALUES (?1)", [cents])?;
            SqliteStore::enqueue_event(tx, Charged { cents })?;
            if cents > 1000 {
                return Err(AppError::Declined(cents));
            }
            Ok(cents)
        })
    };
    assert_eq!(charge(500).await.unwrap(), 500);
    match charge(5000).await {
        Err(AppError::Declined(5000)) => {}
        other => panic!("expected the application's error, got {other:?}"),
    }
    let rows: i64 = store
        .with_connection(
            |conn| Ok(conn.query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0))?),
        )
        .await
        .unwrap();
    assert_eq!(rows, 1, "the declined charge was not rolled back");
    let pending = store.pending(10).await.unwrap();
    assert_eq!(
        pending.len(),
        1,
        "the declined charge's event was not rolled back"
    );
    assert_eq!(
        pending[0].envelope.meta().event_type().as_str(),
        "shop.charged"
    );
    // A store error inside converts into the application's type too.
    let bad = store
        .transaction(|tx| -> Result<(), AppError> {
            tx.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            Ok(())
        })
        .await;
    match bad {
        Err(AppError::Store(e)) => assert!(e.to_string().contains("no_such_table"), "{e}"),
        other => panic!("expected the store's error in the application's type, got {other:?}"),
    }
}

/// A closure that panics inside `transaction` rolls back, comes back as the application's
/// error (the store's `Closed`), never a panic in the caller, and the store goes on working.
#[tokio::test]
async fn a_panicking_transaction_rolls_back_and_the_store_goes_on() {
    let (_dir, store) = fresh().await;
    store
        .with_connection(|conn| {
            conn.execute_batch("CREATE TABLE ledger (cents INTEGER NOT NULL)")?;
            Ok(())
        })
        .await
        .unwrap();
    let r = store
        .transaction(|tx| -> Result<(), SqliteError> {
            tx.execute("INSERT INTO ledger (cents) VALUES (1)", [])?;
            panic!("a bug in the closure");
        })
        .await;
    match r {
        Err(SqliteError::Store(e)) => assert_eq!(e.kind(), StoreErrorKind::Closed, "{e}"),
        other => panic!("expected the store's error, got {other:?}"),
    }
    let rows: i64 = store
        .transaction(|tx| -> Result<i64, SqliteError> {
            Ok(tx.query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(rows, 0, "the panicking transaction was not rolled back");
}
