//! The storage contract on PostgreSQL, plus what only a shared server has: several stores on
//! one schema, concurrent opening, schema versions, and the outbox gap between transactions
//! that commit out of id order.
//!
//! Needs `SYNCBUS_PG_URL` (for example `postgres://postgres@127.0.0.1:5432/test`); without
//! it every test returns at once after one printed line. Each test works in its own schema.
//!
//! The tests of this file run one at a time: the outbox relay waits for every older
//! transaction on the server, so a migration or ack of a parallel test could hold back what
//! an outbox test expects to see at once.

mod pg_support;
mod support;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pg_support::PgTest;
use support::{contract, env, num};
use syncbus_core::{Bus, Bytes};
use syncbus_storage::StoreErrorKind;
use syncbus_storage::{Claim, DedupKey, DedupStore, Outcome};
use syncbus_storage::{
    DedupPurger, DurableConfig, DurableConsumer, EventLog, Outbox, Relay, StoreFuture,
};
use syncbus_store::PgStore;
use tokio::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::const_new(());

/// A fresh store, holding the file-wide lock; `None` when no server is configured.
async fn fresh() -> Option<(MutexGuard<'static, ()>, PgTest)> {
    pg_support::url()?;
    let guard = SERIAL.lock().await;
    Some((guard, PgTest::new().await?))
}

macro_rules! contract_test {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            let Some((_serial, t)) = fresh().await else {
                return;
            };
            contract::$name(&t.store).await;
            t.finish().await;
        }
    };
}

contract_test!(log_append_read);
contract_test!(log_commit);
contract_test!(log_claim_ack);
contract_test!(log_ack_skips_acked);
contract_test!(log_leases);
contract_test!(log_extend);
contract_test!(log_retention);
contract_test!(checkpoints);

#[tokio::test]
async fn dedup() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    contract::dedup(&t.store.dedup()).await;
    t.finish().await;
}

#[tokio::test]
async fn dead_letters() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    contract::dead_letters(&t.store.dead_letters()).await;
    t.finish().await;
}

#[tokio::test]
async fn sagas() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    contract::sagas(&t.store.sagas()).await;
    t.finish().await;
}

#[tokio::test]
async fn outbox() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    let client = Arc::new(t.client().await);
    let store = t.store.clone();
    let enqueue = move |env| -> StoreFuture<'static, u64> {
        let (store, client) = (store.clone(), client.clone());
        Box::pin(async move { store.enqueue(&*client, &env).await })
    };
    contract::outbox(&t.store, &enqueue).await;
    t.finish().await;
}

/// The outbox gap: A enqueues first (lower id), B enqueues and commits while A is open. The
/// relay must not publish B yet (a relay remembering "sent up to B" would never see A);
/// once A commits, the relay publishes both to the bus, A's first, and skips nothing.
#[tokio::test]
async fn outbox_gap_between_interleaved_transactions() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    let bus = Bus::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let _sub = bus
        .subscribe::<Bytes>("orders")
        .unwrap()
        .inline(move |e| s.lock().unwrap().push(num(e)))
        .unwrap();
    let relay = Relay::new(Arc::new(t.store.clone()), bus.clone());
    let mut app_a = t.client().await;
    let mut app_b = t.client().await;

    let tx_a = app_a.transaction().await.unwrap();
    let id_a = t.store.enqueue(&tx_a, &env("orders", 1)).await.unwrap();
    let tx_b = app_b.transaction().await.unwrap();
    let id_b = t.store.enqueue(&tx_b, &env("orders", 2)).await.unwrap();
    tx_b.commit().await.unwrap();
    assert!(id_a < id_b, "A took the lower id");

    // B is committed and visible, but A, older, is still open.
    let visible: i64 = t
        .client()
        .await
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".outbox", t.schema),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(visible, 1, "B's row is committed");
    assert_eq!(relay.run_once().await.unwrap(), 0);
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing is relayed past an open older transaction"
    );
    assert!(t.store.pending(10).await.unwrap().is_empty());

    tx_a.commit().await.unwrap();
    assert_eq!(relay.run_once().await.unwrap(), 2);
    assert_eq!(*seen.lock().unwrap(), [1, 2], "both published, A's first");
    assert!(
        t.store.pending(10).await.unwrap().is_empty(),
        "and marked sent"
    );

    // A rolled-back transaction leaves nothing behind and holds nothing back.
    let tx_c = app_a.transaction().await.unwrap();
    t.store.enqueue(&tx_c, &env("orders", 3)).await.unwrap();
    let tx_d = app_b.transaction().await.unwrap();
    t.store.enqueue(&tx_d, &env("orders", 4)).await.unwrap();
    tx_d.commit().await.unwrap();
    assert_eq!(relay.run_once().await.unwrap(), 0, "C is still open");
    tx_c.rollback().await.unwrap();
    assert_eq!(relay.run_once().await.unwrap(), 1);
    assert_eq!(*seen.lock().unwrap(), [1, 2, 4]);
    t.finish().await;
}

/// The durable path: outbox rows move into the same database's log in one transaction, in
/// outbox order, never past an open older transaction, and not at all when it fails.
#[tokio::test]
async fn outbox_events_move_into_the_log_in_one_transaction() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    let mut app = t.client().await;
    let mut older = t.client().await;
    let tx = app.transaction().await.unwrap();
    for n in 1..=5 {
        t.store.enqueue(&tx, &env("orders", n)).await.unwrap();
    }
    tx.commit().await.unwrap();

    assert_eq!(t.store.move_outbox_to_log(3).await.unwrap(), 3);
    assert_eq!(t.store.pending(10).await.unwrap().len(), 2);
    assert_eq!(t.store.move_outbox_to_log(10).await.unwrap(), 2);
    assert_eq!(t.store.move_outbox_to_log(10).await.unwrap(), 0);
    let log = t.store.read(0, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|r| num(&r.envelope)).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );

    // An older transaction still open holds the move back, as it holds the relay.
    let tx_old = older.transaction().await.unwrap();
    t.store.enqueue(&tx_old, &env("orders", 6)).await.unwrap();
    let tx = app.transaction().await.unwrap();
    t.store.enqueue(&tx, &env("orders", 7)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(t.store.move_outbox_to_log(10).await.unwrap(), 0);
    tx_old.commit().await.unwrap();

    // A failing append rolls the whole move back: the events stay in the outbox.
    let schema = &t.schema;
    let admin = t.client().await;
    admin
        .batch_execute(&format!(
            "CREATE FUNCTION \"{schema}\".refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $f$ BEGIN RAISE EXCEPTION 'refused'; END $f$;
             CREATE TRIGGER refuse BEFORE INSERT ON \"{schema}\".log
             FOR EACH ROW EXECUTE FUNCTION \"{schema}\".refuse();"
        ))
        .await
        .unwrap();
    assert!(t.store.move_outbox_to_log(10).await.is_err());
    assert_eq!(t.store.pending(10).await.unwrap().len(), 2, "rolled back");
    admin
        .batch_execute(&format!("DROP TRIGGER refuse ON \"{schema}\".log"))
        .await
        .unwrap();
    assert_eq!(t.store.move_outbox_to_log(10).await.unwrap(), 2);
    let log = t.store.read(0, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|r| num(&r.envelope)).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert!(t.store.pending(10).await.unwrap().is_empty());
    t.finish().await;
}

/// The log's own gap: with appends racing from two pools, a reader that resumes "after the
/// last offset I saw" (the cursor of every log consumer) never skips a record, because an
/// offset becomes visible only after every lower one. Without the append lock, a slow
/// commit of a lower offset would be overtaken and skipped for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tailing_reader_never_skips_a_racing_append() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    let other = t.reopen().await;
    let mut appenders = Vec::new();
    for i in 0..8u64 {
        let store = if i % 2 == 0 {
            t.store.clone()
        } else {
            other.clone()
        };
        appenders.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for k in 0..40 {
                let batch = (0..1 + (i + k) % 3).map(|n| env("a", i * 1000 + k * 10 + n));
                offsets.extend(store.append_batch(batch.collect()).await.unwrap());
            }
            offsets
        }));
    }
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let finished = appenders.iter().all(|a| a.is_finished());
        let page = t.store.read(cursor + 1, 1000).await.unwrap();
        if let Some(last) = page.last() {
            cursor = last.offset;
        }
        seen.extend(page.iter().map(|r| r.offset));
        if finished && page.is_empty() {
            break;
        }
    }
    let mut appended = Vec::new();
    for a in appenders {
        appended.extend(a.await.unwrap());
    }
    appended.sort_unstable();
    assert_eq!(
        seen, appended,
        "the tailing reader saw every append, in order"
    );
    other.close();
    t.finish().await;
}

/// Many writers racing, each transaction with several events, a relay polling meanwhile:
/// every committed event is relayed exactly once, a transaction's events come together and
/// in enqueue order, and no rolled-back event ever shows.
#[tokio::test]
async fn outbox_relay_under_concurrent_writers() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    const WRITERS: u64 = 4;
    const TXS: u64 = 25;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = t.store.clone();
        let mut client = t.client().await;
        writers.push(tokio::spawn(async move {
            for i in 0..TXS {
                let tx = client.transaction().await.unwrap();
                let base = (w * TXS + i) * 10;
                for k in 0..3 {
                    store.enqueue(&tx, &env("out", base + k)).await.unwrap();
                    tokio::task::yield_now().await;
                }
                if i % 5 == 4 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                }
            }
        }));
    }
    let mut relayed = Vec::new();
    let mut done = false;
    while !done {
        done = writers.iter().all(|w| w.is_finished());
        let batch = t.store.pending(7).await.unwrap();
        let ids: Vec<u64> = batch.iter().map(|r| r.id).collect();
        relayed.extend(batch.iter().map(|r| num(&r.envelope)));
        t.store.mark_sent(&ids).await.unwrap();
        if batch.len() == 7 {
            done = false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    loop {
        let batch = t.store.pending(100).await.unwrap();
        if batch.is_empty() {
            break;
        }
        relayed.extend(batch.iter().map(|r| num(&r.envelope)));
        let ids: Vec<u64> = batch.iter().map(|r| r.id).collect();
        t.store.mark_sent(&ids).await.unwrap();
    }
    let expected: BTreeSet<u64> = (0..WRITERS * TXS)
        .filter(|tx| tx % TXS % 5 != 4)
        .flat_map(|tx| (0..3).map(move |k| tx * 10 + k))
        .collect();
    assert_eq!(relayed.len(), expected.len(), "each event exactly once");
    assert_eq!(relayed.iter().copied().collect::<BTreeSet<_>>(), expected);
    for chunk in relayed.chunks(3) {
        let base = chunk[0] - chunk[0] % 10;
        assert_eq!(
            chunk,
            [base, base + 1, base + 2],
            "a transaction's events together, in order"
        );
    }
    t.finish().await;
}

/// Two stores on one schema (two pools, as two processes) claim concurrently: every record
/// is leased to exactly one member at a time.
#[tokio::test]
async fn concurrent_claims_across_stores_never_share_a_record() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    let offsets = t
        .store
        .append_batch((0..300).map(|n| env("work", n)).collect())
        .await
        .unwrap();
    let other = t.reopen().await;
    let lease = Duration::from_secs(600);
    // Each member holds its first batch until all have one: they overlap for sure.
    let all_claimed = Arc::new(tokio::sync::Barrier::new(4));
    let mut members = Vec::new();
    for (i, store) in [
        t.store.clone(),
        other.clone(),
        t.store.clone(),
        other.clone(),
    ]
    .into_iter()
    .enumerate()
    {
        let all_claimed = all_claimed.clone();
        members.push(tokio::spawn(async move {
            let member = format!("m{i}");
            let mut got = Vec::new();
            let mut first = true;
            loop {
                let claimed = store.claim("group", &member, 7, lease).await.unwrap();
                if std::mem::take(&mut first) {
                    all_claimed.wait().await;
                }
                if claimed.is_empty() {
                    break;
                }
                let offs: Vec<u64> = claimed.iter().map(|c| c.record.offset).collect();
                assert!(claimed.iter().all(|c| c.deliveries == 1));
                store.ack("group", &offs).await.unwrap();
                got.extend(offs);
            }
            got
        }));
    }
    let mut all = Vec::new();
    let mut workers_with_work = 0;
    for m in members {
        let got = m.await.unwrap();
        workers_with_work += usize::from(!got.is_empty());
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(all, offsets, "every record claimed exactly once");
    assert_eq!(workers_with_work, 4, "the members shared the work");
    assert_eq!(
        t.store.committed("group").await.unwrap(),
        offsets.last().copied()
    );
    other.close();
    t.finish().await;
}

/// Racing claims of one dedup key from two pools: exactly one wins; the purger running in
/// the background removes the key once its time-to-live is over.
#[tokio::test]
async fn dedup_claims_race_and_expired_keys_are_purged_in_the_background() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    let other = t.reopen().await;
    let key = DedupKey::from(syncbus_core::EventId::new());
    let lease = Duration::from_secs(60);
    let claims: Vec<_> = (0..8)
        .map(|i| {
            let dedup = if i % 2 == 0 {
                t.store.dedup()
            } else {
                other.dedup()
            };
            let key = key.clone();
            tokio::spawn(async move { dedup.claim(&key, lease).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for c in claims {
        match c.await.unwrap() {
            Claim::Acquired => won += 1,
            Claim::InFlight => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one claim wins");

    let dedup = t.store.dedup();
    dedup
        .finish(&key, Outcome::Done, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(dedup.claim(&key, lease).await.unwrap(), Claim::Duplicate);
    let purger = DedupPurger::spawn(Arc::new(dedup.clone()), Duration::from_millis(20));
    let count = format!("SELECT count(*) FROM \"{}\".dedup_keys", t.schema);
    let client = t.client().await;
    let start = std::time::Instant::now();
    loop {
        let n: i64 = client.query_one(&count, &[]).await.unwrap().get(0);
        if n == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the key was never purged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    purger.stop().await;
    assert_eq!(dedup.state(&key).await.unwrap(), None);
    other.close();
    t.finish().await;
}

/// `ack_in` acks inside the application's transaction: rolled back with it, committed with it.
#[tokio::test]
async fn ack_in_commits_and_rolls_back_with_the_application() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    let offsets = t
        .store
        .append_batch(vec![env("a", 1), env("a", 2)])
        .await
        .unwrap();
    let lease = Duration::from_secs(600);
    assert_eq!(t.store.claim("c", "m", 10, lease).await.unwrap().len(), 2);
    let mut app = t.client().await;
    app.batch_execute(&format!("CREATE TABLE \"{}\".effects (n bigint)", t.schema))
        .await
        .unwrap();
    let insert = format!("INSERT INTO \"{}\".effects VALUES (1)", t.schema);

    let tx = app.transaction().await.unwrap();
    tx.execute(&insert, &[]).await.unwrap();
    t.store.ack_in(&tx, "c", &offsets[..1]).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(t.store.committed("c").await.unwrap(), None, "rolled back");

    let tx = app.transaction().await.unwrap();
    tx.execute(&insert, &[]).await.unwrap();
    t.store.ack_in(&tx, "c", &offsets[..1]).await.unwrap();
    assert_eq!(
        t.store.committed("c").await.unwrap(),
        None,
        "not yet committed"
    );
    tx.commit().await.unwrap();
    assert_eq!(t.store.committed("c").await.unwrap(), Some(offsets[0]));
    assert!(matches!(
        t.store.ack_in(&app, "", &offsets).await,
        Err(e) if e.kind() == StoreErrorKind::Invalid
    ));
    t.finish().await;
}

/// A durable consumer on PostgreSQL resumes after a restart from its last ack: everything
/// not acked comes back (at once, since the member releases its old claims when it opens),
/// and a record whose ack timeout passed comes back to whoever asks.
#[tokio::test]
async fn a_restarted_durable_consumer_gets_back_everything_not_acked() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    contract::durable_consumer_restart(|| async {
        Arc::new(t.reopen().await) as Arc<dyn EventLog>
    })
    .await;
    let log: Arc<dyn EventLog> = Arc::new(t.reopen().await);

    // A member that hangs: its lease runs out and another member gets the record.
    let offset = log.append(env("a", 11)).await.unwrap();
    // Long enough that opening the second member on a loaded machine does not outlast it.
    let short = DurableConfig::new().ack_timeout(Duration::from_millis(1000));
    let hung = DurableConsumer::open(log.clone(), "billing", short.clone().member("hung"))
        .await
        .unwrap();
    assert_eq!(hung.fetch(10, Duration::ZERO).await.unwrap().len(), 1);
    let other = DurableConsumer::open(log.clone(), "billing", short.member("other"))
        .await
        .unwrap();
    assert!(
        other.fetch(10, Duration::ZERO).await.unwrap().is_empty(),
        "leased to the hung member"
    );
    let taken = other.fetch(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].offset(), offset);
    assert_eq!(taken[0].deliveries(), 2);
    t.finish().await;
}

/// A store opened again on the same schema sees everything, and opening the same new schema
/// from several pools at once migrates it exactly once.
#[tokio::test]
async fn reopen_and_concurrent_open() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    let offset = t.store.append(env("a", 1)).await.unwrap();
    t.store.commit("c", offset).await.unwrap();
    let again = t.reopen().await;
    assert_eq!(again.head().await.unwrap(), Some(offset));
    assert_eq!(again.committed("c").await.unwrap(), Some(offset));
    again.close();

    let schema = pg_support::unique_schema();
    let opens = (0..4).map(|_| {
        let (url, schema) = (t.url.clone(), schema.clone());
        tokio::spawn(async move { PgStore::builder(&url).schema(schema).connect().await })
    });
    for open in opens.collect::<Vec<_>>() {
        open.await.unwrap().unwrap().close();
    }
    let versions: i64 = t
        .client()
        .await
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".schema_version"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 1, "each migration applied once");
    pg_support::drop_schema(&t.url, &schema).await;
    t.finish().await;
}

/// A schema written by a newer build is refused, untouched, with an error that says so.
#[tokio::test]
async fn newer_schema_is_refused() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    t.store.append(env("a", 1)).await.unwrap();
    let client = t.client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO \"{}\".schema_version (version) VALUES (99)",
            t.schema
        ))
        .await
        .unwrap();
    let err = PgStore::builder(&t.url)
        .schema(&t.schema)
        .connect()
        .await
        .unwrap_err();
    assert!(
        err.kind() == StoreErrorKind::Incompatible && err.to_string().contains("schema version 99"),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
    // Untouched: the data is still there for the newer build.
    assert_eq!(t.store.read(0, 10).await.unwrap().len(), 1);
    t.finish().await;
}

/// Bad input is a typed error, never a panic or a query.
#[tokio::test]
async fn bad_input_is_a_typed_error() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    for schema in [
        "",
        "Upper",
        "1abc",
        "pg_x",
        "a-b",
        "quote\"d",
        &"x".repeat(64),
    ] {
        let err = PgStore::builder(&t.url)
            .schema(schema)
            .connect()
            .await
            .unwrap_err();
        assert!(err.kind() == StoreErrorKind::Invalid, "{schema:?}: {err:?}");
    }
    let err = PgStore::connect("postgres://host:notaport/db")
        .await
        .unwrap_err();
    assert!(err.kind() == StoreErrorKind::Invalid, "{err:?}");
    assert!(matches!(
        t.store.claim("", "m", 1, Duration::from_secs(1)).await,
        Err(e) if e.kind() == StoreErrorKind::Invalid
    ));
    // Offsets beyond PostgreSQL's bigint match nothing instead of failing.
    assert!(t.store.read(u64::MAX, 10).await.unwrap().is_empty());
    t.store.ack("c", &[u64::MAX]).await.unwrap();
    t.store.mark_sent(&[u64::MAX]).await.unwrap();

    let store = t.reopen().await;
    store.close();
    assert!(store.is_closed());
    assert!(matches!(store.head().await, Err(e) if e.kind() == StoreErrorKind::Closed));
    t.finish().await;
}

/// Connections the server kills are replaced: after a brief error at most, the store works
/// again without being reopened.
#[tokio::test]
async fn killed_connections_are_replaced() {
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    let offset = t.store.append(env("a", 1)).await.unwrap();
    let admin = t.client().await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1) k",
            &[&format!("syncbus-store:{}", t.schema)],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        killed >= 1,
        "the store's connections are named after its schema"
    );
    let mut errors = 0;
    let head = loop {
        match t.store.head().await {
            Ok(head) => break head,
            Err(e) if e.kind() == StoreErrorKind::Backend && errors < 8 => errors += 1,
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(head, Some(offset));
    assert!(t.store.append(env("a", 2)).await.unwrap() > offset);
    t.finish().await;
}

/// Outside a tokio runtime the store answers with an error instead of panicking.
#[test]
fn outside_tokio_is_an_error_not_a_panic() {
    let Some(url) = pg_support::url() else {
        return;
    };
    let open = std::pin::pin!(PgStore::connect(&url));
    let waker = std::task::Waker::noop();
    match open.poll(&mut std::task::Context::from_waker(waker)) {
        std::task::Poll::Ready(Err(e)) if e.kind() == StoreErrorKind::Backend => {}
        other => panic!("{other:?}"),
    }
}

/// An unreachable server is a backend error, not a hang or a panic.
#[tokio::test]
async fn unreachable_server_is_a_backend_error() {
    if pg_support::url().is_none() {
        return;
    }
    let err = PgStore::builder("host=127.0.0.1 port=1 user=postgres dbname=none connect_timeout=2")
        .connect()
        .await
        .unwrap_err();
    assert!(err.kind() == StoreErrorKind::Backend, "{err:?}");
}

/// The transactional inbox on PostgreSQL: a key recorded in a transaction that rolls back is
/// not done; one that commits is; of two transactions recording the same key at once, the
/// second waits for the first and, once it commits, fails with `Duplicate` (its effect rolls
/// back with it).
#[tokio::test]
async fn record_done_commits_with_the_transaction_and_one_of_two_racers_wins() {
    use syncbus_storage::{InboxEntry, KeyState};
    let Some((_serial, t)) = fresh().await else {
        return;
    };
    let minute = Duration::from_secs(60);
    let dedup = t.store.dedup();
    let entry = InboxEntry::new(DedupKey::new("billing:pay-1").unwrap(), minute);
    assert_eq!(
        dedup.claim(entry.key(), minute).await.unwrap(),
        Claim::Acquired
    );
    let mut a = t.client().await;
    let mut b = t.client().await;
    let table = format!("\"{}\".ledger", t.store.schema());
    a.batch_execute(&format!("CREATE TABLE {table} (cents INTEGER NOT NULL)"))
        .await
        .unwrap();
    let insert = format!("INSERT INTO {table} (cents) VALUES (100)");

    let tx = a.transaction().await.unwrap();
    tx.batch_execute(&insert).await.unwrap();
    t.store.record_done(&tx, &entry).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        dedup.state(entry.key()).await.unwrap(),
        Some(KeyState::InFlight),
        "a rolled-back record left the key done"
    );

    // Two deliveries' transactions at once: the second blocks on the first's row lock.
    let first = InboxEntry::new(entry.key().clone(), minute);
    let second = InboxEntry::new(entry.key().clone(), minute);
    let tx_a = a.transaction().await.unwrap();
    tx_a.batch_execute(&insert).await.unwrap();
    t.store.record_done(&tx_a, &first).await.unwrap();
    let store = t.store.clone();
    let (insert_b, second_b) = (insert.clone(), second.clone());
    let racer = tokio::spawn(async move {
        let tx_b = b.transaction().await.unwrap();
        tx_b.batch_execute(&insert_b).await.unwrap();
        let r = store.record_done(&tx_b, &second_b).await;
        match r {
            Ok(()) => tx_b.commit().await.unwrap(),
            Err(_) => tx_b.rollback().await.unwrap(),
        }
        r
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !racer.is_finished(),
        "the second recorder did not wait for the first"
    );
    tx_a.commit().await.unwrap();
    let err = racer.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Duplicate, "{err}");
    assert!(second.is_duplicate() && !first.is_duplicate());
    assert_eq!(
        dedup.claim(entry.key(), minute).await.unwrap(),
        Claim::Duplicate
    );
    let effects: i64 = a
        .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(effects, 1, "the effect happened {effects} times");
    drop(a);
    t.finish().await;
}
