//! Pins, at compile time, that the public types can cross threads and that the storage
//! traits stay object-safe.

use std::sync::Arc;

use syncbus_storage::{
    Checkpoints, Claimed, DedupPurger, DurableConfig, DurableConsumer, EventLog, LogFeed,
    LogRecord, MemoryStore, Outbox, OutboxRecord, Relay, RelayError, RelayHandle, RelayStats,
    Retention, StoreError,
};

use syncbus_storage::{DeadLetterStore, DedupStore, SagaStore};
use syncbus_store::{
    SqliteConfig, SqliteDeadLetterStore, SqliteDedupStore, SqliteSagaStore, SqliteStore,
    Synchronous,
};

fn send_sync<T: Send + Sync>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Claimed>();
    send_sync::<DedupPurger>();
    send_sync::<DurableConfig>();
    send_sync::<DurableConsumer>();
    send_sync::<LogFeed>();
    send_sync::<LogRecord>();
    send_sync::<MemoryStore>();
    send_sync::<OutboxRecord>();
    send_sync::<Relay>();
    send_sync::<RelayError>();
    send_sync::<RelayStats>();
    send_sync::<RelayHandle>();
    send_sync::<Retention>();
    send_sync::<SqliteConfig>();
    send_sync::<SqliteStore>();
    send_sync::<SqliteDedupStore>();
    send_sync::<SqliteDeadLetterStore>();
    send_sync::<SqliteSagaStore>();
    send_sync::<StoreError>();
    send_sync::<Synchronous>();
}

#[tokio::test]
async fn every_backend_fits_behind_the_trait_objects() {
    let memory = MemoryStore::new();
    let _: Arc<dyn EventLog> = Arc::new(memory.clone());
    let _: Arc<dyn Checkpoints> = Arc::new(memory.clone());
    let _: Arc<dyn Outbox> = Arc::new(memory);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
    let log: Arc<dyn EventLog> = Arc::new(sqlite.clone());
    let _: Arc<dyn Checkpoints> = Arc::new(sqlite.clone());
    let _: Arc<dyn Outbox> = Arc::new(sqlite.clone());
    let _: Arc<dyn DedupStore> = Arc::new(sqlite.dedup());
    let _: Arc<dyn DeadLetterStore> = Arc::new(sqlite.dead_letters());
    let _: Arc<dyn SagaStore> = Arc::new(sqlite.sagas());
    assert_eq!(log.head().await.unwrap(), None);
}
