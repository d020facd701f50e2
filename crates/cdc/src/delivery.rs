//! [`CdcDelivery`]: one change handed out by a reader, settled against the reader's tracker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use syncbus_core::Settle;
use syncbus_envelope::Envelope;

use crate::change::Change;
use crate::error::CdcError;
use crate::tracker::{Ticket, Tracker};

/// What a delivery settles against: a reader's tracker, whatever its position type.
pub(crate) trait Settles: Send + Sync {
    fn settle(&self, ticket: Ticket);
    fn nak(&self, ticket: Ticket, at: Instant);
}

impl<P: Copy + Ord + std::hash::Hash + Send> Settles for Mutex<Tracker<P>> {
    fn settle(&self, ticket: Ticket) {
        self.lock().settle(ticket);
    }

    fn nak(&self, ticket: Ticket, at: Instant) {
        self.lock().nak(ticket, at);
    }
}

/// One change handed out by a CDC reader (`PgCdc` with the `postgres` feature,
/// [`SqliteCdc`](crate::SqliteCdc)):
/// settle it with `ack` (or `term`) to let the confirmed position pass it, or `nak` to read it
/// (and everything after it) again.
///
/// # Examples
///
/// ```no_run
/// # async fn f(source: syncbus_cdc::SqliteCdc) -> Result<(), syncbus_cdc::CdcError> {
/// use std::time::Duration;
/// use syncbus_core::{Settle, Source};
/// for d in source.fetch(100, Duration::from_secs(1)).await? {
///     println!("{}", d.envelope().meta().event_type());
///     d.ack().await?;
/// }
/// # Ok(()) }
/// ```
pub struct CdcDelivery {
    pub(crate) env: Envelope<Change>,
    pub(crate) ticket: Ticket,
    pub(crate) deliveries: u32,
    pub(crate) tracker: Arc<dyn Settles>,
}

impl std::fmt::Debug for CdcDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdcDelivery")
            .field("id", self.env.id())
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

impl Settle for CdcDelivery {
    type Payload = Change;
    type Error = CdcError;

    fn envelope(&self) -> &Envelope<Change> {
        &self.env
    }

    fn deliveries(&self) -> u32 {
        self.deliveries
    }

    async fn ack(self) -> Result<(), CdcError> {
        self.tracker.settle(self.ticket);
        Ok(())
    }

    async fn nak(self, delay: Duration) -> Result<(), CdcError> {
        self.tracker.nak(self.ticket, Instant::now() + delay);
        Ok(())
    }

    async fn term(self) -> Result<(), CdcError> {
        self.tracker.settle(self.ticket);
        Ok(())
    }

    async fn in_progress(&mut self) -> Result<(), CdcError> {
        Ok(())
    }
}
