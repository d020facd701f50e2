//! Send and Sync of the public types, pinned at compile time.

use syncbus_poll::{
    AppliedVersions, Cursor, HttpSource, ItemMapping, Page, PollConfig, PollDelivery, PollError,
    PollMetrics, Poller, VersionGate,
};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Poller<HttpSource>>();
    send_sync::<HttpSource>();
    send_sync::<ItemMapping>();
    send_sync::<PollConfig>();
    send_sync::<PollError>();
    send_sync::<PollMetrics>();
    send_sync::<Cursor>();
    send_sync::<Page>();
    send_sync::<AppliedVersions>();
    send_sync::<VersionGate<()>>();
    send::<PollDelivery>();
}
