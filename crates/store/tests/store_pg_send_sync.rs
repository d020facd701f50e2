//! Pins, at compile time, that the PostgreSQL types can cross threads, that their futures
//! can be spawned, and that they fit behind the storage trait objects.

use std::future::Future;
use std::sync::Arc;

use syncbus_core::{Bytes, Envelope};
use syncbus_storage::{Checkpoints, EventLog, Outbox};
use syncbus_storage::{DeadLetterStore, DedupStore, SagaStore};
use syncbus_store::tokio_postgres::Transaction;
use syncbus_store::{PgDeadLetterStore, PgDedupStore, PgSagaStore, PgStore, PgStoreBuilder};

fn send_sync<T: Send + Sync + 'static>() {}

fn send<F: Future + Send>(f: F) -> F {
    f
}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<PgStore>();
    send_sync::<PgStoreBuilder>();
    send_sync::<PgDedupStore>();
    send_sync::<PgDeadLetterStore>();
    send_sync::<PgSagaStore>();
}

/// Never called: it only has to compile.
#[allow(dead_code)]
async fn futures_are_send(store: PgStore, tx: &Transaction<'_>, env: &Envelope<Bytes>) {
    send(PgStore::connect("postgres://localhost/app"))
        .await
        .ok();
    send(PgStore::builder("postgres://localhost/app").connect())
        .await
        .ok();
    send(store.enqueue(tx, env)).await.ok();
    send(store.ack_in(tx, "c", &[1])).await.ok();
}

#[test]
fn the_stores_fit_behind_the_trait_objects() {
    fn objects(store: PgStore) {
        let _: Arc<dyn EventLog> = Arc::new(store.clone());
        let _: Arc<dyn Checkpoints> = Arc::new(store.clone());
        let _: Arc<dyn Outbox> = Arc::new(store.clone());
        let _: Arc<dyn DedupStore> = Arc::new(store.dedup());
        let _: Arc<dyn DeadLetterStore> = Arc::new(store.dead_letters());
        let _: Arc<dyn SagaStore> = Arc::new(store.sagas());
    }
    let _ = objects as fn(PgStore);
}
