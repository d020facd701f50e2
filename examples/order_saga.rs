//! An order saga: reserve stock → charge payment → ship, with compensations.
//!
//! Order 1 goes through; order 2's card is declined, so its stock reservation is released
//! and the instance ends failed-compensated. Each step emits events that carry the order's
//! correlation id, and the chain of events each order caused is printed at the end.
//!
//! Run it with `cargo run --example order_saga`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncbus::prelude::*;
use syncbus::store::SagaStatus;
use syncbus::{ChainNode, Saga};

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(type = "shop.order.placed", topic = "orders.placed")]
struct OrderPlaced {
    order: u64,
    card: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(type = "shop.order.update", topic = "orders.updates")]
struct OrderUpdate {
    order: u64,
    what: String,
}

/// The saga's state, saved after every step.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Order {
    id: u64,
    card: String,
    reservation: Option<String>,
    payment: Option<String>,
}

fn print_chain(node: &ChainNode, depth: usize) {
    let handled: Vec<String> = node
        .handled
        .iter()
        .map(|h| match &h.outcome {
            Ok(()) => format!("{}: ok", h.subscription),
            Err(e) => format!("{}: {e}", h.subscription),
        })
        .collect();
    println!(
        "{:indent$}- {} [{}]",
        "",
        node.event_type,
        handled.join(", "),
        indent = depth * 2
    );
    for child in &node.children {
        print_chain(child, depth + 1);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);

    let saga = Saga::<Order>::new("order-fulfilment")
        .retry(
            RetryPolicy::default()
                .initial(Duration::from_millis(20))
                .max_attempts(3),
        )
        .step_timeout(Duration::from_secs(2))
        .step("reserve-stock", |mut o, ctx| async move {
            o.reservation = Some(format!("rsv-{}", o.id));
            ctx.emit(OrderUpdate {
                order: o.id,
                what: "stock reserved".into(),
            });
            Ok(o)
        })
        .compensate(|o, ctx| async move {
            ctx.emit(OrderUpdate {
                order: o.id,
                what: "stock released".into(),
            });
            Ok(())
        })
        .step("charge-payment", |mut o, ctx| async move {
            if o.card == "declined" {
                return Err(HandlerError::permanent("card declined by issuer"));
            }
            o.payment = Some(format!("pay-{}", o.id));
            ctx.emit(OrderUpdate {
                order: o.id,
                what: "payment charged".into(),
            });
            Ok(o)
        })
        .compensate(|o, ctx| async move {
            ctx.emit(OrderUpdate {
                order: o.id,
                what: "payment refunded".into(),
            });
            Ok(())
        })
        .step("ship", |o, ctx| async move {
            ctx.emit(OrderUpdate {
                order: o.id,
                what: "shipped".into(),
            });
            Ok(o)
        });
    let running = saga.start_on::<OrderPlaced>(&wf, "orders.placed", |e| Order {
        id: e.payload().order,
        card: e.payload().card.clone(),
        ..Order::default()
    })?;

    // Someone listening to the updates, as another module of the monolith would.
    let _updates = wf
        .subscribe::<OrderUpdate>("orders.updates")?
        .name("notify-customer")
        .handle(|e, _ctx| async move {
            println!("  notify: order {} {}", e.payload().order, e.payload().what);
            Ok(())
        })?;

    let mut roots = Vec::new();
    for (order, card) in [(1, "ok"), (2, "declined")] {
        let env = Envelope::from_event(OrderPlaced {
            order,
            card: card.into(),
        });
        roots.push(env.meta().id().clone());
        bus.publish_envelope(env).await?;
    }

    // Both instances run to the end, their follow-ups handled too.
    bus.settled().await;
    bus.shutdown(Duration::from_secs(2)).await;

    for root in &roots {
        let inst = running
            .instance(&root.to_string())
            .await?
            .expect("instance");
        let order: Order = serde_json::from_value(inst.data.clone())?;
        println!(
            "\norder {} (saga instance {}) is {}",
            order.id,
            inst.id,
            inst.status.as_str()
        );
        if let Some(why) = &inst.error {
            println!("  because: {why}");
        }
        for h in &inst.history {
            let outcome = match (&h.error, h.ok) {
                (Some(e), _) => format!("failed: {e}"),
                (None, true) => "ok".to_owned(),
                (None, false) => "failed".to_owned(),
            };
            println!(
                "  {:?} {}: {outcome} ({} attempt{})",
                h.action,
                h.step,
                h.attempts,
                if h.attempts == 1 { "" } else { "s" }
            );
        }
        if let Some(chain) = wf.chain(root) {
            println!("chain:");
            print_chain(&chain, 1);
        }
    }
    let failed = running
        .instances(Some(SagaStatus::FailedCompensated))
        .await?;
    assert_eq!(failed.len(), 1, "order 2 was compensated");
    Ok(())
}
