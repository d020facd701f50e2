//! PostgreSQL capture against the real server: every kind of change on single and composite
//! keys, in commit order; interleaved transactions in commit order; the type mapping; the
//! checkpoint and the slot resume a new reader where the last one stopped.

mod support;

use serde_json::json;
use support::*;
use syncbus_cdc::{CdcError, PgCdc, PgCdcConfig};
use syncbus_storage::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_come_in_commit_order_with_keys_and_types() {
    let Some(s) = Scratch::new(
        "CREATE TABLE {s}.items (id int PRIMARY KEY, label text, price numeric, ok bool,
            at timestamptz, u uuid, j jsonb, tags text[], n int[], f float8, other point);
         CREATE TABLE {s}.lines (a int, b text, qty int, PRIMARY KEY (a, b));
         ALTER TABLE {s}.lines REPLICA IDENTITY FULL;",
    )
    .await
    else {
        return;
    };
    let (url, name, app) = (s.url.clone(), s.name.clone(), &s.app);
    let config = PgCdcConfig::new(&url, [format!("{name}.items"), format!("{name}.lines")])
        .unwrap()
        .transport(transport())
        .slot(&name)
        .unwrap()
        .poll(std::time::Duration::from_millis(20));
    let checkpoints = std::sync::Arc::new(MemoryStore::new());
    let source = PgCdc::connect(config.clone(), checkpoints.clone())
        .await
        .unwrap();

    app.batch_execute(&format!(
        "INSERT INTO {name}.items VALUES (1, 'a', 12.50, true, '2026-01-02 03:04:05+00',
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"k\": [1, 2]}}', '{{x,\"y z\"}}', '{{1,NULL}}', 1.5, '(1,2)');
         UPDATE {name}.items SET label = 'b' WHERE id = 1;
         INSERT INTO {name}.lines VALUES (1, 'x', 5);
         UPDATE {name}.lines SET qty = 6 WHERE a = 1 AND b = 'x';
         DELETE FROM {name}.lines WHERE a = 1;
         INSERT INTO {name}.items (id) VALUES (2);
         DELETE FROM {name}.items WHERE id = 2;
         TRUNCATE {name}.items;"
    ))
    .await
    .unwrap();

    let got = take_pg(&source, 8).await;
    let types: Vec<String> = got
        .iter()
        .map(|e| e.meta().event_type().to_string())
        .collect();
    let t = |s: &str| format!("{name}.{s}");
    assert_eq!(
        types,
        [
            t("items.insert"),
            t("items.update"),
            t("lines.insert"),
            t("lines.update"),
            t("lines.delete"),
            t("items.insert"),
            t("items.delete"),
            t("items.truncate"),
        ]
    );
    let first = got[0].payload().json().unwrap();
    assert_eq!(
        first["new"],
        json!({"id": 1, "label": "a", "price": "12.50", "ok": true, "at": "2026-01-02 03:04:05+00",
               "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": {"k": [1, 2]}, "tags": ["x", "y z"],
               "n": [1, null], "f": 1.5, "other": "(1,2)"})
    );
    assert_eq!(got[0].meta().entity_id().unwrap().as_str(), "1");
    assert_eq!(got[2].meta().entity_id().unwrap().as_str(), r#"[1,"x"]"#);
    // replica identity full: the whole old row
    assert_eq!(
        got[3].payload().json().unwrap()["old"],
        json!({"a": 1, "b": "x", "qty": 5})
    );
    assert_eq!(
        got[4].payload().json().unwrap()["old"],
        json!({"a": 1, "b": "x", "qty": 6})
    );
    // default identity: the key of the deleted row
    assert_eq!(got[6].payload().json().unwrap()["key"], json!({"id": 2}));
    assert!(got[7].meta().entity_id().is_none());
    // one transaction, one commit LSN; versions rise
    let lsns: std::collections::HashSet<_> = got
        .iter()
        .map(|e| e.meta().headers().get("cdclsn").unwrap().to_owned())
        .collect();
    assert_eq!(lsns.len(), 1);
    // the headers agree with the payload: commit LSN, position in the transaction, xid
    for (i, e) in got.iter().enumerate() {
        let h = e.meta().headers();
        let doc = e.payload().json().unwrap();
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(doc["pos"], json!(i));
        assert_eq!(doc["lsn"].as_str(), h.get("cdclsn"));
        assert_eq!(Some(doc["xid"].to_string().as_str()), h.get("cdcxid"));
        assert!(doc["xid"].as_u64().is_some_and(|x| x > 0), "{doc}");
    }
    let versions: Vec<u64> = got.iter().map(|e| e.meta().version().unwrap()).collect();
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "{versions:?}");

    // Two interleaved transactions: the one that commits first comes first.
    let other = client(&url).await;
    app.batch_execute(&format!("BEGIN; INSERT INTO {name}.items (id) VALUES (10)"))
        .await
        .unwrap();
    other.batch_execute(&format!("BEGIN; INSERT INTO {name}.items (id) VALUES (11); INSERT INTO {name}.items (id) VALUES (12)")).await.unwrap();
    app.batch_execute(&format!("INSERT INTO {name}.items (id) VALUES (13)"))
        .await
        .unwrap();
    other.batch_execute("COMMIT").await.unwrap();
    app.batch_execute("COMMIT").await.unwrap();
    let got = take_pg(&source, 4).await;
    let ids: Vec<String> = got
        .iter()
        .map(|e| e.meta().entity_id().unwrap().as_str().to_owned())
        .collect();
    assert_eq!(ids, ["11", "12", "10", "13"]);

    // A new reader on the same checkpoint and slot starts after what was acked.
    drop(source);
    app.batch_execute(&format!("INSERT INTO {name}.items (id) VALUES (20)"))
        .await
        .unwrap();
    let source = PgCdc::connect(config, checkpoints).await.unwrap();
    let got = take_pg(&source, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].meta().entity_id().unwrap().as_str(), "20");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_errors_say_what_to_change() {
    let Some(s) = Scratch::new("CREATE TABLE {s}.nokey (v text);").await else {
        return;
    };
    let (url, name, app) = (s.url.clone(), s.name.clone(), &s.app);
    let err = PgCdc::connect(
        PgCdcConfig::new(&url, [format!("{name}.nokey")])
            .unwrap()
            .transport(transport())
            .slot(&name)
            .unwrap(),
        MemoryStore::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CdcError::Invalid(ref m) if m.contains("REPLICA IDENTITY FULL")),
        "{err}"
    );
    let err = PgCdc::connect(
        PgCdcConfig::new(&url, [format!("{name}.missing")])
            .unwrap()
            .transport(transport())
            .slot(&name)
            .unwrap(),
        MemoryStore::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CdcError::Invalid(ref m) if m.contains("does not exist")),
        "{err}"
    );

    // A role without REPLICATION.
    let role = format!("{name}_r");
    app.batch_execute(&format!(
        "CREATE TABLE {name}.k (id int PRIMARY KEY); CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA {name} TO {role};
         ALTER TABLE {name}.k OWNER TO {role}; GRANT CREATE ON DATABASE {} TO {role};",
        app.query_one("SELECT current_database()", &[]).await.unwrap().get::<_, String>(0)
    ))
    .await
    .unwrap();
    let role_url = url.replacen("postgres@", &format!("{role}@"), 1);
    let err = PgCdc::connect(
        PgCdcConfig::new(&role_url, [format!("{name}.k")])
            .unwrap()
            .slot(&name)
            .unwrap(),
        MemoryStore::new(),
    )
    .await;
    let _ = app
        .batch_execute(&format!(
            "DROP SCHEMA {name} CASCADE; REVOKE ALL ON DATABASE {} FROM {role}; DROP ROLE {role}",
            app.query_one("SELECT current_database()", &[])
                .await
                .unwrap()
                .get::<_, String>(0)
        ))
        .await;
    let err = err.unwrap_err();
    if !url.contains("postgres@") || matches!(err, CdcError::Database { .. }) {
        // The server does not let the new role in without a password: nothing to check.
        eprintln!("a role without REPLICATION could not log in ({err}): that part skipped");
        return;
    }
    assert!(matches!(err, CdcError::Permission { .. }), "{err}");
    assert!(err.to_string().contains("REPLICATION"), "{err}");
}

/// Another connection streaming the slot (`pg_recvlogical`, a replication connection):
/// connecting says the slot is in use and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_in_use_is_a_clear_error() {
    let Some(s) = Scratch::new("CREATE TABLE {s}.k (id int PRIMARY KEY)").await else {
        return;
    };
    let (url, name) = (s.url.clone(), s.name.clone());
    let config = PgCdcConfig::new(&url, [format!("{name}.k")])
        .unwrap()
        .transport(transport())
        .slot(&name)
        .unwrap();
    drop(
        PgCdc::connect(config.clone(), MemoryStore::new())
            .await
            .unwrap(),
    );
    let Ok(mut other) = std::process::Command::new("pg_recvlogical")
        .args([
            "-d",
            &url,
            "--slot",
            &name,
            "--start",
            "-f",
            "/dev/null",
            "-o",
            "proto_version=1",
            "-o",
        ])
        .arg(format!("publication_names={name}"))
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        eprintln!("pg_recvlogical is not on PATH: slot-in-use test skipped");
        return;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let err = loop {
        match PgCdc::connect(config.clone(), MemoryStore::new()).await {
            Err(e) => break e,
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Ok(_) => panic!("the slot never showed as in use"),
        }
    };
    other.kill().unwrap();
    other.wait().unwrap();
    assert!(matches!(err, CdcError::SlotInUse { .. }), "{err}");
    assert!(err.to_string().contains("--slot"), "{err}");
}

/// The replication connection of a consumer that stops reading for four times the server's
/// `wal_sender_timeout` (set to 1 s for this connection) stays up: its task answers for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_keeps_its_replication_connection() {
    let Some(s) =
        Scratch::new("CREATE TABLE {s}.k (id int PRIMARY KEY, label text NOT NULL)").await
    else {
        return;
    };
    let (url, name, app) = (s.url.clone(), s.name.clone(), &s.app);
    let sep = if url.contains('?') { '&' } else { '?' };
    let short = format!("{url}{sep}options=-c%20wal_sender_timeout%3D1000");
    let config = PgCdcConfig::new(&short, [format!("{name}.k")])
        .unwrap()
        .transport(syncbus_cdc::PgTransport::Replication)
        .slot(&name)
        .unwrap();
    let source = PgCdc::connect(config, MemoryStore::new()).await.unwrap();
    let rows = 50_000;
    app.batch_execute(&format!(
        "INSERT INTO {name}.k SELECT g, repeat('x', 100) || g FROM generate_series(1, {rows}) g"
    ))
    .await
    .unwrap();
    let first = take_pg(&source, 100).await;
    assert!(first.len() >= 100);
    let before = slot_pid(app, &name).await;
    assert!(before.is_some(), "the reader holds the slot");
    // The server has more to send than the socket and the reader's channel hold, and waits.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(
        slot_pid(app, &name).await,
        before,
        "the walsender timed out the slow reader"
    );
    let rest = take_pg(&source, rows - first.len()).await;
    assert_eq!(first.len() + rest.len(), rows);
    assert_eq!(slot_pid(app, &name).await, before);
}

async fn slot_pid(app: &tokio_postgres::Client, slot: &str) -> Option<i32> {
    app.query_one(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
        &[&slot],
    )
    .await
    .unwrap()
    .get(0)
}

/// A nak in the middle of a batch, while the reader is already reading the next batch
/// ahead: the nak'd change comes next (its delivery count raised), then everything after it
/// in order, nothing skipped and nothing read ahead handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nak_reads_the_change_again_in_order_even_with_a_batch_read_ahead() {
    use syncbus_core::{Settle, Source};
    let Some(s) = Scratch::new("CREATE TABLE {s}.k (id int PRIMARY KEY)").await else {
        return;
    };
    let (url, name, app) = (s.url.clone(), s.name.clone(), &s.app);
    let config = PgCdcConfig::new(&url, [format!("{name}.k")])
        .unwrap()
        .transport(transport())
        .slot(&name)
        .unwrap()
        .poll(std::time::Duration::from_millis(20));
    let source = PgCdc::connect(config, MemoryStore::new()).await.unwrap();
    for t in 0..3 {
        app.batch_execute(&format!(
            "INSERT INTO {name}.k SELECT g FROM generate_series({} + 1, {} + 1000) g",
            t * 1000,
            t * 1000
        ))
        .await
        .unwrap();
    }
    let key = |d: &syncbus_cdc::PgDelivery| -> i64 {
        d.envelope()
            .meta()
            .entity_id()
            .unwrap()
            .as_str()
            .parse()
            .unwrap()
    };
    let wait = std::time::Duration::from_secs(2);
    let mut batch = Vec::new();
    while batch.len() < 500 {
        batch.extend(source.fetch(500 - batch.len(), wait).await.unwrap());
    }
    // (the reader is decoding the next batch now)
    let mut batch = batch.into_iter();
    for _ in 0..199 {
        batch.next().unwrap().ack().await.unwrap();
    }
    let nakked = batch.next().unwrap();
    assert_eq!(key(&nakked), 200);
    nakked
        .nak(std::time::Duration::from_millis(20))
        .await
        .unwrap();
    drop(batch); // handed out before the rewind: they come again
    let mut after = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while after.len() < 2801 && std::time::Instant::now() < deadline {
        for d in source.fetch(1000, wait).await.unwrap() {
            if after.is_empty() {
                assert_eq!(d.deliveries(), 2, "the nak'd change first");
            }
            after.push(key(&d));
            d.ack().await.unwrap();
        }
    }
    assert_eq!(after, (200..=3000).collect::<Vec<i64>>());
    source.flush().await.unwrap();
}
