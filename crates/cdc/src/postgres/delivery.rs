//! What the PostgreSQL reader hands out: a change's position, and the delivery that settles
//! it.

use crate::delivery::CdcDelivery;

/// A change's place: snapshot rows first, then the stream by (commit LSN, position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PgPos {
    Snapshot(u64),
    Stream { commit: u64, pos: u32, end: u64 },
}

/// One change handed out by [`PgCdc`](crate::PgCdc) (see [`CdcDelivery`]).
pub type PgDelivery = CdcDelivery;
