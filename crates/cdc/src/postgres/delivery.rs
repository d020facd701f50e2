//! What the PostgreSQL reader hands out: a change's position, and the delivery that settles
//! it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use syncbus_core::Settle;
use syncbus_envelope::Envelope;

use crate::change::Change;
use crate::error::CdcError;
use crate::tracker::{Ticket, Tracker};

/// A change's place: snapshot rows first, then the stream by (commit LSN, position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PgPos {
    Snapshot(u64),
    Stream { commit: u64, pos: u32, end: u64 },
}

/// One change handed out by [`PgCdc`](crate::PgCdc): settle it with `ack` (or `term`) to let the
/// confirmed position pass it, or `nak` to read it (and everything after it) again.
///
/// # Examples
///
/// ```no_run
/// # async fn f(source: syncbus_cdc::PgCdc) -> Result<(), syncbus_cdc::CdcError> {
/// use std::time::Duration;
/// use syncbus_core::{Settle, Source};
/// for d in source.fetch(100, Duration::from_secs(1)).await? {
///     println!("{}", d.envelope().meta().event_type());
///     d.ack().await?;
/// }
/// # Ok(()) }
/// ```
pub struct PgDelivery {
    pub(super) env: Envelope<Change>,
    pub(super) ticket: Ticket,
    pub(super) deliveries: u32,
    pub(super) tracker: Arc<Mutex<Tracker<PgPos>>>,
}

impl std::fmt::Debug for PgDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDelivery")
            .field("id", self.env.id())
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

impl Settle for PgDelivery {
    type Payload = Change;
    type Error = CdcError;

    fn envelope(&self) -> &Envelope<Change> {
        &self.env
    }

    fn deliveries(&self) -> u32 {
        self.deliveries
    }

    async fn ack(self) -> Result<(), CdcError> {
        self.tracker.lock().settle(self.ticket);
        Ok(())
    }

    async fn nak(self, delay: Duration) -> Result<(), CdcError> {
        self.tracker.lock().nak(self.ticket, Instant::now() + delay);
        Ok(())
    }

    async fn term(self) -> Result<(), CdcError> {
        self.tracker.lock().settle(self.ticket);
        Ok(())
    }

    async fn in_progress(&mut self) -> Result<(), CdcError> {
        Ok(())
    }
}
