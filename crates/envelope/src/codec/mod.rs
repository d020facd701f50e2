//! Wire formats for `Envelope<Bytes>`.

pub(crate) mod base64;
pub(crate) mod binary;
pub(crate) mod cloudevents;

/// Limits applied while decoding untrusted input.
///
/// Every codec checks sizes before copying payload bytes, and rejects input larger than
/// `max_payload_bytes` plus 64 KiB for metadata before parsing at all. Header limits are
/// capped by [`Headers::MAX_LEN`](crate::Headers::MAX_LEN) and
/// [`Headers::MAX_VALUE_LEN`](crate::Headers::MAX_VALUE_LEN), which no envelope can exceed.
///
/// # Examples
///
/// ```
/// use syncbus_envelope::Limits;
///
/// let limits = Limits { max_payload_bytes: 64 * 1024, ..Limits::default() };
/// assert_eq!(limits.max_headers, 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload accepted, in bytes. Default 1 MiB.
    pub max_payload_bytes: usize,
    /// Most headers accepted. Default 64.
    pub max_headers: usize,
    /// Longest header value accepted, in bytes. Default 4096.
    pub max_header_value_bytes: usize,
}

/// Room for metadata on top of the payload limit when checking the whole input's size.
const METADATA_ALLOWANCE: usize = 64 * 1024;

impl Limits {
    /// Largest whole input accepted.
    pub(crate) fn max_input_bytes(&self) -> usize {
        self.max_payload_bytes.saturating_add(METADATA_ALLOWANCE)
    }

    pub(crate) fn header_count_max(&self) -> usize {
        self.max_headers.min(crate::Headers::MAX_LEN)
    }

    pub(crate) fn header_value_max(&self) -> usize {
        self.max_header_value_bytes
            .min(crate::Headers::MAX_VALUE_LEN)
    }

    pub(crate) fn check_input(&self, len: usize) -> Result<(), crate::DecodeError> {
        let max = self.max_input_bytes();
        if len > max {
            return Err(crate::DecodeError::InputTooLarge { len, max });
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1024 * 1024,
            max_headers: 64,
            max_header_value_bytes: 4096,
        }
    }
}
