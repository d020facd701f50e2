//! The storage contract on the in-memory store.

mod support;

use support::contract;
use syncbus_store::MemoryStore;

#[tokio::test]
async fn log_append_read() {
    contract::log_append_read(&MemoryStore::new()).await;
}

#[tokio::test]
async fn log_commit() {
    contract::log_commit(&MemoryStore::new()).await;
}

#[tokio::test]
async fn log_claim_ack() {
    contract::log_claim_ack(&MemoryStore::new()).await;
}

#[tokio::test]
async fn log_ack_skips_acked() {
    contract::log_ack_skips_acked(&MemoryStore::new()).await;
}

#[tokio::test]
async fn log_leases() {
    contract::log_leases(&MemoryStore::new()).await;
}

#[tokio::test]
async fn log_retention() {
    contract::log_retention(&MemoryStore::new()).await;
}

#[tokio::test]
async fn checkpoints() {
    contract::checkpoints(&MemoryStore::new()).await;
}

#[tokio::test]
async fn outbox() {
    let store = MemoryStore::new();
    let s = store.clone();
    let enqueue = move |env| -> syncbus_store::StoreFuture<'static, u64> {
        let id = s.enqueue(env);
        Box::pin(async move { id })
    };
    contract::outbox(&store, &enqueue).await;
}

#[tokio::test]
async fn dedup() {
    contract::dedup(&syncbus_workflow::store::MemoryDedupStore::new(10_000)).await;
}

#[tokio::test]
async fn dead_letters() {
    contract::dead_letters(&syncbus_workflow::store::MemoryDeadLetterStore::new(100)).await;
}

#[tokio::test]
async fn sagas() {
    contract::sagas(&syncbus_workflow::store::MemorySagaStore::new()).await;
}
