//! The storage contract on the in-memory store.

use syncbus_storage::testing as contract;
use syncbus_storage::{MemoryDeadLetterStore, MemoryDedupStore, MemorySagaStore, MemoryStore};

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
async fn log_extend() {
    contract::log_extend(&MemoryStore::new()).await;
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
    let enqueue = move |env| -> syncbus_storage::StoreFuture<'static, u64> {
        let id = s.enqueue(env);
        Box::pin(async move { id })
    };
    contract::outbox(&store, &enqueue).await;
}

#[tokio::test]
async fn dedup() {
    contract::dedup(&MemoryDedupStore::new(10_000)).await;
}

#[tokio::test]
async fn dead_letters() {
    contract::dead_letters(&MemoryDeadLetterStore::new(100)).await;
}

#[tokio::test]
async fn sagas() {
    contract::sagas(&MemorySagaStore::new()).await;
}
