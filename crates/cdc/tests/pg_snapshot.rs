//! The initial snapshot and the stream, while writes go on during both (the slot is even
//! created in the middle of them): every row's history, as seen through the reader, is its
//! snapshot value followed by each later update exactly once. Each update adds 1 to `v`, so
//! a gap shows as a skipped value and an overlap as a repeated one; the final state matches
//! the table.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::*;
use syncbus_cdc::{PgCdc, PgCdcConfig};
use syncbus_core::{Settle, Source};
use syncbus_storage::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_stream_has_no_gap_and_no_overlap() {
    let Some(s) = Scratch::new(
        "CREATE TABLE {s}.acc (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO {s}.acc SELECT g, 0 FROM generate_series(1, 2000) g;",
    )
    .await
    else {
        return;
    };
    let (url, name, app) = (s.url.clone(), s.name.clone(), &s.app);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (app, name, stop) = (client(&url).await, name.clone(), stop.clone());
        tokio::spawn(async move {
            let mut next = 2001;
            let mut k = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                k += 1;
                let a = (k * 7919) % 2000 + 1;
                let b = (k * 104_729) % 2000 + 1;
                app.batch_execute(&format!(
                    "BEGIN; UPDATE {name}.acc SET v = v + 1 WHERE id IN ({a}, {b}); INSERT INTO {name}.acc VALUES ({next}, 0); COMMIT;"
                ))
                .await
                .unwrap();
                next += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let config = PgCdcConfig::new(&url, [format!("{name}.acc")])
        .unwrap()
        .transport(transport())
        .slot(&name)
        .unwrap()
        .snapshot(true)
        .poll(Duration::from_millis(20));
    let source = PgCdc::connect(config, MemoryStore::new()).await.unwrap();
    let mut state: HashMap<i64, i64> = HashMap::new();
    let (mut reads, mut changes) = (0, 0);
    let read = |state: &mut HashMap<i64, i64>, d: &syncbus_cdc::PgDelivery| -> &'static str {
        let j = d.envelope().payload().json().unwrap();
        let (id, v) = (
            j["new"]["id"].as_i64().unwrap(),
            j["new"]["v"].as_i64().unwrap(),
        );
        match j["op"].as_str().unwrap() {
            "read" => {
                assert!(state.insert(id, v).is_none(), "row {id} read twice");
                "read"
            }
            "insert" => {
                assert!(
                    state.insert(id, v).is_none(),
                    "row {id} inserted but already known (overlap)"
                );
                "change"
            }
            "update" => {
                let had = state.get(&id).copied();
                assert_eq!(
                    had.map(|h| h + 1),
                    Some(v),
                    "row {id}: update to {v} after {had:?} (gap or overlap)"
                );
                state.insert(id, v);
                "change"
            }
            op => panic!("unexpected {op}"),
        }
    };
    // Read while the writer goes on, then stop it and read to the end.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        for d in source.fetch(200, Duration::from_millis(50)).await.unwrap() {
            if read(&mut state, &d) == "read" {
                reads += 1
            } else {
                changes += 1
            }
            d.ack().await.unwrap();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let rows = app
        .query(&format!("SELECT id::int8, v::int8 FROM {name}.acc"), &[])
        .await
        .unwrap();
    let want: HashMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while state != want && Instant::now() < deadline {
        for d in source.fetch(500, Duration::from_millis(100)).await.unwrap() {
            if read(&mut state, &d) == "read" {
                reads += 1
            } else {
                changes += 1
            }
            d.ack().await.unwrap();
        }
    }
    source.flush().await.unwrap();
    eprintln!(
        "snapshot: {reads} rows read, {changes} changes streamed, {} rows in the table",
        want.len()
    );
    assert!(reads >= 2000);
    assert!(changes > 0, "writes went on during the snapshot");
    assert_eq!(state, want);
}
