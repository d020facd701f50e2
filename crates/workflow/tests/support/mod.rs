//! Shared test events and helpers.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use syncbus_core::{Bus, EntityId, Envelope, Event};
use syncbus_workflow::Context;

/// A versioned change of one entity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub entity: u64,
    pub version: u64,
}

impl Event for Change {
    const TYPE: &'static str = "test.change";
    fn entity_id(&self) -> Option<EntityId> {
        Some(self.entity.into())
    }
    fn version(&self) -> Option<u64> {
        Some(self.version)
    }
}

/// A plain event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub n: u64,
}

impl Event for Job {
    const TYPE: &'static str = "test.job";
}

pub fn env<E: Event>(e: E) -> Envelope<E> {
    Envelope::from_event(e)
}

pub fn ctx_for<E>(bus: &Bus, env: &Envelope<E>) -> Context {
    Context::new(bus, env.meta())
}

/// A shared log of what handlers saw.
#[derive(Clone)]
pub struct Log<T>(pub Arc<Mutex<Vec<T>>>);

impl<T> Default for Log<T> {
    fn default() -> Self {
        Log(Arc::default())
    }
}

impl<T: Clone> Log<T> {
    pub fn push(&self, t: T) {
        self.0.lock().push(t);
    }
    pub fn get(&self) -> Vec<T> {
        self.0.lock().clone()
    }
    pub fn len(&self) -> usize {
        self.0.lock().len()
    }
}

/// Waits (on tokio's clock) until `f` holds, for at most `secs` seconds of it.
pub async fn until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    f()
}
