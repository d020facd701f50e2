//! CloudEvents 1.0 JSON, structured mode.

use bytes::Bytes;

use crate::{DecodeError, EncodeError, Envelope, Limits};

/// CloudEvents JSON codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct CloudEventsJson;

impl CloudEventsJson {
    /// Encodes an envelope.
    pub fn encode(env: &Envelope<Bytes>) -> Result<Vec<u8>, EncodeError> {
        let _ = env;
        Ok(Vec::new())
    }

    /// Decodes an envelope.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Envelope<Bytes>, DecodeError> {
        limits.check_input(bytes.len())?;
        Err(DecodeError::malformed("not yet implemented"))
    }
}
