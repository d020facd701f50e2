//! The checkpoint record: the state of every stateful stage, the watermarks, and the input
//! offsets that state counts, in one value written with one `Checkpoints::put`. One write is
//! atomic on every backend (memory, SQLite, PostgreSQL), so state and offsets can never
//! disagree after a crash.

use serde::{Deserialize, Serialize};

use crate::error::StreamError;
use crate::state::offsets::OffsetSet;
use crate::state::{decode, encode};
use crate::topology::SavedTopology;
use crate::watermark::SavedWatermarks;

/// Bumped when the record's layout changes.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub(crate) version: u32,
    /// Offsets counted in the state whose acks may not have reached the source.
    pub(crate) offsets: OffsetSet,
    pub(crate) watermarks: SavedWatermarks,
    pub(crate) topology: SavedTopology,
}

impl Checkpoint {
    pub(crate) fn new(
        offsets: OffsetSet,
        watermarks: SavedWatermarks,
        topology: SavedTopology,
    ) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            offsets,
            watermarks,
            topology,
        }
    }

    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, StreamError> {
        encode(self)
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Checkpoint, StreamError> {
        // The version comes first: read it alone so a newer layout gets a clear message.
        let (version, _): (u32, _) = postcard::take_from_bytes(bytes)
            .map_err(|e| StreamError::Checkpoint(format!("it does not decode: {e}")))?;
        if version != VERSION {
            return Err(StreamError::Checkpoint(format!(
                "it has layout version {version}, this build reads {VERSION}"
            )));
        }
        decode(bytes, "the checkpoint")
    }
}
