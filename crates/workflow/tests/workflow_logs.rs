//! One log line per event outcome: a dead letter is one WARN (it was two: the dead-letter
//! layer's and the bus worker's "handler failed"). A subscriber of its own counts what is
//! logged at WARN and above, process-wide, so this file holds one test.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use syncbus_core::Bus;
use syncbus_workflow::{HandlerError, Workflow};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

#[derive(Default, Clone)]
struct Warnings {
    next_span: Arc<AtomicUsize>,
    lines: Arc<Mutex<Vec<String>>>,
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Warnings {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        *m.level() <= Level::WARN
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, SeqCst) as u64 + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut m = Message(String::new());
        e.record(&mut m);
        self.lines
            .lock()
            .unwrap()
            .push(format!("{} {}", e.metadata().level(), m.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_logged_once() {
    let warnings = Warnings::default();
    tracing::subscriber::set_global_default(warnings.clone()).unwrap();
    let bus = Bus::new();
    let wf = Workflow::new(&bus);
    let sub = wf
        .subscribe::<Job>("test.job")
        .unwrap()
        .name("billing")
        .no_retry()
        .handle(|_env, _ctx| async { Err(HandlerError::permanent("card declined")) })
        .unwrap();
    bus.publish(Job { n: 1 }).await.unwrap();
    bus.settled_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(sub.metrics().dead_lettered, 1);
    let lines = warnings.lines.lock().unwrap().clone();
    assert_eq!(lines, vec!["WARN dead-lettered".to_owned()], "{lines:#?}");
}
