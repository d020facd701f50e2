//! A tour of syncbus in one process: typed publish/subscribe, a wildcard subscription,
//! keyed lanes that keep each order's events in sequence, and a pull consumer with
//! ack / nak and dead letters; then the durable side on the embedded default, an SQLite
//! file: an outbox written in the same transaction as the business row, relayed to the bus,
//! a workflow subscription with dedup and dead letters kept in SQLite, and a durable
//! consumer that picks up after a restart where its acks stopped.
//!
//! Run it with `cargo run --example quickstart`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncbus::prelude::*;
use syncbus::store::DeadLetterFilter;
use syncbus::store::{rusqlite, DurableConfig, DurableConsumer, LogFeed, Relay, SqliteStore};

// `#[derive(Event)]` names each event's type and default topic (checked while compiling)
// and which field is its entity id and version.
#[derive(Clone, Debug, Event)]
#[event(type = "shop.order.placed", topic = "orders.placed", entity = order)]
struct OrderPlaced {
    order: u64,
    total_cents: u64,
}

#[derive(Clone, Debug, Event)]
#[event(type = "shop.order.status", topic = "orders.status", entity = order, version = step)]
struct OrderStatus {
    order: u64,
    status: &'static str,
    step: u64,
}

#[derive(Clone, Debug, Event)]
#[event(type = "billing.invoice.requested", topic = "billing.invoices")]
struct SendInvoice {
    order: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::new();

    // 1. Typed publish / subscribe, handled inline on the publisher's thread.
    let revenue = Arc::new(AtomicU64::new(0));
    let r = revenue.clone();
    let _revenue = bus
        .subscribe::<OrderPlaced>("orders.placed")?
        .name("revenue")
        .inline(move |env| {
            r.fetch_add(env.payload().total_cents, Ordering::Relaxed);
        })?;

    // 2. A wildcard: an audit log of everything under `orders.`, on its own thread.
    let audit = Arc::new(Mutex::new(Vec::new()));
    let a = audit.clone();
    let _audit = bus
        .subscribe::<OrderStatus>("orders.>")?
        .name("audit")
        .queued(move |env| {
            a.lock().unwrap().push(format!(
                "{} {} order={} {} v{}",
                env.meta().topic().map_or("?", |t| t.as_str()),
                env.meta().event_type(),
                env.payload().order,
                env.payload().status,
                env.meta().version().unwrap_or(0),
            ));
        })?;

    // 3. Keyed lanes: each order's status changes arrive in order, orders run in parallel.
    let timeline: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let t = timeline.clone();
    let _tracking = bus
        .subscribe::<OrderStatus>("orders.status")?
        .name("tracking")
        .keyed(4)
        .queued(move |env| {
            let s = env.payload();
            t.lock().unwrap().push((s.order, s.step));
        })?;

    // 4. A pull consumer: billing fetches invoices when it is ready, acks what it sent.
    let billing = bus.consumer::<SendInvoice>(
        "billing.*",
        ConsumerConfig::default()
            .name("billing")
            .max_deliver(3)
            .ack_timeout(Duration::from_secs(5)),
    )?;

    for order in 1..=3 {
        bus.blocking_publish(OrderPlaced {
            order,
            total_cents: 1000 * order,
        })?;
        bus.blocking_publish(SendInvoice { order })?;
        for (step, status) in ["paid", "packed", "shipped"].into_iter().enumerate() {
            bus.blocking_publish(OrderStatus {
                order,
                status,
                step: step as u64 + 1,
            })?;
        }
    }

    // Billing's first attempt at order 2 fails: nack, and it comes back.
    for delivery in billing.try_fetch(10) {
        if delivery.payload().order == 2 && delivery.deliveries() == 1 {
            println!("billing: invoice for order 2 failed, will retry");
            delivery.nak(Duration::ZERO)?;
        } else {
            println!(
                "billing: invoice sent for order {}",
                delivery.payload().order
            );
            delivery.ack()?;
        }
    }
    for delivery in billing.try_fetch(10) {
        println!(
            "billing: invoice sent for order {} (attempt {})",
            delivery.payload().order,
            delivery.deliveries()
        );
        delivery.ack()?;
    }

    let report = bus.blocking_shutdown(Duration::from_secs(5));
    println!("revenue: {} cents", revenue.load(Ordering::Relaxed));
    let mut per_order = timeline.lock().unwrap().clone();
    per_order.sort_by_key(|(order, _)| *order);
    for order in 1..=3 {
        let steps: Vec<u64> = per_order
            .iter()
            .filter(|(o, _)| *o == order)
            .map(|(_, s)| *s)
            .collect();
        println!("order {order} status steps, in order: {steps:?}");
        assert_eq!(steps, vec![1, 2, 3]);
    }
    println!("audit saw {} status events:", audit.lock().unwrap().len());
    for line in audit.lock().unwrap().iter().take(3) {
        println!("  {line}");
    }
    let m = bus.metrics();
    println!("metrics: {m}");
    // 15 events: per order one placed, one invoice request, three status changes.
    assert_eq!((m.published, m.delivered, m.failed), (15, 24, 1));
    println!("  delivered (24) exceeds published (15): an event reaches every subscription it");
    println!("  matches; each status change went to both audit and tracking");
    println!("  failed = 1: billing's nak of order 2's first invoice attempt; the retry was acked");
    println!("shutdown clean: {}", report.is_clean());

    tokio::runtime::Runtime::new()?.block_on(durable())
}

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(type = "shop.payment.received", topic = "payments.received")]
struct PaymentReceived {
    order: u64,
    cents: u64,
}

/// The durable side, on one SQLite file (WAL, `synchronous=FULL`).
async fn durable() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("syncbus-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("shop.db");
    let store = SqliteStore::open(&path).await?;
    println!("\ndurable part, in {}", path.display());

    let bus = Bus::new();
    // Dedup keys and dead letters live in the same file, so they survive a restart.
    let wf = Workflow::builder(&bus)
        .dead_letters(store.dead_letters())
        .build();
    let ledger = Arc::new(Mutex::new(Vec::new()));
    let l = ledger.clone();
    let ledger_sub = wf
        .subscribe::<PaymentReceived>("payments.*")?
        .name("ledger")
        .dedup(DedupConfig::new(store.dedup()))
        .retry(
            RetryPolicy::default()
                .initial(Duration::from_millis(5))
                .max_attempts(2),
        )
        .handle(move |env, _ctx| {
            let l = l.clone();
            async move {
                if env.payload().cents == 0 {
                    return Err(HandlerError::permanent("a payment of 0 cents"));
                }
                l.lock().unwrap().push(env.payload().order);
                Ok(())
            }
        })?;
    // Everything on `payments.>`, whatever its type, is also appended to the store's event
    // log: a tap (derived `Serialize` events are encoded as JSON for it).
    let feed = LogFeed::tap(&bus, "payments.>", store.clone())?;

    // 6. The outbox: the payment row and its event commit in one transaction; the relay
    //    publishes committed events in commit order. Order 2's payment of 0 cents is a bad
    //    record on purpose: the ledger refuses it as a permanent error, so it ends up in the
    //    dead letters instead of being retried forever.
    let payments: Vec<Envelope<PaymentReceived>> = [(1u64, 1000u64), (2, 0), (3, 3000)]
        .into_iter()
        .map(|(order, cents)| Envelope::from_event(PaymentReceived { order, cents }))
        .collect();
    for payment in &payments {
        let (order, cents) = (payment.payload().order, payment.payload().cents);
        let event = payment.to_bytes_payload()?;
        store
            .with_connection(move |conn| {
                let tx = conn.transaction()?;
                tx.execute(
                    "CREATE TABLE IF NOT EXISTS payments (payment_order INTEGER PRIMARY KEY, cents INTEGER)",
                    [],
                )?;
                tx.execute(
                    "INSERT OR REPLACE INTO payments VALUES (?1, ?2)",
                    rusqlite::params![order as i64, cents as i64],
                )?;
                SqliteStore::enqueue(&tx, &event)?;
                tx.commit()?;
                Ok(())
            })
            .await?;
    }
    let relayed = Relay::new(store.clone(), bus.clone())
        .typed::<PaymentReceived>() // delivered to `subscribe::<PaymentReceived>` handlers
        .run_once()
        .await?;
    println!("relay: published {relayed} outbox events in commit order");

    // The same payment event again (as a relay that died before marking it sent would
    // publish it): the ledger's dedup layer knows its id and does not apply it twice.
    bus.publish_envelope(payments[0].clone()).await?;
    bus.settled().await;
    println!(
        "dedup: order 1's payment delivered again, acknowledged as a duplicate (duplicates = {})",
        ledger_sub.metrics().duplicates
    );
    assert_eq!(ledger_sub.metrics().duplicates, 1);

    // 7. A durable consumer reads the log; it acks order 1 and then the process "dies".
    bus.settled().await; // the feed has appended what was published
    println!("feed: {} events appended to the log", feed.appended());
    let audit = DurableConsumer::open(store.clone(), "audit", DurableConfig::new()).await?;
    let mut first = audit.fetch(10, Duration::ZERO).await?;
    let fetched = first.len();
    first.remove(0).ack().await?;
    drop((audit, first));
    let audit = DurableConsumer::open(store.clone(), "audit", DurableConfig::new()).await?;
    let again = audit.fetch(10, Duration::ZERO).await?;
    println!(
        "audit after restart: {} unacked events came back (delivery #{})",
        again.len(),
        again[0].deliveries()
    );
    assert_eq!(again.len(), fetched - 1);
    audit.ack_all(again).await?;

    bus.shutdown(Duration::from_secs(5)).await;
    let mut applied = ledger.lock().unwrap().clone();
    applied.sort_unstable();
    println!("ledger applied payments for orders {applied:?}");
    let dead = wf.dead_letters().list(&DeadLetterFilter::new()).await?;
    for d in &dead {
        let payment: PaymentReceived = serde_json::from_slice(d.envelope.payload())?;
        println!(
            "dead letter in SQLite: order {}'s payment, refused with \"{}\" after {} attempt(s), \
             not retried (a permanent error); redrive it once the data is fixed",
            payment.order,
            d.error(),
            d.attempts
        );
    }
    assert_eq!(applied, vec![1, 3]);
    assert_eq!(dead.len(), 1);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
