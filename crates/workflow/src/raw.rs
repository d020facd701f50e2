//! [`RawEvent`]: any event, its payload kept as the bytes it came with.

use syncbus_envelope::{Bytes, DecodeError, EncodeError, Envelope, Payload};

use crate::storable::Storable;

/// Any event, whatever its type, with its payload as the bytes it came with (the JSON a
/// webhook or a polled upstream sent): the payload type to serve a log of mixed event types
/// with, or a source whose handler reads the JSON itself. An `Envelope<RawEvent>` keeps every
/// attribute of the stored event. The webhook and poll crates re-export it.
///
/// # Examples
///
/// ```
/// use syncbus_core::{Bytes, Envelope, EventType, Metadata};
/// use syncbus_workflow::{RawEvent, Storable};
///
/// let meta = Metadata::new(EventType::new("any.thing")?);
/// let stored = Envelope::new(meta, Bytes::from_static(b"{}"));
/// let raw = RawEvent::from_stored(&stored)?;
/// assert_eq!(raw.payload().as_bytes(), b"{}");
/// assert_eq!(RawEvent::to_stored(&raw)?, stored);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawEvent(pub Bytes);

impl RawEvent {
    /// The payload bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let raw = syncbus_workflow::RawEvent(syncbus_core::Bytes::from_static(b"[1]"));
    /// assert_eq!(raw.as_bytes(), b"[1]");
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Payload for RawEvent {
    type Packed = Envelope<RawEvent>;

    fn pack(envelope: Envelope<RawEvent>, _pristine: bool) -> Envelope<RawEvent> {
        envelope
    }

    fn unpack(packed: Envelope<RawEvent>) -> Envelope<RawEvent> {
        packed
    }
}

impl Storable for RawEvent {
    fn to_stored(env: &Envelope<Self>) -> Result<Envelope<Bytes>, EncodeError> {
        Ok(env.clone().map_payload(|p| p.0))
    }

    fn from_stored(env: &Envelope<Bytes>) -> Result<Envelope<Self>, DecodeError> {
        Ok(env.clone().map_payload(RawEvent))
    }
}
