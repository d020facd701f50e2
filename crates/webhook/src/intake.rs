//! The durable intake: a request's "seen" key and its event commit in one SQLite transaction,
//! and the requests waiting at the same moment share that transaction (group commit), so a
//! durable 2xx costs a share of one fsync, not one each.
//!
//! One task owns the writing: it takes every job queued since its last commit (up to
//! `max_batch`), runs one transaction on the store's connection thread, and answers each job
//! after the commit. While a commit is on disk the next batch queues up, which is what
//! makes the batches grow with the load.

use std::time::Duration;

use syncbus_envelope::{Bytes, Envelope};
use syncbus_storage::{DedupKey, InboxEntry, StoreError, StoreErrorKind};
use syncbus_store::{SqliteError, SqliteStore};
use tokio::sync::{mpsc, oneshot};

/// What became of one request at the intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intaken {
    /// Stored at this log offset.
    Appended(u64),
    /// Its key was recorded before (or earlier in the same batch): nothing appended.
    Duplicate,
}

pub(crate) struct Job {
    pub(crate) key: DedupKey,
    pub(crate) envelope: Envelope<Bytes>,
    pub(crate) reply: oneshot::Sender<Result<Intaken, StoreError>>,
}

pub(crate) fn start(
    store: SqliteStore,
    ttl: Duration,
    queue: usize,
    max_batch: usize,
) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(queue.max(1));
    tokio::spawn(run(store, ttl, rx, max_batch.max(1)));
    tx
}

async fn run(store: SqliteStore, ttl: Duration, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let jobs = std::mem::take(&mut batch);
        let (work, replies): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .map(|j| ((j.key, j.envelope), j.reply))
            .unzip();
        let outcome = store
            .transaction(move |tx| -> Result<Vec<Intaken>, SqliteError> {
                work.iter()
                    .map(|(key, envelope)| {
                        let entry = InboxEntry::new(key.clone(), ttl);
                        match SqliteStore::record_done(tx, &entry) {
                            Ok(()) => SqliteStore::append_in(tx, envelope).map(Intaken::Appended),
                            Err(SqliteError::Store(e)) if e.kind() == StoreErrorKind::Duplicate => {
                                Ok(Intaken::Duplicate)
                            }
                            Err(e) => Err(e),
                        }
                    })
                    .collect()
            })
            .await;
        match outcome {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                let e = StoreError::from(e);
                tracing::error!(error = %e, jobs = replies.len(), "webhook intake commit failed");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::new(e.kind(), e.to_string())));
                }
            }
        }
    }
}
