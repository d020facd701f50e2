//! Two processes consuming one PostgreSQL-backed durable consumer group never apply an event
//! twice, and both do work.
//!
//! The test re-runs its own binary twice as child processes (`worker`, ignored unless the
//! parent's variables are set). Each child claims through [`DurableConsumer`] from the same
//! consumer, records every event it applies in an `applied` table, and acks it. The parent
//! then checks in SQL: every event applied exactly once, by both children together.

mod pg_support;
mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_support::PgTest;
use support::env;
use syncbus_storage::{DurableConfig, DurableConsumer, EventLog};
use syncbus_store::PgStore;

const EVENTS: u64 = 400;
const CONSUMER: &str = "billing";
const SCHEMA_VAR: &str = "SYNCBUS_PG_GROUP_SCHEMA";
const MEMBER_VAR: &str = "SYNCBUS_PG_GROUP_MEMBER";

#[tokio::test]
async fn two_processes_share_one_consumer_group_without_applying_twice() {
    let Some(t) = PgTest::new().await else {
        return;
    };
    let offsets = t
        .store
        .append_batch((0..EVENTS).map(|n| env("billing.charge", n)).collect())
        .await
        .unwrap();
    let client = t.client().await;
    client
        .batch_execute(&format!(
            "SET search_path TO \"{}\";
             CREATE TABLE applied (seq bigint NOT NULL, member text NOT NULL);
             CREATE TABLE ready (member text PRIMARY KEY);",
            t.schema
        ))
        .await
        .unwrap();

    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = ["w1", "w2"]
        .iter()
        .map(|member| {
            Command::new(&exe)
                .args(["--exact", "worker", "--ignored", "--nocapture"])
                .env(pg_support::URL_VAR, &t.url)
                .env(SCHEMA_VAR, &t.schema)
                .env(MEMBER_VAR, member)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for child in &mut children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "worker failed: {status}");
                break;
            }
            if Instant::now() > deadline {
                for c in &mut children {
                    let _ = c.kill();
                }
                panic!("workers did not finish in time");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let q = |sql: &str| format!("SELECT {sql} FROM \"{}\".applied", t.schema);
    let one = |sql: String| {
        let client = &client;
        async move { client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        one(q("count(DISTINCT seq)")).await,
        EVENTS as i64,
        "every event applied"
    );
    assert_eq!(
        one(q("count(*)")).await,
        EVENTS as i64,
        "no event applied twice"
    );
    let per_member = client
        .query(
            &format!(
                "SELECT member, count(*) FROM \"{}\".applied GROUP BY member ORDER BY member",
                t.schema
            ),
            &[],
        )
        .await
        .unwrap();
    let per_member: Vec<(String, i64)> = per_member.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        per_member.len(),
        2,
        "both processes did work: {per_member:?}"
    );
    assert_eq!(
        t.store.committed(CONSUMER).await.unwrap(),
        offsets.last().copied(),
        "the group's offset covers everything"
    );
    t.finish().await;
}

/// One member of the group; run by the test above in a child process.
#[tokio::test]
#[ignore = "a child process of two_processes_share_one_consumer_group_without_applying_twice"]
async fn worker() {
    let (Some(url), Ok(schema), Ok(member)) = (
        pg_support::url(),
        std::env::var(SCHEMA_VAR),
        std::env::var(MEMBER_VAR),
    ) else {
        return;
    };
    let store = PgStore::builder(&url)
        .schema(&schema)
        .pool_size(2)
        .connect()
        .await
        .unwrap();
    let consumer = DurableConsumer::open(
        Arc::new(store.clone()),
        CONSUMER,
        DurableConfig::new()
            .member(member.clone())
            .ack_timeout(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let mut client = pg_support::client(&url).await;
    client
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .await
        .unwrap();

    // Start together, so that both really compete for the same records.
    client
        .execute("INSERT INTO ready (member) VALUES ($1)", &[&member])
        .await
        .unwrap();
    let start = Instant::now();
    while client
        .query_one("SELECT count(*) FROM ready", &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the other worker never came"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let head = store.head().await.unwrap();
    loop {
        let batch = consumer.fetch(5, Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            if consumer.committed().await.unwrap() == head {
                break;
            }
            // The other member holds the rest; wait for it to ack.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        for claimed in &batch {
            let tx = client.transaction().await.unwrap();
            tx.execute(
                "INSERT INTO applied (seq, member) VALUES ($1, $2)",
                &[&(claimed.offset() as i64), &member],
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            // Some work per event, so the two members overlap.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        consumer.ack_all(batch).await.unwrap();
    }
    store.close();
}
