//! Send and Sync of the batch, schedule and reconcile types, pinned at compile time.

use std::collections::BTreeMap;
use std::sync::Arc;

use syncbus_stream::{
    BatchConfig, BatchMetrics, BatchRunner, Drift, Job, JobRun, JobStatus, OnBatchFailure,
    Reconcile, ReconcileError, ReconcileReport, Schedule, ScheduleError, SystemClock, TestClock,
};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<BatchConfig>();
    send_sync::<BatchMetrics>();
    send_sync::<BatchRunner>();
    send_sync::<OnBatchFailure>();
    send_sync::<Job>();
    send_sync::<JobRun>();
    send_sync::<JobStatus>();
    send_sync::<syncbus_stream::RunningJob>();
    send_sync::<Schedule>();
    send_sync::<ScheduleError>();
    send_sync::<SystemClock>();
    send_sync::<TestClock>();
    send_sync::<ReconcileError>();
    send_sync::<ReconcileReport>();
    send_sync::<Drift<u64, String, String>>();
    type Side = Arc<BTreeMap<u64, String>>;
    send_sync::<Reconcile<Side, Side>>();
    send::<
        syncbus_stream::Repairs<
            Side,
            Side,
            syncbus_stream::Equal,
            fn(Drift<u64, String, String>) -> syncbus_core::Envelope<String>,
        >,
    >();
}
