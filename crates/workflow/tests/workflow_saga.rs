//! Sagas: compensation in reverse order, instance state, the chain of events.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use support::*;
use syncbus_core::{Bus, Envelope, Event};
use syncbus_storage::{
    DeadLetterFilter, MemorySagaStore, SagaInstance, SagaStatus, SagaStore, StepAction,
};
use syncbus_workflow::{HandlerError, RetryPolicy, Saga, Workflow};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct OrderPlaced {
    order: u64,
    card: String,
}
impl Event for OrderPlaced {
    const TYPE: &'static str = "shop.order.placed";
}

macro_rules! simple_event {
    ($name:ident, $ty:literal) => {
        #[derive(Clone, Debug, Serialize, Deserialize)]
        struct $name {
            order: u64,
        }
        impl Event for $name {
            const TYPE: &'static str = $ty;
        }
    };
}
simple_event!(StockReserved, "shop.stock.reserved");
simple_event!(StockReleased, "shop.stock.released");
simple_event!(PaymentCharged, "shop.payment.charged");
simple_event!(Shipped, "shop.order.shipped");

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct Order {
    id: u64,
    card: String,
    reserved: bool,
    charged: bool,
    shipped: bool,
}

fn order_saga(log: Log<String>, store: Arc<dyn SagaStore>) -> Saga<Order> {
    let (l1, l2, l3, l4, l5) = (log.clone(), log.clone(), log.clone(), log.clone(), log);
    Saga::<Order>::new("order-fulfilment")
        .store(store)
        .retry(
            RetryPolicy::default()
                .initial(Duration::from_millis(10))
                .max_attempts(3),
        )
        .step_timeout(Duration::from_secs(5))
        .step("reserve-stock", move |mut o, ctx| {
            let l = l1.clone();
            async move {
                l.push(format!("reserve {}", o.id));
                o.reserved = true;
                ctx.emit(StockReserved { order: o.id });
                Ok(o)
            }
        })
        .compensate(move |o, ctx| {
            let l = l2.clone();
            async move {
                l.push(format!("release {}", o.id));
                ctx.emit(StockReleased { order: o.id });
                Ok(())
            }
        })
        .step("charge-payment", move |mut o, ctx| {
            let l = l3.clone();
            async move {
                l.push(format!("charge {}", o.id));
                match o.card.as_str() {
                    "declined" => Err(HandlerError::permanent("card declined")),
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok(o)
                    }
                    _ => {
                        o.charged = true;
                        ctx.emit(PaymentCharged { order: o.id });
                        Ok(o)
                    }
                }
            }
        })
        .compensate(move |o, _ctx| {
            let l = l4.clone();
            async move {
                l.push(format!("refund {}", o.id));
                Ok(())
            }
        })
        .step("ship", move |mut o, ctx| {
            let l = l5.clone();
            async move {
                l.push(format!("ship {}", o.id));
                o.shipped = true;
                ctx.emit(Shipped { order: o.id });
                Ok(o)
            }
        })
}

async fn place(bus: &Bus, order: u64, card: &str) -> String {
    let env = Envelope::from_event(OrderPlaced {
        order,
        card: card.into(),
    });
    let id = env.meta().id().to_string();
    bus.publish_envelope(env).await.unwrap();
    id
}

async fn wait_final(running: &syncbus_workflow::RunningSaga, id: &str) -> SagaInstance {
    for _ in 0..60_000 {
        if let Some(i) = running.instance(id).await.unwrap() {
            if i.status.is_final() {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("saga instance {id} did not finish");
}

fn start(
    wf: &Workflow,
    log: Log<String>,
    store: Arc<dyn SagaStore>,
) -> syncbus_workflow::RunningSaga {
    order_saga(log, store)
        .start_on::<OrderPlaced>(wf, "shop.order.placed", |e| Order {
            id: e.payload().order,
            card: e.payload().card.clone(),
            ..Order::default()
        })
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_happy_order_completes() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let log = Log::default();
    let running = start(&wf, log.clone(), Arc::new(MemorySagaStore::new()));
    let id = place(&bus, 1, "ok").await;
    let inst = wait_final(&running, &id).await;
    assert_eq!(inst.status, SagaStatus::Completed);
    assert_eq!(log.get(), vec!["reserve 1", "charge 1", "ship 1"]);
    let data: Order = serde_json::from_value(inst.data).unwrap();
    assert!(data.reserved && data.charged && data.shipped);
    assert_eq!(inst.history.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn payment_failing_compensates_the_reservation() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let log = Log::default();
    let running = start(&wf, log.clone(), Arc::new(MemorySagaStore::new()));
    let id = place(&bus, 2, "declined").await;
    let inst = wait_final(&running, &id).await;
    assert_eq!(inst.status, SagaStatus::FailedCompensated);
    assert_eq!(
        log.get(),
        vec!["reserve 2", "charge 2", "release 2"],
        "no refund: the charge never completed"
    );
    assert!(inst.error.as_deref().unwrap().contains("card declined"));
    let steps: Vec<(&str, StepAction, bool)> = inst
        .history
        .iter()
        .map(|h| (h.step.as_str(), h.action, h.ok))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("reserve-stock", StepAction::Run, true),
            ("charge-payment", StepAction::Run, false),
            ("reserve-stock", StepAction::Compensate, true),
        ]
    );
    // The chain of events: the order caused a reservation and its release.
    let root = syncbus_core::EventId::parse(&id).unwrap();
    let mut chain = None;
    for _ in 0..100 {
        chain = wf.chain(&root).filter(|t| t.children.len() == 2);
        if chain.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let chain = chain.expect("chain retained");
    assert_eq!(
        chain.types(),
        vec![
            "shop.order.placed",
            "shop.stock.reserved",
            "shop.stock.released"
        ]
    );
    assert!(
        running
            .instances(Some(SagaStatus::FailedCompensated))
            .await
            .unwrap()
            .len()
            == 1
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_timing_out_every_attempt_compensates() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let log = Log::default();
    let running = start(&wf, log.clone(), Arc::new(MemorySagaStore::new()));
    let id = place(&bus, 3, "slow").await;
    let inst = wait_final(&running, &id).await;
    assert_eq!(inst.status, SagaStatus::FailedCompensated);
    assert_eq!(
        log.get(),
        vec!["reserve 3", "charge 3", "charge 3", "charge 3", "release 3"]
    );
    assert_eq!(inst.history[1].attempts, 3);
    assert!(inst.error.unwrap().contains("timed out"));
}

#[tokio::test(start_paused = true)]
async fn a_failing_compensation_fails_the_instance_and_dead_letters_the_trigger() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let saga = Saga::<Order>::new("fragile")
        .retry(RetryPolicy::never())
        .step("a", |o, _c| async move { Ok(o) })
        .compensate(|_o, _c| async move { Err(HandlerError::permanent("cannot undo a")) })
        .step("b", |_o, _c| async move {
            Err(HandlerError::permanent("b failed"))
        });
    let running = saga
        .start_on::<OrderPlaced>(&wf, "shop.order.placed", |_| Order::default())
        .unwrap();
    let id = place(&bus, 4, "x").await;
    let inst = wait_final(&running, &id).await;
    assert_eq!(inst.status, SagaStatus::Failed);
    assert!(until(5, || running.metrics().dead_lettered == 1).await);
    let dead = wf
        .dead_letters()
        .list(&DeadLetterFilter::new())
        .await
        .unwrap();
    assert!(dead[0].error().contains("cannot undo a"));
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_trigger_resumes_or_leaves_alone() {
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let log = Log::default();
    let store: Arc<dyn SagaStore> = Arc::new(MemorySagaStore::new());
    // An instance a crashed process left after its first step.
    let env = Envelope::from_event(OrderPlaced {
        order: 5,
        card: "ok".into(),
    });
    let id = env.meta().id().to_string();
    let now = syncbus_core::Timestamp::now();
    let data = Order {
        id: 5,
        card: "ok".into(),
        reserved: true,
        ..Order::default()
    };
    store
        .create(&SagaInstance {
            saga: "order-fulfilment".into(),
            id: id.clone(),
            status: SagaStatus::Running,
            step: 1,
            data: serde_json::to_value(&data).unwrap(),
            error: None,
            history: vec![],
            started: now,
            updated: now,
            version: 1,
        })
        .await
        .unwrap();
    let running = start(&wf, log.clone(), store);
    bus.publish_envelope(env.clone()).await.unwrap();
    let inst = wait_final(&running, &id).await;
    assert_eq!(inst.status, SagaStatus::Completed);
    assert_eq!(
        log.get(),
        vec!["charge 5", "ship 5"],
        "resumed after the saved step"
    );
    // Delivered once more: finished, nothing runs.
    bus.publish_envelope(env).await.unwrap();
    assert!(until(5, || running.metrics().succeeded == 2).await);
    assert_eq!(log.len(), 2);
}
