//! A tour of syncbus in one process: typed publish/subscribe, a wildcard subscription,
//! keyed lanes that keep each order's events in sequence, and a pull consumer with
//! ack / nack and dead letters.
//!
//! Run it with `cargo run --example quickstart`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncbus::prelude::*;

#[derive(Clone, Debug)]
struct OrderPlaced {
    order: u64,
    total_cents: u64,
}

impl Event for OrderPlaced {
    const TYPE: &'static str = "shop.order.placed";
    const TOPIC: &'static str = "orders.placed";
    fn entity_id(&self) -> Option<EntityId> {
        Some(self.order.into())
    }
}

#[derive(Clone, Debug)]
struct OrderStatus {
    order: u64,
    status: &'static str,
    step: u64,
}

impl Event for OrderStatus {
    const TYPE: &'static str = "shop.order.status";
    const TOPIC: &'static str = "orders.status";
    fn entity_id(&self) -> Option<EntityId> {
        Some(self.order.into())
    }
    fn version(&self) -> Option<u64> {
        Some(self.step)
    }
}

#[derive(Clone, Debug)]
struct SendInvoice {
    order: u64,
}

impl Event for SendInvoice {
    const TYPE: &'static str = "billing.invoice.requested";
    const TOPIC: &'static str = "billing.invoices";
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
                env.meta().topic().unwrap_or("?"),
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
        .lanes(4)
        .keyed(move |env| {
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
        bus.publish(OrderPlaced {
            order,
            total_cents: 1000 * order,
        })?;
        bus.publish(SendInvoice { order })?;
        for (step, status) in ["paid", "packed", "shipped"].into_iter().enumerate() {
            bus.publish(OrderStatus {
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
            delivery.nack()?;
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

    let report = bus.shutdown_blocking(Duration::from_secs(5));
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
    println!(
        "metrics: published={} delivered={} failed={} dropped={}",
        m.published, m.delivered, m.failed, m.dropped
    );
    println!("shutdown clean: {}", report.is_clean());
    Ok(())
}
